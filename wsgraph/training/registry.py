"""Models by name: what each ``--model`` builds for a task and a dataset."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from wsgraph.checks import dataclass_gaps, is_count, is_number
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets.transforms import LayerStatistics
from wsgraph.errors import load_error_reason, short_repr
from wsgraph.layers import (
    CNNDWSNet,
    DWSEditNet,
    DWSNet,
    FlatMLP,
    NeuralGraphGNN,
    NeuralGraphTransformer,
    WeightSpaceGNN,
    pna_degree_histogram,
)
from wsgraph.layers.defaults import DEPTH, HIDDEN_CHANNELS
from wsgraph.runtime import physical_memory
from wsgraph.training.config import EDITING_MODELS, MODEL_NAMES, READOUTS, TASKS, normalize_model_options
from wsgraph.training.config import render_model_options as render_options
from wsgraph.training.editors import FlatMLPEditor
from wsgraph.training.model_options import check_options

GNN_MODELS = ("gine", "pna", "gatv2", "transformer")
# The Neural Graphs GNN, with the published recipe's encodings, convolution and readout.
NEURAL_GRAPH_MODELS = ("ng-gnn",)
# The Neural Graphs relational transformer: dense attention among each network's neurons.
TRANSFORMER_MODELS = ("ng-transformer",)
FLAT_MODELS = ("mlp", "mlp-aug")
# Models that read the graphs of CNNs (edges carrying padded kernels).
CNN_MODELS = ("dwsnet", "dwsnet-dense", *NEURAL_GRAPH_MODELS, *FLAT_MODELS)
# Models whose neurons can carry probe features (--probe-features).
PROBE_MODELS = ("dwsnet", "dwsnet-dense", *GNN_MODELS, *NEURAL_GRAPH_MODELS, *TRANSFORMER_MODELS)
# Models whose training batches get a fresh random hidden-neuron permutation every step.
PERMUTATION_AUGMENTED = ("mlp-aug",)


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines a model's architecture; stored with checkpoints so
    :func:`build_model` can rebuild the model they hold.

    Attributes:
        name: one of :data:`~wsgraph.training.config.MODEL_NAMES`.
        task: ``"classify"``, ``"regress"`` or ``"dilate"``.
        signature: ``(M, d_0, d_M)`` of the networks.
        out_features: classes or regression targets (``0`` for ``"dilate"``).
        widths: the one architecture of the networks, needed by the flat MLPs
            (``None`` when hidden widths differ).
        pna_degree: the in-degree histogram for ``"pna"`` and ``"ng-gnn"``.
        hidden_channels, depth, readout, dropout, probe_features: as the
            :class:`~wsgraph.training.config.TrainConfig` fields of those names; ``None``
            takes the model family's default from :mod:`wsgraph.layers.defaults`.
        kernel_sizes: for CNN datasets, each weight layer's largest kernel ``(kh, kw)``
            in the data (``None`` for MLPs): the window DWSNet's kernel lift and the flat
            MLPs read in each layer's grid.
        kernel_grid: for CNN datasets, the padded kernel grid ``(H, W)`` of the edge
            features (``None`` for MLPs).
        options: further keyword arguments of the model class, ``((name, value), ...)``
            (``--model-options``).
    """

    name: str
    task: str
    signature: tuple[int, int, int]
    out_features: int
    widths: tuple[int, ...] | None = None
    pna_degree: tuple[int, ...] | None = None
    hidden_channels: int | None = None
    depth: int | None = None
    readout: str | None = None
    dropout: float = 0.0
    probe_features: int = 0
    kernel_sizes: tuple[tuple[int, int], ...] | None = None
    kernel_grid: tuple[int, int] | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        # Checkpoints store the options as [name, value] lists.
        object.__setattr__(self, "options", normalize_model_options(self.options))
        # Checkpoints and result files store the nested sizes as lists.
        if self.kernel_sizes is not None:
            object.__setattr__(self, "kernel_sizes", tuple((int(h), int(w)) for h, w in self.kernel_sizes))
        if self.kernel_grid is not None:
            object.__setattr__(self, "kernel_grid", tuple(int(v) for v in self.kernel_grid))

    @property
    def is_conv(self) -> bool:
        """Whether the model reads the graphs of CNNs."""
        return self.kernel_grid is not None

    def to_dict(self) -> dict[str, Any]:
        return {key: _plain(value) for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ModelSpec:
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in document.items()})


