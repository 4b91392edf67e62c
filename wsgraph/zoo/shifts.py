"""Domain shifts of image sets: the target domains that zoo members are adapted to."""

from __future__ import annotations

import torch
from torch import Tensor

DOMAIN_SHIFTS = ("invert", "rotate90", "rotate180")


def shift_images(images: Tensor, shift: str) -> Tensor:
    """``images`` (``[N, C, H, W]``, intensities in [0, 1]) seen in the shifted domain.

    ``invert`` maps every intensity ``v`` to ``1 - v``; ``rotate90`` and ``rotate180``
    turn every image counter-clockwise by that angle (square images only for 90).
    """
    if shift not in DOMAIN_SHIFTS:
        raise ValueError(f"unknown domain shift {shift!r}; choose from {', '.join(DOMAIN_SHIFTS)}")
    if images.dim() != 4:
        raise ValueError(f"expected images of shape [N, C, H, W], got {tuple(images.shape)}")
    if shift == "invert":
        return 1.0 - images
    if shift == "rotate90" and images.size(2) != images.size(3):
        raise ValueError(f"rotate90 needs square images, got {images.size(2)}x{images.size(3)}")
    return torch.rot90(images, k=1 if shift == "rotate90" else 2, dims=(2, 3)).contiguous()
