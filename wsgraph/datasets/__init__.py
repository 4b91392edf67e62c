"""Weight-space datasets: image sources, batched INR fitting, sine INRs, checkpoint folders."""

from wsgraph.datasets.checkpoints import convert_checkpoints
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.dilation import dilate
from wsgraph.datasets.fitting import SirenFit, fit_sirens
from wsgraph.datasets.image_inrs import fit_image_inrs
from wsgraph.datasets.images import ImageSet, load_images
from wsgraph.datasets.render import image_grid_coords, neuron_values, render_inr
from wsgraph.datasets.sine import SINE_RECIPE, fit_sine_inrs
from wsgraph.datasets.siren import PixelGrid, SirenRecipe

__all__ = [
    "SINE_RECIPE",
    "ImageSet",
    "PixelGrid",
    "SirenFit",
    "SirenRecipe",
    "WeightSpaceDataset",
    "convert_checkpoints",
    "dilate",
    "fit_image_inrs",
    "fit_sine_inrs",
    "fit_sirens",
    "image_grid_coords",
    "load_images",
    "neuron_values",
    "render_inr",
]
