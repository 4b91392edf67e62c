"""Image sources for INR datasets, behind one interface: :func:`load_images`.

Sources (``source`` argument):

* ``"digits"``: scikit-learn's 8x8 digits (1,797 images, values 0..16 scaled to
  [0, 1]). It has no official split; a stratified one is made (see :func:`stratified_split`).
* ``"mnist"``, ``"fashion-mnist"``: any folder holding the four idx files
  (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``, each gzipped or not). Fashion-MNIST defaults to the folder
  of Debian's ``dataset-fashion-mnist`` package.
* ``"cifar10"``: the python pickle batches (``cifar-10-batches-py``), or an ImageFolder tree.
* ``"imagefolder"``: a tree ``root/<class>/<image>``, or ``root/train/<class>/<image>``
  and ``root/test/...`` (and optionally ``root/val/...``) kept as official splits.
* ``"torchvision:<Name>"``: ``torchvision.datasets.<Name>`` (e.g. ``torchvision:MNIST``,
  ``torchvision:CIFAR10``) when torchvision is installed, with its ``download`` option.

Official train/test splits are kept; a validation split is carved from train with a
fixed seed (MNIST and Fashion-MNIST: 55,000 / 5,000 / 10,000).
"""

from __future__ import annotations

import importlib
import math
import operator
import os
import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wsgraph.datasets.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from wsgraph.datasets.store import SPLITS

FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
SOURCES = ("digits", "mnist", "fashion-mnist", "cifar10", "imagefolder", "torchvision:<Name>")
# Validation images carved from an official training split, unless `val_size` says otherwise.
DEFAULT_VAL_SIZE = {"mnist": 5000, "fashion-mnist": 5000, "cifar10": 5000}
# Fractions of each class put in val and test where a source has no official split.
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2


@dataclass
class ImageSet:
    """Images with labels and their split.

    Attributes:
        images: ``[n, H, W]`` (grey) or ``[n, H, W, 3]`` (colour); ``uint8`` in 0..255 or
            ``float32`` in [0, 1].
        labels: ``[n]`` long class labels.
        split: ``[n]`` uint8, an index into :data:`~wsgraph.datasets.store.SPLITS`.
        index: ``[n]`` long, each image's number within its official split (within the
            whole set where there is none), so that an image keeps its identity whatever
            subset is taken.
        class_names: the name of each label.
        source: how the set was read (name, root, split rule), for the record.
    """

    images: Tensor
    labels: Tensor
    split: Tensor
    index: Tensor
    class_names: list[str]
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        count = self.images.size(0)
        if self.images.dim() not in (3, 4) or (self.images.dim() == 4 and self.images.size(3) != 3):
            raise ValueError(f"images have shape {tuple(self.images.shape)}, expected [n, H, W] or [n, H, W, 3]")
        for name in ("labels", "split", "index"):
            if getattr(self, name).shape != (count,):
                raise ValueError(f"ImageSet.{name} has shape {tuple(getattr(self, name).shape)}, expected ({count},)")

    def __len__(self) -> int:
        return self.images.size(0)

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (self.images.size(1), self.images.size(2))

    @property
    def channels(self) -> int:
        return 1 if self.images.dim() == 3 else 3

    def intensities(self) -> Tensor:
        """The images as ``float32`` in [0, 1], with a channel axis: ``[n, H, W, C]``."""
        return to_intensities(self.images)

    def select(self, mask: Tensor) -> ImageSet:
        """The images where the boolean ``mask`` [n] is true, in order."""
        return replace(
            self,
            images=self.images[mask],
            labels=self.labels[mask],
            split=self.split[mask],
            index=self.index[mask],
        )

    def only(self, split: str) -> ImageSet:
        """The images of one split (``"train"``, ``"val"`` or ``"test"``)."""
        return self.select(self.split == _split_code(split))

    def head_per_split(self, limit: int) -> ImageSet:
        """The first ``limit`` images of every split."""
        if limit < 0:
            raise ValueError(f"limit must be non-negative, got {limit}")
        rank = torch.zeros(len(self), dtype=torch.long)
        for code in range(len(SPLITS)):
            members = self.split == code
            rank[members] = torch.arange(int(members.sum()))
        return self.select(rank < limit)


def to_intensities(pixels: Tensor) -> Tensor:
    """``uint8`` (0..255) or [0, 1] images ``[n, H, W(, C)]`` -> ``float32`` ``[n, H, W, C]`` in [0, 1]."""
    values = pixels.float() / 255.0 if pixels.dtype == torch.uint8 else pixels.float()
    return values if values.dim() == 4 else values.unsqueeze(-1)


