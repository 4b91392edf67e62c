"""Networks edited by a trained editing model (``wsgraph edit``): checkpoint files, folders of
them, or a split of a dataset in, one saved network per input network out.

A model trained with ``--task dilate`` maps an INR's weights to those of an INR of the
dilated image. Each edited network is written as the ``nn.Sequential`` that
:func:`wsgraph.graph_to_mlp` rebuilds (``torch.save`` of the module: linear layers and the
recorded activation, which :func:`wsgraph.load_network_file` reads back without running
code): the plain chain of the edited layers. A constant the networks' recipe adds to their
output (+0.5 for wsgraph's image INRs, ``output_offset`` in a dataset's meta.json) is not
part of it, whether the input recorded it (a module adding it in its forward) or not (a
state_dict). Where the image shape is known (from the dataset given, or from
the data the model was trained on), the inputs and edits are rendered: each network's
image MSE against a dataset's dilated image goes to ``edits.csv``, the first few images to
``edits.png``. Everything is written into a hidden folder beside ``out`` and renamed into
place at the end, so an interrupted or failed command leaves ``out`` as it was.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import io
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from wsgraph.checks import is_count, is_number
from wsgraph.core.activations import UNKNOWN
from wsgraph.core.convert_mlp import graph_to_mlp
from wsgraph.datasets.checkpoint_folders import SkippedCheckpoint
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.store import read_meta
from wsgraph.errors import shown_path
from wsgraph.inrs.render import image_grid_coords, render_inr
from wsgraph.io import (
    atomic_write,
    followed_link,
    make_staging_folder,
    missing_folders,
    put_back_replaced_folders,
    refuse_unreplaceable_folder,
    remove_empty_folders,
    remove_stale_staging,
    rename_failure,
    replace_folder,
)
from wsgraph.locks import write_lock
from wsgraph.training.network_inputs import InputReport, NetworkBatch, NetworkReader, check_fits
from wsgraph.training.plots import EDITS_PNG, plot_edits
from wsgraph.training.predict import Predictor
from wsgraph.training.tasks import DILATED_KEY

# Larger images than any INR set's, and small enough that rendering a batch stays cheap.
MAX_IMAGE_SIDE = 4096
EDITS_CSV = "edits.csv"
NETWORKS_FOLDER = "networks"


@dataclass(frozen=True)
class ImageRendering:
    """How the INRs of one dataset show their images: the pixel grid and the output offset."""

    image_shape: tuple[int, ...]  # (H, W) or (H, W, C)
    output_offset: float

    @classmethod
    def from_meta(cls, meta: dict[str, Any], channels: int) -> ImageRendering | None:
        """As a dataset's ``meta.json`` (or a checkpoint) records it, for networks with ``channels``
        outputs; ``None`` where it records none, or none that fits: sides of 1 to
        :data:`MAX_IMAGE_SIDE` pixels, as many channels as outputs, a finite offset."""
        shape, offset = meta.get("image_shape"), meta.get("output_offset", 0.0)
        if not isinstance(shape, list) or len(shape) not in (2, 3) or not all(is_count(n) for n in shape):
            return None
        if not all(1 <= n <= MAX_IMAGE_SIDE for n in shape[:2]) or (len(shape) == 3 and shape[2] != channels):
            return None
        if not is_number(offset) or not math.isfinite(offset):
            return None
        return cls(tuple(shape), float(offset))

    def render(self, networks: Data) -> Tensor:
        """``[B, H, W, C]``: the images the networks show (not clipped)."""
        height, width = self.image_shape[:2]
        coords = image_grid_coords(height, width, networks.edge_attr.device)
        images = render_inr(networks, coords, output_offset=self.output_offset)
        return images.reshape(images.size(0), height, width, -1)


@dataclass
class Edits:
    """What :func:`edit_networks` returns.

    Attributes:
        out: the folder written.
        networks: one name per network: the file's path, or ``ROOT[split][index]``.
        files: the edited network's file, relative to ``out``.
        image_mse: per network, the edited network's image MSE against the dilated image its
            dataset stores (``None`` where there is none).
        unedited_image_mse: the same for the network as given: the reference an edit must beat.
        skipped: the files that could not be read (with ``skip_bad``), and why.
        notes: what the caller should know (networks that could not be rendered).
    """

    out: Path
    networks: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    image_mse: list[float | None] = field(default_factory=list)
    unedited_image_mse: list[float | None] = field(default_factory=list)
    skipped: list[SkippedCheckpoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def mean_image_mse(self) -> tuple[float, float] | None:
        """The mean image MSE of the edited and of the unedited networks, over those with a
        dilated image (``None``: none has one)."""
        pairs = [(a, b) for a, b in zip(self.image_mse, self.unedited_image_mse) if a is not None and b is not None]
        if not pairs:
            return None
        return sum(a for a, _ in pairs) / len(pairs), sum(b for _, b in pairs) / len(pairs)

    def rows(self) -> list[list[str]]:
        """The rows of ``edits.csv``, header first."""
        rows = [["network", "file", "image_mse", "unedited_image_mse"]]
        for name, file, edited, unedited in zip(self.networks, self.files, self.image_mse, self.unedited_image_mse):
            rows.append([name, file, *("" if value is None else f"{value:.6g}" for value in (edited, unedited))])
        return rows


def edit_networks(
    predictor: Predictor,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    split: str = "test",
    batch_size: int | None = None,
    trust_pickles: bool = False,
    activation: str | None = None,
    skip_bad: bool = False,
    force: bool = False,
    preview: int = 8,
) -> Edits:
    """Edit ``inputs``' networks with a trained editing model and write them to the folder ``out``.

    Args:
        predictor: a model trained with ``--task dilate`` (:func:`~wsgraph.training.predict.load_predictor`).
        inputs: checkpoint files, folders of them (searched recursively), or dataset roots
            (their ``split`` networks, with their dilated images as the truth).
        out: the folder to write: ``networks/`` (one ``.pt`` per network, named after its
            file, or ``DATASET/SPLIT/INDEX.pt``), ``edits.csv`` and ``edits.png``.
        split: which split of a dataset root.
        batch_size: networks per forward pass; by default the run's.
        trust_pickles: see :func:`wsgraph.load_network_file`; runs any code the files contain.
        activation: the hidden activation of networks whose files do not record it (state_dicts).
        skip_bad: edit the files that can be read and report the rest.
        force: replace ``out`` if an earlier ``edit_networks`` wrote it.
        preview: how many networks ``edits.png`` shows (0: no picture).

    Raises:
        FileExistsError: ``out`` holds files (without ``force``), files this function did not
            write, or files that came into it while the edit ran (they are kept).
        LockedError: another process is writing ``out``.
        ValueError: a model that does not edit networks; ``out`` that is the current folder or
            holds it; naming the input that cannot be read (without ``skip_bad``), holds no
            networks, or whose networks the model does not take; inputs none of which could be read.
    """
    spec = predictor.model.spec
    if spec.task != "dilate":
        raise ValueError(f"the model does not edit networks (--task {spec.task}); use wsgraph predict")
    shown, out = str(out), _target_folder(out)
    # An earlier edit's output inside an input folder is not read as input.
    reader = NetworkReader.for_model(
        spec,
        predictor.batch_size,
        split=split,
        batch_size=batch_size,
        trust_pickles=trust_pickles,
        activation=activation,
        skip_bad=skip_bad,
        truth=_dilated_image,
        exclude=out,
    )
    made = missing_folders(out.parent)
    try:
        with write_lock(out, "wsgraph edit"):
            remove_stale_staging(out, _STAGING_SUFFIX)
            put_back_replaced_folders(out, _REPLACED_SUFFIX)
            _refuse_to_replace(out, force, shown)
            try:
                staging = make_staging_folder(out, _STAGING_SUFFIX)
            except OSError as error:
                raise OSError(
                    f"--out {shown_path(shown)}: cannot write beside it ({error.strerror or error})"
                ) from None
            try:
                result = _edit_into(staging, predictor, reader, inputs, preview)
                result.out = Path(shown)
                _move_into_place(staging, out, force, shown)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        remove_empty_folders(made)
        raise
    return result


_FILLED = "--out {out}: files came into it while the edit ran; they are kept and the edit is not written"
# The hidden folders beside ``out``: an edit being written, and an earlier one being replaced.
_STAGING_SUFFIX, _REPLACED_SUFFIX = ".editing", ".edit-replaced"


def _target_folder(out: str | os.PathLike) -> Path:
    """The folder ``--out`` names, as one to create or replace by renaming: absolute, a symlink
    followed to the folder it names; never the current folder or one that holds it."""
    given = Path(out).absolute()
    try:
        # The folder it is in as the OS finds it (``link/..`` is the link target's parent).
        target = given.parent.resolve() / given.name if given.name not in ("", ".", "..") else given.resolve()
    except (OSError, RuntimeError) as error:
        raise ValueError(f"--out {out}: cannot follow its path ({error})") from None
    target = followed_link(target, f"--out {out}")
    refuse_unreplaceable_folder(target, f"--out {out}")
    return target


def _edit_into(
    folder: Path, predictor: Predictor, reader: NetworkReader, inputs: Sequence[str | os.PathLike], preview: int
) -> Edits:
    """Edit ``inputs``' networks and write the edits, ``edits.csv`` and ``edits.png`` into ``folder``."""
    model, spec = predictor.model, predictor.model.spec
    result = Edits(folder)
    channels = spec.signature[2]
    recorded = predictor.image_rendering
    trained_on = None if recorded is None else ImageRendering.from_meta(recorded, channels)
    renderings: dict[Path, ImageRendering | None] = {}
    shown: list[tuple[Tensor, Tensor, Tensor | None]] = []
    written: dict[PurePosixPath, str] = {}
    unrendered_noted = False
    device = next(iter(model.buffers())).device
    for batch in reader.batches(inputs, InputReport(result.skipped, result.notes)):
        for name, graph in zip(batch.names, batch.graphs):
            check_fits(spec, graph, name)
            _check_activation(graph, name)
        networks = Batch.from_data_list(batch.graphs).to(device)
        with torch.no_grad():
            edited = model(networks)
        modules = graph_to_mlp(edited.cpu())
        kept = [row for row, module in enumerate(modules) if _finite(module)]
        if len(kept) < len(modules):
            batch, networks, edited, modules = _without_non_finite_edits(
                batch, networks, edited, modules, kept, reader.skip_bad, result.skipped
            )
            if not kept:
                continue
        files = [_file_for(key, name, written) for key, name in zip(batch.keys, batch.names)]
        for file, module in zip(files, modules):
            atomic_write(folder / file, lambda handle, module=module: torch.save(module, handle))
        if batch.source is None:
            rendering = trained_on
        elif batch.source not in renderings:
            rendering = renderings[batch.source] = ImageRendering.from_meta(read_meta(batch.source), channels)
        else:
            rendering = renderings[batch.source]
        if rendering is None and not unrendered_noted:
            unrendered_noted = True
            why = "its dataset's meta.json records none" if batch.source is not None else _NO_RECORDED_SHAPE
            result.notes.append(
                f"{batch.names[0]}: no image shape that fits the networks is known ({why}); "
                "edits are written but not rendered"
            )
        edited_mse, unedited_mse = _image_errors(rendering, networks, edited, batch.truths, shown, preview)
        result.networks += batch.names
        result.files += [str(file) for file in files]
        result.image_mse += edited_mse
        result.unedited_image_mse += unedited_mse
    if not result.networks:
        first = result.skipped[0]
        raise ValueError(
            f"none of the {len(result.skipped)} networks could be edited (first: {first.path}: {first.reason})"
        )
    atomic_write(folder / EDITS_CSV, lambda handle: handle.write(_csv_text(result.rows()).encode()))
    if shown:
        plot_edits(folder / EDITS_PNG, shown)
    return result


