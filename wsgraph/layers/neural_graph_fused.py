"""Fused edge computations of NeuralGraphGNN on networks of one architecture: its fastest CPU path.

The dense backend (:mod:`wsgraph.layers.neural_graph_dense`) already works on one
``[B, d_{l-1}, d_l, F]`` tensor per weight layer and direction, but composes a dozen
autograd operations per round, each of which reads and writes every edge's state in
main memory, and keeps most of their results for the backward pass. Here each per-edge
computation is one autograd function:

- :func:`fused_messages`: the FiLM-modulated messages and the neighbourhood statistics
  PNA needs (sum, sum of squares, minimum, maximum), keeping neither the messages nor
  FiLM's scale and shift;
- :func:`fused_edge_update`: the pre-activation of the edge update and its SiLU;
- :func:`fused_update_messages`: an edge update and the next round's messages of its
  result in one pass (both wait for the same node states), so that the updated edges
  and their gradient are used while in cache;
- :func:`fused_fourier_linear`: the Fourier encoder of the raw edge features.

All run over the networks in chunks small enough to stay in the CPU's cache, so a
chunk's temporaries (endpoint sums, messages, their gradients) never reach main
memory, and the backward pass recomputes them instead of reading them back. The
arithmetic is the dense backend's, in another order, so the two agree to rounding
(tested in float64 against the scatter backend).

Within a chunk, the matrix products are torch's; the per-edge elementwise work of the
messages and their statistics (forward: one loop; backward: one loop) and of the edge
update's endpoint sums runs as compiled loops (:mod:`wsgraph.layers.neural_graph_native`)
when they could be built, else as the torch operations below. With the compiled loops,
each thread's run of chunks is one call, the chunks walked in C++ (no Python between
chunks), for the messages, the fused update and messages, and the Fourier encoder. The
compiled forward loop also counts the messages that reach each minimum and maximum, so
the backward loop shares a tie's gradient without a second pass. Both ways are tested
against each other and against the torch composition, ties included.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from wsgraph.layers.neural_graph_native import native_kernels

# Elements of the widest per-edge tensor in one chunk: 1 MB in float32, half of one core's L2 cache.
CHUNK_ELEMENTS = 2**18
Result = TypeVar("Result")


def _chunks(num_networks: int, per_network: int) -> list[slice]:
    size = max(1, CHUNK_ELEMENTS // max(per_network, 1))
    return [slice(start, min(start + size, num_networks)) for start in range(0, num_networks, size)]


class _Workers:
    """The threads that run chunks besides the calling one, kept between calls (a kernel call is tens of
    milliseconds, and starting threads for each showed in the two-thread timings) and forgotten in a forked
    child, which has none of them."""

    pool: ThreadPoolExecutor | None = None
    count = 0

    @classmethod
    def get(cls, count: int) -> ThreadPoolExecutor:
        if cls.pool is None or cls.count != count:
            if cls.pool is not None:
                cls.pool.shutdown(wait=False)
            # Each worker's operations single-threaded: a chunk's are too small to split.
            cls.pool = ThreadPoolExecutor(count, "wsgraph-chunks", initializer=torch.set_num_threads, initargs=(1,))
            cls.count = count
        return cls.pool

    @classmethod
    def forget(cls) -> None:
        cls.pool, cls.count = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Workers.forget)


def _map_chunks(function: Callable[[slice], Result], parts: list[slice]) -> list[Result]:
    """``function`` of every chunk, in order. With several intra-op threads, the chunks are split into that many
    runs of consecutive chunks, one on the calling thread and the others on worker threads (torch releases the
    GIL in its kernels), each operation single-threaded: a chunk's operations are too small to split across
    threads, and splitting them costs a synchronisation per operation; one run per thread rather than one
    task per chunk saves a hand-over per chunk."""
    threads = min(torch.get_num_threads(), len(parts))
    if threads <= 1:
        return [function(part) for part in parts]

    # Grad mode and inference mode are per thread: the workers take the caller's (an autograd function's own
    # pass runs without grad; under inference mode, its outputs are inference tensors that only code in
    # inference mode may write into).
    inference = torch.is_inference_mode_enabled()

    def run(group: list[slice]) -> list[Result]:
        with torch.inference_mode(inference), torch.no_grad():
            return [function(part) for part in group]

    size = -(-len(parts) // threads)
    groups = [parts[start : start + size] for start in range(0, len(parts), size)]
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    futures = []
    try:
        pool = _Workers.get(previous - 1)
        futures = [pool.submit(run, group) for group in groups[1:]]
        results = run(groups[0])
        for future in futures:
            results += future.result()
        return results
    finally:
        wait(futures)
        torch.set_num_threads(previous)


def _map_ranges(function: Callable[[int, int, int], Result], parts: list[slice]) -> list[Result]:
    """``function(start, stop, size)`` over one run of consecutive chunks of ``parts`` (all of ``size`` networks
    but the last) per thread, as :func:`_map_chunks` splits them: for the compiled loops, which walk a run's
    chunks themselves, so that Python sees one call per thread rather than one per chunk."""
    if not parts:
        return []
    threads = min(torch.get_num_threads(), len(parts))
    size = parts[0].stop - parts[0].start
    per_thread = -(-len(parts) // threads)
    runs = [
        slice(parts[start].start, parts[min(start + per_thread, len(parts)) - 1].stop)
        for start in range(0, len(parts), per_thread)
    ]
    return _map_chunks(lambda run: function(run.start, run.stop, size), runs)


def _sum_over_chunks(work: Callable[[slice, list[Tensor]], None], parts: list[slice], *like: Tensor) -> list[Tensor]:
    """The totals that ``work(part, totals)`` adds to over all chunks, starting from zeros shaped like ``like``:
    one set of totals per thread, added up at the end, rather than a partial result per chunk for Python to add."""

    def run(start: int, stop: int, size: int) -> list[Tensor]:
        totals = [torch.zeros_like(tensor) for tensor in like]
        for first in range(start, stop, size):
            work(slice(first, min(first + size, stop)), totals)
        return totals

    per_thread = _map_ranges(run, parts)
    if not per_thread:
        return [torch.zeros_like(tensor) for tensor in like]
    return [sum(terms[1:], terms[0]) for terms in zip(*per_thread)]


def native_kernels_for(tensor: Tensor) -> Any:
    """The compiled loops where they apply, else ``None`` (the torch operations): they are CPU code for float32
    and float64, so not for another device or a half-precision dtype."""
    if tensor.device.type != "cpu" or tensor.dtype not in (torch.float32, torch.float64):
        return None
    return native_kernels()


def fused_messages(
    edges: Tensor, weight: Tensor, bias: Tensor, rows: Tensor, cols: Tensor, axis: int, moments: bool, extremes: bool
) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    r"""Statistics of the messages of one weight layer and direction, reduced along ``axis``.

    With ``[γ; β] = edges Wᵀ + b`` (``weight`` ``[2F, F_e]``) and ``h_ij = rows_i + cols_j``,
    the messages are ``m_ij = γ_ij ⊙ h_ij + β_ij``, ``[B, p, q, F]``; returns their sum and
    sum of squares (``moments``) and minimum and maximum (``extremes``) along ``axis``
    (``1`` or ``2``), ``None`` where not asked for.

    Args:
        edges: ``[B, p, q, F_e]`` edge states.
        weight: ``[2F, F_e]``, scale rows first.
        bias: ``[2F]``.
        rows: ``[B, p, F]``, the part of ``h`` of the neurons on axis 1.
        cols: ``[B, q, F]``, the part of ``h`` of the neurons on axis 2.

    At a tie, the gradient of a minimum or maximum is shared equally by the tied
    messages, as ``torch.amax`` shares it.
    """
    outputs = _FusedMessages.apply(edges, weight, bias, rows, cols, axis, moments, extremes)
    return tuple(output if output.numel() else None for output in outputs)  # type: ignore[return-value]


def fused_edge_update(edges: Tensor, weight: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    r"""``SiLU(edges Wᵀ + rows_i + cols_j)``, ``[B, p, q, F]``, for edges ``[B, p, q, F_e]``,
    ``weight`` ``[F, F_e]``, ``rows`` ``[B, p, F]`` and ``cols`` ``[B, q, F]`` (any bias folded into
    ``rows``)."""
    return _FusedEdgeUpdate.apply(edges, weight, rows, cols)


def _endpoints(rows: Tensor, cols: Tensor) -> Tensor:
    return rows.unsqueeze(2) + cols.unsqueeze(1)


def _messages(hidden: Tensor, scale_shift: Tensor, channels: int) -> Tensor:
    # The backward pass recomputes the messages with this very operation, so that they equal the forward's
    # bit for bit and its minima and maxima are found again.
    return torch.addcmul(scale_shift[..., channels:], hidden, scale_shift[..., :channels])


def _film(edges: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    # Recomputed in the backward pass rather than kept: as fast on CPU, and a quarter of the memory. (The compiled
    # loops take the product without the bias and add it as they read: addmm's copy of the bias is a pass.)
    return torch.addmm(bias, edges.reshape(-1, edges.size(-1)), weight.t()).view(*edges.shape[:-1], -1)


class _FusedMessages(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        edges: Tensor,
        weight: Tensor,
        bias: Tensor,
        rows: Tensor,
        cols: Tensor,
        axis: int,
        moments: bool,
        extremes: bool,
    ) -> tuple[Tensor, ...]:
        num_networks, p, q = edges.shape[:3]
        channels = weight.size(0) // 2
        native = native_kernels_for(edges)
        total, squares, minimum, maximum, counts = _statistic_outputs(
            edges, channels, axis, moments, extremes, tie_counts=native is not None
        )
        if native is None:
            counts = None
        chunks = _chunks(num_networks, p * q * 2 * channels)
        if native is not None:
            # The compiled loops read the endpoint terms as contiguous [B, *, F]; they are a node layer's slice.
            edges, rows, cols, bias = edges.contiguous(), rows.contiguous(), cols.contiguous(), bias.contiguous()
            statistics = (total, squares, minimum, maximum, counts[0], counts[1])
            _map_ranges(
                lambda start, stop, size: native.messages_forward_range(
                    edges, weight, bias, rows, cols, axis, *statistics, start, stop, size
                ),
                chunks,
            )

        def work(part: slice) -> None:
            scale_shift = _film(edges[part], weight, bias)
            messages = _messages(_endpoints(rows[part], cols[part]), scale_shift, channels)
            if extremes:
                # Without indices: finding them costs twenty times the reduction; the backward pass finds the
                # extremes again by comparison.
                torch.amin(messages, axis, out=minimum[part])
                torch.amax(messages, axis, out=maximum[part])
            if moments:
                torch.sum(messages, axis, out=total[part])
                torch.sum(messages.square_(), axis, out=squares[part])

        if native is None:
            _map_chunks(work, chunks)
        ctx.axis = axis
        ctx.native = native
        ctx.save_for_backward(edges, weight, bias, rows, cols, minimum, maximum, *([] if counts is None else [counts]))
        ctx.set_materialize_grads(False)
        return total, squares, minimum, maximum

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any,
        grad_total: Tensor | None,
        grad_squares: Tensor | None,
        grad_min: Tensor | None,
        grad_max: Tensor | None,
    ) -> tuple[Tensor | None, ...]:
        if all(grad is None for grad in (grad_total, grad_squares, grad_min, grad_max)):
            return None, None, None, None, None, None, None, None
        edges, weight, bias, rows, cols, minimum, maximum, *counts = ctx.saved_tensors
        axis = ctx.axis
        num_networks, p, q, edge_channels = edges.shape
        channels = weight.size(0) // 2
        grad_edges = torch.empty_like(edges)
        grad_rows, grad_cols = torch.empty_like(rows), torch.empty_like(cols)
        native = ctx.native
        if native is not None:
            statistics = _statistic_grads(
                edges, minimum, maximum, counts[0], grad_total, grad_squares, grad_min, grad_max
            )

        def work(part: slice) -> tuple[Tensor, Tensor]:
            scale_shift = _film(edges[part], weight, bias)
            scale = scale_shift[..., :channels]
            hidden = _endpoints(rows[part], cols[part])
            # The gradients of the scale and of the shift (= of the messages) side by side, so that one product
            # with the encoder's [scale; shift] weight gives the edges' gradient and one its own.
            grads = torch.empty_like(scale_shift)
            grad_scale, grad_messages = grads[..., :channels], grads[..., channels:]
            needs_messages = grad_squares is not None or grad_min is not None or grad_max is not None
            messages = _messages(hidden, scale_shift, channels) if needs_messages else None
            if grad_squares is not None:
                base = grad_total[part].unsqueeze(axis) if grad_total is not None else messages.new_zeros(())
                torch.addcmul(base, messages, grad_squares[part].unsqueeze(axis), value=2.0, out=grad_messages)
            elif grad_total is not None:
                grad_messages.copy_(grad_total[part].unsqueeze(axis).expand_as(grad_messages))
            else:
                grad_messages.zero_()
            # A float mask: comparing into a boolean tensor, and converting it, is several times slower on CPU.
            hits = torch.empty_like(hidden) if grad_min is not None or grad_max is not None else None
            for extreme_grad, extreme in ((grad_min, minimum), (grad_max, maximum)):
                if extreme_grad is not None:
                    torch.eq(messages, extreme[part].unsqueeze(axis), out=hits)
                    # At least one: a share is never divided by zero, whatever the rounding.
                    share = extreme_grad[part] / hits.sum(axis).clamp_(min=1)
                    grad_messages.addcmul_(hits, share.unsqueeze(axis))
            torch.mul(grad_messages, hidden, out=grad_scale)
            flat_grads = grads.view(-1, 2 * channels)
            flat_edges = edges[part].reshape(-1, edge_channels)
            torch.mm(flat_grads, weight, out=grad_edges[part].view(-1, edge_channels))
            partial = (flat_grads.t() @ flat_edges, flat_grads.sum(0))
            grad_hidden = grad_messages.mul_(scale)
            torch.sum(grad_hidden, 2, out=grad_rows[part])
            torch.sum(grad_hidden, 1, out=grad_cols[part])
            return partial

        chunks = _chunks(num_networks, p * q * 2 * channels)
        if native is None:
            partials = _map_chunks(work, chunks)
        else:
            partials = _map_ranges(
                lambda start, stop, size: native.messages_backward_range(
                    edges, weight, bias, rows, cols, axis, *statistics, grad_edges, grad_rows, grad_cols, start, stop,
                    size,
                ),
                chunks,
            )  # fmt: skip
        grad_weight, grad_bias = (sum(terms) for terms in zip(*partials))
        return grad_edges, grad_weight, grad_bias, grad_rows, grad_cols, None, None, None


def _statistic_outputs(
    edges: Tensor, channels: int, axis: int, moments: bool, extremes: bool, tie_counts: bool = True
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Empty ``[B, R, F]`` statistics for the messages of ``edges`` ``[B, p, q, *]`` reduced along ``axis``: the sum
    and sum of squares (``moments``), the minimum and maximum and, ``[2, B, R, F]``, how many messages reach each
    (``extremes`` and ``tie_counts``), for the compiled forward loop to count as it finds them; empty tensors for
    those not asked for.
    """
    num_networks, p, q = edges.shape[:3]
    reduced = (num_networks, q if axis == 1 else p, channels)
    empty = edges.new_empty(0)
    total, squares = (edges.new_empty(reduced), edges.new_empty(reduced)) if moments else (empty, empty)
    minimum, maximum = (edges.new_empty(reduced), edges.new_empty(reduced)) if extremes else (empty, empty)
    counts = edges.new_empty(2, *reduced) if extremes and tie_counts else edges.new_empty(2, 0)
    return total, squares, minimum, maximum, counts


