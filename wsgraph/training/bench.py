"""``wsgraph bench``: every model with every seed on one dataset, and the table of results.

Each run is an ordinary ``wsgraph train`` run in its own folder under the runs folder
(``<model>-seed<k>``), so the benchmark resumes: finished runs (with a
``result.json``) are read back, interrupted ones continue from their ``last.pt``.
The report is a markdown table whose header is the command that reproduces it, a bar
chart, every run's numbers as JSON and CSV, and every run's per-epoch metrics (a copy of
its ``metrics.csv``), so that a statement about any epoch can be checked without the run
folders.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import shlex
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from wsgraph.checks import entry_problem
from wsgraph.datasets.store import dataset_fingerprint
from wsgraph.io import atomic_write, write_json
from wsgraph.training.config import TrainConfig
from wsgraph.training.data import TrainingData
from wsgraph.training.distributed import DistributedContext, setup
from wsgraph.training.metrics import METRICS_CSV, RESULT_JSON, read_json
from wsgraph.training.plots import plot_benchmark
from wsgraph.training.registry import MODEL_NAMES, check_model_options
from wsgraph.training.run import check_models, lock_in_every_process, open_run_data, reference_result, train
from wsgraph.training.run_checkpoints import LAST

TABLE_HEADING = "# Results on `"
METRIC_LABELS = {"accuracy": "test accuracy (%)", "mse": "test MSE", "image_mse": "test image MSE"}
RUN_COLUMNS = (
    "model",
    "seed",
    "test_metric",
    "best_val_metric",
    "best_epoch",
    "epochs_run",
    "parameters",
    "train_seconds",
    "train_networks_per_second",
    "wall_seconds",
)


@dataclass(frozen=True)
class BenchOutputs:
    """Where a benchmark writes: the table, the chart, the runs as JSON and CSV, the runs'
    per-epoch metrics, and the run folders."""

    table: Path
    chart: Path
    runs_json: Path
    runs_csv: Path
    runs_dir: Path
    curves: Path
    # What a second bench of the same output is refused on: the table, or the folder holding everything.
    lock_target: Path
    # What to change for other run folders, as an error message says it.
    runs_advice: str = "choose another --out or --runs-dir"

    @classmethod
    def at(cls, out: str | Path, runs_dir: str | Path | None = None) -> BenchOutputs:
        """``out`` ending in ``.md``: the table there and the rest beside it (runs under
        ``runs/bench/<name>`` unless ``runs_dir``); otherwise a folder holding everything."""
        out = Path(out)
        if out.suffix == ".md":
            stem = out.with_suffix("")
            runs = Path(runs_dir) if runs_dir else Path("runs") / "bench" / out.stem
            advice = (
                "choose another --out or --runs-dir"
                if runs_dir
                else f"give --runs-dir (the runs of every --out {out.name}, in any folder, go to {runs} by default)"
            )
            return cls(
                out, stem.with_suffix(".png"), Path(f"{stem}-runs.json"), Path(f"{stem}-runs.csv"), runs,
                Path(f"{stem}-curves"), out, advice,
            )  # fmt: skip
        runs = Path(runs_dir) if runs_dir else out / "runs"
        return cls(
            out / "results.md", out / "results.png", out / "runs.json", out / "runs.csv", runs, out / "curves", out
        )


def bench(
    base: TrainConfig, models: list[str], seeds: list[int], outputs: BenchOutputs, command: str
) -> list[dict[str, Any]]:
    """Train every model with every seed (skipping finished runs) and write the report.

    Args:
        base: the settings shared by all runs (its ``model``, ``seed`` and ``out`` are replaced).
        models: model names, in table order.
        seeds: the seeds of each model.
        outputs: where to write.
        command: the command line that reproduces the benchmark, for the table's header.

    Returns:
        The result document of every run, in order.
    """
    check_model_names(models)
    # Every model gets the options: one that a later model refuses must not wait for the earlier ones to train.
    for model in models:
        check_model_options(model, base.model_options)
    # Two benches writing one report would interleave their runs and tables: the second refuses.
    target = outputs.lock_target
    context = setup(base.device)
    with lock_in_every_process(target, "wsgraph bench", context, f"--out {target}"):
        return _bench(base, models, seeds, outputs, command, context)


def _bench(
    base: TrainConfig,
    models: list[str],
    seeds: list[int],
    outputs: BenchOutputs,
    command: str,
    context: DistributedContext,
) -> list[dict[str, Any]]:
    planned = [
        (dataclasses.replace(base, model=model, seed=seed, out=str(folder)), folder)
        for model in models
        for seed in seeds
        for folder in [outputs.runs_dir / f"{model}-seed{seed}"]
    ]
    refuse_blocked_outputs(outputs, [folder for _, folder in planned])
    refuse_foreign_outputs(outputs)
    # Every finished run is read (and its settings checked) before any is trained: a later one of other
    # settings must not wait for the earlier ones to train.
    data_fingerprint = functools.cache(lambda: dataset_fingerprint(Path(base.data).expanduser()))
    finished = [_finished_result(config, folder, data_fingerprint, outputs.runs_advice) for config, folder in planned]
    if any(result is None for result in finished):
        data, task = _data_with_test_networks(base, context)
        # One build per model (the seeds change no setting it checks).
        unfinished = {config.model: config for (config, _), result in zip(planned, finished) if result is None}
        check_models(list(unfinished.values()), data, task, context)
    results = []
    for (config, folder), result in zip(planned, finished):
        if result is None:
            result = train(config, folder / LAST if (folder / LAST).is_file() else None, lock_holder="wsgraph bench")
        else:
            tqdm.write(f"wsgraph bench: {folder} is finished, reading its result")
        results.append(result)
    # Runs written before the reference was recorded lack it; it depends only on the data and task.
    reference = results[0].get("reference") or reference_result(
        dataclasses.replace(base, model=models[0], seed=seeds[0], out=str(outputs.runs_dir))
    )
    write_report(results, outputs, command, reference, data_root=base.data, run_folders=[f for _, f in planned])
    return results


def _data_with_test_networks(base: TrainConfig, context: DistributedContext) -> tuple[TrainingData, str]:
    """The data and task of the runs; data without test networks is refused before training: the report is
    of test metrics (``wsgraph train`` runs without them)."""
    data, task = open_run_data(base, context)
    if len(data.splits["test"]) == 0:
        labelled = "labelled " if task != "dilate" else ""
        raise ValueError(
            f"{base.data}: no {labelled}networks in the test split, and bench reports test metrics; "
            "give the data a test split (convert --split-ratios) or use wsgraph train"
        )
    return data, task


def refuse_foreign_outputs(outputs: BenchOutputs) -> None:
    """Raise a ``ValueError`` naming the file unless every report file already at
    ``outputs`` belongs to an earlier report of ``wsgraph bench``, which a rerun replaces:
    ``--out notes.md`` must not overwrite someone's notes, or the ``notes.png`` beside them.
    A report is recognised by its runs JSON (the command that wrote it) and its table's heading."""
    files = (outputs.table, outputs.chart, outputs.runs_json, outputs.runs_csv, outputs.curves)
    existing = [path for path in files if path.exists()]
    if not existing:
        return
    if outputs.curves.exists() and not outputs.curves.is_dir():
        raise ValueError(f"{outputs.curves}: exists and is not a folder for the runs' curves; choose another --out")
    ours = _is_bench_document(outputs.runs_json)
    if ours and outputs.table.exists():
        culprit = None if _starts_with(outputs.table, TABLE_HEADING) else outputs.table
    else:
        culprit = None if ours else existing[0]
    if culprit is not None:
        raise ValueError(f"{culprit}: exists and is not part of a wsgraph bench report; choose another --out")


