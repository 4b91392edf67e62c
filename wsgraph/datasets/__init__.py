"""Weight-space datasets: storage (shards and meta.json), :class:`WeightSpaceDataset`, building a
dataset folder, converting folders of network checkpoints, split files, CNN geometry, transforms,
and the image sets that INRs and model zoos are trained on."""

from wsgraph.datasets.checkpoint_folders import convert_checkpoints
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.images import ImageSet, load_images
from wsgraph.deprecation import moved_attributes

__all__ = [
    "ImageSet",
    "WeightSpaceDataset",
    "convert_checkpoints",
    "load_images",
]

# INR making moved to wsgraph.inrs; these names work from here until the next release.
__getattr__ = moved_attributes(
    __name__,
    {
        "SINE_RECIPE": "wsgraph.inrs.sine_inrs",
        "PixelGrid": "wsgraph.inrs.siren",
        "SirenFit": "wsgraph.inrs.fitting",
        "SirenRecipe": "wsgraph.inrs.siren",
        "dilate": "wsgraph.inrs.dilation",
        "fit_image_inrs": "wsgraph.inrs.image_inrs",
        "fit_sine_inrs": "wsgraph.inrs.sine_inrs",
        "fit_sirens": "wsgraph.inrs.fitting",
        "image_grid_coords": "wsgraph.inrs.render",
        "neuron_values": "wsgraph.inrs.render",
        "render_inr": "wsgraph.inrs.render",
    },
)