def model_spec(
    name: str,
    task: str,
    architectures: list[WeightSpaceSpec],
    out_features: int,
    hidden_channels: int | None = None,
    depth: int | None = None,
    readout: str | None = None,
    dropout: float = 0.0,
    architecture_counts: dict[WeightSpaceSpec, int] | None = None,
    probe_features: int = 0,
    kernel_sizes: tuple[tuple[int, int], ...] | None = None,
    kernel_grid: tuple[int, int] | None = None,
    options: tuple[tuple[str, Any], ...] = (),
) -> ModelSpec:
    """The :class:`ModelSpec` of model ``name`` for ``task`` on networks of ``architectures``.

    ``architecture_counts`` (training networks per architecture) weights PNA's degree
    histogram as the data does; by default every architecture counts once.
    ``ng-gnn`` counts, as the released Neural Graphs code does, only the messages along
    the weights (``pna_degree_histogram(..., both_directions=False)``).
    ``kernel_sizes`` and ``kernel_grid`` (see :class:`ModelSpec`) make the model read the
    graphs of CNNs; ``dwsnet``, ``dwsnet-dense``, ``ng-gnn``, ``mlp`` and ``mlp-aug`` can.
    ``options`` go to the model class's constructor as keyword arguments.

    Raises:
        ValueError: if the model cannot do the task or take these networks.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    if task == "dilate" and name not in EDITING_MODELS:
        raise ValueError(
            f"--model {name} predicts per-network outputs and cannot edit weights; for --task dilate use {', '.join(EDITING_MODELS)}"
        )
    uniform = architectures[0].widths if len(architectures) == 1 else None
    if uniform is None and name in (*FLAT_MODELS, "dwsnet-dense"):
        found = ", ".join(str(spec) for spec in architectures[:4])
        raise ValueError(
            f"--model {name} needs networks of one architecture, the dataset has several ({found}); use dwsnet or a GNN"
        )
    if readout is not None and name in FLAT_MODELS:
        raise ValueError(f"--readout applies to dwsnet and the GNNs, not to --model {name}")
    if readout is not None and task == "dilate":
        raise ValueError("--readout does not apply to --task dilate: the editor outputs networks, not a pooled vector")
    if probe_features and name not in PROBE_MODELS:
        raise ValueError(f"--probe-features applies to {', '.join(PROBE_MODELS)}, not to --model {name}")
    if probe_features and task == "dilate":
        raise ValueError("--probe-features does not apply to --task dilate: the editor's outputs are weights")
    if kernel_grid is not None:
        _check_cnn_model(name, task, probe_features)
    pna_degree = None
    if name in ("pna", *NEURAL_GRAPH_MODELS):
        counts = architecture_counts or dict.fromkeys(architectures, 1)
        pna_degree = tuple(_weighted_degree_histogram(counts, both_directions=name == "pna").tolist())
    return ModelSpec(
        name,
        task,
        architectures[0].signature,
        out_features,
        uniform,
        pna_degree,
        hidden_channels,
        depth,
        readout,
        dropout,
        probe_features,
        kernel_sizes,
        kernel_grid,
        options,
    )


def stored_model_spec(document: Any, source: str) -> ModelSpec:
    """The :class:`ModelSpec` a checkpoint stores (``model_spec``), every entry checked: a shared
    checkpoint can hold anything, which must end in an error naming ``source`` rather than a
    traceback or a model of whatever size the file asks for (see :func:`check_stored_weights`).

    Raises:
        ValueError: naming ``source`` and the first entry that no run writes.
    """
    if not isinstance(document, dict):
        raise ValueError(f"{source}: model_spec is a {type(document).__name__}, not a dict")
    unknown, missing = dataclass_gaps(ModelSpec, document)
    if unknown:
        raise ValueError(f"{source}: model_spec has an unknown entry {short_repr(unknown[0])}")
    if missing:
        raise ValueError(f"{source}: model_spec lacks {', '.join(missing)}")
    problem = _spec_problem({key: _plain(value) for key, value in document.items()})
    if problem:
        raise ValueError(f"{source}: model_spec {problem}")
    return ModelSpec.from_dict(document)


def _spec_problem(document: dict[str, Any]) -> str | None:
    """What is wrong with a stored spec's entries (lists for tuples, as stored), or ``None``."""
    get = document.get
    checks = [
        ("name", get("name") in MODEL_NAMES, f"one of {', '.join(MODEL_NAMES)}"),
        ("task", get("task") in TASKS, f"one of {', '.join(TASKS)}"),
        ("signature", _counts(get("signature"), 3, minimum=1), "3 positive integers"),
        ("out_features", is_count(get("out_features")), "an integer >= 0"),
        ("widths", get("widths") is None or _counts(get("widths"), None, minimum=1), "positive integers"),
        ("pna_degree", get("pna_degree") is None or _counts(get("pna_degree"), None, minimum=0), "integers >= 0"),
        (
            "hidden_channels",
            get("hidden_channels") is None or is_count(get("hidden_channels"), 1),
            "a positive integer or None",
        ),
        ("depth", get("depth") is None or is_count(get("depth"), 1), "a positive integer or None"),
        ("readout", get("readout") in (None, *READOUTS), f"one of {', '.join(READOUTS)} or None"),
        ("dropout", is_number(get("dropout", 0.0)) and 0 <= get("dropout", 0.0) < 1, "a number in [0, 1)"),
        ("probe_features", is_count(get("probe_features", 0)), "an integer >= 0"),
        ("kernel_grid", get("kernel_grid") is None or _counts(get("kernel_grid"), 2, minimum=1), "2 positive integers"),
        (
            "kernel_sizes",
            get("kernel_sizes") is None
            or (isinstance(get("kernel_sizes"), list) and all(_counts(s, 2, 1) for s in get("kernel_sizes"))),
            "pairs of positive integers",
        ),
        (
            "options",
            isinstance(get("options", []), list)
            and all(
                isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) for pair in get("options", [])
            ),
            "[name, value] pairs",
        ),
    ]
    for key, good, requirement in checks:
        if not good:
            return f"{key} must be {requirement}, got {short_repr(get(key))}"
    layers, in_dim, out_dim = document["signature"]
    widths = get("widths")
    if widths is not None and (len(widths) != layers + 1 or widths[0] != in_dim or widths[-1] != out_dim):
        return f"widths {short_repr(widths)} do not fit signature {document['signature']}"
    if get("kernel_sizes") is not None and len(document["kernel_sizes"]) != layers:
        return f"kernel_sizes has {len(document['kernel_sizes'])} layers, signature {layers}"
    if (get("kernel_sizes") is None) != (get("kernel_grid") is None):
        return "has kernel_sizes or kernel_grid without the other"
    return None