def _statistic_grads(
    like: Tensor,
    minimum: Tensor,
    maximum: Tensor,
    counts: Tensor,
    grad_total: Tensor | None,
    grad_squares: Tensor | None,
    grad_min: Tensor | None,
    grad_max: Tensor | None,
) -> list[Tensor]:
    """What the compiled backward loops read besides the edges: the extremes, the gradients of the moments and
    each extreme's gradient divided by the number of messages that reach it (empty tensors where none flowed)."""
    empty = like.new_empty(0)
    shares = [
        # Shared by the messages that reach the extreme: at least one, whatever the rounding.
        empty if grad is None else (grad / count.clamp(min=1)).contiguous()
        for grad, count in ((grad_min, counts[0]), (grad_max, counts[1]))
    ]
    moment_grads = [empty if grad is None else grad.contiguous() for grad in (grad_total, grad_squares)]
    return [minimum, maximum, *moment_grads, *shares]


def fused_update_messages(
    edges: Tensor,
    update_weight: Tensor,
    update_rows: Tensor,
    update_cols: Tensor,
    weight: Tensor,
    bias: Tensor,
    rows: Tensor,
    cols: Tensor,
    axis: int,
    moments: bool,
    extremes: bool,
    keep_updated: bool = True,
) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    r"""An edge update and the messages of its result, in one pass over the edges:
    ``updated = fused_edge_update(edges, update_weight, update_rows, update_cols)``, then
    ``fused_messages(updated, weight, bias, rows, cols, axis, moments, extremes)``.

    Returns ``(updated, total, squares, minimum, maximum)``; ``updated`` is ``None`` unless
    ``keep_updated`` (a later round reads it), the statistics ``None`` where not asked for.

    With the compiled loops, each chunk's updated edges are read by FiLM's product while they are
    in cache, and in the backward pass their gradient (from the messages and from later rounds)
    never leaves it: the edge update and the messages of a round share their passes over memory
    (a step 1.05x faster at one thread, 1.12x at two, with the Fourier encoder's chunks moved into
    the compiled code at the same time). Without them, the two kernels run one after the other
    (the same arithmetic).
    """
    if native_kernels_for(edges) is None or edges.size(0) == 0:
        updated = fused_edge_update(edges, update_weight, update_rows, update_cols)
        statistics = fused_messages(updated, weight, bias, rows, cols, axis, moments, extremes)
        return (updated if keep_updated else None, *statistics)
    outputs = _FusedUpdateMessages.apply(
        edges, update_weight, update_rows, update_cols, weight, bias, rows, cols, axis, moments, extremes, keep_updated
    )
    return tuple(output if output.numel() else None for output in outputs)  # type: ignore[return-value]


