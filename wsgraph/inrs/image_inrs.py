"""Image INR datasets: one SIREN per image, fitted in batches and written as shards.

Each shard holds the stacked SIRENs of consecutive images with their labels, splits,
image numbers, per-network PSNR (``extras["psnr"]``) and Adam steps taken
(``extras["steps"]``), optionally the dilated
images for the editing task (``extras["dilated"]``). ``meta.json`` records the recipe,
the source, the classes and the coordinate convention; ``summary.json`` the PSNR and
steps per split and the per-layer mean and std of the training networks; ``reconstructions.png`` shows images next to their INRs, rendered from the graphs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsgraph.core import permute
from wsgraph.core.convert_mlp import mlp_to_graph, stacked_params
from wsgraph.datasets.build import format_layer_statistics, format_statistics, summarize_fit, write_shards
from wsgraph.datasets.images import ImageSet, to_intensities
from wsgraph.datasets.store import SPLITS, Shard, read_meta, read_shard, shard_paths
from wsgraph.inrs.dilation import dilate
from wsgraph.inrs.fitting import fit_sirens
from wsgraph.inrs.render import image_grid_coords, render_inr
from wsgraph.inrs.siren import PixelGrid, SirenRecipe, psnr
from wsgraph.io import save_figure
from wsgraph.runtime import resolve_device, strided_seed

PREVIEW_FILE = "reconstructions.png"
INTENSITY_RANGE = (0.0, 1.0)
# Keys of official test images are offset so that they never meet those of train/val images.
TEST_KEY_OFFSET = 1 << 40


def image_keys(images: ImageSet) -> Tensor:
    """The key of each image's SIREN: its number within its official split, test images offset."""
    return images.index + TEST_KEY_OFFSET * (images.split == SPLITS.index("test")).long()


def fit_image_inrs(
    images: ImageSet,
    root: str | os.PathLike,
    recipe: SirenRecipe | None = None,
    *,
    seed: int = 0,
    shard_size: int = 2048,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    dilated: bool = False,
    limit_per_split: int | None = None,
    progress: bool = True,
    shared_init: bool = False,
    permute_hidden: bool = False,
) -> dict[str, Any]:
    """Fit one SIREN per image and write the dataset to ``root`` (resumable).

    Args:
        images: the images (see :func:`~wsgraph.datasets.images.load_images`).
        root: the dataset folder.
        recipe: the SIREN recipe; by default DWSNets' with one output per channel.
        seed: the dataset's seed (with each image's key, it fixes the initialisation).
        shard_size: networks per shard.
        batch_size: networks fitted at once (default: per device).
        device: where to fit (default: CUDA when available).
        dilated: also store the 3x3-dilated images (``extras["dilated"]``, float16).
        limit_per_split: the number of images per split the set was cut to, for the record.
        progress: show a progress bar.
        shared_init: start every SIREN from the same initialisation (the published
            recipe draws one per image). With few images this leaves the weights far more
            informative; see ``permute_hidden``.
        permute_hidden: after fitting, shuffle each network's hidden neurons at random
            (seeded by ``seed`` and the shard). The functions are unchanged; networks
            fitted from a shared initialisation then differ by the symmetry that
            equivariant models ignore and flat models must learn.

    Returns:
        The summary: PSNR statistics per split and the files written.
    """
    recipe = recipe or SirenRecipe(widths=(2, 32, 32, images.channels))
    if recipe.widths[0] != 2 or recipe.widths[-1] != images.channels:
        raise ValueError(f"an image SIREN maps 2 coordinates to {images.channels} channel(s); got widths {recipe.spec}")
    if len(images) == 0:
        raise ValueError("no images to fit")
    device = resolve_device(device)
    height, width = images.image_shape
    grid = PixelGrid(height, width)
    keys = torch.zeros_like(images.index) if shared_init else image_keys(images)
    meta = _meta(images, recipe, seed, shard_size, dilated, limit_per_split, shared_init, permute_hidden)

    def make_shard(start: int, stop: int, advance: Callable[[int], None]) -> Shard:
        pixels = to_intensities(images.images[start:stop])
        fit = fit_sirens(
            pixels.reshape(stop - start, height * width, images.channels),
            grid,
            recipe,
            keys[start:stop],
            seed,
            batch_size=batch_size,
            device=device,
            on_batch=advance,
        )
        extras = {
            "psnr": psnr(fit.mse, peak=INTENSITY_RANGE[1] - INTENSITY_RANGE[0]).float(),
            "steps": fit.steps.to(torch.int32),
        }
        if dilated:
            extras["dilated"] = dilate(pixels if images.channels == 3 else pixels.squeeze(-1)).half()
        weights, biases = fit.weights, fit.biases
        if permute_hidden:
            weights, biases = _shuffle_hidden_neurons(weights, biases, seed, start)
        return Shard(
            weights,
            biases,
            images.labels[start:stop],
            images.split[start:stop],
            images.index[start:stop],
            extras,
        )

    write_shards(root, meta, images.split, shard_size, make_shard, progress)
    return finish_image_dataset(root, images, device_name=str(device))


