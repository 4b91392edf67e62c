"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digit_inrs(tmp_path_factory) -> Path:
    """The demo's data on a smaller scale, fitted once per session: one SIREN per 8x8 digit
    (300 train, 179 val, 300 test), shared initialisation, hidden neurons shuffled afterwards."""
    from wsgraph.datasets import load_images
    from wsgraph.inrs import fit_image_inrs
    from wsgraph.inrs.siren import SirenRecipe, psnr_to_mse

    root = tmp_path_factory.mktemp("digit_inrs") / "inrs"
    images = load_images("digits", seed=0).head_per_split(300)
    recipe = SirenRecipe(early_stop_loss=psnr_to_mse(40.0))
    fit_image_inrs(images, root, recipe, progress=False, shared_init=True, permute_hidden=True)
    return root
