import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsgraph.datasets.images import ImageSet, load_images, stratified_split, to_intensities


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_digits_takes_no_root(tmp_path):
    with pytest.raises(
        ValueError, match=rf"source 'digits' ships with scikit-learn and reads no root, got root {tmp_path}"
    ):
        load_images("digits", tmp_path)


def test_digits_scaled_and_stratified():
    images = load_images("digits")
    assert images.images.shape == (1797, 8, 8) and images.images.dtype == torch.float32
    assert float(images.images.min()) == 0.0 and float(images.images.max()) == 1.0
    assert [int((images.split == code).sum()) for code in range(3)] == [1259, 179, 359]
    for label in range(10):
        members = images.labels == label
        count = int(members.sum())
        assert int((images.split[members] == 2).sum()) == round(0.2 * count)
        assert int((images.split[members] == 1).sum()) == round(0.1 * count)
    from sklearn.datasets import load_digits

    original = load_digits().images[images.index.numpy()] / 16.0
    np.testing.assert_array_equal(images.images.numpy(), original.astype(np.float32))
    assert torch.equal(load_images("digits", seed=0).split, images.split)
    assert not torch.equal(load_images("digits", seed=1).index, images.index)
    assert load_images("digits", split="val").split.unique().tolist() == [1]


def test_stratified_split_is_per_class():
    labels = torch.tensor([0] * 10 + [1] * 20)
    split = stratified_split(labels, seed=0)
    assert [int((split[:10] == code).sum()) for code in range(3)] == [7, 1, 2]
    assert [int((split[10:] == code).sum()) for code in range(3)] == [14, 2, 4]


def test_image_set_selections():
    images = load_images("digits")
    head = images.head_per_split(3)
    assert head.split.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert torch.equal(head.index[:3], images.index[:3])
    assert to_intensities(images.images[:2]).shape == (2, 8, 8, 1)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        images.only("dev")
    with pytest.raises(ValueError, match="labels has shape"):
        ImageSet(images.images[:2], images.labels[:3], images.split[:2], images.index[:2], [])


def test_image_folder_without_split(tmp_path):
    rng = np.random.default_rng(0)
    written = {}
    for label, name in enumerate(["cat", "dog"]):
        for item in range(10):
            array = rng.integers(0, 256, (6, 7), dtype=np.uint8)
            write_png(tmp_path / name / f"{item:02d}.png", array)
            written[(label, item)] = array
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    images = load_images("imagefolder", tmp_path)
    assert images.class_names == ["cat", "dog"]
    assert images.images.shape == (20, 6, 7) and images.images.dtype == torch.uint8
    for position in range(20):
        label, index = int(images.labels[position]), int(images.index[position])
        np.testing.assert_array_equal(images.images[position].numpy(), written[(label, index % 10)])
    assert [int((images.split == code).sum()) for code in range(3)] == [14, 2, 4]
    assert images.source["official_split"] is False


