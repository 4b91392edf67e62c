"""Checkpoint-folder conversion speed: ``wsgraph convert`` on many small state_dict files.

Writes ``--files`` (default 10,000) state_dicts of random MLPs of widths ``--widths``
(default 2-16-16-1) with ``torch.save`` into ``--classes`` class folders of a temporary
folder, converts them with labels from the folder names (the library function behind
``wsgraph convert SRC OUT --label-regex 'class(\\d+)/'``), then opens the result as a
``WeightSpaceDataset`` (first open: processing; second open: the cached storage). Prints
a markdown table and writes the numbers as JSON (default
``benchmarks/results/convert_folder_<hostname>.json``).

Like the ``wsgraph`` commands it first tunes glibc's allocator
(``wsgraph.runtime.tune_cpu_allocator``); ``--default-malloc`` keeps glibc's defaults.

Run: ``python benchmarks/bench_convert_folder.py [--files N] [--widths 2-16-16-1] [--out FILE] [--default-malloc]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets.checkpoint_folders import convert_checkpoints
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.io import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_common_flags, environment, machine_summary, markdown_table, timed, tune_allocator

# The target: 10,000 small checkpoints converted "well under a minute" on the 2-core development machine.
TARGET_SECONDS = 60.0


def write_checkpoints(folder: Path, count: int, spec: WeightSpaceSpec, classes: int) -> None:
    """``count`` state_dicts ``class<k>/net<i>.pt`` of ``nn.Sequential``-style MLPs of ``spec``."""
    generator = torch.Generator().manual_seed(0)
    for number in range(count):
        state_dict = {}
        for layer, (d_in, d_out) in enumerate(pairwise(spec.widths)):
            state_dict[f"{2 * layer}.weight"] = torch.randn(d_out, d_in, generator=generator)
            state_dict[f"{2 * layer}.bias"] = torch.randn(d_out, generator=generator)
        path = folder / f"class{number % classes}" / f"net{number:06d}.pt"
        path.parent.mkdir(exist_ok=True)
        torch.save(state_dict, path)


def run(files: int, spec: WeightSpaceSpec, classes: int, tuned_allocator: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wsgraph-bench-convert-") as scratch:
        src, out = Path(scratch) / "checkpoints", Path(scratch) / "dataset"
        src.mkdir()
        _, write_s = timed(lambda: write_checkpoints(src, files, spec, classes))
        report, convert_s = timed(lambda: convert_checkpoints(src, out, label_regex=r"class(\d+)/", progress=False))
        if report.num_networks != files or report.skipped:
            raise RuntimeError(f"converted {report.num_networks} of {files} files, skipped {len(report.skipped)}")
        dataset, process_s = timed(lambda: WeightSpaceDataset(out, log=False))
        _, reopen_s = timed(lambda: WeightSpaceDataset(out, log=False))
        if len(dataset) != files or dataset.num_classes != classes:
            raise RuntimeError(f"the dataset has {len(dataset)} networks and {dataset.num_classes} classes")
    steps = {
        "write checkpoints (torch.save, setup)": write_s,
        "wsgraph convert (library call)": convert_s,
        "WeightSpaceDataset first open (process)": process_s,
        "WeightSpaceDataset second open (cached)": reopen_s,
    }
    rows = [
        {"step": step, "seconds": wall, "cpu_seconds": cpu, "files_per_s": files / wall}
        for step, (wall, cpu) in steps.items()
    ]
    return {
        "benchmark": "convert_folder",
        "files": files,
        "widths": str(spec),
        "classes": classes,
        "target_convert_s": TARGET_SECONDS,
        "results": rows,
        "tuned_allocator": tuned_allocator,
        **environment(),
    }


def markdown(report: dict[str, Any]) -> str:
    rows = [
        [row["step"], f"{row['seconds']:.2f}", f"{row['cpu_seconds']:.2f}", f"{row['files_per_s']:,.0f}"]
        for row in report["results"]
    ]
    heading = (
        f"{report['files']} state_dict files of {report['widths']} in {report['classes']} class folders, "
        f"{machine_summary(report)}"
    )
    return heading + "\n\n" + markdown_table(["step", "wall s", "CPU s", "files/s (wall)"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="checkpoint files (default: 10000)")
    parser.add_argument("--widths", type=WeightSpaceSpec.parse, default=WeightSpaceSpec((2, 16, 16, 1)))
    parser.add_argument("--classes", type=int, default=10, help="class folders (default: 10)")
    add_common_flags(parser, "convert_folder")
    args = parser.parse_args(argv)
    if args.files < 1 or args.classes < 1:
        parser.error("--files and --classes must be positive")
    tuned = tune_allocator(args.default_malloc)
    report = run(args.files, args.widths, args.classes, tuned)
    out = args.out
    write_json(out, report)
    print(markdown(report))
    convert_s = report["results"][1]["seconds"]
    verdict = "meets" if convert_s < TARGET_SECONDS else "MISSES"
    print(f"\nconversion {verdict} the {TARGET_SECONDS:.0f} s target ({convert_s:.1f} s); wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