def _finite(module: torch.nn.Module) -> bool:
    return all(bool(parameter.isfinite().all()) for parameter in module.parameters())


# Weights near the float limit overflow inside the editor: such an edit is no network.
_NON_FINITE_EDIT = "the edited network's weights are not finite (NaN or infinite; are its weights huge?)"


def _without_non_finite_edits(
    batch: NetworkBatch,
    networks: Batch,
    edited: Batch,
    modules: list[torch.nn.Module],
    kept: list[int],
    skip_bad: bool,
    skipped: list[SkippedCheckpoint],
) -> tuple[NetworkBatch, Batch, Batch, list[torch.nn.Module]]:
    """The batch without the networks whose edits are not finite, which are listed as skipped;
    raises a ``ValueError`` naming the first of them without ``skip_bad``."""
    dropped = sorted(set(range(len(modules))) - set(kept))
    if not skip_bad:
        raise ValueError(f"{batch.names[dropped[0]]}: {_NON_FINITE_EDIT} (pass --skip-bad to edit the others)")
    skipped += [SkippedCheckpoint(batch.names[row], _NON_FINITE_EDIT) for row in dropped]
    if not kept:
        return batch, networks, edited, []

    def pick(values: list) -> list:
        return [values[row] for row in kept]

    smaller = dataclasses.replace(
        batch, names=pick(batch.names), keys=pick(batch.keys), graphs=pick(batch.graphs), truths=pick(batch.truths)
    )
    networks = Batch.from_data_list(pick(networks.to_data_list()))
    edited = Batch.from_data_list(pick(edited.to_data_list()))
    return smaller, networks, edited, pick(modules)


