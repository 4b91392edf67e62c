"""The first stage of ``wsgraph demo``: networks become graphs, batch with PyG, and come back exactly.

:func:`run_graph_demo` builds a few small MLPs of one
signature (ReLU and tanh ``nn.Sequential`` models of different hidden widths, a SIREN,
a bare state_dict), converts them, batches them with PyG, checks the exact round trip
and that a random hidden-neuron permutation keeps every network's function, converts a
stack of networks in one vectorised call, and draws one network.
"""

from __future__ import annotations

import json
import math
import os
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from wsgraph.cli.info import network_parameter_count
from wsgraph.core.activations import UNKNOWN
from wsgraph.core.convert_mlp import graph_to_mlp, graph_to_params, mlp_to_graph, stacked_params
from wsgraph.core.graph import WeightSpaceGraph, graph_specs
from wsgraph.core.permute import permute_hidden
from wsgraph.core.visualize import draw_network
from wsgraph.io import write_json

DEFAULT_OUT = Path("runs/demo/graphs")
SUMMARY, DRAWING = "summary.json", "network.png"
# float32 outputs of O(1): summing in another order (after a permutation) moves them by a few ulps.
FUNCTION_TOLERANCE = 1e-5
STACKED_NETWORKS = 1000


class _Siren(nn.Module):
    """A SIREN (Sitzmann et al., 2020): ``sin(omega_0 * (W x + b))`` between layers."""

    def __init__(self, widths: tuple[int, ...], omega_0: float = 30.0) -> None:
        super().__init__()
        self.omega_0 = omega_0
        self.layers = nn.ModuleList(nn.Linear(d_in, d_out) for d_in, d_out in pairwise(widths))
        with torch.no_grad():
            # SIREN's initialisation keeps the pre-activations of every layer in [-1, 1] / omega_0 scale.
            self.layers[0].weight.uniform_(-1 / widths[0], 1 / widths[0])
            for layer in self.layers[1:]:
                bound = math.sqrt(6 / layer.in_features) / omega_0
                layer.weight.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = torch.sin(self.omega_0 * layer(x))
        return self.layers[-1](x)


def _demo_networks() -> list[dict[str, Any]]:
    relu = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    tanh = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 4), nn.Tanh(), nn.Linear(4, 1))
    siren = _Siren((2, 32, 32, 1))
    no_middle_bias = nn.Sequential(
        nn.Linear(2, 12), nn.ReLU(), nn.Linear(12, 12, bias=False), nn.ReLU(), nn.Linear(12, 1)
    )
    state_dict = {f"net.layers.{key}": value for key, value in no_middle_bias.state_dict().items()}
    return [
        {"name": "relu mlp", "source": "nn.Sequential", "network": relu, "function": relu, "activation": None},
        {"name": "tanh mlp", "source": "nn.Sequential", "network": tanh, "function": tanh, "activation": None},
        {"name": "siren", "source": "custom module", "network": siren, "function": siren, "activation": None},
        # A state_dict does not say its activation: the rebuild is told.
        {
            "name": "relu, no bias in layer 2",
            "source": "state_dict",
            "network": state_dict,
            "function": no_middle_bias,
            "activation": "relu",
        },
    ]