def load_images(
    source: str,
    root: str | os.PathLike | None = None,
    split: str | None = None,
    *,
    val_size: int | None = None,
    seed: int = 0,
    download: bool = False,
) -> ImageSet:
    """Read an image source with its train/val/test split.

    Args:
        source: one of :data:`SOURCES` (see the module docstring).
        root: where the files are; none for ``"digits"``, and not needed for
            ``"fashion-mnist"`` when Debian's package is installed.
        split: ``"train"``, ``"val"`` or ``"test"`` for one split; all by default.
        val_size: validation images carved from an official training split (default:
            5,000 for MNIST, Fashion-MNIST and CIFAR-10, a tenth of train otherwise).
        seed: the seed of the validation carve (and of the stratified split).
        download: let a ``torchvision:`` source download its files.

    Raises:
        FileNotFoundError: naming the missing folder or file.
        ValueError: for an unknown source, a corrupt file, or a bad split.
    """
    if split is not None:
        _split_code(split)
    name = source.lower()
    if name == "digits":
        if root is not None:
            # A root here is a mistake (another source meant?), not something to ignore silently.
            raise ValueError(f"source 'digits' ships with scikit-learn and reads no root, got root {root}")
        if val_size is not None:
            # Its stratified split is fixed (the demo's): a val_size would be silently ignored.
            raise ValueError(
                f"source 'digits' has a fixed stratified split ({1 - VAL_FRACTION - TEST_FRACTION:.0%} train, "
                f"{VAL_FRACTION:.0%} val, {TEST_FRACTION:.0%} test) and takes no val_size (--val-size), got {val_size}"
            )
        images = _digits(seed)
    elif name in ("mnist", "fashion-mnist"):
        images = _idx_source(name, root, val_size, seed)
    elif name == "cifar10":
        images = _cifar10(root, val_size, seed)
    elif name == "imagefolder":
        images = _image_folder(_require_root(name, root), val_size, seed)
    elif name.startswith("torchvision:"):
        images = _torchvision(source.split(":", 1)[1], root, val_size, seed, download)
    else:
        raise ValueError(f"unknown image source {source!r}; known: {', '.join(SOURCES)}")
    return images if split is None else images.only(split)


def stratified_split(labels: Tensor, seed: int) -> Tensor:
    """A fixed-seed split of a set without an official one: per class, 10% val, 20% test.

    Each class's images are shuffled with ``torch.Generator().manual_seed(seed)``; the
    first ``round(0.2 n_c)`` go to test, the next ``round(0.1 n_c)`` to val, the rest to
    train. Returns the ``[n]`` uint8 split codes.
    """
    generator = torch.Generator().manual_seed(seed)
    split = torch.zeros(labels.size(0), dtype=torch.uint8)
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        num_test = round(TEST_FRACTION * members.numel())
        num_val = round(VAL_FRACTION * members.numel())
        split[members[:num_test]] = SPLITS.index("test")
        split[members[num_test : num_test + num_val]] = SPLITS.index("val")
    return split


def _split_code(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return SPLITS.index(split)


def _require_root(source: str, root: str | os.PathLike | None) -> Path:
    if root is None:
        raise ValueError(f"source '{source}' needs a root folder (--root DIR)")
    path = Path(root)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"{path}: not a folder (--root of source '{source}' names the folder that holds its files)"
        )
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder (root of source '{source}')")
    # Resolved, so that the recorded source does not depend on the working directory.
    return path.resolve()


def _with_official_split(
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    class_names: list[str],
    source: dict[str, Any],
    val_size: int,
    seed: int,
    val: tuple[Tensor, Tensor] | None = None,
) -> ImageSet:
    """Concatenate train, val and test, carving val from train unless it is given."""
    train_images, train_labels = train
    train_index = torch.arange(train_labels.numel())
    split = torch.zeros(train_labels.numel(), dtype=torch.uint8)
    if val is None:
        if not 0 <= val_size < train_labels.numel():
            raise ValueError(f"val_size {val_size} must be below the {train_labels.numel()} training images")
        carved = torch.randperm(train_labels.numel(), generator=torch.Generator().manual_seed(seed))[:val_size]
        split[carved] = SPLITS.index("val")
        order = torch.cat([torch.nonzero(split == code).flatten() for code in (0, 1)])
        train_images, train_labels, train_index, split = (
            t[order] for t in (train_images, train_labels, train_index, split)
        )
        source = {**source, "val_rule": f"{val_size} images drawn from train by torch.randperm, seed {seed}"}
        parts = [(train_images, train_labels, train_index, split)]
    else:
        parts = [
            (train_images, train_labels, train_index, split),
            (val[0], val[1], torch.arange(val[1].numel()), torch.full_like(val[1], 1, dtype=torch.uint8)),
        ]
        source = {**source, "val_rule": "official val folder"}
    test_images, test_labels = test
    parts.append(
        (
            test_images,
            test_labels,
            torch.arange(test_labels.numel()),
            torch.full_like(test_labels, 2, dtype=torch.uint8),
        )
    )
    return ImageSet(
        images=torch.cat([p[0] for p in parts]),
        labels=torch.cat([p[1] for p in parts]).long(),
        split=torch.cat([p[3] for p in parts]),
        index=torch.cat([p[2] for p in parts]).long(),
        class_names=class_names,
        source={**source, "official_split": True},
    )


