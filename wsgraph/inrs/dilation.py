"""Dilation targets for INR editing (NFN's benchmark: make an INR show its image dilated).

Zhou et al., "Permutation Equivariant Neural Functionals" (NeurIPS 2023), edit MNIST
INRs so that they render the image dilated by ``cv2.dilate(image, np.ones((3, 3),
np.uint8), iterations=1)`` (their ``experiments/stylize_siren.py``): the grey dilation
with a 3x3 square of ones, where pixels outside the image do not count. That is what
:func:`dilate` computes, and what ``scipy.ndimage.grey_dilation(image, size=(3, 3))``
computes too (its ``reflect`` border only repeats pixels already in the window).

NFN maps its targets to [-1, 1] (``Normalize(0.5, 0.5)``). The Neural Graphs code
(``experiments/style_editing``, the source of NG-T's published dilation MSE) edits
DWSNets' MNIST INRs instead, with targets in [0, 1] (its ``Normalize`` is commented out).
wsgraph keeps the INR targets' own range, [0, 1], as they do, and records it; MSEs on
[-1, 1] are 4 times these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def dilate(images: Tensor, size: int = 3) -> Tensor:
    """Grey dilation of each image with a ``size x size`` square of ones, one iteration.

    Args:
        images: ``[n, H, W]`` or ``[n, H, W, C]`` (each channel dilated on its own),
            any real or ``uint8`` dtype.
        size: the odd side of the square.

    Returns:
        The dilated images, same shape and dtype.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"the dilation square needs an odd side, got {size}")
    if images.dim() not in (3, 4):
        raise ValueError(f"images have shape {tuple(images.shape)}, expected [n, H, W] or [n, H, W, C]")
    channels_last = images if images.dim() == 4 else images.unsqueeze(-1)
    # float32 holds uint8 values exactly, and max_pool2d pads with -inf: the border adds nothing.
    planes = channels_last.permute(0, 3, 1, 2).to(torch.float32)
    dilated = F.max_pool2d(planes, kernel_size=size, stride=1, padding=size // 2)
    dilated = dilated.permute(0, 2, 3, 1).to(images.dtype)
    return dilated if images.dim() == 4 else dilated.squeeze(-1)
