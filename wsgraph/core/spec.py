"""The architecture of an MLP weight space: widths, signature and the canonical layout.

Layout (documented once, used everywhere):

* ``nn.Linear`` stores a weight as ``[out, in]``; wsgraph's weight ``W_l`` is the
  transpose, ``[d_{l-1}, d_l]``, so ``W_l[i, j]`` is the edge from neuron ``i`` of
  layer ``l-1`` to neuron ``j`` of layer ``l``.
* Nodes are ordered by layer ``k = 0..M``, then by index within the layer.
* Edges are ordered by weight layer ``l = 1..M``, then source index ``i``, then target
  index ``j`` (row-major over ``W_l``).  For a batch of networks of one architecture the
  edges of layer ``l`` are therefore a strided view of a dense ``[B, d_{l-1}, d_l, C]``
  tensor, and the biases of layer ``l`` one of ``[B, d_l, C]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from wsgraph.deprecation import renamed_property


@dataclass(frozen=True)
class WeightSpaceSpec:
    r"""An MLP weight space described by its layer widths :math:`d_0, \dots, d_M`.

    Hidden layers ``1..M-1`` are the ones whose neurons may be permuted; the input
    width :math:`d_0`, the output width :math:`d_M` and the number of weight layers
    :math:`M` form the :attr:`signature` that models depend on.

    A CNN (``conv_layers`` leading ``nn.Conv2d`` layers, global average pooling, then
    ``nn.Linear`` layers) has the same neurons: ``d_k`` is a layer's channel count, and
    every weight layer also records its kernel size (``(1, 1)`` for linear layers); the
    kernel entries are features of an edge, which no symmetry moves.

    Args:
        widths: the layer widths ``(d_0, ..., d_M)``, at least two positive integers.
        kernel_sizes: for a CNN, ``(height, width)`` of each weight layer's kernel;
            ``None`` for an MLP.
        conv_layers: for a CNN, how many of the weight layers are convolutions.
    """

    widths: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, int], ...] | None = None
    conv_layers: int = 0

    def __post_init__(self) -> None:
        widths = tuple(int(w) for w in self.widths)
        if len(widths) < 2:
            raise ValueError(f"an MLP needs at least two layer widths, got {widths}")
        if any(w < 1 for w in widths):
            raise ValueError(f"layer widths must be positive, got {widths}")
        object.__setattr__(self, "widths", widths)
        if self.kernel_sizes is None:
            if self.conv_layers:
                raise ValueError(f"{self.conv_layers} convolution layers need their kernel sizes")
            return
        kernels = tuple((int(height), int(width)) for height, width in self.kernel_sizes)
        if len(kernels) != len(widths) - 1:
            raise ValueError(f"got {len(kernels)} kernel sizes for {len(widths) - 1} weight layers")
        if any(height < 1 or width < 1 for height, width in kernels):
            raise ValueError(f"kernel sizes must be positive, got {kernels}")
        if not 1 <= self.conv_layers < len(kernels):
            raise ValueError(f"a CNN has 1 to {len(kernels) - 1} convolution layers, got {self.conv_layers}")
        if any(kernel != (1, 1) for kernel in kernels[self.conv_layers :]):
            raise ValueError(f"linear layers have 1x1 kernels, got {kernels[self.conv_layers :]}")
        object.__setattr__(self, "kernel_sizes", kernels)
        object.__setattr__(self, "conv_layers", int(self.conv_layers))

    @property
    def is_conv(self) -> bool:
        """Whether this is a CNN weight space (kernel sizes recorded)."""
        return self.kernel_sizes is not None

    @property
    def kernel_grid(self) -> tuple[int, int]:
        """``(height, width)`` of the smallest grid that holds every kernel (``(1, 1)`` for an MLP)."""
        if self.kernel_sizes is None:
            return (1, 1)
        return (max(h for h, _ in self.kernel_sizes), max(w for _, w in self.kernel_sizes))

    @property
    def num_weight_layers(self) -> int:
        """The number of weight layers :math:`M`."""
        return len(self.widths) - 1

    num_layers = renamed_property("num_weight_layers", "WeightSpaceSpec.num_layers")

    @property
    def in_dim(self) -> int:
        return self.widths[0]

    @property
    def out_dim(self) -> int:
        return self.widths[-1]

    @property
    def signature(self) -> tuple[int, int, int]:
        """``(M, d_0, d_M)``: what must agree for networks to share one model."""
        return (self.num_weight_layers, self.in_dim, self.out_dim)

    @property
    def hidden_layers(self) -> range:
        """Indices ``k`` of the layers whose neurons are permuted (``1..M-1``)."""
        return range(1, self.num_weight_layers)

    @property
    def num_nodes(self) -> int:
        return sum(self.widths)

    @property
    def num_edges(self) -> int:
        return sum(self.weight_shape(layer)[0] * self.weight_shape(layer)[1] for layer in self.weight_layers)

    @property
    def num_params(self) -> int:
        """Weights (kernel entries for a CNN) plus biases of every layer."""
        if self.kernel_sizes is not None:
            weights = sum(
                rows * cols * height * width
                for (rows, cols), (height, width) in zip(map(self.weight_shape, self.weight_layers), self.kernel_sizes)
            )
            return weights + self.num_nodes - self.in_dim
        return self.num_edges + self.num_nodes - self.in_dim

    @property
    def weight_layers(self) -> range:
        """Indices ``l`` of the weight layers (``1..M``)."""
        return range(1, self.num_weight_layers + 1)

    def weight_shape(self, layer: int) -> tuple[int, int]:
        """``(d_{l-1}, d_l)``, the shape of :math:`W_l` in wsgraph's layout."""
        return (self.widths[layer - 1], self.widths[layer])

    @cached_property
    def node_offsets(self) -> tuple[int, ...]:
        """Position of the first node of each layer ``k = 0..M``, plus the total."""
        offsets = [0]
        for width in self.widths:
            offsets.append(offsets[-1] + width)
        return tuple(offsets)

    @cached_property
    def edge_offsets(self) -> tuple[int, ...]:
        """Position of the first edge of each weight layer ``l = 1..M`` (index ``l-1``), plus the total."""
        offsets = [0]
        for layer in self.weight_layers:
            rows, cols = self.weight_shape(layer)
            offsets.append(offsets[-1] + rows * cols)
        return tuple(offsets)

    def node_slice(self, layer: int) -> slice:
        return slice(self.node_offsets[layer], self.node_offsets[layer + 1])

    def edge_slice(self, layer: int) -> slice:
        return slice(self.edge_offsets[layer - 1], self.edge_offsets[layer])

    def index_tensors(self, device: torch.device | str | None = None) -> dict[str, Tensor]:
        """``edge_index``, ``node_layer``, ``node_index`` and ``edge_layer`` of one network."""
        widths = torch.tensor(self.widths, device=device)
        layer_ids = torch.arange(len(self.widths), device=device)
        node_layer = layer_ids.repeat_interleave(widths)
        starts = torch.tensor(self.node_offsets[:-1], device=device)
        node_index = torch.arange(self.num_nodes, device=device) - starts.repeat_interleave(widths)
        sources, targets, edge_layer = [], [], []
        for layer in self.weight_layers:
            rows, cols = self.weight_shape(layer)
            src = torch.arange(rows, device=device).repeat_interleave(cols) + self.node_offsets[layer - 1]
            dst = torch.arange(cols, device=device).repeat(rows) + self.node_offsets[layer]
            sources.append(src)
            targets.append(dst)
            edge_layer.append(torch.full((rows * cols,), layer, device=device))
        return {
            "edge_index": torch.stack([torch.cat(sources), torch.cat(targets)]),
            "node_layer": node_layer,
            "node_index": node_index,
            "edge_layer": torch.cat(edge_layer),
        }

    def __str__(self) -> str:
        text = "-".join(str(w) for w in self.widths)
        if self.kernel_sizes is None:
            return text
        kernels = ",".join(f"{h}x{w}" for h, w in self.kernel_sizes[: self.conv_layers])
        return f"{text} (conv {kernels})"

    @classmethod
    def parse(cls, text: str) -> WeightSpaceSpec:
        """Read ``"2-32-32-1"`` (also ``,`` or ``x`` separated)."""
        parts = text.replace(",", "-").replace("x", "-").split("-")
        try:
            return cls(tuple(int(p) for p in parts if p.strip()))
        except ValueError as error:
            raise ValueError(f"cannot read layer widths from {text!r}: expected e.g. '2-32-32-1'") from error