def finish_image_dataset(root: str | os.PathLike, images: ImageSet, device_name: str = "") -> dict[str, Any]:
    """PSNR summary (``summary.json``, also added to ``meta.json``) and the reconstruction grid."""
    return summarize_fit(root, "psnr", "psnr_db", save_reconstructions(root, images), device_name, more=("steps",))


def save_reconstructions(root: str | os.PathLike, images: ImageSet, count: int = 10) -> Path:
    """``reconstructions.png``: the first images of the first shard over their INRs, rendered from the graphs."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    meta = read_meta(root)
    shard = read_shard(shard_paths(root)[0])
    count = min(count, len(shard))
    graphs = mlp_to_graph(
        [(w[:count], b[:count]) for w, b in zip(shard.weights, shard.biases)], activation=meta["activation"]
    )
    height, width = images.image_shape
    with torch.no_grad():
        rendered = render_inr(graphs, image_grid_coords(height, width), meta["recipe"]["output_offset"])
    rendered = rendered.reshape(count, height, width, -1).clamp(0, 1)
    lookup = {(int(s), int(i)): n for n, (s, i) in enumerate(zip(images.split, images.index))}
    originals = to_intensities(
        images.images[[lookup[(int(s), int(i))] for s, i in zip(shard.split[:count], shard.index[:count])]]
    )
    figure, axes = plt.subplots(2, count, figsize=(1.2 * count, 2.6), squeeze=False)
    for column in range(count):
        for row, picture in enumerate((originals[column], rendered[column])):
            axis = axes[row][column]
            axis.imshow(
                picture.squeeze(-1).numpy() if picture.size(-1) == 1 else picture.numpy(), cmap="gray", vmin=0, vmax=1
            )
            axis.set_xticks([])
            axis.set_yticks([])
        axes[1][column].set_xlabel(f"{shard.extras['psnr'][column]:.1f} dB", fontsize=7)
    axes[0][0].set_ylabel("image", fontsize=8)
    axes[1][0].set_ylabel("INR", fontsize=8)
    figure.tight_layout()
    path = Path(root) / PREVIEW_FILE
    save_figure(figure, path, dpi=100)
    plt.close(figure)
    return path


def format_psnr_summary(summary: dict[str, Any]) -> str:
    """The PSNR table of a summary (with the steps and per-layer tables when it has them), as markdown."""
    parts = [format_statistics(summary["psnr_db"], "PSNR")]
    if "steps" in summary:
        parts.append(format_statistics(summary["steps"], "steps", digits=1))
    if "layer_statistics" in summary:
        parts.append(format_layer_statistics(summary))
    return "\n\n".join(parts)


def _shuffle_hidden_neurons(
    weights: list[Tensor], biases: list[Tensor], seed: int, first: int
) -> tuple[list[Tensor], list[Tensor]]:
    """Stacked ``nn.Linear``-convention parameters with every network's hidden neurons shuffled."""
    # Reduced to the generator's 64 bits, which leaves every seed it took before as it was.
    generator = torch.Generator().manual_seed(strided_seed(seed, first) % 2**64)
    batch = permute.permute_hidden(mlp_to_graph(list(zip(weights, biases))), generator=generator)
    pairs = stacked_params(batch)
    return [w for w, _ in pairs], [b for _, b in pairs]


def _meta(
    images: ImageSet,
    recipe: SirenRecipe,
    seed: int,
    shard_size: int,
    dilated: bool,
    limit: int | None,
    shared_init: bool = False,
    permuted: bool = False,
) -> dict[str, Any]:
    height, width = images.image_shape
    counts = {name: int((images.split == code).sum()) for code, name in enumerate(SPLITS)}
    plan = {
        "recipe": recipe.to_dict(),
        "source": images.source,
        "seed": seed,
        "shard_size": shard_size,
        "limit_per_split": limit,
        "num_networks": len(images),
        "splits": counts,
        "dilated": dilated,
        "keys": "0 for every image (shared initialisation)"
        if shared_init
        else "image number within its official split, + 2**40 for official test images",
        "shared_init": shared_init,
        "permuted_hidden": permuted,
    }
    extras = {
        "psnr": "dB, 10 log10(1 / MSE) of the unclipped output (offset included) against the image in [0, 1]",
        "steps": "int32, the Adam steps the network took (fewer than recipe.steps when it stopped early)",
    }
    if dilated:
        extras["dilated"] = "[n, H, W(, C)] float16: the image dilated by a 3x3 square of ones, in [0, 1]"
    return {
        "kind": "inr",
        "task": "classification",
        "num_classes": len(images.class_names),
        "class_names": images.class_names,
        "activation": recipe.activation,
        "widths": list(recipe.widths),
        "output_offset": recipe.output_offset,
        "intensity_range": list(INTENSITY_RANGE),
        "image_shape": [height, width, images.channels],
        "coordinates": {
            "kind": "pixel_grid",
            "range": [-1.0, 1.0],
            "order": "row-major pixels; x = linspace(-1, 1, W)[column], y = linspace(-1, 1, H)[row]",
        },
        "recipe": recipe.to_dict(),
        "source": images.source,
        "extras": extras,
        "plan": plan,
    }
