"""The images a zoo trains and tests its members on, from wsgraph's image sources."""

from __future__ import annotations

import os

from wsgraph.datasets.images import load_images, to_intensities
from wsgraph.datasets.store import SPLITS
from wsgraph.zoo.training import ZooData


def load_zoo_data(
    source: str, root: str | os.PathLike | None = None, test_size: int | None = None
) -> tuple[ZooData, tuple[int, int, int], int]:
    """The training pool (the source's train split) and test images (its test split, the first
    ``test_size`` of them), as ``[N, C, H, W]`` floats in [0, 1].

    The source's validation images (carved from its training set with the standard seed)
    are left out of the pool. Returns the data, the image shape ``(H, W, C)`` and the
    number of classes.
    """
    images = load_images(source, root, seed=0)
    pixels = to_intensities(images.images).permute(0, 3, 1, 2).contiguous()
    train = images.split == SPLITS.index("train")
    test = (images.split == SPLITS.index("test")).nonzero().view(-1)
    if test_size is not None:
        test = test[:test_size]
    if int(train.sum()) == 0 or test.numel() == 0:
        raise ValueError(f"{source}: needs training and test images, got {int(train.sum())} and {test.numel()}")
    data = ZooData(pixels[train], images.labels[train], pixels[test], images.labels[test])
    height, width = pixels.shape[2:]
    return data, (int(height), int(width), int(pixels.size(1))), len(images.class_names)