class _FusedUpdateMessages(torch.autograd.Function):
    """:func:`fused_update_messages` with the compiled loops (CPU float32 and float64 only)."""

    @staticmethod
    def forward(
        ctx: Any,
        edges: Tensor,
        update_weight: Tensor,
        update_rows: Tensor,
        update_cols: Tensor,
        weight: Tensor,
        bias: Tensor,
        rows: Tensor,
        cols: Tensor,
        axis: int,
        moments: bool,
        extremes: bool,
        keep_updated: bool,
    ) -> tuple[Tensor, ...]:
        native = native_kernels_for(edges)
        num_networks, p, q = edges.shape[:3]
        # The updated edges' width, and the messages' (their statistics'), which may differ.
        channels, message_channels = update_weight.size(0), weight.size(0) // 2
        total, squares, minimum, maximum, counts = _statistic_outputs(edges, message_channels, axis, moments, extremes)
        updated = edges.new_empty(num_networks, p, q, channels) if keep_updated else edges.new_empty(0)
        # Kept for the backward pass, with the updated edges where a later round reads them anyway: computing them
        # again (a product and SiLU per chunk) takes longer than reading them back.
        pre = edges.new_empty(num_networks, p, q, channels)
        inputs = [
            tensor.contiguous() for tensor in (edges, update_weight, update_rows, update_cols, weight, bias, rows, cols)
        ]
        statistics = (total, squares, minimum, maximum, counts[0], counts[1])
        _map_ranges(
            lambda start, stop, size: native.update_messages_forward_range(
                *inputs, axis, *statistics, updated, pre, start, stop, size
            ),
            _update_chunks(num_networks, p * q * channels),
        )
        ctx.axis, ctx.native = axis, native
        ctx.save_for_backward(*inputs, minimum, maximum, counts, pre, updated)
        ctx.set_materialize_grads(False)
        return updated, total, squares, minimum, maximum

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any,
        grad_updated: Tensor | None,
        grad_total: Tensor | None,
        grad_squares: Tensor | None,
        grad_min: Tensor | None,
        grad_max: Tensor | None,
    ) -> tuple[Tensor | None, ...]:
        inputs = ctx.saved_tensors[:8]
        minimum, maximum, counts, pre, updated = ctx.saved_tensors[8:]
        edges, update_weight, update_rows, update_cols = inputs[:4]
        rows, cols = inputs[6:]
        statistics = _statistic_grads(edges, minimum, maximum, counts, grad_total, grad_squares, grad_min, grad_max)
        grad_updated = edges.new_empty(0) if grad_updated is None else grad_updated.contiguous()
        grads = [torch.empty_like(tensor) for tensor in (edges, update_rows, update_cols, rows, cols)]
        partials = _map_ranges(
            lambda start, stop, size: ctx.native.update_messages_backward_range(
                *inputs, ctx.axis, *statistics, pre, updated, grad_updated, *grads, start, stop, size
            ),
            _update_chunks(edges.size(0), edges.size(1) * edges.size(2) * update_weight.size(0)),
        )
        grad_update_weight, grad_weight, grad_bias = (sum(terms) for terms in zip(*partials))
        grad_edges, grad_update_rows, grad_update_cols, grad_rows, grad_cols = grads
        return (
            grad_edges, grad_update_weight, grad_update_rows, grad_update_cols, grad_weight, grad_bias, grad_rows,
            grad_cols, None, None, None, None,
        )  # fmt: skip


