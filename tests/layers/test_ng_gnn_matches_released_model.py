"""ng-gnn computes the released Neural Graphs INR classifier's function (github.com/mkofinas/neural-graphs).

``ReleasedClassifier`` restates, in plain torch and PyG's ``DegreeScalerAggregation``, the forward pass of their
``GNNForClassification`` with the ``PNA`` backbone as ``experiments/inr_classification/scripts/mnist_cls_pna.sh``
configures it (``configs/model/pna.yaml``, ``configs/data/mnist.yaml``): ``GraphConstructor`` with random Fourier
features, reversed edges and positional embeddings, four ``PNAConv`` layers with FiLM-modulated messages, whole-batch
``LayerNorm``, ``EdgeMLP`` between layers, the output neurons concatenated and ``proj_out``. It follows their data
layout (dense ``[B, n, n, C]`` adjacency, weights stored ``[in, out]``) so that it shares no code path with wsgraph's.
"""

import itertools
import math

import pytest
import torch
from torch import nn
from torch_geometric.nn.aggr import DegreeScalerAggregation

from wsgraph import mlp_to_graph
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets.transforms import LayerStatistics, NormalizeWeights
from wsgraph.layers.neural_graph import BACKENDS
from wsgraph.training.registry import build_model, model_spec

LAYOUT = [2, 32, 32, 1]
HIDDEN, CLASSES, DEPTH, FREQUENCIES = 32, 10, 4, 128
# configs/data/mnist.yaml's per-layer statistics, which their GraphConstructor applies to every batch.
MNIST_STATS = {
    "weight_mean": [-4.215954686515033e-05, -7.55547659991862e-07, 7.886120874900371e-05],
    "weight_std": [0.06281130015850067, 0.018268151208758354, 0.11791174858808517],
    "bias_mean": [5.419965418695938e-06, 3.7173406326473923e-06, -0.01239530649036169],
    "bias_std": [0.021334609016776085, 0.011004417203366756, 0.09989194571971893],
}
IDENTITY_STATS = {"weight_mean": [0.0] * 3, "weight_std": [1.0] * 3, "bias_mean": [0.0] * 3, "bias_std": [1.0] * 3}


def gaussian_encoding(v, b):
    """The rff package's GaussianEncoding with frequencies ``b`` ``[K, F]``: ``[cos 2πvbᵀ, sin 2πvbᵀ]``."""
    angles = 2 * math.pi * v @ b.t()
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def released_degree_histogram(layout):
    """GNNForClassification's ``deg``: each layer's neurons counted at the width of the layer before (inputs at 0)."""
    widths = [0, *layout]
    histogram = torch.zeros(max(widths) + 1, dtype=torch.long)
    for before, width in itertools.pairwise(widths):
        histogram[before] += width
    return histogram


def released_edge_index(layout):
    """nn_to_edge_index (every weight i -> j, layer by layer, in Cartesian order), then the reversed edges."""
    starts = [0, *itertools.accumulate(layout)]
    layers = [torch.arange(a, b) for a, b in itertools.pairwise(starts)]
    forward = torch.cat([torch.cartesian_prod(a, b) for a, b in itertools.pairwise(layers)]).t()
    return torch.cat([forward, forward.flip(0)], dim=1)


class PNALayer(nn.Module):
    def __init__(self, channels, histogram):
        super().__init__()
        self.edge_encoder = nn.Linear(channels, 2 * channels)  # FiLM: [scale; shift]
        self.pre = nn.Linear(2 * channels, channels)  # on [x_target; x_source]
        self.post = nn.Linear(9 * channels, channels)  # on [x; 4 aggregators x 2 scalers]
        self.lin = nn.Linear(channels, channels)
        self.aggr = DegreeScalerAggregation(["mean", "min", "max", "std"], ["identity", "amplification"], histogram)

    def forward(self, x, edge_index, edge_attr):
        source, target = edge_index  # PyG's flow: x_j = x[source], x_i = x[target]
        scale, shift = self.edge_encoder(edge_attr).chunk(2, dim=-1)
        messages = scale * self.pre(torch.cat([x[target], x[source]], dim=-1)) + shift
        aggregated = self.aggr(messages, index=target, dim_size=x.size(0), dim=0)
        return self.lin(self.post(torch.cat([x, aggregated], dim=-1)))