def _dilated_image(dataset: WeightSpaceDataset, shown: str, report: InputReport) -> Callable[[Data], Any]:
    """A dataset network's dilated image, where the dataset stores them."""
    return lambda graph: getattr(graph, DILATED_KEY, None)


# Where the image shape of files' networks is looked up, as a note says it was not found.
_NO_RECORDED_SHAPE = (
    "neither the model's checkpoint nor, for an older one, the training data it names (where found) records one"
)


def _check_activation(graph: Data, name: str) -> None:
    if graph.activation == UNKNOWN:
        raise ValueError(
            f"{name}: the file does not record the hidden activation, which the edited network is saved "
            "and rendered with; pass --activation (activation= in Python), e.g. 'sine(30.0)'"
        )


def _file_for(key: PurePosixPath, name: str, written: dict[PurePosixPath, str]) -> PurePosixPath:
    """Where the edit of the network ``name`` goes, relative to the output folder."""
    # A .pth or .safetensors input keeps its suffix in the name (net.safetensors.pt): beside net.pt it stays apart.
    name_pt = key if key.suffix == ".pt" else key.with_name(key.name + ".pt")
    file = PurePosixPath(NETWORKS_FOLDER) / name_pt
    if file in written:
        raise ValueError(f"{name} and {written[file]} would both be written to {file}; give them in separate commands")
    written[file] = name
    return file