def _without_official_split(
    images: Tensor, labels: Tensor, class_names: list[str], source: dict, seed: int
) -> ImageSet:
    split = stratified_split(labels, seed)
    order = torch.argsort(split, stable=True)
    return ImageSet(
        images=images[order],
        labels=labels[order].long(),
        split=split[order],
        index=order.long(),
        class_names=class_names,
        source={
            **source,
            "official_split": False,
            "val_rule": f"stratified per class: {TEST_FRACTION:.0%} test, {VAL_FRACTION:.0%} val, seed {seed}",
        },
    )


def _digits(seed: int) -> ImageSet:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    names = [str(d) for d in range(10)]
    return _without_official_split(
        images, labels, names, {"name": "digits", "origin": "sklearn.datasets.load_digits"}, seed
    )


def _idx_source(name: str, root: str | os.PathLike | None, val_size: int | None, seed: int) -> ImageSet:
    if root is None and name == "fashion-mnist":
        if not FASHION_MNIST_DEBIAN.is_dir():
            raise FileNotFoundError(
                f"{FASHION_MNIST_DEBIAN}: no such folder; install Debian's dataset-fashion-mnist or pass --root DIR"
            )
        root = FASHION_MNIST_DEBIAN
    folder = _require_root(name, root)
    names = [str(d) for d in range(10)] if name == "mnist" else list(FASHION_MNIST_CLASSES)
    arrays, image_files = {}, {}
    for part in ("train", "t10k"):
        image_files[part] = _find_idx(folder, f"{part}-images", "idx3")
        labels_file = _find_idx(folder, f"{part}-labels", "idx1")
        images = read_idx(image_files[part], IMAGES_MAGIC)
        labels = read_idx(labels_file, LABELS_MAGIC)
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{folder}: {part} has {images.shape[0]} images but {labels.shape[0]} labels")
        _check_labels(labels_file, labels, len(names))
        arrays[part] = (torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))
    train_shape, test_shape = (tuple(arrays[part][0].shape[1:]) for part in ("train", "t10k"))
    if train_shape != test_shape:
        raise ValueError(
            f"{image_files['t10k']}: images of shape {test_shape}, "
            f"but those of {image_files['train']} have shape {train_shape}"
        )
    return _with_official_split(
        arrays["train"],
        arrays["t10k"],
        names,
        {"name": name, "root": str(folder)},
        DEFAULT_VAL_SIZE[name] if val_size is None else val_size,
        seed,
    )


def _find_idx(folder: Path, stem: str, kind: str) -> Path:
    """``train-images-idx3-ubyte`` and the spellings mirrors use (``.idx3-ubyte``, ``.gz``, ``raw/``)."""
    for directory in (folder, folder / "raw"):
        for name in (f"{stem}-{kind}-ubyte", f"{stem}.{kind}-ubyte"):
            for suffix in ("", ".gz"):
                if (directory / (name + suffix)).is_file():
                    return directory / (name + suffix)
    raise FileNotFoundError(f"{folder}: no {stem}-{kind}-ubyte[.gz] (expected the four idx files of MNIST)")


def _cifar10(root: str | os.PathLike | None, val_size: int | None, seed: int) -> ImageSet:
    folder = _require_root("cifar10", root)
    batches = next(
        (d for d in (folder, folder / "cifar-10-batches-py") if (d / "test_batch").is_file()),
        None,
    )
    if batches is None:
        if any(child.is_dir() for child in folder.iterdir()):
            return _image_folder(folder, val_size, seed, name="cifar10")
        raise FileNotFoundError(
            f"{folder}: no CIFAR-10 python batches (cifar-10-batches-py/test_batch) and no ImageFolder tree"
        )
    meta = batches / "batches.meta"
    names = (_cifar_label_names(meta) if meta.is_file() else None) or [str(d) for d in range(10)]
    train = [_cifar_batch(batches / f"data_batch_{i}", len(names)) for i in range(1, 6)]
    test = _cifar_batch(batches / "test_batch", len(names))
    return _with_official_split(
        (torch.cat([t[0] for t in train]), torch.cat([t[1] for t in train])),
        test,
        names,
        {"name": "cifar10", "root": str(batches)},
        DEFAULT_VAL_SIZE["cifar10"] if val_size is None else val_size,
        seed,
    )