def _update_chunks(num_networks: int, per_network: int) -> list[slice]:
    """Chunks for :class:`_FusedUpdateMessages` as :func:`fused_messages` takes them (``per_network`` counts one
    number per edge and channel; FiLM's product has two). Its backward pass keeps eight such numbers per edge
    for a chunk, 4 MB in float32; chunks half or four times as large measured no faster."""
    return _chunks(num_networks, 2 * per_network)


class _FusedEdgeUpdate(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, edges: Tensor, weight: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        num_networks, p, q, edge_channels = edges.shape
        channels = weight.size(0)
        pre = edges.new_empty(num_networks, p, q, channels)
        out = torch.empty_like(pre)
        native = native_kernels_for(edges)
        if native is not None:
            rows, cols = rows.contiguous(), cols.contiguous()

        def work(part: slice) -> None:
            if native is not None:
                chunk = pre[part]
                torch.mm(edges[part].reshape(-1, edge_channels), weight.t(), out=chunk.view(-1, channels))
                native.add_endpoints(chunk, rows[part], cols[part])
            else:
                chunk = torch.add(rows[part].unsqueeze(2), cols[part].unsqueeze(1), out=pre[part])
                chunk.view(-1, channels).addmm_(edges[part].reshape(-1, edge_channels), weight.t())
            torch.ops.aten.silu.out(chunk, out=out[part])

        _map_chunks(work, _chunks(num_networks, p * q * channels))
        ctx.save_for_backward(edges, weight, pre)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        edges, weight, pre = ctx.saved_tensors
        num_networks, p, q, edge_channels = edges.shape
        channels = weight.size(0)
        grad_edges = torch.empty_like(edges)
        grad_rows = pre.new_empty(num_networks, p, channels)
        grad_cols = pre.new_empty(num_networks, q, channels)

        native = native_kernels_for(edges)

        def work(part: slice, totals: list[Tensor]) -> None:
            grad_pre = torch.ops.aten.silu_backward(grad_out[part], pre[part])
            if native is not None:
                native.endpoint_sums(grad_pre, grad_rows[part], grad_cols[part])
            else:
                torch.sum(grad_pre, 2, out=grad_rows[part])
                torch.sum(grad_pre, 1, out=grad_cols[part])
            flat = grad_pre.view(-1, channels)
            torch.mm(flat, weight, out=grad_edges[part].view(-1, edge_channels))
            totals[0].addmm_(flat.t(), edges[part].reshape(-1, edge_channels))

        (grad_weight,) = _sum_over_chunks(work, _chunks(num_networks, p * q * channels), weight)
        return grad_edges, grad_weight, grad_rows, grad_cols


def fused_fourier_linear(raw: Tensor, frequencies: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    r"""``[cos(raw Ωᵀ), sin(raw Ωᵀ)] Wᵀ + b``, ``[B, *, F]``: random Fourier features of the raw edge features
    ``raw`` ``[B, *, C]`` (``frequencies`` Ω ``[K, C]``, fixed) and a linear map (``weight`` ``[F, 2K]``, ``bias``
    ``[F]`` or none).

    Over chunks of networks (the first axis), so that the angles and their cosines and sines are read by
    the product while they are in cache; the backward pass computes them again, chunk by chunk, for the
    weight's gradient. ``raw`` and ``frequencies`` get no gradient (the encoder's input and its fixed
    frequencies).
    """
    return _FusedFourierLinear.apply(raw, frequencies, weight, bias)


class _FusedFourierLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, raw: Tensor, frequencies: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        out_features = weight.size(0)
        out = raw.new_empty(*raw.shape[:-1], out_features)
        chunks = _chunks(raw.size(0), _fourier_chunk_size(raw, frequencies))
        native = native_kernels_for(raw)
        if native is not None:
            raw, frequencies, weight = raw.contiguous(), frequencies.contiguous(), weight.contiguous()
            shift = raw.new_empty(0) if bias is None else bias.contiguous()
            _map_ranges(
                lambda start, stop, size: native.fourier_forward_range(
                    raw, frequencies, weight, shift, out, start, stop, size
                ),
                chunks,
            )
        else:
            cosine_weight, sine_weight = weight.split(frequencies.size(0), dim=1)

            def work(part: slice) -> None:
                cosine, sine = _fourier_features(raw[part], frequencies)
                chunk = out[part].view(-1, out_features)
                if bias is None:
                    torch.mm(cosine, cosine_weight.t(), out=chunk)
                else:
                    torch.addmm(bias, cosine, cosine_weight.t(), out=chunk)
                chunk.addmm_(sine, sine_weight.t())

            _map_chunks(work, chunks)
        # The features are recomputed chunk by chunk for the weight's gradient rather than kept: kept, they are
        # the largest tensors of a step (256 numbers per edge), written to and read back from main memory.
        ctx.save_for_backward(raw, frequencies)
        ctx.has_bias, ctx.native = bias is not None, native
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[None, None, Tensor, Tensor | None]:
        raw, frequencies = ctx.saved_tensors
        chunks = _chunks(raw.size(0), _fourier_chunk_size(raw, frequencies))
        if ctx.native is not None:
            grad_out = grad_out.contiguous()
            partials = _map_ranges(
                lambda start, stop, size: ctx.native.fourier_backward_range(
                    raw, frequencies, grad_out, start, stop, size
                ),
                chunks,
            )
            grad_weight = sum(partials, grad_out.new_zeros(grad_out.size(-1), 2 * frequencies.size(0)))
        else:
            cosine_like = grad_out.new_empty(grad_out.size(-1), frequencies.size(0))

            def work(part: slice, totals: list[Tensor]) -> None:
                cosine, sine = _fourier_features(raw[part], frequencies)
                grad = grad_out[part].reshape(-1, grad_out.size(-1))
                totals[0].addmm_(grad.t(), cosine)
                totals[1].addmm_(grad.t(), sine)

            grad_weight = torch.cat(_sum_over_chunks(work, chunks, cosine_like, cosine_like), dim=1)
        grad_bias = grad_out.reshape(-1, grad_out.size(-1)).sum(0) if ctx.has_bias else None
        return None, None, grad_weight, grad_bias


def _fourier_features(raw: Tensor, frequencies: Tensor) -> tuple[Tensor, Tensor]:
    """The cosines and sines ``[rows, K]`` of the angles ``raw Ωᵀ``, in two tensors (written into the halves of
    one, each is a third slower)."""
    angles = raw.reshape(-1, raw.size(-1)) @ frequencies.t()
    return torch.cos(angles), torch.sin(angles)


def _fourier_chunk_size(raw: Tensor, frequencies: Tensor) -> int:
    """The cosines and sines of one network: the chunks' widest temporaries."""
    return 2 * frequencies.size(0) * (raw[:1].numel() // max(raw.size(-1), 1))