def _image_errors(
    rendering: ImageRendering | None,
    networks: Batch,
    edited: Data,
    truths: list[Any],
    shown: list[tuple[Tensor, Tensor, Tensor | None]],
    preview: int,
) -> tuple[list[float | None], list[float | None]]:
    """Each network's image MSE against its dilated image, edited and as given; the first
    ``preview`` renderings are added to ``shown``."""
    count = len(truths)
    if rendering is None or (len(shown) >= preview and all(truth is None for truth in truths)):
        return [None] * count, [None] * count
    with torch.no_grad():
        given, edits = rendering.render(networks).float().cpu(), rendering.render(edited).float().cpu()
    edited_mse: list[float | None] = []
    unedited_mse: list[float | None] = []
    for index, truth in enumerate(truths):
        target = None if truth is None else truth.reshape(edits[index].shape).float()
        edited_mse.append(None if target is None else float((edits[index] - target).square().mean()))
        unedited_mse.append(None if target is None else float((given[index] - target).square().mean()))
        if len(shown) < preview:
            shown.append((given[index], edits[index], target))
    return edited_mse, unedited_mse


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _refuse_to_replace(out: Path, force: bool, shown: str, *, after_edit: bool = False) -> None:
    """Raise a ``FileExistsError`` unless ``out`` is missing, empty, or (with ``force``) an earlier edit.
    ``after_edit``: ``out`` was fit to replace before the edit ran; a refusal now is about files
    that came into it meanwhile."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"--out {shown_path(shown)} exists and is not a folder")
    contents = {entry.name for entry in os.scandir(out)}
    if not contents:
        return
    if after_edit and not (force and EDITS_CSV in contents and contents <= {EDITS_CSV, EDITS_PNG, NETWORKS_FOLDER}):
        raise FileExistsError(_FILLED.format(out=shown_path(shown)))
    if not force:
        raise FileExistsError(f"--out {shown_path(shown)} exists; pass --force to replace it")
    if EDITS_CSV not in contents or not contents <= {EDITS_CSV, EDITS_PNG, NETWORKS_FOLDER}:
        raise FileExistsError(f"--out {shown_path(shown)} holds files wsgraph edit did not write; choose another --out")


def _move_into_place(staging: Path, out: Path, force: bool, shown: str) -> None:
    """Rename the finished ``staging`` folder to ``out``. Files may have come into ``out`` while the
    edit ran: it is looked at again, and an empty one is removed only while it stays empty."""
    _refuse_to_replace(out, force, shown, after_edit=True)
    try:
        replace_folder(staging, out, _REPLACED_SUFFIX)
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise FileExistsError(_FILLED.format(out=shown_path(shown))) from None
        raise OSError(f"--out {shown_path(shown)}: cannot put the edit there ({rename_failure(error)})") from None


def is_edit_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is what :func:`edit_networks` writes (``edits.csv`` and ``networks/``)."""
    return (Path(folder) / EDITS_CSV).is_file() and (Path(folder) / NETWORKS_FOLDER).is_dir()


