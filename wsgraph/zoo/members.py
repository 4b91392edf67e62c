"""The zoo's member architectures: the saved ``nn.Sequential`` and the batched forward of many members.

``cnn`` is the Small CNN Zoo network of Unterthiner et al. (2020): three 3x3
convolutions of ``width`` channels with stride 2, global average pooling and a linear
layer to the classes (``Conv2d, act, Conv2d, act, Conv2d, act, AdaptiveAvgPool2d(1),
Flatten, Linear``; 4,970 parameters for 16 channels on grey images and 10 classes).
The convolutions pad by one pixel, so any image of at least 5x5 pixels works (28x28 ->
14 -> 7 -> 4; the embedded 8x8 digits -> 4 -> 2 -> 1). ``mlp`` is ``Flatten, Linear,
act, Linear, act, Linear`` with two hidden layers of ``width`` neurons (784-32-32-10 on
MNIST), the networks wsgraph's graph machinery reads directly.

Many members of one architecture and activation run as one tensor program: parameters
are stacked along a leading member axis, the convolutions of all members are one
grouped convolution (``groups`` = members, each member's images in its own channel
block), and the linear layers one batched matrix product. Dropout (train mode only) acts
on the input of every layer after the first: per channel before a convolution, per
element before a linear layer; it is the identity at evaluation, so the saved
``nn.Sequential`` has no dropout modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional

from wsgraph.core.activations import make_activation

ARCHITECTURES = ("cnn", "mlp")
DEFAULT_WIDTH = {"cnn": 16, "mlp": 32}
# Channels or hidden neurons: a zoo trains many members at once, each far smaller than this.
MOST_WIDTH = 4_096
KERNEL, STRIDE, PADDING = 3, 2, 1


@dataclass(frozen=True)
class MemberArchitecture:
    """Which network every member of a zoo is.

    Attributes:
        arch: ``"cnn"`` or ``"mlp"``.
        image_shape: ``(H, W, C)`` of the inputs.
        num_classes: outputs of the last layer.
        width: channels of each convolution, or neurons of each hidden layer.
    """

    arch: str
    image_shape: tuple[int, int, int]
    num_classes: int
    width: int

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"--arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        if not 1 <= self.width <= MOST_WIDTH:
            raise ValueError(f"--width must be in 1..{MOST_WIDTH:,}, got {self.width}")
        if self.arch == "cnn" and min(self.image_shape[:2]) < 5:
            raise ValueError(
                f"the cnn needs images of at least 5x5 pixels, got {self.image_shape[0]}x{self.image_shape[1]}"
            )

    @property
    def in_features(self) -> int:
        height, width, channels = self.image_shape
        return height * width * channels

    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{state_dict key: shape}`` of one member, in the order of the layers."""
        channels, width, classes = self.image_shape[2], self.width, self.num_classes
        if self.arch == "cnn":
            shapes = {}
            for position, fan_in in zip((0, 2, 4), (channels, width, width)):
                shapes[f"{position}.weight"] = (width, fan_in, KERNEL, KERNEL)
                shapes[f"{position}.bias"] = (width,)
            shapes["8.weight"], shapes["8.bias"] = (classes, width), (classes,)
            return shapes
        widths = (self.in_features, width, width, classes)
        shapes = {}
        for layer, position in enumerate((1, 3, 5)):
            shapes[f"{position}.weight"] = (widths[layer + 1], widths[layer])
            shapes[f"{position}.bias"] = (widths[layer + 1],)
        return shapes

    @property
    def num_parameters(self) -> int:
        return sum(math.prod(shape) for shape in self.layer_shapes().values())

    def build(self, activation: str) -> nn.Sequential:
        """One member as the ``nn.Sequential`` its state_dict belongs to."""
        channels, width, classes = self.image_shape[2], self.width, self.num_classes
        if self.arch == "cnn":
            return nn.Sequential(
                nn.Conv2d(channels, width, KERNEL, STRIDE, PADDING),
                make_activation(activation),
                nn.Conv2d(width, width, KERNEL, STRIDE, PADDING),
                make_activation(activation),
                nn.Conv2d(width, width, KERNEL, STRIDE, PADDING),
                make_activation(activation),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(width, classes),
            )
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.in_features, width),
            make_activation(activation),
            nn.Linear(width, width),
            make_activation(activation),
            nn.Linear(width, classes),
        )

    def to_dict(self) -> dict:
        return {
            "arch": self.arch,
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "width": self.width,
        }


def images_to_inputs(images: Tensor) -> Tensor:
    """``[..., H, W]`` or ``[..., H, W, C]`` images (uint8 or [0, 1] floats) -> ``[..., C, H, W]`` float32 in [0, 1]."""
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    else:
        images = images.float()
    if images.dim() >= 4 and images.size(-1) in (1, 3) and images.size(-3) not in (1, 3):
        return images.movedim(-1, -3)
    return images.unsqueeze(-3)


