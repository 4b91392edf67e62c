"""Sum-by-group and gather-by-group as one adjoint pair, fast on CPU.

A DWS layer sums edge features into the neurons they point to (or leave from) and
gathers neuron features back onto the edges. The two are adjoint: the gradient of one
is the other. On CPU, PyTorch's ``index_add_`` (the default backward of a gather) runs
on a single thread; a sparse CSR incidence matrix computes the same sums with
multithreaded, cache-friendly row reductions (measured 2-5x faster on the layer's
shapes, see docs/benchmarks.md). On CUDA, for dtypes the sparse kernels do not
support, and inside ``torch.compile`` (which traces neither sparse tensors nor this
custom autograd pair, and generates its own kernels for the index ops), the native
``index_add_`` / ``index_select`` pair is used.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

_SPARSE_DTYPES = (torch.float32, torch.float64)


class Incidence:
    """The 0/1 matrix ``[rows, cols]`` whose column ``c`` has its one nonzero at row ``index[c]``.

    Args:
        index: ``[cols]`` the group (row) of every element (column).
        num_rows: the number of groups.
        row_ptr: ``[rows+1]`` CSR row offsets (group sizes, accumulated).
        col_indices: ``[cols]`` the elements of each group, group after group; ``None``
            when every group's elements are contiguous and in order (``arange(cols)``).
    """

    def __init__(self, index: Tensor, num_rows: int, row_ptr: Tensor, col_indices: Tensor | None = None) -> None:
        self.index = index
        self.num_rows = num_rows
        self._row_ptr = row_ptr
        self._col_indices = col_indices
        self._matrices: dict[torch.dtype, Tensor] = {}

    def sum(self, values: Tensor) -> Tensor:
        """``out[r] = sum of values[c] over the columns c of row r``: ``[rows, C]``."""
        if torch.compiler.is_compiling():
            return values.new_zeros(self.num_rows, values.size(-1)).index_add(0, self.index, values)
        return _Sum.apply(values, self)

    def gather(self, table: Tensor) -> Tensor:
        """``out[c] = table[index[c]]``: ``[cols, C]``."""
        if torch.compiler.is_compiling():
            return table.index_select(0, self.index)
        return _Gather.apply(table, self)

    def uses_sparse(self, like: Tensor) -> bool:
        return like.device.type == "cpu" and like.dtype in _SPARSE_DTYPES

    def matrix(self, dtype: torch.dtype) -> Tensor:
        if dtype not in self._matrices:
            self._matrices[dtype] = self._build(dtype)
        return self._matrices[dtype]

    def _build(self, dtype: torch.dtype) -> Tensor:
        cols = self.index.numel()
        col_indices = self._col_indices
        if col_indices is None:
            col_indices = torch.arange(cols, device=self.index.device)
        values = torch.ones(cols, dtype=dtype, device=self.index.device)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                self._row_ptr, col_indices, values, size=(self.num_rows, cols), check_invariants=False
            )


def _sum(values: Tensor, incidence: Incidence) -> Tensor:
    if incidence.uses_sparse(values):
        # Autocast would run the product in bfloat16, which the sparse kernels lack.
        with torch.autocast("cpu", enabled=False):
            return incidence.matrix(values.dtype) @ values.contiguous()
    out = values.new_zeros(incidence.num_rows, values.size(-1))
    return out.index_add_(0, incidence.index, values)


class _Sum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: Tensor, incidence: Incidence) -> Tensor:
        ctx.incidence = incidence
        return _sum(values, incidence)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return _Gather.apply(grad, ctx.incidence), None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: Tensor, incidence: Incidence) -> Tensor:
        ctx.incidence = incidence
        return table.index_select(0, incidence.index)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return _Sum.apply(grad, ctx.incidence), None
