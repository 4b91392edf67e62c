r"""SIRENs as stacked tensors: the published INR recipe, a per-network initialisation and evaluation.

A SIREN (Sitzmann et al., "Implicit Neural Representations with Periodic Activation
Functions", NeurIPS 2020) with widths :math:`d_0, \dots, d_M` computes

.. math::
    h_0 = x, \qquad h_l = \sin\big(\omega_0 (W_l h_{l-1} + b_l)\big) \ (1 \le l < M),
    \qquad f(x) = W_M h_{M-1} + b_M + \text{offset}.

The DWSNets INR sets (Navon et al., ICML 2023) were made with the ``INR`` class of the
authors' released code (``nn/inr.py``), ``INR(in_dim=2, n_layers=3, up_scale=16)``, as
the authors confirmed in their repository's issues #6 and #7: widths 2-32-32-1,
:math:`\omega_0 = 30` on every sine layer, an output offset of +0.5 added after the last
linear layer (so the network itself fits ``image - 0.5`` for intensities in [0, 1]),
Adam with learning rate 5e-4 on the MSE for at most 1,000 steps, stopping once the INR
reaches 40 dB PSNR. Two initialisation schemes are offered:

* ``init="dwsnets"`` (the default), the released class exactly. Its ``Siren`` layers are
  all built without ``is_first``, so the first sine layer is initialised like the others:

  - every sine layer: :math:`W \sim U(-\sqrt{6/d_{l-1}}/\omega_0, \sqrt{6/d_{l-1}}/\omega_0)`
    (:math:`\pm 0.0577` for :math:`d_0 = 2`), :math:`b = 0`;
  - last (linear) layer: PyTorch's ``nn.Linear`` default,
    :math:`W, b \sim U(-1/\sqrt{d_{M-1}}, 1/\sqrt{d_{M-1}})`.

  The DWSNets paper's prose cites the SIREN initialisation; the released code, which
  made the published data, does not use SIREN's first-layer rule. wsgraph follows the code.
* ``init="siren"``: the SIREN paper's first-layer rule, :math:`W \sim U(-1/d_0, 1/d_0)`,
  and otherwise as above (zero sine biases, default last layer). This is what wsgraph
  used before it matched the released class; with it the first layer is a bank of
  random high-frequency features that training hardly moves (first-layer weight std
  about 0.29 on MNIST against 0.063 in the published set).

The weights stored are the plain ``nn.Linear`` ones (:math:`\omega_0` is not folded in),
so the graph of a fitted SIREN has the activation ``"sine(30.0)"`` and
``wsgraph.graph_to_mlp`` rebuilds it; the offset is recorded with the dataset.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from wsgraph.core.activations import sine_name
from wsgraph.core.spec import WeightSpaceSpec

INIT_SCHEMES = ("dwsnets", "siren")


@dataclass(frozen=True)
class SirenRecipe:
    """Every setting that makes a set of fitted SIRENs, recorded with the data.

    Args:
        widths: layer widths ``d_0..d_M`` (at least one sine layer: ``M >= 2``).
        omega_0: the frequency of every sine layer.
        output_offset: added to the network's output (DWSNets: +0.5).
        steps: Adam steps on the full set of sample points.
        lr: Adam learning rate.
        betas: Adam's moment decay rates.
        eps: Adam's epsilon.
        weight_decay: L2 penalty added to the gradient, as ``torch.optim.Adam`` does.
        early_stop_loss: stop a network after the first step whose loss (the MSE of
            that step's forward pass) is at most this, as the DWSNets INR trainer does;
            its parameters no longer change; ``None``: never. For images in
            [0, 1], :func:`psnr_to_mse` turns a PSNR target into this threshold (40 dB:
            1e-4).
        init: the initialisation scheme (see the module docstring).
    """

    widths: tuple[int, ...] = (2, 32, 32, 1)
    omega_0: float = 30.0
    output_offset: float = 0.5
    steps: int = 1000
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    early_stop_loss: float | None = None
    init: str = "dwsnets"

    def __post_init__(self) -> None:
        spec = WeightSpaceSpec(tuple(self.widths))
        object.__setattr__(self, "widths", spec.widths)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if spec.num_weight_layers < 2:
            raise ValueError(
                f"a SIREN needs at least one sine layer (widths {spec}); got {spec.num_weight_layers} layer"
            )
        if self.steps < 0:
            raise ValueError(f"steps must be non-negative, got {self.steps}")
        for name in ("omega_0", "lr", "eps"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a non-negative number, got {self.weight_decay}")
        if self.early_stop_loss is not None and not self.early_stop_loss > 0:
            raise ValueError(f"early_stop_loss must be positive (or None), got {self.early_stop_loss}")
        if not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        if self.init not in INIT_SCHEMES:
            raise ValueError(f"unknown init {self.init!r}; known: {', '.join(INIT_SCHEMES)}")

    @property
    def spec(self) -> WeightSpaceSpec:
        return WeightSpaceSpec(self.widths)

    @property
    def activation(self) -> str:
        """The hidden activation's name, as graphs record it, e.g. ``"sine(30.0)"``."""
        return sine_name(self.omega_0)

    def to_dict(self) -> dict:
        """A JSON-ready record of the recipe."""
        record = asdict(self)
        record["widths"] = list(self.widths)
        record["betas"] = list(self.betas)
        record["activation"] = self.activation
        record["optimizer"] = "adam"
        return record


@dataclass(frozen=True)
class PixelGrid:
    """The coordinates of an ``height x width`` pixel grid in :math:`[-1, 1]^2`.

    Pixel ``(r, c)`` (row-major order) sits at ``(x, y) = (lin_w[c], lin_h[r])`` with
    ``lin_n = linspace(-1, 1, n)``: the first coordinate runs along a row, as in the
    DWSNets code (``make_coordinates``, ``np.meshgrid`` with its default ``xy`` indexing).
    """

    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"a pixel grid needs positive sides, got {self.height}x{self.width}")

    @property
    def num_points(self) -> int:
        return self.height * self.width

    def axes(self, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """``(x [W], y [H])``: the coordinates of the columns and of the rows (float32).

        Computed in float64 and rounded, as ``np.linspace`` followed by a cast to float32 does.
        """
        return tuple(
            torch.linspace(-1.0, 1.0, size, dtype=torch.float64, device=device).to(torch.float32)
            for size in (self.width, self.height)
        )

    def coords(self, device: torch.device | str | None = None) -> Tensor:
        """``[H * W, 2]`` coordinates, row-major."""
        x, y = self.axes(device)
        rows, cols = torch.meshgrid(y, x, indexing="ij")
        return torch.stack([cols.reshape(-1), rows.reshape(-1)], dim=1)


def init_bounds(recipe: SirenRecipe) -> list[tuple[float, float]]:
    """Per layer, the half-widths of the uniform initialisation of the weight and the bias."""
    widths, bounds = recipe.widths, []
    for layer in range(1, len(widths)):
        fan_in = widths[layer - 1]
        if layer == len(widths) - 1:
            bounds.append((1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in)))
        elif layer == 1 and recipe.init == "siren":
            bounds.append((1.0 / fan_in, 0.0))
        else:
            bounds.append((math.sqrt(6.0 / fan_in) / recipe.omega_0, 0.0))
    return bounds


