"""Helpers shared by the tests: small random MLPs and their parameters."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


def build_mlp(
    widths: Sequence[int],
    bias: bool | Sequence[bool] = True,
    activation: Callable[[], nn.Module] = nn.ReLU,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> nn.Sequential:
    """``nn.Sequential`` of ``Linear`` layers of ``widths`` with ``activation`` between them."""
    torch.manual_seed(seed)
    flags = [bias] * (len(widths) - 1) if isinstance(bias, bool) else list(bias)
    layers: list[nn.Module] = []
    for position, (d_in, d_out, flag) in enumerate(zip(widths[:-1], widths[1:], flags, strict=True)):
        layers.append(nn.Linear(d_in, d_out, bias=flag, dtype=dtype))
        if position < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def linear_params(module: nn.Module) -> list[tuple[Tensor, Tensor | None]]:
    """``(weight, bias)`` of every ``nn.Linear`` of ``module`` in registration order (``bias`` may be ``None``)."""
    return [
        (layer.weight.detach(), None if layer.bias is None else layer.bias.detach())
        for layer in module.modules()
        if isinstance(layer, nn.Linear)
    ]


def assert_params_equal(actual: Sequence, expected: Sequence) -> None:
    """Bit-exact equality of two lists of ``(weight, bias)`` pairs, ``None`` biases included."""
    assert len(actual) == len(expected)
    for layer, ((weight, bias), (expected_weight, expected_bias)) in enumerate(zip(actual, expected), start=1):
        assert torch.equal(weight, expected_weight), f"weight of layer {layer} differs"
        if expected_bias is None:
            assert bias is None, f"layer {layer} should have no bias"
        else:
            assert bias is not None and torch.equal(bias, expected_bias), f"bias of layer {layer} differs"


class OutputOffsetMLP(nn.Module):
    """A 2-4-1 network whose forward adds ``shift`` to its last layer's output, as DWSNets' INR class adds 0.5.

    It lives here, not in a test file, so that a pickled instance can be loaded back from any test.
    """

    def __init__(self, shift: float = 0.5, activation: str = "tanh") -> None:
        super().__init__()
        self.first, self.last = nn.Linear(2, 4), nn.Linear(4, 1)
        self.shift, self.activation = shift, activation

    def forward(self, x: Tensor) -> Tensor:
        return self.last(getattr(torch, self.activation)(self.first(x))) + self.shift