def refuse_blocked_outputs(outputs: BenchOutputs, run_folders: list[Path]) -> None:
    """Raise a ``ValueError`` naming the path if a report file or a run folder cannot be written where it
    goes, before any run trains: the report is written after all of them, and each run's folder only when
    its turn comes. A folder where a report file goes, a file where a folder goes (the runs folder, a run's,
    or one above them), and a runs folder that is, or lies within, a report file are refused."""
    report = (outputs.table, outputs.chart, outputs.runs_json, outputs.runs_csv)
    for path in report:
        if path.is_dir():
            raise ValueError(f"{path}: is a folder, where the report's file goes; choose another --out")
    runs = outputs.runs_dir.resolve()
    for path in (*report, outputs.curves):
        if path.resolve() == runs or path.resolve() in runs.parents:
            raise ValueError(
                f"--runs-dir {outputs.runs_dir}: the report's {path.name} goes there; give --runs-dir another folder"
            )
    for folder in (outputs.runs_dir, *run_folders):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise ValueError(f"{blocker}: exists and is not a folder for the runs; {outputs.runs_advice}")


def _is_bench_document(path: Path) -> bool:
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return (
        isinstance(document, dict)
        and isinstance(document.get("command"), str)
        and document["command"].startswith("wsgraph bench ")
        and isinstance(document.get("runs"), list)
    )


