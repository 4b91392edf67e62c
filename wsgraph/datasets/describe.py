"""What a dataset root holds, read from its ``meta.json`` and its shard files alone.

``wsgraph info ROOT`` prints this. Nothing is unpickled and no shard is opened, so it
answers at once for 70,000 networks, and for a fit that is still running or was cut short
(its shards so far against the count ``meta.json`` planned).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wsgraph.core.activations import UNKNOWN
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets.store import (
    ACTIVATION_NAMES,
    FIT_SUMMARY_ENTRIES,
    NUM_SHARDS,
    SHARD_DIR,
    SPLIT_SIZES,
    SPLITS,
    is_count,
    is_number,
    missing_shards,
    read_meta,
    shard_paths,
)
from wsgraph.errors import shown_path

# What `kind` in meta.json says the networks are.
KIND_NAMES = {"inr": "INRs of images", "sine": "INRs of sine waves", "checkpoints": "converted checkpoints"}


def describe_dataset(root: str | os.PathLike) -> dict[str, Any]:
    """The facts ``wsgraph info ROOT`` prints about a dataset root, as a JSON-ready dict.

    Raises:
        FileNotFoundError: ``root`` has no ``meta.json``.
        ValueError: its ``meta.json`` is not a wsgraph dataset's (see :func:`~wsgraph.datasets.store.read_meta`).
    """
    meta = read_meta(root)
    recorded = meta.get(NUM_SHARDS)
    present = {path.name: path for path in shard_paths(root)}
    missing, missing_count = missing_shards(set(present), recorded) if recorded is not None else ([], 0)
    shards = {
        "recorded": recorded,
        "present": len(present),
        "missing": missing,  # the first 100
        "missing_count": missing_count,
        "bytes": sum(path.stat().st_size for path in present.values()),
    }
    widths = meta.get("widths")
    info: dict[str, Any] = {
        "path": str(root),
        "version": meta.get("version", 1),
        "kind": meta.get("kind"),
        "task": meta.get("task"),
        "num_classes": meta.get("num_classes"),
        "class_names": meta.get("class_names"),
        "target_names": meta.get("target_names"),
        "split_sizes": meta.get(SPLIT_SIZES),
        "shards": shards,
        "weight_space": meta.get("weight_space", "mlp"),
        "widths": widths,
        "signature": _signature(meta),
        "architectures": meta.get("architectures"),
        "kernel_grid": meta.get("kernel_grid"),
        "activation": meta.get("activation"),
        "activations": meta.get("activations") if meta.get(ACTIVATION_NAMES) else None,
        "output_offset": meta.get("output_offset"),
        "source": meta.get("source"),
        "recipe": meta.get("recipe"),
        "plan": meta.get("plan"),
        "fit": {key: meta[key] for key in sorted(FIT_SUMMARY_ENTRIES) if key in meta},
    }
    if widths is not None and info["weight_space"] == "mlp":
        info["num_params"] = WeightSpaceSpec(widths).num_params
    return info


def format_dataset_info(info: dict[str, Any]) -> str:
    """The human-readable report of :func:`describe_dataset`'s dict.

    The entries ``read_meta`` does not check (a recipe, a source, a fit table) may hold
    anything in a stranger's ``meta.json``: what is not of the expected type is left out,
    and text is quoted where it holds characters that do not print.
    """
    lines = [
        f"dataset     {shown_path(info['path'])} (wsgraph dataset, version {info['version']})",
        f"content     {_content_text(info)}",
    ]
    if info["task"] is not None:
        lines.append(f"task        {_task_text(info)}")
    lines.append(f"networks    {_networks_text(info)}")
    lines.append(f"shards      {_shards_text(info)}")
    lines.append(f"widths      {_architecture_text(info)}")
    if info.get("activations"):
        counts = ", ".join(f"{_text(name)} {count:,}" for name, count in info["activations"].items())
        lines.append(f"activation  per network: {counts}")
    elif info["activation"] == UNKNOWN:
        lines.append(f"activation  {UNKNOWN} (state_dicts do not record it; convert --activation names it)")
    elif info["activation"] is not None:
        lines.append(f"activation  {_text(info['activation'])}")
    if info["output_offset"]:
        lines.append(f"output      adds {info['output_offset']!r} to the last layer's output")
    if isinstance(info["recipe"], dict) and info["kind"] in ("inr", "sine"):
        lines.append(f"recipe      {_recipe_text(info['recipe'])}")
    if isinstance(info["plan"], dict):
        lines.append(f"made with   {_plan_text(info['plan'])}")
    lines.extend(_fit_lines(info["fit"]))
    return "\n".join(lines)


def _signature(meta: dict[str, Any]) -> dict[str, int] | None:
    if meta.get("widths") is not None:
        widths = meta["widths"]
        return {"num_weight_layers": len(widths) - 1, "in_dim": widths[0], "out_dim": widths[-1]}
    signature = meta.get("signature")
    if isinstance(signature, list) and len(signature) == 3 and all(is_count(v) for v in signature):
        return dict(zip(("num_weight_layers", "in_dim", "out_dim"), signature, strict=True))
    return None


def _content_text(info: dict[str, Any]) -> str:
    kind = info["kind"]
    described = KIND_NAMES.get(kind, f"networks of kind {_text(kind)}" if kind else "networks")
    source = info["source"]
    if isinstance(source, dict) and isinstance(source.get("function"), str):
        return f"{described} ({_text(source['function'])})"
    if isinstance(source, dict) and isinstance(source.get("name"), str):
        origin = f": {_text(source['origin'])}" if isinstance(source.get("origin"), str) else ""
        return f"{described} ({_text(source['name'])}{origin})"
    if isinstance(source, str):
        return f"{described} from {_text(source)}"
    return described


def _task_text(info: dict[str, Any]) -> str:
    if info["task"] == "regression":
        names = info["target_names"]
        listed = isinstance(names, list) and names and all(isinstance(name, str) for name in names)
        return "regression" + (f" of {', '.join(map(_text, names))}" if listed else "")
    count = info["num_classes"]
    text = "classification" + ("" if count is None else f", {count} classes")
    names = info["class_names"]
    if names:
        shown = ", ".join(map(_text, names[:10])) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else "")
        text += f": {shown}"
    return text


def _networks_text(info: dict[str, Any]) -> str:
    sizes = info["split_sizes"]
    if sizes is None:
        return "not recorded in meta.json"
    total = sum(sizes.values())
    return f"{total:,} ({', '.join(f'{split} {sizes[split]:,}' for split in SPLITS)})"


def _shards_text(info: dict[str, Any]) -> str:
    shards = info["shards"]
    size = _size_text(shards["bytes"])
    if shards["recorded"] is None:
        return f"{shards['present']} in {SHARD_DIR}/ ({size}; meta.json records no count)"
    missing, count = shards["missing"], shards["missing_count"]
    if not count:
        return f"{shards['present']} of {shards['recorded']} ({size})"
    first = f"{SHARD_DIR}/{missing[0]}" + (f" and {count - 1:,} more" if count > 1 else "")
    return (
        f"{shards['recorded'] - count:,} of {shards['recorded']:,} ({size}); {first} missing: a fit still "
        "running or cut short (rerun it to resume), or files lost"
    )


def _architecture_text(info: dict[str, Any]) -> str:
    kernels = ""
    if info["weight_space"] == "cnn" and info["kernel_grid"]:
        kernels = f", CNN kernels up to {'x'.join(map(str, info['kernel_grid']))}"
    signature = info["signature"]
    layers = "" if signature is None else f" (M={signature['num_weight_layers']} weight layers)"
    if info["widths"] is not None:
        params = f", {info['num_params']:,} parameters" if "num_params" in info else ""
        return f"{'-'.join(map(str, info['widths']))}{layers}{params}{kernels}"
    architectures = info["architectures"]
    if isinstance(architectures, dict):
        listed = sorted(
            ((name, count) for name, count in architectures.items() if is_count(count)), key=lambda item: -item[1]
        )
        if listed:
            shown = ", ".join(f"{_text(name)} ({count:,})" for name, count in listed[:5])
            more = f", and {len(listed) - 5} more" if len(listed) > 5 else ""
            return f"{len(listed)} architectures{layers}: {shown}{more}{kernels}"
    return f"not recorded{layers}{kernels}"


def _recipe_text(recipe: dict[str, Any]) -> str:
    parts = []
    if isinstance(recipe.get("init"), str):
        parts.append(f"init {_text(recipe['init'])}")
    if isinstance(recipe.get("optimizer"), str) and is_number(recipe.get("lr")):
        parts.append(f"{_text(recipe['optimizer'])} lr {recipe['lr']:g}")
    if is_count(recipe.get("steps")):
        parts.append(f"up to {recipe['steps']:,} steps")
    if is_number(recipe.get("early_stop_loss")) and recipe["early_stop_loss"] > 0:
        parts.append(f"stopping at MSE {recipe['early_stop_loss']:g}")
    return ", ".join(parts) or "recorded in meta.json"


def _plan_text(plan: dict[str, Any]) -> str:
    parts = [f"seed {plan['seed']}"] if is_count(plan.get("seed")) else []
    if is_count(plan.get("limit_per_split")):
        parts.append(f"the first {plan['limit_per_split']:,} images of each split")
    if plan.get("shared_init") is True:
        parts.append("one initialisation shared by every network")
    if plan.get("permuted_hidden") is True:
        parts.append("hidden neurons shuffled after fitting")
    if plan.get("dilated") is True:
        parts.append("3x3-dilated images stored (for --task dilate)")
    return "; ".join(parts) or "recorded in meta.json"


def _fit_lines(fit: dict[str, Any]) -> list[str]:
    lines = []
    for key, unit, name in (("psnr_db", " dB", "PSNR"), ("mse", "", "MSE")):
        table = fit.get(key)
        overall = table.get("all") if isinstance(table, dict) else None
        if isinstance(overall, dict) and all(is_number(overall.get(entry)) for entry in ("mean", "min", "max")):
            lines.append(
                f"fit         {name} mean {overall['mean']:.4g}{unit} (min {overall['min']:.4g}, "
                f"max {overall['max']:.4g})"
            )
    return lines


def _size_text(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _text(value: Any, limit: int = 80) -> str:
    """A value from meta.json as one short printable piece of text."""
    text = shown_path(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_dataset_root(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder with a ``meta.json`` (a dataset root, or meant as one)."""
    return Path(path).is_dir() and (Path(path) / "meta.json").is_file()
