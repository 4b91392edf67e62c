"""Weight-space datasets: image sources, batched INR fitting, sine INRs, checkpoint folders."""

from wsgraph.datasets.checkpoints import convert_checkpoints
from wsgraph.datasets.dataset import WeightSpaceDataset

__all__ = ["WeightSpaceDataset", "convert_checkpoints"]
