"""DWSConv inside an ordinary PyG model, next to PyG's own pooling and a plain MLP head.

The task is a toy: tell apart small ReLU networks whose hidden weights were drawn at two
different scales. The model is a few DWSConv layers (exactly equivariant to hidden-neuron
permutations) followed by `global_mean_pool` over neurons (invariant) and a linear head,
written the way any PyG model is written: tensors in, tensors out.

Run: python examples/pyg_conv_model.py
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.loader import DataLoader
from torch_geometric.nn import global_mean_pool

import wsgraph
from wsgraph.layers import DWSConv


class ScaleClassifier(nn.Module):
    def __init__(self, hidden_channels: int = 16) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                DWSConv(1, hidden_channels, num_weight_layers=3, in_dim=2, out_dim=1),
                DWSConv(hidden_channels, hidden_channels, num_weight_layers=3, in_dim=2, out_dim=1),
            ]
        )
        self.head = nn.Linear(2 * hidden_channels, 2)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, layer_widths: Tensor, batch: Tensor) -> Tensor:
        for conv in self.convs:
            x, edge_attr = conv(x, edge_index, edge_attr, layer_widths)
            x, edge_attr = x.relu(), edge_attr.relu()
        edge_batch = batch[edge_index[1]]
        pooled = torch.cat([global_mean_pool(x, batch), global_mean_pool(edge_attr, edge_batch)], dim=-1)
        return self.head(pooled)


def random_network(scale: float, generator: torch.Generator) -> nn.Sequential:
    hidden = int(torch.randint(4, 9, (1,), generator=generator))
    network = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return network


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    graphs = []
    for label, scale in [(0, 0.5), (1, 1.5)] * 64:
        graph = wsgraph.mlp_to_graph(random_network(scale, generator))
        graph.y = torch.tensor([label])
        graphs.append(graph)
    loader = DataLoader(graphs, batch_size=32, shuffle=True)
    model = ScaleClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(15):
        correct = 0
        for batch in loader:
            optimizer.zero_grad()
            logits = model(batch.x, batch.edge_index, batch.edge_attr, batch.layer_widths, batch.batch)
            loss = nn.functional.cross_entropy(logits, batch.y)
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(-1) == batch.y).sum())
        print(f"epoch {epoch + 1:2d}  loss {loss.item():.3f}  train accuracy {correct / len(graphs):.2f}")


if __name__ == "__main__":
    main()
