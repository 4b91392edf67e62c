import itertools

import pytest
import torch
from brief_training import train_briefly
from torch import nn
from torch_geometric.data import Batch

from wsgraph import mlp_to_graph, permute_hidden
from wsgraph.core.permute import apply_node_permutation
from wsgraph.layers import NeuralGraphGNN, pna_degree_histogram
from wsgraph.layers.neural_graph import BACKENDS

MIXED_WIDTHS = [(2, 5, 4, 1), (2, 3, 6, 1), (2, 4, 4, 1)]
# Settings that change which code runs: encoders, message passing, normalisation, readout, probes.
VARIANTS = [
    {},
    {"probe_features": 4},
    {"pooling": "mean", "pooling_layer": "all", "norm": "node"},
    {"pooling": "max", "bidirectional": False, "gating_edges": True},
    {"pooling": "sum", "modulate_edges": False, "update_edges": False, "fourier_features": 0, "encoder_layers": 2},
    # Linear encoders with the fused kernels (FiLM and SiLU): no encoder bias to fold into the first round.
    {"fourier_features": 0, "encoder_layers": 2},
    {"aggregators": ("sum", "var", "min"), "scalers": ("identity", "attenuation", "linear", "inverse_linear")},
]


def random_graph(widths, generator, dtype=torch.float64, activation="sine(30.0)"):
    pairs = [
        (torch.randn(out, inp, generator=generator, dtype=dtype), torch.randn(out, generator=generator, dtype=dtype))
        for inp, out in itertools.pairwise(widths)
    ]
    return mlp_to_graph(pairs, activation=activation)