def check_stored_weights(spec: ModelSpec, weights: Any, source: str) -> None:
    """Raise a ``ValueError`` naming ``source`` unless ``weights`` (a stored ``state_dict``) has
    exactly the tensors, by name and shape, of the model ``spec`` describes.

    The model is built on the ``meta`` device, which allocates no memory, so that a spec
    asking for sizes the file does not hold fails here and not in the allocator.
    """
    problem = stored_weights_problem(weights)
    if problem:
        raise ValueError(f"{source}: {problem}")
    mismatch = f"{source}: model_spec does not match the stored weights"
    # Even on the meta device every module costs time and memory, so the spec's structure is
    # bounded first: its layers by the stored tensors (each layer holds some), and DWSNet's
    # layers, which hold blocks for every pair of weight layers (a build quadratic in them),
    # by the stored numbers.
    depth = spec.depth or DEPTH[_family(spec.name)]
    if depth > len(weights):
        raise ValueError(f"{mismatch} (depth {depth}: more layers than the file's {len(weights)} tensors)")
    numbers = sum(value.numel() for value in weights.values())
    layers = spec.signature[0]
    if _family(spec.name) == "dwsnet" and layers * layers * depth > numbers:
        raise ValueError(
            f"{mismatch} ({layers} weight layers and depth {depth}: more blocks than the file's {numbers} numbers)"
        )
    try:
        with torch.device("meta"):
            expected = build_model(spec).state_dict()
    # Whatever the model's constructor objects to in a stranger's spec, as one line.
    except Exception as error:
        reason = f"{type(error).__name__}: {load_error_reason(error)}"
        raise ValueError(f"{source}: model_spec describes no model wsgraph builds ({reason})") from None
    difference = weights_difference(expected, weights, "the spec")
    if difference:
        raise ValueError(f"{mismatch} ({difference})")