def run_graph_demo(out_dir: str | os.PathLike = DEFAULT_OUT, seed: int = 0) -> dict[str, Any]:
    """Run the graph stage of the demo, print its summary table and return the summary.

    Args:
        out_dir: where the drawing (``network.png``) and ``summary.json`` go.
        seed: seeds the networks, the probe inputs and the permutations (the global
            random state is left as it was).

    Returns:
        A JSON-ready dict: per network its architecture and check results, the batch,
        the loader, the vectorised conversion and the drawing's path.

    Raises:
        RuntimeError: if any check fails.
    """
    out_dir = Path(out_dir)
    refuse_foreign_graph_outputs(out_dir)
    started = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        entries = _demo_networks()
        probe = torch.rand(256, 2) * 2 - 1
        generator = torch.Generator().manual_seed(seed)
        graphs = [mlp_to_graph(entry["network"]) for entry in entries]
        rows = [_check_network(entry, graph, probe, generator) for entry, graph in zip(entries, graphs)]
        batch_summary = _check_batching(graphs)
        stacked_summary = _check_stacked()
    figure_path = out_dir / DRAWING
    summary = {
        "networks": rows,
        "batch": batch_summary,
        "stacked": stacked_summary,
        "drawing": str(figure_path),
        "seconds": round(time.perf_counter() - started, 3),
    }
    # The summary first: it marks the drawing beside it as the demo's (refuse_foreign_graph_outputs).
    write_json(out_dir / SUMMARY, summary)
    draw_network(graphs[0], path=figure_path, title=f"{entries[0]['name']} {graph_specs(graphs[0])[0]}")
    print(format_summary(summary))
    return summary


def refuse_foreign_graph_outputs(out_dir: str | os.PathLike) -> None:
    """Raise a ``ValueError`` naming the file unless what lies where the stage writes (``summary.json``,
    ``network.png``) is an earlier run's, which a rerun replaces; a file there is someone's unless a
    summary of this stage lies beside it."""
    out_dir = Path(out_dir)
    summary, drawing = out_dir / SUMMARY, out_dir / DRAWING
    for path in (summary, drawing):
        if path.is_dir():
            raise ValueError(f"{path}: is a folder, where the demo's {path.name} goes; choose another --out")
    ours = summary.is_file() and _is_graph_summary(summary)
    culprit = next((path for path in (summary, drawing) if path.exists() and not ours), None)
    if culprit is not None:
        raise ValueError(f"{culprit}: exists and is not the demo's; choose another --out")


def _is_graph_summary(path: Path) -> bool:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(document, dict) and {"networks", "batch", "stacked", "drawing"} <= document.keys()


def _check_network(
    entry: dict[str, Any], graph: WeightSpaceGraph, probe: Tensor, generator: torch.Generator
) -> dict[str, Any]:
    """Round trip and permutation checks of one network; raises RuntimeError on a failure."""
    name, function, activation = entry["name"], entry["function"], entry["activation"]
    original = [(m.weight, m.bias) for m in function.modules() if isinstance(m, nn.Linear)]
    exact = all(
        torch.equal(weight, reference_weight)
        and (bias is None if reference_bias is None else bias is not None and torch.equal(bias, reference_bias))
        for (weight, bias), (reference_weight, reference_bias) in zip(graph_to_params(graph), original, strict=True)
    )
    permuted = permute_hidden(graph, generator=generator)
    with torch.no_grad():
        expected = function(probe)
        rebuilt_error = float((graph_to_mlp(graph, activation=activation)(probe) - expected).abs().max())
        permuted_error = float((graph_to_mlp(permuted, activation=activation)(probe) - expected).abs().max())
    moved = float((permuted.edge_attr != graph.edge_attr).double().mean())
    if not exact:
        raise RuntimeError(f"{name}: graph_to_params does not give back the exact parameters")
    if rebuilt_error > FUNCTION_TOLERANCE or permuted_error > FUNCTION_TOLERANCE:
        raise RuntimeError(
            f"{name}: the rebuilt network's outputs differ by {rebuilt_error:.2e}, the permuted one's by "
            f"{permuted_error:.2e} (tolerance {FUNCTION_TOLERANCE:.0e})"
        )
    if moved == 0:
        raise RuntimeError(f"{name}: a random hidden permutation left every weight in place")
    spec = graph_specs(graph)[0]
    return {
        "name": name,
        "source": entry["source"],
        "widths": str(spec),
        "params": network_parameter_count(spec, graph.has_bias[0].tolist()),
        "activation": graph.activation,
        "rebuilt_with": activation or graph.activation,
        "round_trip_exact": exact,
        "rebuilt_max_error": rebuilt_error,
        "permuted_max_error": permuted_error,
        "weights_moved": moved,
    }


