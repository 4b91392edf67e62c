"""``wsgraph info PATH``: what network a checkpoint holds, as a weight-space graph, or what a
dataset root holds."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wsgraph.cli.arguments import path_argument
from wsgraph.core.activations import UNKNOWN
from wsgraph.core.convert_cnn import cnn_to_graph, holds_cnn
from wsgraph.core.convert_mlp import mlp_to_graph
from wsgraph.core.extract_cnn import from_cnn_module
from wsgraph.core.extract_mlp import NotAnMLPError, from_module
from wsgraph.core.graph import graph_specs
from wsgraph.core.network_files import load_network_file
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets.activation_file import RecordedActivations
from wsgraph.datasets.describe import describe_dataset, format_dataset_info, is_dataset_root
from wsgraph.errors import shown_path
from wsgraph.training.edit import describe_edit_folder, format_edit_folder_info, is_edit_folder
from wsgraph.training.run_checkpoints import read_run_checkpoint_or_none
from wsgraph.training.run_info import describe_run_checkpoint, format_run_info, run_checkpoint_file

TRUST_PICKLES_HELP = (
    "also load a saved module built of classes other than torch.nn containers, nn.Linear, nn.Conv2d, "
    "nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout and the known activations (e.g. your own nn.Module subclass). This unpickles the file with weights_only=False, "
    "which RUNS ANY CODE THE FILE CONTAINS: use it only for files you made"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="describe the MLP or CNN in a checkpoint file, a dataset folder, a training run or an edit",
        description="Print the architecture of the MLP or CNN in a checkpoint (.pt, .pth, .ckpt, .safetensors): "
        "widths, signature, per-layer edge and node counts, parameter count, biases, activation and a constant a "
        "saved module adds to its output. Given a dataset folder (what fit-inrs, fit-sines or convert wrote), "
        "print what its meta.json records and whether every shard is there, without opening the shards. Given a run "
        "folder or its best.pt or last.pt (what train wrote), print the trained model, what it predicts, its data, "
        "its progress and settings. Given what edit wrote, print how many networks it edited and their image "
        "errors.",
    )
    parser.add_argument(
        "path",
        metavar="PATH",
        type=path_argument,
        help="checkpoint file (a state_dict or a saved nn.Module), dataset folder, run folder (or its best.pt), "
        "or edit folder",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--trust-pickles", action="store_true", help=TRUST_PICKLES_HELP)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if os.path.isdir(args.path):
        if is_dataset_root(args.path):
            info = describe_dataset(args.path)
            print(json.dumps(info, indent=2) if args.json else format_dataset_info(info))
            return 0
        if is_edit_folder(args.path):
            info = describe_edit_folder(args.path)
            print(json.dumps(info, indent=2) if args.json else format_edit_folder_info(info))
            return 0
        checkpoint = run_checkpoint_file(args.path)
        if checkpoint is None:
            raise FileNotFoundError(_not_a_dataset_message(args.path))
        return _print_run(checkpoint, args.json)
    # A run's best.pt or last.pt holds a trained model, not a network to describe as a graph.
    # It is read (safely) once, and only files that are not one go to the network reader.
    run_checkpoint = read_run_checkpoint_or_none(args.path)
    if run_checkpoint is not None:
        return _print_run(args.path, args.json, run_checkpoint)
    info = describe_checkpoint(args.path, trust_pickles=args.trust_pickles)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _print_run(path: str | os.PathLike, as_json: bool, checkpoint: dict[str, Any] | None = None) -> int:
    info = describe_run_checkpoint(path, checkpoint)
    print(json.dumps(info, indent=2) if as_json else format_run_info(info))
    return 0


def _not_a_dataset_message(folder: str) -> str:
    inside = sorted(entry.name for entry in os.scandir(folder) if is_dataset_root(entry.path))
    if inside:
        listed = ", ".join(inside[:3]) + (f" and {len(inside) - 3} more" if len(inside) > 3 else "")
        return f"{shown_path(folder)}: a folder of datasets ({listed}); give one of them"
    return (
        f"{shown_path(folder)}: a folder without meta.json, best.pt or last.pt; give a checkpoint file, a "
        "dataset folder (what fit-inrs, fit-sines or convert wrote) or a run folder (what train wrote)"
    )


def describe_checkpoint(path: str | os.PathLike, *, trust_pickles: bool = False) -> dict[str, Any]:
    """The facts ``wsgraph info`` prints, as a JSON-ready dict.

    Args:
        path: the checkpoint file.
        trust_pickles: see :func:`wsgraph.load_network_file`; runs any code the file contains.

    Raises:
        CheckpointError: the file cannot be read.
        NotAnMLPError: the file holds no chain of linear layers.
    """
    content = load_network_file(path, trust_pickles=trust_pickles)
    try:
        offset = _traced_output_offset(content)
        # Describing a network with NaN weights is still useful; `finite` reports them.
        convert = cnn_to_graph if holds_cnn(content) else mlp_to_graph
        graph = convert(content, check_finite=False, output_offset=offset or 0.0)
    except NotAnMLPError as error:
        raise NotAnMLPError(f"{shown_path(path)}: {error}") from error
    spec = graph_specs(graph)[0]
    has_bias = [bool(flag) for flag in graph.has_bias[0].tolist()]
    recorded_in = None
    if isinstance(content, nn.Module):
        kind = f"saved module {type(content).__name__}"
        activation = graph.activation
    else:
        kind = f"state_dict with {len(content)} tensors"
        # A model zoo says its members' activations beside them.
        entry = RecordedActivations().lookup(Path(path))
        activation = UNKNOWN if entry is None else entry[0]
        recorded_in = None if entry is None else str(entry[1])
    layers = [
        {
            "layer": layer,
            "in": spec.widths[layer - 1],
            "out": spec.widths[layer],
            "edges": spec.weight_shape(layer)[0] * spec.weight_shape(layer)[1],
            "nodes": spec.widths[layer],
            "bias": has_bias[layer - 1],
        }
        for layer in spec.weight_layers
    ]
    info = {
        "path": str(path),
        "kind": kind,
        "widths": list(spec.widths),
        # "num_layers" is the key's old name, kept for one release for scripts that read it.
        "signature": {
            "num_weight_layers": spec.num_weight_layers,
            "num_layers": spec.num_weight_layers,
            "in_dim": spec.in_dim,
            "out_dim": spec.out_dim,
        },
        "num_params": network_parameter_count(spec, has_bias),
        "num_nodes": spec.num_nodes,
        "num_edges": spec.num_edges,
        "input_nodes": spec.in_dim,
        "layers": layers,
        "has_bias": has_bias,
        "activation": activation,
        **({"activation_recorded_in": recorded_in} if recorded_in else {}),
        # What a saved module's forward adds to its output (None: a state_dict, which runs nothing).
        "output_offset": offset,
        "dtype": str(graph.edge_attr.dtype).removeprefix("torch."),
        "finite": bool(torch.isfinite(graph.edge_attr).all() and torch.isfinite(graph.x).all()),
    }
    if spec.is_conv:
        info["conv_layers"] = spec.conv_layers
        info["kernel_sizes"] = [list(kernel) for kernel in spec.kernel_sizes]
        info["num_weights"] = spec.num_params - spec.num_nodes + spec.in_dim
        for row, kernel in zip(layers, spec.kernel_sizes):
            row["kernel"] = list(kernel)
    return info


def _traced_output_offset(content: nn.Module | dict) -> float | None:
    """The constant a saved module adds to its last layer's output, as tracing it measures."""
    if not isinstance(content, nn.Module):
        return None
    measured = (from_cnn_module if holds_cnn(content) else from_module)(content).output_offset
    return None if measured is None else measured.value