def stored_weights_problem(weights: Any) -> str | None:
    """Why ``weights``, read from a file, is not a ``state_dict`` (names to tensors), or ``None``."""
    if not isinstance(weights, dict):
        return f"the stored weights are a {type(weights).__name__}, not a dict"
    for key, value in weights.items():
        if not isinstance(value, torch.Tensor):
            return f"the stored weight {short_repr(key)} is a {type(value).__name__}, not a tensor"
    return None


def weights_difference(expected: dict[str, torch.Tensor], weights: Any, built: str) -> str | None:
    """Why ``weights`` (a file's) is not a ``state_dict`` (:func:`stored_weights_problem`), or the first tensor
    that it lacks, has extra or holds in another shape than ``expected`` (the ``state_dict`` of the model
    ``built`` names), or ``None``."""
    problem = stored_weights_problem(weights)
    if problem:
        return problem
    for key, tensor in expected.items():
        if key not in weights:
            return f"{key}: in {built}, not in the file"
        if weights[key].shape != tensor.shape:
            return f"{key}: shape {tuple(tensor.shape)} in {built}, {tuple(weights[key].shape)} in the file"
    unexpected = [key for key in weights if key not in expected]
    return f"{short_repr(unexpected[0])}: in the file, not in {built}" if unexpected else None


def _counts(value: Any, length: int | None, minimum: int) -> bool:
    """Whether ``value`` is a nonempty list of integers of at least ``minimum``, ``length`` of them if given."""
    if not isinstance(value, list) or not value or (length is not None and len(value) != length):
        return False
    return all(is_count(item, minimum) for item in value)


def _check_cnn_model(name: str, task: str, probe_features: int) -> None:
    if name not in CNN_MODELS:
        raise ValueError(f"--model {name} does not read the graphs of CNNs; choose from {', '.join(CNN_MODELS)}")
    if task == "dilate":
        raise ValueError("--task dilate edits INRs; a CNN dataset's networks can be classified or regressed on")
    if probe_features:
        raise ValueError(
            "--probe-features runs the networks on input points, which a CNN dataset's networks cannot take"
        )


def build_model(spec: ModelSpec, statistics: LayerStatistics | None = None) -> nn.Module:
    """A freshly initialised model for ``spec`` (drawing from torch's global generator).

    ``statistics``: the normalisation of the inputs (the training data's), which probe
    features undo to run the networks; the model keeps it in its ``state_dict``, so a
    checkpoint restores it.

    Raises:
        ValueError: naming ``--model-options`` if the model class refuses one of ``spec.options``.
    """
    check_options(_model_classes(spec.name, spec.task, spec.is_conv), spec.options)
    try:
        return _build_model(spec, statistics, dict(spec.options))
    except (TypeError, ValueError) as error:
        # The class's own message names the argument ("... got an unexpected keyword argument 'x'", "heads=4 must
        # divide hidden_channels=6"), not the flag or option it came from.
        raise ValueError(f"--model {spec.name} with {_settings_text(spec)}: {error}") from error