def make_batch(seed, widths=MIXED_WIDTHS, repeats=2, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return Batch.from_data_list([random_graph(w, generator, dtype) for w in widths * repeats])


def make_model(out_dim=1, dtype=torch.float64, **settings):
    torch.manual_seed(0)
    degree = pna_degree_histogram([(2, *w[1:-1], out_dim) for w in MIXED_WIDTHS], both_directions=False)
    model = NeuralGraphGNN(3, 2, out_dim, 3, degree, hidden_channels=8, depth=3, dropout=0.0, **settings)
    return model.to(dtype).eval()


@pytest.mark.parametrize("settings", VARIANTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_invariant_to_hidden_permutations(backend, settings):
    batch = make_batch(1)
    model = make_model(backend=backend, **settings)
    permuted = permute_hidden(batch, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(permuted.edge_attr, batch.edge_attr)
    torch.testing.assert_close(model(permuted), model(batch), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sensitive_to_swapping_input_or_output_neurons(backend):
    # Input and output neurons are not interchangeable in an MLP: swapping two changes the network.
    batch = make_batch(3, widths=[(2, 5, 4, 2), (2, 3, 6, 2)])
    model = make_model(out_dim=2, backend=backend)
    reference = model(batch)
    for first in (batch.ptr[:-1], batch.ptr[1:] - 2):
        source = torch.arange(batch.num_nodes)
        source[first], source[first + 1] = first + 1, first
        swapped = apply_node_permutation(batch, source)
        difference = (model(swapped) - reference).abs().amax(dim=1)
        assert bool((difference > 1e-6).all())


@pytest.mark.parametrize("settings", VARIANTS[:3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_widths_give_each_network_its_own_output(backend, settings):
    batch = make_batch(4)
    model = make_model(backend=backend, **settings)
    alone = torch.cat([model(Batch.from_data_list([graph])) for graph in batch.to_data_list()])
    torch.testing.assert_close(model(batch), alone, rtol=0, atol=1e-12)
    torch.testing.assert_close(model(batch.to_data_list()[2]), alone[2:3], rtol=0, atol=1e-12)


def outputs_and_gradients(model, batch, backend):
    model.backend = backend
    model.zero_grad()
    output = model(batch)
    nn.functional.cross_entropy(output, batch.y).backward()
    return output.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("settings", [*VARIANTS, {"norm": "minibatch"}, {"aggregators": ("max",)}])
@pytest.mark.parametrize("widths", [MIXED_WIDTHS, MIXED_WIDTHS[:1]])
@pytest.mark.parametrize("backend", ["fused", "dense"])
def test_backends_agree_with_the_scatter_reference_with_their_gradients(backend, widths, settings):
    batch = make_batch(5, widths=widths)
    batch.y = torch.arange(batch.num_graphs) % 3
    model = make_model(**settings).train()
    reference, reference_gradients = outputs_and_gradients(model, batch, "scatter")
    output, gradients = outputs_and_gradients(model, batch, backend)
    torch.testing.assert_close(output, reference, rtol=0, atol=1e-12)
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, reference_gradients[name], rtol=0, atol=1e-11, msg=name)


@pytest.mark.parametrize("threads", [1, 2])
def test_fused_kernels_run_the_published_settings_in_chunks(monkeypatch, threads):
    # Chunks of one network exercise the chunk loop (and, with two threads, the thread pool) on small networks.
    from wsgraph.layers import neural_graph_fused

    calls = []

    def one_network_each(num_networks, per_network):
        calls.append(num_networks)
        return [slice(index, index + 1) for index in range(num_networks)]

    monkeypatch.setattr(neural_graph_fused, "_chunks", one_network_each)
    batch = make_batch(12, widths=MIXED_WIDTHS[:1], repeats=3)
    batch.y = torch.arange(batch.num_graphs) % 3
    model = make_model().train()
    assert model.fusable
    reference, reference_gradients = outputs_and_gradients(model, batch, "dense")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        output, gradients = outputs_and_gradients(model, batch, "fused")
    finally:
        torch.set_num_threads(previous)
    assert calls and set(calls) == {3}
    torch.testing.assert_close(output, reference, rtol=0, atol=1e-12)
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, reference_gradients[name], rtol=0, atol=1e-11, msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_edges_in_any_order_give_the_same_output(backend):
    batch = make_batch(10)
    order = torch.randperm(batch.num_edges, generator=torch.Generator().manual_seed(11))
    shuffled = batch.clone()
    shuffled.edge_index, shuffled.edge_attr = batch.edge_index[:, order], batch.edge_attr[order]
    shuffled.edge_layer = batch.edge_layer[order]
    model = make_model(backend=backend, probe_features=4)
    torch.testing.assert_close(model(shuffled), model(batch), rtol=0, atol=1e-12)


def test_minibatch_norm_lets_networks_see_each_other():
    # The released code's normalisation spans the batch, so a network's output depends on its batch-mates.
    batch = make_batch(6, widths=MIXED_WIDTHS[:1])
    model = make_model(norm="minibatch")
    alone = model(Batch.from_data_list(batch.to_data_list()[:1]))
    assert (model(batch)[:1] - alone).abs().amax() > 1e-6


def assert_training_reaches_every_parameter_and_lowers_the_loss(model: nn.Module) -> None:
    """40 Adam steps on 24 mixed-width networks labelled by their weights' scale."""
    generator = torch.Generator().manual_seed(7)
    labels = torch.arange(24) % 2
    graphs = []
    for index, label in enumerate(labels.tolist()):
        graph = random_graph(MIXED_WIDTHS[index % 3], generator, torch.float32)
        graph.edge_attr = graph.edge_attr * (2.0 if label else 0.5)
        graph.y = torch.tensor([label])
        graphs.append(graph)
    batch = Batch.from_data_list(graphs)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(40):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(batch), batch.y)
        loss.backward()
        if step == 0:
            silent = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
            assert silent == []
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_reaches_every_parameter_and_lowers_the_loss(backend):
    assert_training_reaches_every_parameter_and_lowers_the_loss(
        make_model(dtype=torch.float32, backend=backend, probe_features=4)
    )


def test_reset_parameters_reaches_every_parameter_and_the_fourier_frequencies():
    model = make_model(probe_features=4)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    frequencies = model.edge_encoder[0].frequencies.clone()
    model.reset_parameters()
    assert [name for name, p in model.named_parameters() if torch.equal(p, before[name])] == []
    assert not torch.equal(model.edge_encoder[0].frequencies, frequencies)


def test_published_defaults():
    model = NeuralGraphGNN(3, 2, 1, 10, pna_degree_histogram([(2, 32, 32, 1)], both_directions=False))
    assert model.hidden_channels == 32 and model.depth == 4 and model.dropout == 0.2
    conv = model.convs[0]
    assert conv.aggregators == ["mean", "min", "max", "std"] and conv.scalers == ["identity", "amplification"]
    features = model.edge_encoder[0]
    assert (features.in_features, features.num_frequencies, features.sigma) == (3, 128, 3.0)
    assert len(model.edge_updates) == 3 and model.pooling == "cat" and model.probe is None
    assert "pooling='cat'" in repr(model)
    # The readout reads the d_M output neurons' states: the head's input is d_M * hidden_channels wide.
    assert make_model(out_dim=2).head[0].in_features == 16


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        # Each once failed later: in forward, deep inside torch ("median": PyG's, which only the scatter backend
        # computes, raised a TypeError in the others), or silently (an infinite sigma: NaN outputs).
        ({"scalers": ("foo",)}, r"^scalers: unknown name 'foo'; expected names from identity, amplification"),
        ({"scalers": ()}, r"^scalers must be a non-empty sequence of names"),
        ({"aggregators": "mean"}, r"^aggregators must be a non-empty sequence of names, got 'mean'"),
        ({"aggregators": ("median",)}, r"^backend 'fused' computes the aggregators sum, .*, not 'median'; use backe"),
        ({"aggregators": ("bogus",), "backend": "scatter"}, r"^aggregators \['bogus'\]: Could not resolve 'bogus'"),
        ({"fourier_sigma": float("inf")}, r"^fourier_sigma must be a finite number > 0, got inf"),
        ({"degree_histogram": None}, r"^degree_histogram must be a 1-D tensor of counts per in-degree"),
        ({"degree_histogram": torch.tensor([])}, r"^degree_histogram counts no neuron with incoming messages"),
        ({"degree_histogram": torch.tensor([4, 0])}, r"^degree_histogram counts no neuron with incoming messages"),
        ({"degree_histogram": torch.tensor([1, -2, 3])}, r"^degree_histogram must hold finite counts >= 0"),
        ({"probe_features": 2.5}, r"^fourier_features and probe_features must be integers >= 0, got 128, 2.5"),
        ({"probe_features": True}, r"^fourier_features and probe_features must be integers >= 0, got 128, True"),
        ({"edge_channels": -1}, r"^edge_channels must be a positive integer, got -1"),
    ],
)
def test_arguments_it_cannot_take_are_refused_when_it_is_built(arguments, message):
    settings = {"degree_histogram": pna_degree_histogram(MIXED_WIDTHS, both_directions=False), **arguments}
    with pytest.raises(ValueError, match=message):
        NeuralGraphGNN(3, 2, 1, 3, **settings)


def test_aggregators_of_pyg_run_on_the_scatter_backend_and_are_refused_by_the_others():
    model = make_model(aggregators=("median", "max"), backend="scatter")
    batch = make_batch(0)
    assert model(batch).isfinite().all()
    for backend in ("dense", "fused"):
        model.backend = backend
        with pytest.raises(ValueError, match=rf"^backend '{backend}' computes the aggregators .*, not 'median'"):
            model(batch)


def test_norm_none_and_the_string_none_both_mean_no_normalisation():
    for norm in (None, "none"):
        model = make_model(norm=norm)
        assert model.norm is None and all(isinstance(layer, nn.Identity) for layer in model.norms)


def test_bad_arguments_are_clear_errors():
    degree = pna_degree_histogram(MIXED_WIDTHS, both_directions=False)
    with pytest.raises(ValueError, match="unknown norm 'batch'"):
        NeuralGraphGNN(3, 2, 1, 3, degree, norm="batch")
    with pytest.raises(ValueError, match="unknown backend 'sparse'"):
        NeuralGraphGNN(3, 2, 1, 3, degree, backend="sparse")
    with pytest.raises(ValueError, match="needs pooling_layer='last'"):
        NeuralGraphGNN(3, 2, 1, 3, degree, pooling_layer="all")
    with pytest.raises(ValueError, match="in_channels=2"):
        NeuralGraphGNN(3, 2, 1, 3, degree, in_channels=2, probe_features=4)
    with pytest.raises(ValueError, match="dropout must be in"):
        NeuralGraphGNN(3, 2, 1, 3, degree, dropout=1.0)
    model = make_model()
    with pytest.raises(ValueError, match="built for 3 weight layers, the batch has 2"):
        model(Batch.from_data_list([random_graph((2, 4, 1), torch.Generator())]))
    with pytest.raises(ValueError, match=r"NeuralGraphGNN expects 'x' of shape \[\*, 1\]"):
        batch = make_batch(0, repeats=1)
        batch.x = batch.x.repeat(1, 2)
        model(batch)
    for backend in BACKENDS:
        model.backend = backend
        with pytest.raises(
            ValueError,
            match=r"NeuralGraphGNN expects 'x' of dtype torch.float64 \(its parameters'\), got torch.float32",
        ):
            model(make_batch(0, repeats=1, dtype=torch.float32))


@pytest.mark.slow
def test_a_short_training_run_beats_the_majority_class_on_digit_inrs(digit_inrs, tmp_path):
    result = train_briefly(digit_inrs, tmp_path / "run", "ng-gnn", probe_features=16)
    majority = result["reference"]["test_metric"]
    assert result["reference"]["predictor"] == "always the most frequent training class"
    assert result["test_metric"] > majority + 5, (result["test_metric"], majority)


def test_the_fused_backend_runs_under_cpu_autocast():
    """``wsgraph train --amp`` on CPU: bfloat16 autocast, where the fused kernels hand over to the dense backend."""
    batch = make_batch(21, widths=[(2, 5, 4, 1)], dtype=torch.float32)
    model = make_model(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = model(batch)
        model.backend = "dense"
        dense = model(batch)
    assert torch.equal(fused, dense)
    fused.float().sum().backward()


def test_the_fused_kernels_run_on_the_cpu_only():
    """They are chunked for a CPU's caches and threads; a GPU tensor runs the dense composition (on CUDA, where
    the fused backend's outputs equal the CPU's, in test_cuda_agreement.py)."""
    model = make_model(dtype=torch.float32)
    assert model.backend == "fused"
    assert model._runs_fused_kernels(torch.empty(2, 3))
    assert not model._runs_fused_kernels(torch.empty(2, 3, device="meta"))
    model.backend = "dense"
    assert not model._runs_fused_kernels(torch.empty(2, 3))


def test_the_fused_backend_runs_with_fewer_edge_updates_than_rounds():
    """Rounds after the last edge update read the edges it made: the fused backend keeps them for those rounds."""
    generator = torch.Generator().manual_seed(0)
    graphs = [
        mlp_to_graph(
            [
                (torch.randn(o, i, generator=generator), torch.randn(o, generator=generator))
                for i, o in [(2, 5), (5, 4), (4, 1)]
            ],
            activation="sine(30.0)",
        )
        for _ in range(2)
    ]
    batch = Batch.from_data_list(graphs)
    torch.manual_seed(0)
    histogram = pna_degree_histogram([(2, 5, 4, 1)], both_directions=False)
    model = NeuralGraphGNN(3, 2, 1, 10, histogram, depth=4).double().eval()
    model.edge_updates = model.edge_updates[:1]
    batch.x, batch.edge_attr = batch.x.double(), batch.edge_attr.double()
    outputs = {}
    for backend in ("scatter", "fused"):
        model.backend = backend
        outputs[backend] = model(batch)
    torch.testing.assert_close(outputs["fused"], outputs["scatter"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("pooling", "pooling_layer"), [("cat", "last"), ("mean", "all")])
def test_the_fused_last_round_passes_messages_only_to_the_neurons_pooled(monkeypatch, pooling, pooling_layer):
    """With the output neurons pooled, the last round's messages into hidden and input neurons (and the edge updates
    behind them) are never read: the fused backend skips them, and gives the scatter backend's output and gradients."""
    from wsgraph.layers import neural_graph

    kernels_per_round = [0]

    def counting(original, ends_round):
        def counted(*args, **kwargs):
            if ends_round:
                kernels_per_round.append(0)
            else:
                kernels_per_round[-1] += 1
            return original(*args, **kwargs)

        return counted

    for name in ("fused_messages", "fused_update_messages"):
        monkeypatch.setattr(neural_graph, name, counting(getattr(neural_graph, name), ends_round=False))
    update = counting(neural_graph.NeuralGraphConv.update_dense, ends_round=True)
    monkeypatch.setattr(neural_graph.NeuralGraphConv, "update_dense", update)
    batch = make_batch(22, widths=MIXED_WIDTHS[:1])
    batch.y = torch.arange(batch.num_graphs) % 3
    model = make_model(pooling=pooling, pooling_layer=pooling_layer).train()
    reference, reference_gradients = outputs_and_gradients(model, batch, "scatter")
    kernels_per_round[:] = [0]
    output, gradients = outputs_and_gradients(model, batch, "fused")
    # Three weight layers, messages in both directions: six message kernels a round; into the output neurons, one.
    assert kernels_per_round[:-1] == ([6, 6, 1] if pooling_layer == "last" else [6, 6, 6])
    torch.testing.assert_close(output, reference, rtol=0, atol=1e-12)
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, reference_gradients[name], rtol=0, atol=1e-11, msg=name)