def _starts_with(path: Path, heading: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(heading.encode())) == heading.encode()
    except OSError:
        return False


def check_model_names(models: list[str]) -> None:
    """Raise a ``ValueError`` unless ``models`` names at least one model, each known, each once."""
    unknown = [name for name in models if name not in MODEL_NAMES]
    if unknown or not models:
        named = f"unknown model {unknown[0]!r}" if unknown else "--models names no model"
        raise ValueError(f"{named}; choose from {', '.join(MODEL_NAMES)}")
    # Each model's runs would be read back once per listing: a table of false seed counts.
    repeated = sorted({name for name in models if models.count(name) > 1})
    if repeated:
        raise ValueError(f"--models lists {', '.join(repeated)} more than once")


def refuse_finished_runs_of_other_settings(configs: list[TrainConfig], advice: str) -> None:
    """Raise a ``ValueError`` naming the first run folder (each config's ``out``) that holds a finished run
    of other settings than its config's, before the data exists to be compared (``wsgraph demo`` calls it
    before fitting the INRs it trains on); ``advice`` ends the error."""
    for config in configs:
        _finished_result(config, Path(config.out), None, advice)


def _finished_result(
    config: TrainConfig,
    folder: Path,
    data_fingerprint: Callable[[], str] | None,
    advice: str = "choose another --out or --runs-dir",
) -> dict[str, Any] | None:
    """The result of the finished run in ``folder`` (``None``: none there), if its settings are ``config``'s
    and it trained on the data whose fingerprint ``data_fingerprint()`` gives (``--data`` is not compared
    by path: a dataset may have moved, and another may now lie at the same path; ``None``: not compared).
    ``advice`` ends the error for a run of other settings or data: what to change for other run folders."""
    if not (folder / RESULT_JSON).is_file():
        return None
    path = folder / RESULT_JSON
    result = read_json(path)
    problem = _result_problem(result)
    if problem is None:
        try:
            stored = TrainConfig.from_dict(result["config"])
        except ValueError as error:
            problem = str(error)
    if problem is not None:
        raise ValueError(f"{path}: not a finished run's result ({problem}); delete {folder} to train it again")
    differences = stored.differences(config)
    if differences:
        listed = "; ".join(
            f"{key}: {TrainConfig.shown(key, old)} there, {TrainConfig.shown(key, new)} now"
            for key, (old, new) in differences.items()
        )
        raise ValueError(f"{folder} holds a finished run with other settings ({listed}); {advice}")
    # Results written before the fingerprint was recorded cannot be checked.
    stored_fingerprint = result["dataset"].get("fingerprint")
    if data_fingerprint is not None and stored_fingerprint is not None and stored_fingerprint != data_fingerprint():
        raise ValueError(
            f"{folder} holds a finished run on other data ({stored.data}, data fingerprint {stored_fingerprint}; "
            f"--data {config.data}: {data_fingerprint()}); {advice}"
        )
    return result


