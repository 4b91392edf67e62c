"""Edit digit INRs so that they draw their digit dilated, then save and reuse the edited networks.

`wsgraph fit-inrs --dilated`, `wsgraph train --task dilate` and `wsgraph edit` do this from
the shell; this example does it from Python:

1. fit one SIREN per 8x8 digit of scikit-learn, with its 3x3-dilated image stored beside
   it (`fit_image_inrs(..., dilated=True)`), written once as a dataset folder and reused;
2. train DWSNet to edit weights (`wsgraph.training.train` with `task="dilate"`): each
   edited network is rendered on the pixel grid and compared with the dilated image, so
   the loss is the image error itself;
3. edit the test INRs with the trained model (`edit_networks`): one saved `nn.Sequential`
   per network, each one's image MSE against its dilated image, and a picture;
4. read one edited network back as a plain module and render it by calling it.

Run: python examples/edit_inrs.py [--data runs/examples/digit-inrs-dilated] [--out runs/examples/edit]
[--epochs 20] (`--limit N` fits only the first N digits of each split, for a quick try.)

Measured on the 2-core development CPU at one thread, while two other jobs held both cores:
the whole script took 113 s, 74 s of it training 20 epochs, which took the test INRs' image
MSE against their dilated images from 0.2746 (as given) to 0.0261.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

import wsgraph
from wsgraph.datasets.images import load_images
from wsgraph.datasets.store import read_meta
from wsgraph.inrs import SirenRecipe, fit_image_inrs, image_grid_coords
from wsgraph.inrs.siren import psnr_to_mse
from wsgraph.training import TrainConfig, train
from wsgraph.training.edit import edit_networks
from wsgraph.training.predict import load_predictor


def fit_digit_inrs(root: Path, limit: int | None, steps: int) -> None:
    images = load_images("digits")
    if limit is not None:
        images = images.head_per_split(limit)
    recipe = replace(SirenRecipe(), steps=steps, early_stop_loss=psnr_to_mse(40.0))
    fit_image_inrs(
        images, root, recipe, device="cpu", dilated=True, limit_per_split=limit, shared_init=True, permute_hidden=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("runs/examples/digit-inrs-dilated"))
    parser.add_argument("--out", type=Path, default=Path("runs/examples/edit"), help="the run and the edits")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--limit", type=int, help="fit only the first N digits of each split (a new --data folder)")
    parser.add_argument("--steps", type=int, default=1000, help="at most this many fitting steps per INR")
    args = parser.parse_args()

    # summary.json is written last: without it a fit was interrupted, and fitting again resumes it.
    if not (args.data / "summary.json").exists():
        fit_digit_inrs(args.data, args.limit, args.steps)
    config = TrainConfig(
        data=str(args.data),
        model="dwsnet",
        task="dilate",
        out=str(args.out / "run"),
        epochs=args.epochs,
        batch_size=64,
        lr=2e-3,
        patience=0,
        device="cpu",
        progress=False,
    )
    # A run already in --out resumes from its last.pt (a finished one returns its result at once).
    last = args.out / "run" / "last.pt"
    result = train(config, resume=last if last.is_file() else None)
    print(f"trained: test image MSE {result['test_metric']:.4f} (best epoch {result['best_epoch']})")

    # The trained model on the test INRs: the run's own evaluation, reproduced file by file.
    edits = edit_networks(load_predictor(args.out / "run"), [args.data], args.out / "edits", force=True)
    edited, given = edits.mean_image_mse()
    print(f"edited {len(edits.networks)} test INRs: image MSE {edited:.4f} (as given: {given:.4f})")
    print(f"saved {edits.out / edits.files[0]} and {len(edits.files) - 1} more, with {edits.out / 'edits.png'}")

    # An edited network is a plain nn.Sequential; the INRs' recipe adds +0.5 to its output.
    network = wsgraph.load_network_file(edits.out / edits.files[0])
    meta = read_meta(args.data)
    height, width = meta["image_shape"][:2]
    with torch.no_grad():
        image = network(image_grid_coords(height, width)).view(height, width) + meta["output_offset"]
    print(
        f"the first edited INR draws a {height}x{width} image with intensities in [{image.min():.2f}, {image.max():.2f}]"
    )


if __name__ == "__main__":
    main()