def batched_forward(
    architecture: MemberArchitecture,
    params: dict[str, Tensor],
    inputs: Tensor,
    activation: str,
    dropout_masks: list[Tensor] | None = None,
) -> Tensor:
    """The logits of ``B`` members, each on its own images.

    Args:
        architecture: what the members are.
        params: ``{state_dict key: [B, *shape]}``.
        inputs: ``[B, N, C, H, W]`` float images (each member its own ``N``), or
            ``[N, C, H, W]`` shared by all members.
        activation: the members' hidden activation.
        dropout_masks: for training, one ``[B, N, width]`` scaled keep-mask per layer
            after the first (see :func:`dropout_masks`); ``None`` at evaluation.

    Returns:
        ``[B, N, classes]``.
    """
    act = make_activation(activation)
    members = next(iter(params.values())).size(0)
    shared = inputs.dim() == 4
    if architecture.arch == "cnn":
        count = inputs.size(0 if shared else 1)
        # [B, N, C, H, W] -> [N, B * C, H, W]: member b's images are channel block b. Images shared
        # by all members stay [N, C, H, W], and the first convolution is one ungrouped one.
        hidden = inputs if shared else inputs.transpose(0, 1).reshape(count, -1, *inputs.shape[-2:])
        for layer, position in enumerate((0, 2, 4)):
            weight, bias = params[f"{position}.weight"], params[f"{position}.bias"]
            if layer > 0 and dropout_masks is not None:
                mask = dropout_masks[layer - 1].transpose(0, 1).reshape(count, -1, 1, 1)
                hidden = hidden * mask
            groups = 1 if layer == 0 and shared else members
            hidden = functional.conv2d(
                hidden, weight.reshape(-1, *weight.shape[2:]), bias.reshape(-1), STRIDE, PADDING, groups=groups
            )
            hidden = act(hidden)
        pooled = hidden.mean(dim=(2, 3)).view(count, members, -1).transpose(0, 1)  # [B, N, width]
        if dropout_masks is not None:
            pooled = pooled * dropout_masks[2]
        return torch.baddbmm(params["8.bias"].unsqueeze(1), pooled, params["8.weight"].transpose(1, 2))
    if shared:
        inputs = inputs.unsqueeze(0).expand(members, *inputs.shape)
    count = inputs.size(1)
    hidden = inputs.reshape(members, count, -1)
    for layer, position in enumerate((1, 3, 5)):
        if layer > 0:
            hidden = act(hidden)
            if dropout_masks is not None:
                hidden = hidden * dropout_masks[layer - 1]
        weight, bias = params[f"{position}.weight"], params[f"{position}.bias"]
        hidden = torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))
    return hidden


# -- counter-based random numbers ------------------------------------------------------
# Every random choice of a member (its training subset, the order of each epoch, its
# dropout masks) is a hash of the member's key and the choice's coordinates, computed for
# all members at once; so a member's training is the same in any batch, alone or resumed.

_MASK32 = 0xFFFFFFFF


def hash32(values: Tensor) -> Tensor:
    """A well-mixed 32-bit hash of int64 values (the low 32 bits are used), as int64 in [0, 2**32)."""
    x = values & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    return (x >> 16) ^ x


def mix(*parts: Tensor | int) -> Tensor:
    """Hash a sequence of int64 tensors / ints (broadcast together) into one 32-bit stream."""
    state: Tensor | None = None
    for part in parts:
        part = torch.as_tensor(part, dtype=torch.long)
        state = hash32(part) if state is None else hash32(state * 0x2545F491 + hash32(part))
    assert state is not None
    return state


def uniform_from_hash(hashed: Tensor) -> Tensor:
    """32-bit hashes -> float32 uniforms in [0, 1)."""
    return (hashed >> 8).float() * (1.0 / 2**24)


def dropout_masks(architecture: MemberArchitecture, keys: Tensor, rates: Tensor, step: int, count: int) -> list[Tensor]:
    """The scaled keep-masks of one training step: one ``[B, count, width]`` per layer after the first.

    Args:
        architecture: the members' architecture.
        keys: ``[B]`` the members' keys.
        rates: ``[B]`` their dropout probabilities.
        step: the training step (0-based).
        count: images per member in the step.
    """
    width = architecture.width
    position = torch.arange(count * width, dtype=torch.long).view(1, count, width)
    keep = (1.0 - rates).view(-1, 1, 1)
    masks = []
    for layer in range(3 if architecture.arch == "cnn" else 2):
        draws = uniform_from_hash(mix(keys.view(-1, 1, 1), 0xD0, step, layer, position))
        masks.append((draws < keep).float() / keep)
    return masks