# What the report reads from a finished run's result.json, and the JSON types each may hold.
_RESULT_ENTRIES: dict[str, tuple[type, ...]] = {
    "config": (dict,), "model": (str,), "task": (str,), "dataset": (dict,), "hardware": (dict,),
    "test_metric": (int, float), "best_val_metric": (int, float, type(None)), "best_epoch": (int, type(None)),
    "epochs_run": (int,), "parameters": (int,), "train_seconds": (int, float),
    "train_networks_per_second": (int, float), "wall_seconds": (int, float),
}  # fmt: skip


def _result_problem(result: Any) -> str | None:
    """What keeps ``result`` (a run folder's result.json, which may have been edited) out of the report, or ``None``."""
    if not isinstance(result, dict):
        return f"a JSON {type(result).__name__}, not an object"
    return entry_problem(result, _RESULT_ENTRIES)


def write_report(
    results: list[dict[str, Any]],
    outputs: BenchOutputs,
    command: str,
    reference: dict[str, Any] | None = None,
    data_root: str | None = None,
    run_folders: list[Path] | None = None,
) -> None:
    """Write the markdown table, the bar chart, all runs as JSON and CSV and, from
    ``run_folders`` (one per result, in order), each run's per-epoch metrics (``reference``:
    the test metric of the task's reference predictor, as ``run.reference_result`` gives it;
    ``data_root``: the data folder as this command names it, for the table, rather than as the
    first run recorded it, which may have been from another working directory)."""
    rows = summarise(results)
    first = results[0]
    metric = first["metric"]
    label = METRIC_LABELS.get(metric, f"test {metric}")
    title = f"{Path(first['dataset']['root']).name}: {first['task']}"
    outputs.table.parent.mkdir(parents=True, exist_ok=True)
    names = [row["model"] for row in rows]
    # The runs JSON first: it marks the other files as this report's (refuse_foreign_outputs).
    write_json(outputs.runs_json, {"command": command, "reference": reference, "runs": results}, sort_keys=True)
    plot_benchmark(outputs.chart, names, [r["mean"] for r in rows], [r["std"] for r in rows], label, title)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RUN_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow({**result, "seed": result["config"]["seed"]})
    text = buffer.getvalue()
    atomic_write(outputs.runs_csv, lambda handle: handle.write(text.encode()))
    curves = _copy_curves(run_folders or [], outputs.curves)
    table = markdown_table(rows, results, label, command, outputs, reference, data_root, curves)
    atomic_write(outputs.table, lambda handle: handle.write(table.encode()))


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model (in order of first appearance): mean and sample standard deviation of the
    test metric over seeds, and the runs' mean cost."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_model.setdefault(result["model"], []).append(result)
    rows = []
    for model, runs in by_model.items():
        values = [run["test_metric"] for run in runs if run["test_metric"] is not None]
        rows.append(
            {
                "model": model,
                "seeds": len(runs),
                "mean": statistics.fmean(values) if values else float("nan"),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "parameters": runs[0]["parameters"],
                "train_seconds": statistics.fmean(run["train_seconds"] for run in runs),
                "networks_per_second": statistics.fmean(run["train_networks_per_second"] for run in runs),
                "epochs": statistics.fmean(run["epochs_run"] for run in runs),
            }
        )
    return rows


