"""No public function of wsgraph moves the global random generators, except where documented.

Every public name (``__all__`` of ``wsgraph``, ``wsgraph.layers``, ``wsgraph.datasets``, ``wsgraph.inrs``,
``wsgraph.training``, and the public names of ``wsgraph.datasets.transforms``) is classified
below, and a new one fails :func:`test_every_public_name_is_classified` until it is:

* ``CALLS``: called; torch's, Python's and NumPy's global random states must be
  unchanged afterwards.
* ``MODULES``: model and layer classes (and ``build_model``). Their constructors
  initialise parameters from torch's global generator, as ``torch.nn`` modules do (the
  documented exception); their forward pass in eval mode must draw nothing.
* ``GLOBAL_WITHOUT_GENERATOR``: functions and transforms that take a ``generator`` and,
  as documented, draw from torch's global one without it. Called with a generator
  (in ``CALLS``) they must leave the global states alone; without one they must draw,
  or the documentation would be wrong.
* ``VALUES``: types and constants, nothing to call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import random
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mlp_helpers import build_mlp
from torch import nn
from torch_geometric.data import Batch

import wsgraph
import wsgraph.datasets
import wsgraph.inrs
import wsgraph.layers
import wsgraph.training
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets import transforms
from wsgraph.inrs import SINE_RECIPE, SirenRecipe
from wsgraph.training import TrainConfig

WIDTHS = (2, 5, 3, 1)


def _states():
    return torch.random.get_rng_state(), random.getstate(), np.random.get_state()


@contextlib.contextmanager
def no_random_draws(name: str):
    # An unusual state, so that a function that reseeds is caught too.
    torch.manual_seed(20240607)
    random.seed(11)
    np.random.seed(12)
    before = _states()
    yield
    torch_state, python_state, numpy_state = _states()
    assert torch.equal(torch_state, before[0]), f"{name} moved torch's global generator"
    assert python_state == before[1], f"{name} moved Python's global random state"
    assert numpy_state[0] == before[2][0] and np.array_equal(numpy_state[1], before[2][1]), name
    assert numpy_state[2:] == before[2][2:], f"{name} moved NumPy's global random state"


def public_names() -> set[str]:
    names = {f"wsgraph.{name}" for name in wsgraph.__all__}
    for module in (wsgraph.layers, wsgraph.datasets, wsgraph.inrs, wsgraph.training):
        names |= {f"{module.__name__}.{name}" for name in module.__all__}
    names |= {
        f"wsgraph.datasets.transforms.{name}"
        for name, value in vars(transforms).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == "wsgraph.datasets.transforms"
    }
    return names


class _RandomForward(nn.Module):
    """An MLP whose forward pass draws random numbers (multiplied by zero) even in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(2, 4), nn.Linear(4, 1)

    def forward(self, x):
        hidden = torch.tanh(self.first(x))
        return self.second(hidden + 0 * torch.rand_like(hidden))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs for every call, made before any state is checked."""
    root = tmp_path_factory.mktemp("random_state")
    counter = itertools.count()
    mlp = build_mlp(WIDTHS, dtype=torch.float64)
    graph = wsgraph.mlp_to_graph(mlp)
    other = wsgraph.mlp_to_graph(build_mlp((2, 4, 6, 1), dtype=torch.float64, seed=1))
    mixed = Batch.from_data_list([graph, other])
    generator = torch.Generator().manual_seed(0)
    pairs = [
        (torch.randn(3, b, a, generator=generator, dtype=torch.float64), torch.randn(3, b, dtype=torch.float64))
        for a, b in itertools.pairwise(WIDTHS)
    ]
    uniform = wsgraph.mlp_to_graph(pairs, activation="relu")
    perm = torch.randperm(graph.num_edges, generator=generator)
    shuffled = graph.clone()
    shuffled.edge_index, shuffled.edge_attr = graph.edge_index[:, perm], graph.edge_attr[perm]
    shuffled.edge_layer = graph.edge_layer[perm]

    checkpoints = root / "checkpoints"
    checkpoints.mkdir()
    for number in range(10):
        torch.save(build_mlp(WIDTHS, seed=number).state_dict(), checkpoints / f"net{number}.pt")
    sine_recipe = dataclasses.replace(SINE_RECIPE, widths=(1, 8, 8, 1), steps=3)
    sine = root / "sine"
    wsgraph.inrs.fit_sine_inrs(sine, 12, sine_recipe, num_points=16, progress=False)

    def config(out):
        return TrainConfig(
            data=str(sine),
            model="dwsnet",
            out=str(out),
            epochs=1,
            batch_size=4,
            hidden_channels=4,
            depth=1,
            patience=0,
            progress=False,
            device="cpu",
        )

    run = root / "run"
    wsgraph.training.train(config(run))
    cnn = _small_cnn(channels=3, kernel=3)
    cnn_graph = wsgraph.cnn_to_graph(cnn)
    return SimpleNamespace(
        cnn=cnn,
        cnn_graph=cnn_graph,
        wider_cnn_graph=wsgraph.cnn_to_graph(_small_cnn(channels=4, kernel=5)),
        mlp=mlp,
        siren=nn.Sequential(nn.Linear(2, 3), wsgraph.Sine(30.0), nn.Linear(3, 1)),
        random_forward=_RandomForward(),
        graph=graph,
        mixed=mixed,
        pairs=pairs,
        uniform=uniform,
        shuffled=shuffled,
        checkpoints=checkpoints,
        sine=sine,
        sine_recipe=sine_recipe,
        run=run,
        config=config,
        fresh=lambda: root / f"out{next(counter)}",
        images=torch.rand(2, 5, 5, generator=generator),
        features=wsgraph.layers.WeightSpaceLayout.of(mixed).split(mixed.x.float(), mixed.edge_attr.float()),
    )


def _small_cnn(channels: int, kernel: int) -> nn.Sequential:
    """Two convolutions (the first "same"-padded, the second of stride 2), pooling, a linear layer."""
    return nn.Sequential(
        nn.Conv2d(1, channels, kernel, padding=kernel // 2),
        nn.ReLU(),
        nn.Conv2d(channels, 2, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 2),
    ).double()


def _float(data):
    out = data.clone()
    out.x, out.edge_attr = data.x.float(), data.edge_attr.float()
    return out


def _mlp_to_graph(w):
    wsgraph.mlp_to_graph(w.mlp)
    wsgraph.mlp_to_graph(w.siren)
    wsgraph.mlp_to_graph(w.random_forward)
    wsgraph.mlp_to_graph(w.mlp.state_dict())
    wsgraph.mlp_to_graph([(layer.weight, layer.bias) for layer in w.mlp if isinstance(layer, nn.Linear)])
    wsgraph.mlp_to_graph(w.pairs)


def _permute_hidden(w):
    wsgraph.permute_hidden(w.graph, [torch.tensor([4, 3, 2, 1, 0]), torch.tensor([2, 0, 1])])
    wsgraph.permute_hidden(w.mixed, generator=torch.Generator().manual_seed(1))


def _load_trained_model(w):
    model = wsgraph.training.load_trained_model(w.run / "best.pt")
    model(Batch.from_data_list([wsgraph.datasets.WeightSpaceDataset(w.sine, log=False)[0]]))


def _with_generator(transform_class, **settings):
    def check(w):
        transform = transform_class(**settings, generator=torch.Generator().manual_seed(2))
        transform(w.uniform.clone())
        transform(w.graph.clone())

    return check


CALLS: dict[str, Callable] = {
    "wsgraph.cnn_to_graph": lambda w: (wsgraph.cnn_to_graph(w.cnn), wsgraph.cnn_to_graph(w.cnn.state_dict())),
    "wsgraph.graph_to_cnn": lambda w: wsgraph.graph_to_cnn(w.cnn_graph, "relu", stride=[1, 2], padding=[1, 0]),
    "wsgraph.pad_kernels": lambda w: wsgraph.pad_kernels(w.cnn_graph, (5, 5)),
    "wsgraph.batch_cnn_graphs": lambda w: wsgraph.batch_cnn_graphs([w.cnn_graph, w.wider_cnn_graph]),
    "wsgraph.Sine": lambda w: wsgraph.Sine(30.0)(torch.linspace(-1, 1, 5)),
    "wsgraph.common_spec": lambda w: wsgraph.common_spec(w.uniform),
    "wsgraph.graph_specs": lambda w: wsgraph.graph_specs(w.mixed),
    "wsgraph.draw_network": lambda w: wsgraph.draw_network(w.graph),
    "wsgraph.from_dense_weights": lambda w: wsgraph.from_dense_weights(*wsgraph.to_dense_weights(w.uniform)),
    "wsgraph.to_dense_weights": lambda w: wsgraph.to_dense_weights(w.uniform),
    "wsgraph.graph_to_mlp": lambda w: (wsgraph.graph_to_mlp(w.graph), wsgraph.graph_to_mlp(w.mixed)),
    "wsgraph.graph_to_params": lambda w: (wsgraph.graph_to_params(w.mixed), wsgraph.graph_to_params(w.uniform)),
    "wsgraph.load_network_file": lambda w: wsgraph.load_network_file(w.checkpoints / "net0.pt"),
    "wsgraph.make_activation": lambda w: (wsgraph.make_activation("sine(30.0)"), wsgraph.make_activation("relu")),
    "wsgraph.mlp_to_graph": _mlp_to_graph,
    "wsgraph.permute_hidden": _permute_hidden,
    "wsgraph.sort_edges": lambda w: wsgraph.sort_edges(w.shuffled),
    "wsgraph.stacked_params": lambda w: wsgraph.stacked_params(w.uniform),
    "wsgraph.to_networkx": lambda w: wsgraph.to_networkx(w.graph),
    "wsgraph.layers.WeightSpaceLayout": lambda w: (
        wsgraph.layers.WeightSpaceLayout.of(w.mixed.clone()),
        wsgraph.layers.WeightSpaceLayout.build(w.mixed.layer_widths, edge_index=w.mixed.edge_index),
    ),
    "wsgraph.layers.flatten_params": lambda w: wsgraph.layers.flatten_params(w.shuffled),
    "wsgraph.layers.pna_degree_histogram": lambda w: wsgraph.layers.pna_degree_histogram([WIDTHS, (2, 4, 6, 1)]),
    "wsgraph.inrs.PixelGrid": lambda w: wsgraph.inrs.PixelGrid(4, 5).coords(),
    "wsgraph.datasets.WeightSpaceDataset": lambda w: (
        wsgraph.datasets.WeightSpaceDataset(w.sine, split="train", log=False)[0],
        wsgraph.datasets.WeightSpaceDataset(w.sine, log=False).statistics,
    ),
    "wsgraph.datasets.convert_checkpoints": lambda w: wsgraph.datasets.convert_checkpoints(
        w.checkpoints, w.fresh(), progress=False
    ),
    "wsgraph.inrs.dilate": lambda w: wsgraph.inrs.dilate(w.images),
    "wsgraph.inrs.fit_image_inrs": lambda w: wsgraph.inrs.fit_image_inrs(
        wsgraph.datasets.load_images("digits").head_per_split(2),
        w.fresh(),
        SirenRecipe(steps=2),
        progress=False,
        permute_hidden=True,
    ),
    "wsgraph.inrs.fit_sine_inrs": lambda w: wsgraph.inrs.fit_sine_inrs(
        w.fresh(), 6, w.sine_recipe, num_points=16, progress=False
    ),
    "wsgraph.inrs.fit_sirens": lambda w: wsgraph.inrs.fit_sirens(
        torch.zeros(3, 16, 1), torch.linspace(-1, 1, 16).unsqueeze(1), w.sine_recipe, torch.arange(3), seed=0
    ),
    "wsgraph.inrs.image_grid_coords": lambda w: wsgraph.inrs.image_grid_coords(4, 5),
    "wsgraph.datasets.load_images": lambda w: wsgraph.datasets.load_images("digits"),
    "wsgraph.inrs.neuron_values": lambda w: wsgraph.inrs.neuron_values(w.mixed, torch.zeros(4, 2, dtype=torch.float64)),
    "wsgraph.inrs.render_inr": lambda w: wsgraph.inrs.render_inr(
        w.mixed, torch.zeros(4, 2, dtype=torch.float64), activation="relu"
    ),
    "wsgraph.training.load_trained_model": _load_trained_model,
    "wsgraph.training.model_spec": lambda w: wsgraph.training.model_spec(
        "pna", "classify", [WeightSpaceSpec(WIDTHS)], out_features=3
    ),
    "wsgraph.training.train": lambda w: wsgraph.training.train(w.config(w.fresh())),
    "wsgraph.datasets.transforms.RandomHiddenPermutation": _with_generator(transforms.RandomHiddenPermutation),
    "wsgraph.datasets.transforms.GaussianWeightNoise": _with_generator(transforms.GaussianWeightNoise, std=0.1),
    "wsgraph.datasets.transforms.WeightDropout": _with_generator(transforms.WeightDropout, p=0.1),
    "wsgraph.datasets.transforms.FirstLayerScale": _with_generator(transforms.FirstLayerScale),
    "wsgraph.datasets.transforms.FirstLayerRotation": _with_generator(transforms.FirstLayerRotation),
    "wsgraph.datasets.transforms.RandomInputTranslation": _with_generator(transforms.RandomInputTranslation),
    "wsgraph.datasets.transforms.LayerStdShift": lambda w: transforms.LayerStdShift()(w.uniform.clone()),
    "wsgraph.datasets.transforms.NormalizeWeights": lambda w: transforms.NormalizeWeights(
        wsgraph.datasets.WeightSpaceDataset(w.sine, log=False).statistics
    )(wsgraph.datasets.WeightSpaceDataset(w.sine, log=False)[0]),
    "wsgraph.datasets.transforms.scale_first_layer": lambda w: transforms.scale_first_layer(w.uniform, torch.ones(3)),
    "wsgraph.datasets.transforms.rotate_first_layer": lambda w: transforms.rotate_first_layer(
        w.shuffled, torch.ones(1)
    ),
    "wsgraph.datasets.transforms.translate_inputs": lambda w: transforms.translate_inputs(
        w.uniform, torch.ones(3, 2), torch.tensor([1, 2, 0])
    ),
}


def _forward(module: nn.Module, *inputs) -> Callable[[], object]:
    module.eval()
    return lambda: module(*inputs)


def _dws_stack(w):
    stack = wsgraph.layers.DWSStack(1, 4, 2, 3, 2, 1)
    return _forward(stack, w.features, wsgraph.layers.WeightSpaceLayout.of(w.mixed))


def _kernel_lift(w):
    lift = wsgraph.layers.KernelLift(1, 4, [(3, 3), (3, 3), (1, 1)]).double()
    layout = wsgraph.layers.WeightSpaceLayout.of(w.cnn_graph)
    features = layout.split(w.cnn_graph.x, w.cnn_graph.edge_attr)
    lift.eval()
    return lambda: lift.forward_features(features, (3, 3))


def _edge_update(w):
    x, edges = torch.randn(w.mixed.num_nodes, 4), torch.randn(w.mixed.num_edges, 4)
    return _forward(wsgraph.layers.EdgeUpdate(4, dropout=0.5), x, w.mixed.edge_index, edges)


def _build_model(w):
    spec = wsgraph.training.model_spec("dwsnet", "classify", [WeightSpaceSpec(WIDTHS)], out_features=3)
    return _forward(wsgraph.training.build_model(spec), _float(w.mixed))


# Constructors draw (documented); the returned forward pass in eval mode must not.
MODULES: dict[str, Callable] = {
    "wsgraph.layers.DWSConv": lambda w: _forward(
        wsgraph.layers.DWSConv(1, 2, 3, 2, 1).double(),
        w.mixed.x,
        w.mixed.edge_index,
        w.mixed.edge_attr,
        w.mixed.layer_widths,
    ),
    "wsgraph.layers.DWSEditNet": lambda w: _forward(wsgraph.layers.DWSEditNet(3, 2, 1, dropout=0.5).double(), w.mixed),
    "wsgraph.layers.DWSLayer": lambda w: _forward(wsgraph.layers.DWSLayer(1, 2, 3, 2, 1).double(), w.mixed),
    "wsgraph.layers.DWSNet": lambda w: _forward(wsgraph.layers.DWSNet(3, 2, 1, 4, dropout=0.5).double(), w.mixed),
    "wsgraph.layers.DWSStack": _dws_stack,
    "wsgraph.layers.CNNDWSLayer": lambda w: _forward(
        wsgraph.layers.CNNDWSLayer(1, 2, 3, 1, 2, [(3, 3), (3, 3), (1, 1)]).double(), w.cnn_graph
    ),
    "wsgraph.layers.CNNDWSNet": lambda w: _forward(
        wsgraph.layers.CNNDWSNet(3, 1, 2, 3, [(3, 3), (3, 3), (1, 1)], dropout=0.5).double(), w.cnn_graph
    ),
    "wsgraph.layers.KernelLift": _kernel_lift,
    "wsgraph.layers.EdgePositionalEncoding": lambda w: _forward(wsgraph.layers.EdgePositionalEncoding(3, 4), w.mixed),
    "wsgraph.layers.EdgeUpdate": _edge_update,
    "wsgraph.layers.FlatMLP": lambda w: _forward(
        wsgraph.layers.FlatMLP(WeightSpaceSpec(WIDTHS).num_params, 3, dropout=0.5).double(), w.uniform
    ),
    "wsgraph.layers.GlobalBatchNorm": lambda w: _forward(wsgraph.layers.GlobalBatchNorm(1), w.features.weights[0]),
    "wsgraph.layers.InvariantReadout": lambda w: _forward(wsgraph.layers.InvariantReadout(1, 3, 2, 1), w.mixed),
    "wsgraph.layers.NeuralGraphGNN": lambda w: _forward(
        wsgraph.layers.NeuralGraphGNN(
            3, 2, 1, 3, wsgraph.layers.pna_degree_histogram([WIDTHS]), hidden_channels=8, probe_features=4
        ),
        _float(w.mixed),
    ),
    "wsgraph.layers.NeuralGraphTransformer": lambda w: _forward(
        wsgraph.layers.NeuralGraphTransformer(3, 2, 1, 3, node_channels=8, heads=2, probe_features=4, pooling="cls"),
        _float(w.mixed),
    ),
    "wsgraph.layers.NeuronPositionalEncoding": lambda w: _forward(
        wsgraph.layers.NeuronPositionalEncoding(3, 2, 1, 4), w.mixed
    ),
    "wsgraph.layers.ProbeFeatures": lambda w: _forward(wsgraph.layers.ProbeFeatures(3, 2, 4, 8).double(), w.mixed),
    "wsgraph.layers.WeightSpaceActivation": lambda w: _forward(
        wsgraph.layers.WeightSpaceActivation(nn.ReLU()), w.features
    ),
    "wsgraph.layers.WeightSpaceDropout": lambda w: _forward(wsgraph.layers.WeightSpaceDropout(0.5), w.features),
    "wsgraph.layers.WeightSpaceGNN": lambda w: _forward(
        wsgraph.layers.WeightSpaceGNN("gine", 3, 2, 1, 3, hidden_channels=8, depth=1, dropout=0.5), _float(w.mixed)
    ),
    "wsgraph.layers.WeightSpaceNorm": lambda w: _forward(wsgraph.layers.WeightSpaceNorm(1, 3), w.features),
    "wsgraph.training.FlatMLPEditor": lambda w: _forward(
        wsgraph.training.FlatMLPEditor(WeightSpaceSpec(WIDTHS), dropout=0.5).double(), w.uniform
    ),
    "wsgraph.training.build_model": _build_model,
}

# Documented to draw from torch's global generator when given no generator.
GLOBAL_WITHOUT_GENERATOR: dict[str, Callable] = {
    "wsgraph.permute_hidden": lambda w: wsgraph.permute_hidden(w.graph),
    "wsgraph.datasets.transforms.RandomHiddenPermutation": lambda w: transforms.RandomHiddenPermutation()(
        w.graph.clone()
    ),
    "wsgraph.datasets.transforms.GaussianWeightNoise": lambda w: transforms.GaussianWeightNoise(0.1)(w.graph.clone()),
    "wsgraph.datasets.transforms.WeightDropout": lambda w: transforms.WeightDropout(0.1)(w.graph.clone()),
    "wsgraph.datasets.transforms.FirstLayerScale": lambda w: transforms.FirstLayerScale()(w.graph.clone()),
    "wsgraph.datasets.transforms.FirstLayerRotation": lambda w: transforms.FirstLayerRotation()(w.graph.clone()),
    "wsgraph.datasets.transforms.RandomInputTranslation": lambda w: transforms.RandomInputTranslation()(
        w.graph.clone()
    ),
}

# Types and constants: nothing to call.
VALUES = {
    "wsgraph.CheckpointError",
    "wsgraph.NotACNNError",
    "wsgraph.DenseWeights",
    "wsgraph.NotAnMLPError",
    "wsgraph.WeightSpaceGraph",
    "wsgraph.WeightSpaceSpec",
    "wsgraph.layers.WeightSpaceFeatures",
    "wsgraph.inrs.SINE_RECIPE",
    "wsgraph.datasets.ImageSet",
    "wsgraph.inrs.SirenFit",
    "wsgraph.inrs.SirenRecipe",
    "wsgraph.training.MODEL_NAMES",
    "wsgraph.training.TASKS",
    "wsgraph.training.ModelSpec",
    "wsgraph.training.TrainConfig",
    "wsgraph.datasets.transforms.LayerStatistics",
}


def test_every_public_name_is_classified():
    classified = set(CALLS) | set(MODULES) | VALUES
    assert not set(CALLS) & set(MODULES) and not (set(CALLS) | set(MODULES)) & VALUES
    assert set(GLOBAL_WITHOUT_GENERATOR) <= set(CALLS)
    assert public_names() - classified == set(), "classify the new public names in this file"
    assert classified - public_names() == set(), "these names are no longer public"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_calls_leave_the_global_random_states_alone(world, name):
    with no_random_draws(name):
        CALLS[name](world)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_forward_passes_in_eval_mode_draw_nothing(world, name):
    forward = MODULES[name](world)
    with no_random_draws(name):
        forward()


@pytest.mark.parametrize("name", sorted(GLOBAL_WITHOUT_GENERATOR))
def test_without_a_generator_the_global_one_is_used_as_documented(world, name):
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    GLOBAL_WITHOUT_GENERATOR[name](world)
    assert not torch.equal(torch.random.get_rng_state(), before)


def test_constructors_draw_their_initialisation_from_the_global_generator():
    # The documented exception: seeding torch's generator fixes a model's initialisation.
    models = []
    for _ in range(2):
        torch.manual_seed(4)
        models.append(wsgraph.layers.DWSNet(3, 2, 1, 4))
    for first, second in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(first, second)
