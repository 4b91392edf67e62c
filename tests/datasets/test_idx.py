import gzip
import hashlib
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from data_roots import mnist_root

from wsgraph.datasets.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from wsgraph.datasets.images import FASHION_MNIST_CLASSES, FASHION_MNIST_DEBIAN, load_images

# SHA-256 of the official MNIST idx files, decompressed (the gzip bytes differ between copies).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding of a uint8 array."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist_folder(root: Path, num_train: int = 20, num_test: int = 6, compress: bool = True) -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (num_train, 4, 5), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, num_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (num_test, 4, 5), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, num_test, dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = idx_bytes(array)
        (root / (name + (".gz" if compress else ""))).write_bytes(gzip.compress(data) if compress else data)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "images"
    path.write_bytes(gzip.compress(idx_bytes(array)) if compress else idx_bytes(array))
    read = read_idx(path, IMAGES_MAGIC)
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, array)


def test_read_idx_other_types(tmp_path):
    array = np.array([[1.5, -2.0], [3.25, 0.0]], dtype=">f4")
    path = tmp_path / "floats"
    path.write_bytes(struct.pack(">HBB", 0, 0x0D, 2) + struct.pack(">2I", 2, 2) + array.tobytes())
    read = read_idx(path)
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, array.astype(np.float32))


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(3, dtype=np.uint8)))
    with pytest.raises(ValueError, match=rf"labels: bad magic number {LABELS_MAGIC} \(expected {IMAGES_MAGIC}\)"):
        read_idx(path, IMAGES_MAGIC)
    path.write_bytes(b"PK\x03\x04 not idx at all")
    with pytest.raises(ValueError, match=r"labels: bad magic number 1347093252 \(not an idx file\)"):
        read_idx(path)


def test_read_idx_truncated(tmp_path):
    path = tmp_path / "images.gz"
    data = idx_bytes(np.ones((3, 4, 4), dtype=np.uint8))
    path.write_bytes(gzip.compress(data[:-5]))
    with pytest.raises(ValueError, match=r"truncated idx file: shape \(3, 4, 4\) needs 48 data bytes, found 43"):
        read_idx(path)
    path.write_bytes(data[:10])
    with pytest.raises(ValueError, match="truncated idx header"):
        read_idx(path)
    path.write_bytes(gzip.compress(data)[:-12])
    with pytest.raises(ValueError, match="corrupt or truncated gzip stream"):
        read_idx(path)
    path.write_bytes(data + b"\x00")
    with pytest.raises(ValueError, match=r"bytes after the 48 data bytes of shape \(3, 4, 4\)"):
        read_idx(path)


def read_with_peak_memory(path: Path) -> tuple[int, str]:
    """The refusal of `path` and the most memory taken to reach it."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as raised:
            read_idx(path, IMAGES_MAGIC)
        return tracemalloc.get_traced_memory()[1], str(raised.value)
    finally:
        tracemalloc.stop()


def test_read_idx_gzip_bomb_reads_only_the_declared_size(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones((2, 2, 2), dtype=np.uint8)) + bytes(20_000_000)))
    peak, message = read_with_peak_memory(path)
    assert message == f"{path}: idx file has bytes after the 8 data bytes of shape (2, 2, 2)"
    assert peak < 4_000_000


def test_read_idx_gzip_bomb_declaring_more_than_gzip_can_hold(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 2**20, 2**10, 2**10)
    path.write_bytes(gzip.compress(header + bytes(20_000_000)))
    peak, message = read_with_peak_memory(path)
    assert message.startswith(f"{path}: truncated idx file: shape (1048576, 1024, 1024) needs 1099511627776 data")
    assert message.endswith(f"more than a {path.stat().st_size}-byte gzip file can hold")
    assert peak < 4_000_000


def test_read_idx_sizes_beyond_int64(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 2**22, 2**21, 2**21) + b"abc")
    with pytest.raises(ValueError, match=r"^.*images: truncated idx file: .* needs 18446744073709551616 data bytes"):
        read_idx(path, IMAGES_MAGIC)


def test_mnist_label_out_of_range(tmp_path):
    arrays = write_mnist_folder(tmp_path)
    labels = arrays["train-labels-idx1-ubyte"]
    labels[17] = 200
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(
        ValueError, match=r"train-labels-idx1-ubyte\.gz: label 200 at index 17 is not below the 10 classes"
    ):
        load_images("mnist", tmp_path, val_size=5)


def test_mnist_train_and_test_images_of_different_sizes(tmp_path):
    write_mnist_folder(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((6, 5, 4), np.uint8))))
    with pytest.raises(
        ValueError,
        match=r"t10k-images-idx3-ubyte\.gz: images of shape \(5, 4\), "
        r"but those of .*train-images-idx3-ubyte\.gz have shape \(4, 5\)",
    ):
        load_images("mnist", tmp_path, val_size=5)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_folder_splits(tmp_path, compress):
    arrays = write_mnist_folder(tmp_path, compress=compress)
    images = load_images("mnist", tmp_path, val_size=5, seed=3)
    assert images.images.shape == (26, 4, 5) and images.images.dtype == torch.uint8
    counts = [int((images.split == code).sum()) for code in range(3)]
    assert counts == [15, 5, 6]
    train_images, train_labels = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    for code in (0, 1):
        chosen = images.split == code
        np.testing.assert_array_equal(images.images[chosen].numpy(), train_images[images.index[chosen].numpy()])
        np.testing.assert_array_equal(images.labels[chosen].numpy(), train_labels[images.index[chosen].numpy()])
    assert sorted(images.index[images.split < 2].tolist()) == list(range(20))
    test = images.only("test")
    np.testing.assert_array_equal(test.images.numpy(), arrays["t10k-images-idx3-ubyte"])
    assert test.index.tolist() == list(range(6))
    again = load_images("mnist", tmp_path, val_size=5, seed=3)
    assert torch.equal(again.index, images.index) and torch.equal(again.split, images.split)
    other = load_images("mnist", tmp_path, val_size=5, seed=4)
    assert not torch.equal(other.index, images.index)
    assert images.class_names == [str(d) for d in range(10)]


def test_mnist_folder_errors(tmp_path):
    write_mnist_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="no t10k-labels-idx1-ubyte"):
        load_images("mnist", tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(ValueError, match="t10k has 6 images but 4 labels"):
        load_images("mnist", tmp_path, val_size=2)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_images("mnist", tmp_path / "absent")
    with pytest.raises(ValueError, match="needs a root folder"):
        load_images("mnist")


def test_real_mnist_matches_checksums_and_split():
    folder = mnist_root()
    if folder is None:
        pytest.skip("no MNIST copy: set WSGRAPH_MNIST_ROOT to a folder holding the idx files")
    for name, digest in MNIST_SHA256.items():
        path = folder / name
        content = path.read_bytes() if path.exists() else gzip.decompress((folder / f"{name}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == digest, name
    images = load_images("mnist", folder)
    assert [int((images.split == code).sum()) for code in range(3)] == [55_000, 5_000, 10_000]
    assert images.images.shape[1:] == (28, 28)
    assert torch.bincount(images.labels).tolist() == [6903, 7877, 6990, 7141, 6824, 6313, 6876, 7293, 6825, 6958]


def test_debian_fashion_mnist():
    if not FASHION_MNIST_DEBIAN.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    images = load_images("fashion-mnist", split="test")
    assert len(images) == 10_000 and images.class_names == list(FASHION_MNIST_CLASSES)
    assert torch.bincount(images.labels).tolist() == [1000] * 10