def describe_edit_folder(folder: str | os.PathLike) -> dict[str, Any]:
    """What ``wsgraph info`` prints about an edit folder: its networks and their image errors.

    Raises:
        ValueError: naming ``edits.csv`` if it is not the table :func:`edit_networks` writes.
    """
    path = Path(folder) / EDITS_CSV
    header = Edits(Path(folder)).rows()[0]
    damaged = f"{shown_path(path)}: not the table wsgraph edit writes ({', '.join(header)})"
    networks, missing, pairs = 0, [], []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = csv.reader(handle)
            if next(rows, None) != header:
                raise ValueError(damaged)
            for row in rows:
                if len(row) != len(header):
                    raise ValueError(damaged)
                networks += 1
                if not (Path(folder) / row[1]).is_file():
                    missing.append(row[1])
                if row[2] and row[3]:
                    pairs.append((float(row[2]), float(row[3])))
    except (csv.Error, UnicodeDecodeError):
        raise ValueError(damaged) from None
    except ValueError as error:
        if str(error) == damaged:
            raise
        raise ValueError(f"{shown_path(path)}: an image MSE that is not a number") from None
    if not all(math.isfinite(value) for pair in pairs for value in pair):
        raise ValueError(f"{shown_path(path)}: an image MSE that is not finite")
    return {
        "path": str(folder),
        "networks": networks,
        "missing_files": missing,
        "with_targets": len(pairs),
        "image_mse": sum(a for a, _ in pairs) / len(pairs) if pairs else None,
        "unedited_image_mse": sum(b for _, b in pairs) / len(pairs) if pairs else None,
        "preview": (Path(folder) / EDITS_PNG).is_file(),
    }


def format_edit_folder_info(info: dict[str, Any]) -> str:
    """The human-readable report of :func:`describe_edit_folder`'s dict."""
    files = f"{info['networks']} edited networks under {NETWORKS_FOLDER}/"
    if info["missing_files"]:
        files += f" ({len(info['missing_files'])} listed but missing, first: {info['missing_files'][0]})"
    lines = [f"edits       {shown_path(info['path'])} (what wsgraph edit wrote)", f"networks    {files}"]
    if info["image_mse"] is not None:
        lines.append(
            f"image MSE   {info['image_mse']:.4g} against {info['with_targets']} dilated images "
            f"(as given: {info['unedited_image_mse']:.4g})"
        )
    lines.append(f"picture     {EDITS_PNG}" if info["preview"] else f"picture     none (no {EDITS_PNG})")
    return "\n".join(lines)