def check_model_fits(
    spec: ModelSpec,
    statistics: LayerStatistics | None = None,
    device: str | torch.device = "cpu",
    optimizer_states: int = 2,
    processes: int = 1,
) -> int | None:
    """The number of parameters of the model ``spec`` describes, counted on the ``meta`` device (nothing
    allocated), or ``None`` where a model cannot be built there; a ``ValueError`` naming the sizes if
    training it on ``device`` would take more than the memory there: past that, building the model fills
    the memory and the system may kill the process instead of reporting anything.

    A trainable float32 parameter takes its value, its gradient and ``optimizer_states`` more (AdamW: two
    moments, three with AMSGrad) on ``device``; on a GPU the host holds the value while the model is
    built. ``processes`` training on one machine (torchrun) share its memory.

    Raises:
        ValueError: the message names ``--hidden-channels``, ``--depth`` and any ``--model-options``.
    """
    try:
        with torch.device("meta"):
            model = build_model(spec, statistics)
    except (NotImplementedError, RuntimeError):  # a constructor that reads a tensor's values: no count
        return None
    trainable = count_parameters(model)
    frozen = sum(parameter.numel() for parameter in model.parameters()) - trainable
    device = torch.device(device)
    training = 4 * ((2 + optimizer_states) * trainable + frozen)
    if device.type == "cuda":
        on_device = torch.cuda.get_device_properties(device).total_memory if torch.cuda.is_available() else None
        places = [
            ("this machine", physical_memory(), 4 * (trainable + frozen) * processes),
            (str(device), on_device, training),
        ]
    else:
        places = [("this machine", physical_memory(), training * processes)]
    for place, memory, needed in places:
        if memory is not None and needed > memory:
            raise ValueError(
                f"--model {spec.name} with {_settings_text(spec, sizes_too=True)}: {trainable + frozen:,} "
                f"parameters, which with their gradients and optimiser state need {needed / 2**30:,.1f} GiB; "
                f"{place} has {memory / 2**30:,.1f} GiB"
            )
    return trainable + frozen


def _settings_text(spec: ModelSpec, sizes_too: bool = False) -> str:
    """The flags behind the model of ``spec``: ``--model-options ...`` where it has any (after
    ``--hidden-channels H and --depth D`` with ``sizes_too``), else those two (the family's defaults
    where the spec keeps them)."""
    family = _family(spec.name)
    hidden = f"{spec.hidden_channels}" if spec.hidden_channels else f"{HIDDEN_CHANNELS[family]} (default)"
    depth = f"{spec.depth}" if spec.depth else f"{DEPTH[family]} (default)"
    sizes = f"--hidden-channels {hidden} and --depth {depth}"
    if not spec.options:
        return sizes
    options = f"--model-options {render_options(spec.options)}"
    return f"{sizes} and {options}" if sizes_too else options


def _readout_pooling(readout: str | None, options: dict[str, Any]) -> dict[str, str]:
    """The Neural Graphs models' pooling arguments for ``--readout``, which pools every neuron's state
    (``pooling_layer="all"``); ``options`` may say the same, not the opposite."""
    if readout is None:
        return {}
    layer = options.pop("pooling_layer", "all")
    if layer != "all":
        raise ValueError(
            f"--readout {readout} pools all neurons and cannot go with pooling_layer={layer}; drop one of them"
        )
    return {"pooling": readout, "pooling_layer": "all"}


def _build_model(spec: ModelSpec, statistics: LayerStatistics | None, options: dict[str, Any]) -> nn.Module:
    family = _family(spec.name)
    hidden = spec.hidden_channels or HIDDEN_CHANNELS[family]
    depth = spec.depth or DEPTH[family]
    if family == "mlp":
        return _build_flat_mlp(spec, hidden, depth, options)
    size = {"hidden_channels": hidden, "depth": depth, "dropout": spec.dropout}
    probes = {"probe_features": spec.probe_features, "probe_statistics": statistics} if spec.probe_features else {}
    if family == "dwsnet":
        return _build_dwsnet(spec, size, probes, options)
    return _build_graph_model(spec, family, size, probes, options)


def _build_dwsnet(spec: ModelSpec, size: dict[str, Any], probes: dict[str, Any], options: dict[str, Any]) -> nn.Module:
    signature = spec.signature
    backend = "dense" if spec.name == "dwsnet-dense" else "scatter"
    readout = {} if spec.readout is None else {"readout": spec.readout}
    if spec.is_conv:
        return CNNDWSNet(
            *signature, spec.out_features, spec.kernel_sizes, backend=backend, **size, **readout, **options
        )
    if spec.task == "dilate":
        return DWSEditNet(*signature, backend=backend, **size, **options)
    return DWSNet(*signature, spec.out_features, backend=backend, **size, **readout, **probes, **options)


def _build_flat_mlp(spec: ModelSpec, hidden: int, depth: int, options: dict[str, Any]) -> nn.Module:
    architecture = WeightSpaceSpec(spec.widths)
    if spec.task == "dilate":
        return FlatMLPEditor(architecture, hidden_channels=hidden, depth=depth, dropout=spec.dropout, **options)
    if spec.is_conv:
        kernels = spec.kernel_sizes
        num_params = sum(a * b * h * w for (a, b), (h, w) in zip(itertools.pairwise(spec.widths), kernels))
        num_params += sum(spec.widths[1:])
        return FlatMLP(num_params, spec.out_features, hidden, depth, spec.dropout, kernel_sizes=kernels, **options)
    return FlatMLP(architecture.num_params, spec.out_features, hidden, depth, spec.dropout, **options)