def test_image_folder_with_splits_and_colour(tmp_path):
    rng = np.random.default_rng(1)
    for split, count in (("train", 10), ("test", 3)):
        for name in ("a", "b"):
            for item in range(count):
                shape = (5, 5, 3) if (name, item) == ("b", 0) else (5, 5)
                write_png(tmp_path / split / name / f"{item}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    images = load_images("imagefolder", tmp_path)
    assert images.images.shape == (26, 5, 5, 3) and images.channels == 3
    assert [int((images.split == code).sum()) for code in range(3)] == [18, 2, 6]
    assert images.source["official_split"] is True
    grey = np.asarray(Image.open(tmp_path / "test" / "a" / "0.png").convert("RGB"))
    np.testing.assert_array_equal(images.only("test").images[0].numpy(), grey)


def test_image_folder_errors(tmp_path):
    write_png(tmp_path / "a" / "0.png", np.zeros((4, 4), dtype=np.uint8))
    write_png(tmp_path / "a" / "1.png", np.zeros((4, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"1\.png: image is 5x4, the others 4x4"):
        load_images("imagefolder", tmp_path)
    (tmp_path / "a" / "1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"1\.png: not a readable image"):
        load_images("imagefolder", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no class folders"):
        load_images("imagefolder", empty)
    for split in ("train", "test"):
        write_png(tmp_path / "split" / split / ("x" if split == "train" else "y") / "0.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="class folder 'y' is not among the training classes"):
        load_images("imagefolder", tmp_path / "split")


def test_image_folder_pil_errors_name_the_file(tmp_path, monkeypatch):
    image = tmp_path / "a" / "0.png"
    write_png(image, np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8))
    image.write_bytes(image.read_bytes()[:170])
    with pytest.raises(ValueError, match=r"0\.png: not a readable image \(image file is truncated\)"):
        load_images("imagefolder", tmp_path)
    # PIL warns above MAX_IMAGE_PIXELS and refuses above twice that.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    for side in (4, 5):
        write_png(image, np.zeros((side, side), dtype=np.uint8))
        with pytest.raises(
            ValueError, match=rf"0\.png: not a readable image \(Image size \({side * side} pixels\) exceeds"
        ):
            load_images("imagefolder", tmp_path)


def write_cifar(folder: Path, per_batch: int = 3, num_test: int = 2) -> list[np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        count = num_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, count).tolist()
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, handle)
        batches.append(data)
    names = [
        n.encode() for n in ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    ]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names}, handle)
    return batches


def test_cifar_pickle_batches(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    images = load_images("cifar10", tmp_path, val_size=4)
    assert images.images.shape == (17, 32, 32, 3) and images.images.dtype == torch.uint8
    assert [int((images.split == code).sum()) for code in range(3)] == [11, 4, 2]
    assert images.class_names[0] == "airplane" and images.class_names[9] == "truck"
    first_train = images.select((images.split < 2) & (images.index == 0)).images[0]
    red = batches[0][0, :1024].reshape(32, 32)
    np.testing.assert_array_equal(first_train[..., 0].numpy(), red)
    np.testing.assert_array_equal(first_train[..., 2].numpy(), batches[0][0, 2048:].reshape(32, 32))


def test_cifar_errors(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3: missing CIFAR-10 batch"):
        load_images("cifar10", tmp_path)
    with open(folder / "data_batch_3", "wb") as handle:
        pickle.dump({b"data": [print]}, handle)
    with pytest.raises(
        ValueError,
        match=r"data_batch_3: not a CIFAR-10 pickle batch \(UnpicklingError: refusing to load builtins\.print\)",
    ):
        load_images("cifar10", tmp_path)
    nothing = tmp_path / "nothing-here"
    nothing.mkdir()
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 python batches"):
        load_images("cifar10", nothing)


class PickledArray:
    """Pickles as numpy does an array, with the shape and state given."""

    def __init__(self, arguments, state=None):
        self.arguments, self.state = arguments, state

    def __reduce__(self):
        reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
        if self.state is None:
            return (np.ndarray, self.arguments)
        return (reconstruct, self.arguments, self.state)


@pytest.mark.parametrize(
    "data",
    [
        PickledArray(((10**8, 3072),)),
        PickledArray((np.ndarray, (10**8, 3072), b"B"), (1, (1,), np.dtype("u1"), False, b"\x00")),
        PickledArray((np.ndarray, (0,), b"B"), (1, (10**10,), np.dtype("O"), False, [])),
    ],
)
def test_cifar_batch_declaring_huge_arrays(tmp_path, data):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": []}, protocol=4))
    with pytest.raises(
        ValueError, match=r"test_batch: not a CIFAR-10 pickle batch \(UnpicklingError: an array of shape"
    ):
        load_images("cifar10", tmp_path, val_size=4)


def test_cifar_batch_declaring_huge_bytes(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "test_batch").write_bytes(b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"abc")
    with pytest.raises(ValueError, match=r"test_batch: not a CIFAR-10 pickle batch \(declares an object too large"):
        load_images("cifar10", tmp_path, val_size=4)


@pytest.mark.parametrize(
    ("meta", "reason"),
    [
        ({b"x": 1}, r"label_names is not a list of strings"),
        ({b"label_names": 5}, r"label_names is not a list of strings"),
        ({b"label_names": [10**11]}, r"label_names is not a list of strings"),
        ({b"label_names": [b"\xff"] * 10}, r"a label name is not UTF-8"),
    ],
)
def test_cifar_bad_meta(tmp_path, meta, reason):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    with pytest.raises(ValueError, match=rf"batches\.meta: .*{reason}"):
        load_images("cifar10", tmp_path, val_size=4)


@pytest.mark.parametrize(("label", "reason"), [(99, "is not below the 10 classes"), (-1, "is negative")])
def test_cifar_label_out_of_range(tmp_path, label, reason):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    data = np.zeros((3, 3072), dtype=np.uint8)
    with open(folder / "data_batch_2", "wb") as handle:
        pickle.dump({b"data": data, b"labels": [0, label, 0]}, handle)
    with pytest.raises(ValueError, match=rf"data_batch_2: label {label} at index 1 {reason}"):
        load_images("cifar10", tmp_path, val_size=4)


def test_torchvision_source(tmp_path, monkeypatch):
    class Fake:
        classes = ("zero", "one")

        def __init__(self, root, train, download):
            assert root == str(tmp_path) and download is True
            count = 10 if train else 4
            self.data = torch.arange(count * 9, dtype=torch.uint8).reshape(count, 3, 3)
            self.targets = [i % 2 for i in range(count)]

    datasets = types.ModuleType("torchvision.datasets")
    datasets.Fake = Fake
    package = types.ModuleType("torchvision")
    package.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)
    images = load_images("torchvision:Fake", tmp_path, download=True)
    assert images.class_names == ["zero", "one"]
    assert [int((images.split == code).sum()) for code in range(3)] == [9, 1, 4]
    with pytest.raises(ValueError, match=r"torchvision\.datasets has no dataset 'Absent'"):
        load_images("torchvision:Absent", tmp_path)


def test_torchvision_missing_and_unknown_source(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ValueError, match="needs torchvision, which is not installed"):
        load_images("torchvision:MNIST", "/tmp")
    with pytest.raises(ValueError, match="unknown image source 'svhn'"):
        load_images("svhn")
