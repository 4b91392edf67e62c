"""Making INR datasets: the SIREN recipe, batched fitting, image and sine INRs, rendering
(evaluating the networks a batch of graphs describes) and dilation.

Fitted INRs are written with :mod:`wsgraph.datasets`' storage and read back as a
:class:`~wsgraph.datasets.WeightSpaceDataset`.
"""

from wsgraph.inrs.dilation import dilate
from wsgraph.inrs.fitting import SirenFit, fit_sirens
from wsgraph.inrs.image_inrs import fit_image_inrs
from wsgraph.inrs.render import image_grid_coords, neuron_values, render_inr
from wsgraph.inrs.sine_inrs import SINE_RECIPE, fit_sine_inrs
from wsgraph.inrs.siren import PixelGrid, SirenRecipe

__all__ = [
    "SINE_RECIPE",
    "PixelGrid",
    "SirenFit",
    "SirenRecipe",
    "dilate",
    "fit_image_inrs",
    "fit_sine_inrs",
    "fit_sirens",
    "image_grid_coords",
    "neuron_values",
    "render_inr",
]