def siren_init(recipe: SirenRecipe, keys: Tensor, seed: int, device: torch.device | str | None = None) -> list[Tensor]:
    """Initial parameters of one SIREN per key, each drawn from its own random stream.

    Network ``n``'s numbers depend only on ``(seed, keys[n])``, never on which other
    networks share the batch or on the device, so a network is initialised alike
    whatever shard, batch size or machine fits it.

    Args:
        recipe: widths, :math:`\\omega_0` and init scheme.
        keys: ``[B]`` integers naming the networks (e.g. an image's number).
        seed: the dataset's seed.

    Returns:
        Per layer the augmented matrix ``[B, d_l, d_{l-1} + 1]``: the ``nn.Linear``
        weight with the bias as its last column, float32.
    """
    keys = keys.to(device=device, dtype=torch.long)
    shapes = [(recipe.widths[layer], recipe.widths[layer - 1] + 1) for layer in range(1, len(recipe.widths))]
    uniform = counter_uniform(seed, keys, sum(rows * cols for rows, cols in shapes))
    params, start = [], 0
    for (rows, cols), (weight_bound, bias_bound) in zip(shapes, init_bounds(recipe)):
        block = uniform[:, start : start + rows * cols].view(-1, rows, cols) * 2.0 - 1.0
        start += rows * cols
        scale = torch.full((cols,), weight_bound, device=keys.device)
        scale[-1] = bias_bound
        params.append((block * scale).contiguous())
    return params


def split_augmented(params: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """``[B, d_l, d_{l-1} + 1]`` matrices -> ``nn.Linear`` weights ``[B, d_l, d_{l-1}]`` and biases ``[B, d_l]``."""
    return [p[..., :-1].contiguous() for p in params], [p[..., -1].contiguous() for p in params]


def siren_forward(weights: list[Tensor], biases: list[Tensor], coords: Tensor, omega_0: float) -> Tensor:
    """Evaluate ``B`` stacked SIRENs (without the output offset), differentiably.

    Args:
        weights: per layer ``[B, d_l, d_{l-1}]`` (``nn.Linear`` convention).
        biases: per layer ``[B, d_l]``.
        coords: ``[P, d_0]`` shared points, or ``[B, P, d_0]``.

    Returns:
        ``[B, P, d_M]``.
    """
    hidden = coords
    for layer, (weight, bias) in enumerate(zip(weights, biases), start=1):
        hidden = torch.matmul(hidden, weight.transpose(-1, -2)) + bias.unsqueeze(-2)
        if layer < len(weights):
            hidden = torch.sin(omega_0 * hidden)
    return hidden


def psnr(mse: Tensor, peak: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB, :math:`10 \\log_{10}(\\text{peak}^2 / \\text{MSE})` (``inf`` for an exact fit)."""
    return 10.0 * torch.log10(peak**2 / mse)


def psnr_to_mse(decibels: float, peak: float = 1.0) -> float:
    """The MSE at which a signal of the given peak reaches ``decibels`` PSNR (40 dB, peak 1: 1e-4)."""
    if not math.isfinite(decibels):
        raise ValueError(f"a PSNR target must be a finite number of dB, got {decibels}")
    return peak**2 * 10.0 ** (-decibels / 10.0)


# splitmix64 (Steele, Lea and Flood, 2014) on int64 tensors: multiplication wraps, and
# right shifts are made logical with a mask.
_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _shift_right(x: Tensor, bits: int) -> Tensor:
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix(x: Tensor) -> Tensor:
    x = (x ^ _shift_right(x, 30)) * _MIX1
    x = (x ^ _shift_right(x, 27)) * _MIX2
    return x ^ _shift_right(x, 31)


def counter_uniform(seed: int, keys: Tensor, count: int) -> Tensor:
    """``[len(keys), count]`` float32 numbers in [0, 1), a pure function of ``(seed, key, position)``.

    Counter-based (splitmix64), so the same on every device and for every batching.
    """
    stream = _mix(keys.long() + _signed(int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019))
    counters = torch.arange(1, count + 1, device=keys.device, dtype=torch.long) * _GOLDEN
    bits = _shift_right(_mix(stream.unsqueeze(1) + counters), 40)
    return bits.to(torch.float32) * (1.0 / (1 << 24))