def _build_graph_model(
    spec: ModelSpec, family: str, size: dict[str, Any], probes: dict[str, Any], options: dict[str, Any]
) -> nn.Module:
    """The Neural Graphs models and the message-passing baselines."""
    signature = spec.signature
    if family == "ng-transformer":
        # --hidden-channels sets the neurons' states (d_node); the pairs' and the attention's sizes keep theirs.
        pooling = _readout_pooling(spec.readout, options)
        node_size = {"node_channels": size["hidden_channels"], "depth": size["depth"], "dropout": size["dropout"]}
        return NeuralGraphTransformer(*signature, spec.out_features, **node_size, **pooling, **probes, **options)
    # On the CPU also when check_stored_weights builds on the meta device: PNA's scalers read the histogram.
    degree = None if spec.pna_degree is None else torch.tensor(spec.pna_degree, dtype=torch.long, device="cpu")
    if family == "ng-gnn":
        # --readout pools all neurons; without it the published readout concatenates the output neurons.
        pooling = _readout_pooling(spec.readout, options)
        # A CNN's edges carry its kernel grid, each entry one feature, as the Neural Graphs code encodes them.
        edges = {} if spec.kernel_grid is None else {"edge_channels": spec.kernel_grid[0] * spec.kernel_grid[1]}
        return NeuralGraphGNN(*signature, spec.out_features, degree, **size, **pooling, **probes, **edges, **options)
    readout = {} if spec.readout is None else {"readout": spec.readout}
    return WeightSpaceGNN(
        spec.name, *signature, spec.out_features, pna_degree=degree, **size, **readout, **probes, **options
    )


def check_model_options(name: str, options: tuple[tuple[str, Any], ...]) -> None:
    """Raise a ``ValueError`` naming the first of ``options`` that no class model ``name`` builds
    (for any task and data) can take: a check that needs no data, so a run or a benchmark
    fails before it writes or trains anything; :func:`build_model` checks the one class it builds."""
    chains = list(dict.fromkeys(_model_classes(name, task, conv) for task in TASKS for conv in (False, True)))
    errors = []
    for classes in chains:
        try:
            check_options(classes, options)
            return
        except ValueError as error:
            errors.append(error)
    raise errors[0]


def _model_classes(name: str, task: str, conv: bool) -> tuple[type, ...]:
    """The class :func:`build_model` builds, then any class it hands its ``**kwargs`` to."""
    family = _family(name)
    if family == "dwsnet":
        return (CNNDWSNet, DWSNet) if conv else (DWSEditNet,) if task == "dilate" else (DWSNet,)
    if family == "mlp":
        return (FlatMLPEditor,) if task == "dilate" else (FlatMLP,)
    return {"ng-gnn": (NeuralGraphGNN,), "ng-transformer": (NeuralGraphTransformer,)}.get(family, (WeightSpaceGNN,))


def _family(name: str) -> str:
    """The key of a model in :mod:`wsgraph.layers.defaults`."""
    if name.startswith("dwsnet"):
        return "dwsnet"
    if name in FLAT_MODELS:
        return "mlp"
    if name in TRANSFORMER_MODELS:
        return "ng-transformer"
    return "ng-gnn" if name in NEURAL_GRAPH_MODELS else "gnn"


def _weighted_degree_histogram(counts: dict[WeightSpaceSpec, int], both_directions: bool) -> torch.Tensor:
    histograms = [(pna_degree_histogram([spec], both_directions), count) for spec, count in counts.items()]
    total = torch.zeros(max(h.numel() for h, _ in histograms), dtype=torch.long)
    for histogram, count in histograms:
        total[: histogram.numel()] += count * histogram
    return total


def _plain(value: Any) -> Any:
    """Tuples (also nested) as lists, as JSON and ``torch.load(weights_only=True)`` read them back."""
    return [_plain(item) for item in value] if isinstance(value, tuple) else value


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