def markdown_table(
    rows: list[dict[str, Any]],
    results: list[dict[str, Any]],
    label: str,
    command: str,
    outputs: BenchOutputs,
    reference: dict[str, Any] | None = None,
    data_root: str | None = None,
    curves: bool = False,
) -> str:
    """The benchmark as markdown: how to reproduce it, on what, then one line per model
    (``curves``: whether the runs' per-epoch metrics were copied to ``outputs.curves``)."""
    first = results[0]
    data, machine = first["dataset"], first["hardware"]
    root = data_root if data_root is not None else data["root"]
    seeds = sorted({run["config"]["seed"] for run in results})
    device = machine.get("gpu") or f"{machine['cpu']} ({machine['cpu_count']} cores)"
    sizes = "/".join(str(data["networks"][name]) for name in ("train", "val", "test"))
    lines = [
        f"{TABLE_HEADING}{Path(data['root']).name}`: {first['task']}",
        "",
        f"Reproduce: `{command}`",
        "",
        f"- Data: `{root}`, architectures {', '.join(data['architectures'])}, {sizes} train/val/test networks.",
        f"- Hardware: {device}, {machine['device']}, torch {machine['torch']}, "
        f"torch_geometric {machine['torch_geometric']}.",
        f"- Metric: {label} of the checkpoint with the best validation metric, mean ± sample standard "
        f"deviation over seeds {', '.join(map(str, seeds))}; train time and networks/s are means over seeds.",
        f"- Chart: `{outputs.chart.name}`; every run: `{outputs.runs_json.name}`, `{outputs.runs_csv.name}`; "
        f"run folders under `{outputs.runs_dir}`. Written {date.today().isoformat()}.",
        *([f"- Per-epoch metrics of every run: `{outputs.curves.name}/<model>-seed<seed>.csv`."] if curves else []),
        *_reference_line(reference, label),
        "",
        f"| model | {label} | parameters | train time (s) | networks/s | epochs | train/val/test networks | seeds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        spread = f" ± {row['std']:.2g}" if row["seeds"] > 1 else ""
        lines.append(
            f"| {row['model']} | {row['mean']:.4g}{spread} | {row['parameters']:,} | {row['train_seconds']:.1f} | "
            f"{row['networks_per_second']:.0f} | {row['epochs']:.3g} | {sizes} | {row['seeds']} |"
        )
    return "\n".join(lines) + "\n"


def _copy_curves(run_folders: list[Path], curves: Path) -> bool:
    """Copy each run folder's ``metrics.csv`` to ``curves/<folder name>.csv`` (the folders are
    named ``<model>-seed<seed>``) and remove the curves of runs no longer in the report;
    whether any was copied."""
    copied = set()
    for folder in run_folders:
        source = folder / METRICS_CSV
        if not source.is_file():
            continue
        content = source.read_bytes()
        atomic_write(curves / f"{folder.name}.csv", lambda handle, content=content: handle.write(content))
        copied.add(f"{folder.name}.csv")
    if curves.is_dir():
        # An earlier report of more models or seeds left theirs; the folder is this report's.
        for stale in curves.glob("*-seed*.csv"):
            if stale.name not in copied:
                stale.unlink()
    return bool(copied)


def bench_command(base: TrainConfig, models: list[str], seeds: int, out: str, runs_dir: str | None) -> str:
    """The ``wsgraph bench`` command line that reproduces a benchmark."""
    parts = ["wsgraph", "bench", "--data", base.data, "--models", ",".join(models), "--seeds", str(seeds)]
    parts += ["--out", out]
    if runs_dir:
        parts += ["--runs-dir", runs_dir]
    arguments = [argument for argument in base.option_arguments() if argument not in ("--no-progress",)]
    return shlex.join(parts + arguments)


def _reference_line(reference: dict[str, Any] | None, label: str) -> list[str]:
    if not reference or reference.get("test_metric") is None:
        return []
    return [
        f"- Reference, learning nothing from the weights ({reference['predictor']}): {label} {reference['test_metric']:.4g}."
    ]