class EdgeUpdate(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.lin_e, self.lin_s = nn.Linear(channels, channels), nn.Linear(channels, channels)
        self.lin_t, self.lin1 = nn.Linear(channels, channels), nn.Linear(channels, channels)

    def forward(self, x, edge_index, edge_attr):
        hidden = self.lin_e(edge_attr) + self.lin_s(x)[edge_index[0]] + self.lin_t(x)[edge_index[1]]
        return self.lin1(nn.functional.silu(hidden))


class WholeBatchLayerNorm(nn.Module):
    """PyG's LayerNorm(mode="graph") called without a batch vector, as BasicGNN calls it: one mean and one
    (biased) deviation over every neuron and channel of the mini-batch, eps added to the deviation."""

    def __init__(self, channels, eps=1e-5):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels)), eps

    def forward(self, x):
        centred = x - x.mean()
        return centred / (centred.std(unbiased=False) + self.eps) * self.weight + self.bias


class ReleasedClassifier(nn.Module):
    def __init__(self, layout, stats, channels=HIDDEN, classes=CLASSES, depth=DEPTH, dropout=0.2, sigma=3.0):
        super().__init__()
        self.layout, self.stats, self.dropout = layout, stats, dropout
        # GraphConstructor: sin_emb with inp_factor 3; edges have 1 + 2 features with rev_edge_features.
        self.register_buffer("b_weight", sigma * torch.randn(FREQUENCIES, 3))
        self.register_buffer("b_bias", sigma * torch.randn(FREQUENCIES, 1))
        self.proj_weight, self.proj_bias = nn.Linear(2 * FREQUENCIES, channels), nn.Linear(2 * FREQUENCIES, channels)
        self.proj_node_in, self.proj_edge_in = nn.Linear(channels, channels), nn.Linear(channels, channels)
        self.pos_embed_layout = [1] * layout[0] + layout[1:-1] + [1] * layout[-1]
        self.pos_embed = nn.Parameter(torch.randn(len(self.pos_embed_layout), channels))
        histogram = released_degree_histogram(layout)
        self.convs = nn.ModuleList(PNALayer(channels, histogram) for _ in range(depth))
        self.norms = nn.ModuleList(WholeBatchLayerNorm(channels) for _ in range(depth - 1))
        self.edge_update = nn.ModuleList(EdgeUpdate(channels) for _ in range(depth - 1))  # final_edge_update False
        self.proj_out = nn.Sequential(
            nn.Linear(layout[-1] * channels, channels),
            nn.ReLU(),
            nn.Linear(channels, channels),
            nn.ReLU(),
            nn.Linear(channels, classes),
        )
        self.register_buffer("edge_index", released_edge_index(layout), persistent=False)

    def construct_graph(self, weights, biases):
        """weights ``[B, d_in, d_out, 1]`` and biases ``[B, d_out, 1]`` (their INRDataset's layout) to dense
        node ``[B, n, F]`` and edge ``[B, n, n, F]`` states, normalised per layer with ``self.stats``."""
        size, n = weights[0].size(0), sum(self.layout)
        nodes = weights[0].new_zeros(size, n, 1)  # input neurons have no bias: they stay 0
        edges = weights[0].new_zeros(size, n, n, 1)
        start = 0
        stats = self.stats
        for layer, (w, b) in enumerate(zip(weights, biases)):
            d_in, d_out = w.shape[1:3]
            outputs = slice(start + d_in, start + d_in + d_out)  # rows: the layer's inputs; columns: its outputs
            edges[:, start : start + d_in, outputs] = (w - stats["weight_mean"][layer]) / stats["weight_std"][layer]
            nodes[:, outputs] = (b - stats["bias_mean"][layer]) / stats["bias_std"][layer]
            start += d_in
        reverse = edges.transpose(1, 2)
        edges = torch.cat([edges, reverse, edges + reverse], dim=-1)  # rev_edge_features
        edges = self.proj_edge_in(self.proj_weight(gaussian_encoding(edges, self.b_weight)))
        nodes = self.proj_node_in(self.proj_bias(gaussian_encoding(nodes, self.b_bias)))
        rows = torch.repeat_interleave(torch.arange(len(self.pos_embed_layout)), torch.tensor(self.pos_embed_layout))
        return nodes + self.pos_embed[rows], edges

    def forward(self, weights, biases):
        nodes, edges = self.construct_graph(weights, biases)
        size, n = nodes.shape[:2]
        # to_pyg_batch: each graph's edges (forward, then reversed) with their dense states, graphs one after another.
        graph = torch.arange(size).repeat_interleave(self.edge_index.size(1))
        local = self.edge_index.repeat(1, size)
        edge_attr = edges[graph, local[0], local[1]]
        edge_index = local + graph * n
        x = nodes.reshape(size * n, -1)
        for index, conv in enumerate(self.convs):  # BasicGNN.forward with jk None, act_first False
            x = conv(x, edge_index, edge_attr)
            if index == len(self.convs) - 1:
                break
            x = nn.functional.dropout(nn.functional.silu(self.norms[index](x)), self.dropout, self.training)
            edge_attr = self.edge_update[index](x, edge_index, edge_attr)
        # HomogeneousAggregator("cat", "last"): the last d_M neurons of each network, concatenated.
        return self.proj_out(x.view(size, n, -1)[:, -self.layout[-1] :].flatten(1))