def _cifar_label_names(path: Path) -> list[str]:
    names = _unpickle(path).get(b"label_names")
    if not isinstance(names, list | tuple) or not all(isinstance(name, bytes | str) for name in names):
        raise ValueError(f"{path}: not a CIFAR-10 batches.meta (label_names is not a list of strings)")
    try:
        return [name.decode() if isinstance(name, bytes) else name for name in names]
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: a label name is not UTF-8 ({error})") from error


def _cifar_batch(path: Path, num_classes: int) -> tuple[Tensor, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing CIFAR-10 batch")
    batch = _unpickle(path)
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except (KeyError, ValueError, TypeError, OverflowError) as error:
        raise ValueError(f"{path}: not a CIFAR-10 batch ({error.__class__.__name__}: {error})") from error
    if labels.ndim != 1:
        raise ValueError(f"{path}: labels of shape {labels.shape}, expected a list")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: {images.shape[0]} images but {labels.shape[0]} labels")
    _check_labels(path, labels, num_classes)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


def _check_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    # Here the culprit file is still known; later stages only see an out-of-range class.
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        index = int(bad[0])
        value = int(labels[index])
        reason = "is negative" if value < 0 else f"is not below the {num_classes} classes"
        raise ValueError(f"{path}: label {value} at index {index} {reason}")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a batch file cannot run code, nor
    make numpy allocate arrays holding more bytes in all than the file itself."""

    _RECONSTRUCT = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")})

    def __init__(self, handle: Any, file_size: int) -> None:
        super().__init__(handle, encoding="bytes")
        self._file_size = file_size
        self._array_bytes = 0
        unpickler = self

        # Arrays are made through this subclass so that both ways a pickle sizes one, a
        # constructor call and __setstate__, are checked before numpy allocates.
        class BoundedArray(np.ndarray):
            def __new__(cls, shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> BoundedArray:
                unpickler._reserve(shape, dtype)
                return super().__new__(cls, shape, dtype, *args, **kwargs)

            def __setstate__(self, state: Any) -> None:
                if isinstance(state, tuple) and len(state) in (4, 5):
                    shape, dtype = state[-4], state[-3]
                    unpickler._reserve(shape, dtype)
                super().__setstate__(state)

        self._array_type = BoundedArray

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._RECONSTRUCT:
            return self._reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return self._array_type
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not self._array_type:
            raise pickle.UnpicklingError(f"refusing to reconstruct a {getattr(subtype, '__name__', subtype)!r}")
        return subtype(shape, dtype)

    def _reserve(self, shape: Any, dtype: Any) -> None:
        dims = tuple(operator.index(size) for size in (shape if isinstance(shape, tuple | list) else (shape,)))
        needed = math.prod(dims) * np.dtype(dtype).itemsize
        if self._array_bytes + needed > self._file_size:
            raise pickle.UnpicklingError(
                f"an array of shape {dims} takes {needed} bytes, more than the {self._file_size}-byte file holds"
            )
        self._array_bytes += max(needed, 0)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            content = _ArrayUnpickler(handle, os.fstat(handle.fileno()).st_size).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, OverflowError) as error:
        raise ValueError(f"{path}: not a CIFAR-10 pickle batch ({error.__class__.__name__}: {error})") from error
    except MemoryError as error:
        # The pickle opcodes for bytes and strings carry a length that is allocated before it is read.
        raise ValueError(f"{path}: not a CIFAR-10 pickle batch (declares an object too large for memory)") from error
    if not isinstance(content, dict):
        raise ValueError(f"{path}: not a CIFAR-10 pickle batch (holds a {type(content).__name__})")
    return content


def _image_folder(folder: Path, val_size: int | None, seed: int, name: str = "imagefolder") -> ImageSet:
    source = {"name": name, "root": str(folder)}
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        class_names = _class_folders(folder / "train")
        train_files = _image_files(folder / "train", class_names)
        test_files = _image_files(folder / "test", class_names)
        val_files = _image_files(folder / "val", class_names) if (folder / "val").is_dir() else None
        every = train_files + test_files + (val_files or [])
        pixels = _load_pixels([path for path, _ in every])
        cuts = np.cumsum([0, len(train_files), len(test_files)])
        labels = torch.tensor([label for _, label in every], dtype=torch.long)
        train = (pixels[cuts[0] : cuts[1]], labels[cuts[0] : cuts[1]])
        test = (pixels[cuts[1] : cuts[2]], labels[cuts[1] : cuts[2]])
        val = (pixels[cuts[2] :], labels[cuts[2] :]) if val_files is not None else None
        size = round(0.1 * len(train_files)) if val_size is None else val_size
        return _with_official_split(train, test, class_names, source, size, seed, val=val)
    class_names = _class_folders(folder)
    files = _image_files(folder, class_names)
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    return _without_official_split(_load_pixels([path for path, _ in files]), labels, class_names, source, seed)


def _class_folders(folder: Path) -> list[str]:
    names = sorted(child.name for child in folder.iterdir() if child.is_dir() and not child.name.startswith("."))
    if not names:
        raise FileNotFoundError(f"{folder}: no class folders (expected {folder}/<class>/<image files>)")
    return names


def _image_files(folder: Path, class_names: list[str]) -> list[tuple[Path, int]]:
    unknown = sorted(
        child.name
        for child in folder.iterdir()
        if child.is_dir() and not child.name.startswith(".") and child.name not in class_names
    )
    if unknown:
        raise ValueError(f"{folder}: class folder '{unknown[0]}' is not among the training classes")
    files = [
        (path, label)
        for label, name in enumerate(class_names)
        if (folder / name).is_dir()
        for path in sorted((folder / name).rglob("*"))
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
    ]
    if not files:
        raise FileNotFoundError(f"{folder}: no image files in its class folders")
    return files


def _load_pixels(paths: list[Path]) -> Tensor:
    """Read images of one size as uint8, greyscale if every one is, else RGB."""
    from PIL import Image

    opened = []
    for path in paths:
        with _readable_image(path), Image.open(path) as image:
            opened.append((image.mode, image.size))
    grey = all(mode in ("1", "L", "I", "I;16", "F") for mode, _ in opened)
    size = opened[0][1]
    arrays = []
    for path, (_, this_size) in zip(paths, opened):
        if this_size != size:
            raise ValueError(f"{path}: image is {this_size[0]}x{this_size[1]}, the others {size[0]}x{size[1]}")
        with _readable_image(path), Image.open(path) as image:
            arrays.append(np.asarray(image.convert("L" if grey else "RGB"), dtype=np.uint8))
    return torch.from_numpy(np.stack(arrays))


@contextmanager
def _readable_image(path: Path) -> Iterator[None]:
    """Turn what PIL raises while reading ``path`` into a one-line ValueError naming it."""
    from PIL import Image

    with warnings.catch_warnings():
        # PIL only warns up to twice its pixel limit; such an image is as much a bomb.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
            OSError,
            SyntaxError,
            ValueError,
        ) as error:
            raise ValueError(f"{path}: not a readable image ({error})") from error


def _torchvision(
    name: str, root: str | os.PathLike | None, val_size: int | None, seed: int, download: bool
) -> ImageSet:
    try:
        datasets = importlib.import_module("torchvision.datasets")
    except ImportError as error:
        raise ValueError(f"source 'torchvision:{name}' needs torchvision, which is not installed") from error
    factory = getattr(datasets, name, None)
    if factory is None:
        raise ValueError(f"torchvision.datasets has no dataset {name!r}")
    if root is None:
        raise ValueError(f"source 'torchvision:{name}' needs a root folder (--root DIR) to read or download into")
    parts = []
    for train in (True, False):
        try:
            dataset = factory(str(root), train=train, download=download)
        except RuntimeError as error:
            raise FileNotFoundError(f"{root}: torchvision.datasets.{name}: {error}") from error
        data, targets = getattr(dataset, "data", None), getattr(dataset, "targets", None)
        if data is None or targets is None:
            raise ValueError(f"torchvision.datasets.{name} has no .data/.targets arrays; use an ImageFolder tree")
        parts.append((torch.as_tensor(np.asarray(data), dtype=torch.uint8), torch.as_tensor(np.asarray(targets))))
    classes = [str(c) for c in getattr(dataset, "classes", [])] or [str(c) for c in range(int(parts[0][1].max()) + 1)]
    return _with_official_split(
        parts[0],
        parts[1],
        classes,
        {"name": f"torchvision:{name}", "root": str(root)},
        round(0.1 * parts[0][1].numel()) if val_size is None else val_size,
        seed,
    )