def network_parameter_count(spec: WeightSpaceSpec, has_bias: list[bool]) -> int:
    """The network's own parameters: every weight, and the biases of the layers that have them.

    Unlike :attr:`WeightSpaceSpec.num_params` this leaves out the zeros that stand in for
    missing biases.
    """
    weights = spec.num_params - (spec.num_nodes - spec.in_dim)
    return weights + sum(width for width, flag in zip(spec.widths[1:], has_bias, strict=True) if flag)


def format_info(info: dict[str, Any]) -> str:
    """The human-readable report of :func:`describe_checkpoint`'s dict."""
    signature = info["signature"]
    biases = info["has_bias"]
    if all(biases):
        bias_text = "every layer"
    elif not any(biases):
        bias_text = "none (stored as zeros)"
    else:
        without = ", ".join(str(layer) for layer, flag in enumerate(biases, start=1) if not flag)
        bias_text = f"layers {', '.join(str(i) for i, flag in enumerate(biases, start=1) if flag)} (none in {without})"
    weights = info.get("num_weights", info["num_edges"])
    activation = info["activation"]
    if activation == UNKNOWN and info["kind"].startswith("state_dict"):
        activation = f"{UNKNOWN} (a state_dict does not record it)"
    elif info.get("activation_recorded_in"):
        activation = f"{activation} (as {shown_path(info['activation_recorded_in'])} records it)"
    lines = [
        f"file        {shown_path(info['path'])}",
        f"content     {info['kind']}",
        f"widths      {'-'.join(map(str, info['widths']))}{_kernels_text(info)}",
        f"signature   M={signature['num_weight_layers']} weight layers, d_0={signature['in_dim']}, d_M={signature['out_dim']}",
        f"parameters  {info['num_params']} ({weights} weights, {info['num_params'] - weights} biases)",
        f"graph       {info['num_nodes']} nodes, {info['num_edges']} edges",
        f"biases      {bias_text}",
        f"activation  {activation}",
        *_offset_lines(info.get("output_offset")),
        f"dtype       {info['dtype']}{'' if info['finite'] else ', contains NaN or inf'}",
        "",
        _table(info),
    ]
    return "\n".join(lines)


def _offset_lines(offset: float | None) -> list[str]:
    if not offset:
        return []
    return [f"output      adds {offset!r} to the last layer's output (convert with --output-offset {offset!r})"]


def _kernels_text(info: dict[str, Any]) -> str:
    if "kernel_sizes" not in info:
        return ""
    convs = info["kernel_sizes"][: info["conv_layers"]]
    return f" (CNN: convolutions {', '.join(f'{h}x{w}' for h, w in convs)}, then linear layers)"


def _table(info: dict[str, Any]) -> str:
    header = ("layer", "in -> out", "edges", "nodes", "bias")
    rows = [("0 input", "-", "0", str(info["input_nodes"]), "-")]
    rows += [
        (
            str(row["layer"]),
            f"{row['in']} -> {row['out']}",
            str(row["edges"]),
            str(row["nodes"]),
            "yes" if row["bias"] else "no",
        )
        for row in info["layers"]
    ]
    widths = [max(len(cells[column]) for cells in (header, *rows)) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in (header, *rows)
    )