def wsgraph_names(released):
    """The wsgraph NeuralGraphGNN state_dict entry that holds each parameter of ReleasedClassifier (all but the
    PNA degree normalisers, which both models derive from a degree histogram)."""
    names = {
        "b_weight": "edge_encoder.0.frequencies",
        "b_bias": "node_encoder.0.frequencies",
        "proj_weight": "edge_encoder.1",
        "proj_bias": "node_encoder.1",
        "proj_edge_in": "edge_in",
        "proj_node_in": "node_in",
        "pos_embed": "position.embedding.weight",
        "proj_out": "head",
        "edge_update": "edge_updates",
        "lin_e": "lin_edge",
        "lin_s": "lin_source",
        "lin_t": "lin_target",
        "lin1": "lin_out",
    }
    keys = [key for key in released.state_dict() if ".aggr." not in key]
    return {key: ".".join(names.get(part, part) for part in key.split(".")) for key in keys}


def build_pair(stats, counts=5):
    """wsgraph's ng-gnn as ``wsgraph train --model ng-gnn --dropout 0.2 --model-options norm=minibatch`` builds it
    for 2-32-32-1 INRs (``counts`` training networks), with every parameter perturbed (norms too, which start at
    1 and 0), and the released model holding the same parameters."""
    spec = WeightSpaceSpec(tuple(LAYOUT))
    options = (("norm", "minibatch"),)
    torch.manual_seed(0)
    model = build_model(
        model_spec(
            "ng-gnn", "classify", [spec], CLASSES, dropout=0.2, architecture_counts={spec: counts}, options=options
        )
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    released = ReleasedClassifier(LAYOUT, stats)
    source, target = model.state_dict(), {}
    for mine, theirs in wsgraph_names(released).items():
        target[mine] = source.pop(theirs)
    # All that is left of wsgraph's state is PNA's degree normalisers, which the released model derives itself.
    assert sorted({key.split(".", 2)[-1] for key in source}) == ["aggr_module.avg_deg_lin", "aggr_module.avg_deg_log"]
    missing, unexpected = released.load_state_dict(target, strict=False)
    assert unexpected == [] and all(".aggr.avg_deg_l" in key for key in missing)
    return model.double().eval(), released.double().eval()


def random_networks(stats, size=5, seed=1):
    """``size`` 2-32-32-1 networks, each layer drawn around ``stats``' mean at a few times its deviation, as
    ``nn.Linear`` pairs ``([B, out, in], [B, out])``."""
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for layer, (d_in, d_out) in enumerate(itertools.pairwise(LAYOUT)):
        spread = 2 * torch.rand(size, 1, 1, generator=generator, dtype=torch.float64) + 0.5  # scales differ by network
        w = stats["weight_mean"][layer] + stats["weight_std"][layer] * spread * torch.randn(
            size, d_out, d_in, generator=generator, dtype=torch.float64
        )
        b = stats["bias_mean"][layer] + stats["bias_std"][layer] * spread[:, 0] * torch.randn(
            size, d_out, generator=generator, dtype=torch.float64
        )
        pairs.append((w, b))
    return pairs


@pytest.mark.parametrize(("stats", "seed"), [(IDENTITY_STATS, 1), (MNIST_STATS, 2)], ids=["raw", "mnist-stats"])
def test_every_backend_gives_the_released_models_logits(stats, seed):
    model, released = build_pair(stats)
    for conv, theirs in zip(model.convs, released.convs):
        # The amplification scaler's normaliser: wsgraph's histogram (2, 0, 32, ..., 33 times the networks) gives it.
        assert torch.equal(conv.aggr_module.avg_deg_log, theirs.aggr.avg_deg_log)
        assert torch.equal(conv.aggr_module.avg_deg_lin, theirs.aggr.avg_deg_lin)
    pairs = random_networks(stats, seed=seed)
    with torch.no_grad():
        # Their INRDataset's layout: weights transposed to [in, out] with a feature axis.
        expected = released([w.transpose(1, 2).unsqueeze(-1) for w, _ in pairs], [b.unsqueeze(-1) for _, b in pairs])
        # wsgraph train: the graphs of the raw networks, then NormalizeWeights with the training statistics.
        statistics = LayerStatistics(**{key: torch.tensor(value, dtype=torch.float64) for key, value in stats.items()})
        batch = NormalizeWeights(statistics)(mlp_to_graph(pairs, activation="sine(30.0)"))
        assert expected.std(dim=0).min() > 1e-2  # the networks get different logits: the comparison has teeth
        for backend in BACKENDS:
            model.backend = backend
            torch.testing.assert_close(model(batch), expected, rtol=0, atol=1e-12, msg=backend)
        # The comparison sees a plausible slip: swapping the target and source blocks of one message map.
        weight = released.convs[2].pre.weight
        weight.copy_(weight.roll(HIDDEN, dims=1))
        changed = released([w.transpose(1, 2).unsqueeze(-1) for w, _ in pairs], [b.unsqueeze(-1) for _, b in pairs])
        assert (changed - expected).abs().max() > 1e-4


def test_the_degree_normaliser_differs_by_at_most_float32_rounding_with_the_training_set_size():
    """``wsgraph train`` weights the histogram by the training networks per architecture; the released code counts
    one network. The mean log-degree is the same number, but PyG sums it in float32 and stores it as float32, so
    for some counts it lands one float32 step away (with PyG 2.8.1: 100 and 45000 networks, not 1 or 5)."""
    theirs = DegreeScalerAggregation(["mean"], ["amplification"], released_degree_histogram(LAYOUT)).avg_deg_log
    neighbours = {theirs.item(), torch.nextafter(theirs, theirs + 1).item(), torch.nextafter(theirs, theirs - 1).item()}
    spec = WeightSpaceSpec(tuple(LAYOUT))
    for counts in (1, 5, 100, 45000):
        model = build_model(model_spec("ng-gnn", "classify", [spec], CLASSES, architecture_counts={spec: counts}))
        ours = model.convs[0].aggr_module.avg_deg_log
        assert ours.dtype == torch.float32 and ours.item() in neighbours, counts
