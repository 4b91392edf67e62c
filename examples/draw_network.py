"""Convert a small MLP to its weight-space graph, print it, and save a drawing.

Run: ``python examples/draw_network.py [OUTPUT.png]`` (default ``runs/examples/network.png``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

import wsgraph


def main(output: Path) -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 1))
    graph = wsgraph.mlp_to_graph(mlp)
    print(graph)
    print(f"widths {wsgraph.graph_specs(graph)[0]}, activation {graph.activation}")
    view = wsgraph.to_networkx(graph)
    print(f"networkx: {view.number_of_nodes()} nodes, {view.number_of_edges()} edges")
    wsgraph.draw_network(graph, path=output)
    print(f"saved {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/examples/network.png"))