def _check_batching(graphs: list[WeightSpaceGraph]) -> dict[str, Any]:
    """Networks of different widths through ``Batch`` and ``DataLoader`` and back, unchanged."""
    batch = Batch.from_data_list(graphs)
    loader_batches = list(DataLoader(graphs, batch_size=2))
    from_loader = [graph for part in loader_batches for graph in part.to_data_list()]
    for source, copies in (("Batch.to_data_list", batch.to_data_list()), ("DataLoader", from_loader)):
        for original, copy in zip(graphs, copies, strict=True):
            same = all(torch.equal(original[key], copy[key]) for key in ("x", "edge_attr", "layer_widths", "has_bias"))
            if not same or copy.activation != original.activation:
                raise RuntimeError(f"{source}: a {graph_specs(original)[0]} network did not come back unchanged")
    for original, params in zip(graphs, graph_to_params(batch), strict=True):
        if not all(torch.equal(a, b) for a, b in zip(_flat(graph_to_params(original)), _flat(params), strict=True)):
            raise RuntimeError("graph_to_params on the mixed batch differs from the per-network result")
    return {
        "num_graphs": batch.num_graphs,
        "num_nodes": batch.num_nodes,
        "num_edges": batch.num_edges,
        "architectures": [str(spec) for spec in graph_specs(batch)],
        "activations": list(batch.activation),
        "loader_batches": len(loader_batches),
    }


def _check_stacked(widths: tuple[int, ...] = (2, 32, 32, 1)) -> dict[str, Any]:
    """Many networks of one architecture, from stacked tensors to a Batch and back, in one call each."""
    pairs = [
        (torch.randn(STACKED_NETWORKS, d_out, d_in), torch.randn(STACKED_NETWORKS, d_out))
        for d_in, d_out in pairwise(widths)
    ]
    started = time.perf_counter()
    batch = mlp_to_graph(pairs)
    seconds = time.perf_counter() - started
    exact = all(
        torch.equal(weight, back_weight) and torch.equal(bias, back_bias)
        for (weight, bias), (back_weight, back_bias) in zip(pairs, stacked_params(batch), strict=True)
    )
    if not exact:
        raise RuntimeError("stacked_params does not give back the stacked parameters exactly")
    return {
        "networks": batch.num_graphs,
        "widths": "-".join(map(str, widths)),
        "seconds": round(seconds, 4),
        "round_trip_exact": exact,
    }


def _flat(params: list) -> list[Tensor]:
    return [tensor for pair in params for tensor in pair if tensor is not None]


def format_summary(summary: dict[str, Any]) -> str:
    """The demo's summary table, as printed."""
    header = ("network", "source", "widths", "params", "activation", "round trip", "rebuilt |err|", "permuted |err|")
    rows = [
        (
            row["name"],
            row["source"],
            row["widths"],
            str(row["params"]),
            row["activation"] if row["activation"] != UNKNOWN else f"{UNKNOWN} (rebuilt as {row['rebuilt_with']})",
            "exact" if row["round_trip_exact"] else "DIFFERS",
            f"{row['rebuilt_max_error']:.1e}",
            f"{row['permuted_max_error']:.1e}",
        )
        for row in summary["networks"]
    ]
    widths = [max(len(cells[column]) for cells in (header, *rows)) for column in range(len(header))]
    table = "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in (header, *rows)
    )
    batch, stacked = summary["batch"], summary["stacked"]
    return "\n".join(
        [
            table,
            "",
            f"batch: {batch['num_graphs']} networks ({', '.join(batch['architectures'])}), {batch['num_nodes']} nodes, "
            f"{batch['num_edges']} edges; Batch.to_data_list and DataLoader ({batch['loader_batches']} batches) give them back unchanged",
            f"vectorised: {stacked['networks']} networks {stacked['widths']} -> one Batch in {stacked['seconds']:.3f} s, "
            f"round trip {'exact' if stacked['round_trip_exact'] else 'DIFFERS'}",
            f"drawing: {summary['drawing']}",
            f"done in {summary['seconds']:.1f} s",
        ]
    )
