import math
import os
import shutil
from itertools import pairwise

import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from wsgraph import graph_to_params, mlp_to_graph
from wsgraph.datasets.checkpoint_folders import convert_checkpoints
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.store import (
    SPLITS,
    Shard,
    contents,
    dataset_fingerprint,
    read_meta,
    shard_paths,
    write_meta,
    write_shard,
)
from wsgraph.datasets.transforms import FirstLayerScale

ACTIVATION = "sine(30.0)"


def random_shard(widths, count, seed, regression=False, first_index=0):
    """SIREN-like stacked weights with labels, a random split and a PSNR per network."""
    generator = torch.Generator().manual_seed(seed)
    weights = [torch.randn(count, d_out, d_in, generator=generator) / d_in for d_in, d_out in pairwise(widths)]
    biases = [torch.randn(count, d_out, generator=generator) * 0.1 + layer for layer, d_out in enumerate(widths[1:])]
    if regression:
        y = torch.rand(count, 2, generator=generator) * 10
    else:
        y = torch.randint(0, 10, (count,), generator=generator)
    split = torch.randint(0, 3, (count,), generator=generator).to(torch.uint8)
    index = torch.arange(first_index, first_index + count)
    psnr = torch.rand(count, generator=generator) * 10 + 20
    return Shard(weights, biases, y, split, index, {"psnr": psnr})


def write_store(root, shards, **meta):
    for number, shard in enumerate(shards):
        write_shard(root, number, shard)
    write_meta(root, {"kind": "inr", "task": "classification", "num_classes": 10, "activation": ACTIVATION, **meta})
    return shards


def two_shards():
    """Two shards of one signature and different hidden widths."""
    return [random_shard((2, 8, 8, 1), 40, seed=0), random_shard((2, 5, 8, 1), 25, seed=1, first_index=40)]


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """A store that tests only read (it is processed once for the module)."""
    root = tmp_path_factory.mktemp("store")
    return root, write_store(root, two_shards())


@pytest.fixture
def store(tmp_path):
    """A store of the same networks that a test may change."""
    return tmp_path, write_store(tmp_path, two_shards())


@pytest.fixture(scope="module")
def expected(shared_store):
    """``mlp_to_graph`` of every stored network, in the dataset's order (train, val, test)."""
    _, shards = shared_store
    return [
        stored_graph(shard, n)
        for code in range(len(SPLITS))
        for shard in shards
        for n in (shard.split == code).nonzero().view(-1).tolist()
    ]


def stored_graph(shard, n):
    pairs = [(w[n], b[n]) for w, b in zip(shard.weights, shard.biases)]
    graph = mlp_to_graph(pairs, activation=ACTIVATION, y=shard.y[n])
    graph.source_id = shard.index[n : n + 1]
    graph.split = shard.split[n : n + 1].long()
    graph.psnr = shard.extras["psnr"][n : n + 1]
    return graph


def assert_graphs_equal(actual, expected):
    assert set(actual.keys()) == set(expected.keys())
    for key, value in expected:
        if isinstance(value, torch.Tensor):
            assert torch.equal(actual[key], value), key
        else:
            assert actual[key] == value, key


@pytest.mark.parametrize("split", [None, *SPLITS])
def test_items_equal_mlp_to_graph_of_the_stored_networks(shared_store, expected, split):
    root, _ = shared_store
    dataset = WeightSpaceDataset(root, split=split)
    if split is not None:
        expected = [graph for graph in expected if int(graph.split) == SPLITS.index(split)]
    assert len(dataset) == len(expected)
    for position, graph in enumerate(expected):
        assert_graphs_equal(dataset[position], graph)


def test_split_counts_add_up(shared_store):
    root, shards = shared_store
    counts = {name: len(WeightSpaceDataset(root, split=name)) for name in SPLITS}
    for code, name in enumerate(SPLITS):
        assert counts[name] == sum(int((shard.split == code).sum()) for shard in shards)
        assert counts[name] > 0
    assert len(WeightSpaceDataset(root)) == sum(counts.values()) == 65


def test_dataloader_batches_equal_batched_graphs(shared_store, expected):
    dataset = WeightSpaceDataset(shared_store[0])
    batches = list(DataLoader(dataset, batch_size=16))
    assert [batch.num_graphs for batch in batches] == [16, 16, 16, 16, 1]
    reference = Batch.from_data_list(expected[16:32])
    for key, value in reference:
        assert torch.equal(batches[1][key], value) if isinstance(value, torch.Tensor) else batches[1][key] == value
    params = graph_to_params(batches[1])
    assert all(
        torch.equal(w, e) for net, ref in zip(params, graph_to_params(reference)) for (w, _), (e, _) in zip(net, ref)
    )


def test_slicing_and_index_selection(shared_store, expected):
    dataset = WeightSpaceDataset(shared_store[0])
    subset = dataset[3:7]
    assert len(subset) == 4
    assert_graphs_equal(subset[2], expected[5])
    picked = dataset[torch.tensor([10, 2])]
    assert_graphs_equal(picked[0], expected[10])
    assert_graphs_equal(dataset[-1], expected[-1])
    assert torch.equal(dataset.y, torch.stack([graph.y[0] for graph in expected]))


def train_statistics(shards):
    means, stds = [], []
    for values in (
        [torch.cat([s.weights[layer][s.split == 0].flatten() for s in shards]) for layer in range(3)],
        [torch.cat([s.biases[layer][s.split == 0].flatten() for s in shards]) for layer in range(3)],
    ):
        means.append(torch.stack([v.double().mean() for v in values]).float())
        stds.append(torch.stack([v.double().std(correction=0) for v in values]).float())
    return means, stds


@pytest.mark.parametrize("split", ["train", "test"])
def test_normalisation_statistics_come_from_the_train_split(shared_store, split):
    root, shards = shared_store
    dataset = WeightSpaceDataset(root, split=split)
    (weight_mean, bias_mean), (weight_std, bias_std) = train_statistics(shards)
    stats = dataset.statistics
    torch.testing.assert_close(stats.weight_mean, weight_mean, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(stats.weight_std, weight_std, rtol=1e-5, atol=0)
    torch.testing.assert_close(stats.bias_mean, bias_mean, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(stats.bias_std, bias_std, rtol=1e-5, atol=0)
    everything = train_statistics([Shard(s.weights, s.biases, s.y, torch.zeros_like(s.split), s.index) for s in shards])
    assert not torch.allclose(stats.bias_mean, everything[0][1], rtol=1e-3, atol=0)


def test_normalize_applies_the_train_statistics_after_the_transform_and_inverts(shared_store):
    root, _ = shared_store
    raw = WeightSpaceDataset(root, split="val")
    normalized = WeightSpaceDataset(root, split="val", normalize=True)
    item = normalized[4]
    expected = raw.normalization(raw[4])
    assert torch.equal(item.edge_attr, expected.edge_attr) and torch.equal(item.x, expected.x)
    scaled = WeightSpaceDataset(root, split="val", transform=FirstLayerScale(2.0, 2.0), normalize=True)[4]
    assert torch.equal(scaled.edge_attr, raw.normalization(FirstLayerScale(2.0, 2.0)(raw[4])).edge_attr)
    restored = raw.normalization.inverse(item)
    torch.testing.assert_close(restored.edge_attr, raw[4].edge_attr, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(restored.x, raw[4].x, rtol=1e-6, atol=1e-6)


def test_metadata(shared_store):
    root, _ = shared_store
    dataset = WeightSpaceDataset(root, split="train")
    assert dataset.meta["kind"] == "inr"
    assert dataset.task == "classification" and dataset.num_classes == 10
    assert dataset.signature == (3, 2, 1)
    assert [str(spec) for spec in dataset.architectures] == ["2-5-8-1", "2-8-8-1"]
    with pytest.raises(ValueError, match="several architectures"):
        _ = dataset.widths
    assert repr(dataset) == f"WeightSpaceDataset({len(dataset)}, split='train')"


def test_regression_targets_and_single_architecture(tmp_path):
    shards = write_store(tmp_path, [random_shard((1, 6, 6, 1), 12, seed=3, regression=True)], task="regression")
    dataset = WeightSpaceDataset(tmp_path)
    assert dataset.widths == (1, 6, 6, 1)
    assert dataset.num_classes == 2
    assert dataset[0].y.shape == (1, 2)
    first_train = int((shards[0].split == 0).nonzero()[0])
    assert_graphs_equal(dataset[0], stored_graph(shards[0], first_train))


def process_counter(monkeypatch):
    calls = []
    original = WeightSpaceDataset.process

    def counting(self):
        calls.append(self.root)
        original(self)

    monkeypatch.setattr(WeightSpaceDataset, "process", counting)
    return calls


def test_processed_cache_is_reused_and_rebuilt_when_raw_data_changes(store, monkeypatch):
    root, _ = store
    calls = process_counter(monkeypatch)
    WeightSpaceDataset(root)
    WeightSpaceDataset(root, split="val")
    assert len(calls) == 1
    WeightSpaceDataset(root, force_reload=True)
    assert len(calls) == 2
    added = random_shard((2, 8, 8, 1), 5, seed=9, first_index=100)
    write_shard(root, 2, added)
    dataset = WeightSpaceDataset(root)
    assert len(calls) == 3 and len(dataset) == 70
    rewritten = random_shard((2, 8, 8, 1), 5, seed=10, first_index=100)
    write_shard(root, 2, rewritten)
    os.utime(shard_paths(root)[2], ns=(1, 1))
    dataset = WeightSpaceDataset(root)
    assert len(calls) == 4 and len(dataset) == 70
    assert bool(torch.isin(rewritten.extras["psnr"], dataset.psnr).all())
    processed = sorted(name for name in os.listdir(root / "processed") if name.endswith(".pt") and "-" in name)
    assert len(processed) == 4, "stale processed files must be removed"


def test_pre_transform_is_applied_once_per_shard(store, expected):
    root, _ = store
    dataset = WeightSpaceDataset(root, pre_transform=FirstLayerScale(2.0, 2.0))
    plain = expected[0]
    first = plain.edge_layer == 1
    assert torch.equal(dataset[0].edge_attr[first], plain.edge_attr[first] * 2)
    assert torch.equal(dataset[0].edge_attr[~first], plain.edge_attr[~first])


def test_bad_roots_and_arguments(tmp_path, store):
    with pytest.raises(FileNotFoundError, match=r"no meta\.json"):
        WeightSpaceDataset(tmp_path / "missing")
    root, _ = store
    with pytest.raises(ValueError, match="unknown split 'training'"):
        WeightSpaceDataset(root, split="training")
    write_shard(root, 2, random_shard((2, 8, 3), 4, seed=4))
    with pytest.raises(ValueError, match=r"shard-00002.pt: networks of signature .* \(2, 2, 3\)"):
        WeightSpaceDataset(root)


def test_damaged_files_are_named_in_the_error(store):
    root, _ = store
    WeightSpaceDataset(root)
    processed = next((root / "processed").glob("train-*.pt"))
    processed.write_bytes(processed.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"{processed.name}: unreadable processed cache"):
        WeightSpaceDataset(root, split="train")
    assert len(WeightSpaceDataset(root, split="train", force_reload=True)) > 0
    payload = torch.load(shard_paths(root)[0], weights_only=True)
    payload["weights"] = "not tensors"
    torch.save(payload, shard_paths(root)[0])
    with pytest.raises(ValueError, match=r"shard-00000.pt: not a valid wsgraph shard"):
        WeightSpaceDataset(root, force_reload=True)


def test_shards_without_extras_load(tmp_path):
    shard = random_shard((2, 4, 1), 6, seed=3)
    write_store(tmp_path, [shard])
    payload = torch.load(shard_paths(tmp_path)[0], weights_only=True)
    del payload["extras"]
    torch.save(payload, shard_paths(tmp_path)[0])
    dataset = WeightSpaceDataset(tmp_path)
    assert len(dataset) == 6 and "psnr" not in dataset[0]


def test_normalize_needs_a_train_split(tmp_path):
    shard = random_shard((2, 4, 1), 6, seed=2)
    write_store(
        tmp_path, [Shard(shard.weights, shard.biases, shard.y, torch.full((6,), 2, dtype=torch.uint8), shard.index)]
    )
    dataset = WeightSpaceDataset(tmp_path)
    assert len(dataset) == len(WeightSpaceDataset(tmp_path, split="test")) == 6
    assert len(WeightSpaceDataset(tmp_path, split="train")) == 0
    with pytest.raises(ValueError, match="no networks in the train split"):
        _ = dataset.normalization
    with pytest.raises(ValueError, match="no networks in the train split"):
        WeightSpaceDataset(tmp_path, normalize=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dataset_moved_to_cuda_gives_the_same_graphs_there(shared_store):
    root, _ = shared_store
    on_cpu = WeightSpaceDataset(root, split="train")
    on_gpu = WeightSpaceDataset(root, split="train").to("cuda")
    item = on_gpu[3]
    assert item.edge_attr.is_cuda and item.edge_index.is_cuda
    assert_graphs_equal(item.cpu(), on_cpu[3])
    normalized = on_gpu.normalization(item)
    torch.testing.assert_close(normalized.edge_attr.cpu(), on_cpu.normalization(on_cpu[3]).edge_attr)


def one_line_error(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert len(message.splitlines()) == 1, message
    return message


def recorded_store(root, shards, **meta):
    """A store whose meta.json records its shards and split sizes, as the dataset writers do."""
    split = torch.cat([shard.split for shard in shards])
    return write_store(root, shards, **contents(split, len(shards)), **meta)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "not a wsgraph dataset (a JSON list, not an object)"),
        ('"wsgraph-weights"', "not a wsgraph dataset (a JSON str, not an object)"),
        ("{", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not a wsgraph dataset (JSON nested too deeply to read)"),
        ('{"format": "wsgraph-weights", "version": NaN}', "dataset version NaN, this wsgraph reads versions 1 to 1"),
        ('{"format": "wsgraph-weights", "version": 2}', "dataset version 2, this wsgraph reads versions 1 to 1"),
    ],
    ids=["list", "string", "truncated", "nested", "version-nan", "version-newer"],
)
def test_meta_json_that_is_not_an_object_is_named(tmp_path, text, message):
    write_store(tmp_path, [random_shard((2, 4, 1), 6, seed=0)])
    (tmp_path / "meta.json").write_text(text)
    with pytest.raises(ValueError) as error:
        WeightSpaceDataset(tmp_path)
    assert one_line_error(error).startswith(f"{tmp_path / 'meta.json'}: {message}")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"task": 5}, "'task' must be 'classification', 'regression' or null, got 5"),
        ({"task": ["classification"]}, "'task' must be 'classification', 'regression' or null"),
        ({"num_classes": "ten"}, "'num_classes' must be an integer in [0, 100000], got \"ten\""),
        ({"num_classes": True}, "'num_classes' must be an integer in [0, 100000], got true"),
        ({"num_classes": 10**12}, "'num_classes' must be an integer in [0, 100000], got 1000000000000"),
        ({"class_names": "cat,dog"}, "'class_names' must be a list of strings"),
        (
            {"activation": 3},
            "'activation' must be a known activation name (e.g. 'relu', 'sine(30.0)', 'unknown'), got 3",
        ),
        (
            {"activation": "bogus"},
            "'activation' must be a known activation name (e.g. 'relu', 'sine(30.0)', 'unknown')",
        ),
        ({"activation": "sine(nan)"}, "'activation' must be a known activation name"),
        (
            {"activations": {"relu": 3, "swish": 1}},
            "'activations' must be an object of known activation names to counts",
        ),
        ({"activations": {"relu": -1}}, "'activations' must be an object of known activation names to counts"),
        ({"num_classes": 3, "class_names": ["a"]}, "'class_names' lists 1 name, but 'num_classes' is 3"),
        ({"num_classes": 1, "class_names": ["a", "b"]}, "'class_names' lists 2 names, but 'num_classes' is 1"),
        ({"widths": "2-4-1"}, "'widths' must be a list of at least two positive integers"),
        ({"image_shape": [8, 0]}, "'image_shape' must be [H, W] or [H, W, C] of positive integers"),
        ({"output_offset": "half"}, "'output_offset' must be a finite number"),
        ({"num_shards": 0}, "'num_shards' must be a positive integer, got 0"),
        ({"split_sizes": {"train": 1}}, "'split_sizes' must be {'train': N, 'val': N, 'test': N}"),
        ({"class_names": ["0.5", "nan", "1.5"]}, "the class names are numbers, 'nan' among them"),
    ],
)
def test_meta_entries_of_the_wrong_type_are_named(tmp_path, entry, message):
    write_store(tmp_path, [random_shard((2, 4, 1), 6, seed=0)], **entry)
    with pytest.raises(ValueError) as error:
        WeightSpaceDataset(tmp_path)
    assert one_line_error(error).startswith(f"{tmp_path / 'meta.json'}: {message}")


def test_the_writers_record_shards_and_split_sizes(tmp_path):
    shards = [random_shard((2, 4, 1), 6, seed=n, first_index=6 * n) for n in range(4)]
    recorded_store(tmp_path, shards)
    assert len(WeightSpaceDataset(tmp_path)) == 24
    shard_paths(tmp_path)[1].unlink()
    with pytest.raises(ValueError) as error:
        WeightSpaceDataset(tmp_path)
    assert one_line_error(error) == (
        f"{tmp_path}: shards/shard-00001.pt missing (meta.json records 4 shards); the dataset is incomplete"
    )
    shard_paths(tmp_path)[-1].unlink()
    with pytest.raises(ValueError, match=r"shards/shard-00001.pt and 1 more missing \(meta.json records 4 shards\)"):
        WeightSpaceDataset(tmp_path)


def test_a_shard_meta_json_does_not_record_is_refused(tmp_path):
    recorded_store(tmp_path, [random_shard((2, 4, 1), 6, seed=0)])
    write_shard(tmp_path, 1, random_shard((2, 4, 1), 6, seed=1))
    with pytest.raises(ValueError) as error:
        WeightSpaceDataset(tmp_path)
    assert one_line_error(error) == f"{tmp_path}: shards/shard-00001.pt is not one of the 1 shards meta.json records"


def test_a_replaced_shard_with_other_split_sizes_is_refused(tmp_path):
    shards = [random_shard((2, 4, 1), 30, seed=0), random_shard((2, 4, 1), 30, seed=1, first_index=30)]
    recorded_store(tmp_path, shards)
    write_shard(tmp_path, 1, random_shard((2, 4, 1), 20, seed=1, first_index=30))
    with pytest.raises(ValueError) as error:
        WeightSpaceDataset(tmp_path)
    message = one_line_error(error)
    assert message.startswith(f"{tmp_path}: the shards hold ") and "networks, meta.json records" in message


def test_meta_json_widths_that_are_not_the_shards_are_refused(tmp_path):
    recorded_store(tmp_path / "same", [random_shard((2, 4, 1), 6, seed=0)], widths=[2, 4, 1])
    assert len(WeightSpaceDataset(tmp_path / "same")) > 0
    recorded_store(tmp_path / "edited", [random_shard((2, 4, 1), 6, seed=0)], widths=[5, 4, 3])
    with pytest.raises(ValueError) as error:
        WeightSpaceDataset(tmp_path / "edited")
    assert one_line_error(error) == (
        f"{tmp_path / 'edited' / 'meta.json'}: records widths 5-4-3, but the shards hold 2-4-1; "
        "meta.json or a shard was replaced or edited"
    )


def test_datasets_written_before_the_record_open_unless_a_shard_number_is_missing(tmp_path):
    shards = [random_shard((2, 4, 1), 6, seed=n, first_index=6 * n) for n in range(4)]
    write_store(tmp_path, shards)
    assert len(WeightSpaceDataset(tmp_path)) == 24
    shard_paths(tmp_path)[-1].unlink()  # a lost last shard leaves no trace without the record
    assert len(WeightSpaceDataset(tmp_path)) == 18
    shard_paths(tmp_path)[1].unlink()
    with pytest.raises(ValueError) as error:
        WeightSpaceDataset(tmp_path)
    assert one_line_error(error) == (
        f"{tmp_path}: shards/shard-00001.pt missing (the shards are numbered 0..2); the dataset is incomplete"
    )


def replaced(shard, **fields):
    values = {
        "weights": shard.weights,
        "biases": shard.biases,
        "y": shard.y,
        "split": shard.split,
        "index": shard.index,
        "extras": shard.extras,
    }
    return Shard(**{**values, **fields})


def with_value(tensor, position, value):
    changed = tensor.clone()
    changed.view(-1)[position] = value
    return changed


@pytest.mark.parametrize(
    ("change", "declared", "message"),
    [
        (lambda s: replaced(s, split=with_value(s.split, 2, 3)), True, "split code 3 is not 0 (train), 1 (val) or 2"),
        (
            lambda s: replaced(s, weights=[with_value(s.weights[0], 5, math.nan), *s.weights[1:]]),
            True,
            "1 of 8 networks have NaN or infinite weights or biases",
        ),
        (
            lambda s: replaced(s, biases=[with_value(b, 0, math.inf) for b in s.biases]),
            True,
            "1 of 8 networks have NaN or infinite weights or biases",
        ),
        (
            lambda s: replaced(s, y=with_value(s.y, 1, 57)),
            True,
            "class label 57 is not below meta.json's num_classes 10",
        ),
        (lambda s: replaced(s, y=with_value(s.y, 1, -2)), True, "class label -2 is negative (-1 marks an unlabeled"),
        (
            lambda s: replaced(s, y=with_value(s.y, 1, 999999999999)),
            False,
            "class label 999999999999 would make 1,000,000,000,000 classes, more than 100,000",
        ),
    ],
)
def test_shard_values_no_model_can_learn_from_are_named(tmp_path, change, declared, message):
    write_store(tmp_path, [change(random_shard((2, 4, 1), 8, seed=0))])
    if not declared:
        write_meta(tmp_path, {"kind": "inr", "task": "classification", "activation": ACTIVATION})
    with pytest.raises(ValueError) as error:
        WeightSpaceDataset(tmp_path)
    assert one_line_error(error).startswith(f"{shard_paths(tmp_path)[0]}: {message}")


def test_infinite_regression_targets_are_refused_and_nan_ones_are_unlabeled(tmp_path):
    shard = random_shard((1, 4, 1), 8, seed=0, regression=True)
    write_store(tmp_path / "nan", [replaced(shard, y=with_value(shard.y, 0, math.nan))], task="regression")
    assert len(WeightSpaceDataset(tmp_path / "nan")) == 8
    write_store(tmp_path / "inf", [replaced(shard, y=with_value(shard.y, 0, -math.inf))], task="regression")
    with pytest.raises(ValueError) as error:
        WeightSpaceDataset(tmp_path / "inf")
    assert one_line_error(error) == (
        f"{shard_paths(tmp_path / 'inf')[0]}: 1 regression targets are infinite (NaN marks an unlabeled network)"
    )


def test_numeric_labels_with_a_nan_stay_a_regression_with_one_unlabeled_network(tmp_path):
    """A labels file of numbers with one 'nan' must not turn a regression set into classes named by numbers."""
    src = tmp_path / "checkpoints"
    rows = []
    for number in range(6):
        network = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
        (src).mkdir(exist_ok=True)
        torch.save(network.state_dict(), src / f"net{number}.pt")
        rows.append(f"net{number}.pt,{'nan' if number == 3 else number * 0.5}")
    (tmp_path / "targets.csv").write_text("\n".join(rows) + "\n")
    convert_checkpoints(src, tmp_path / "out", labels=tmp_path / "targets.csv", progress=False)
    dataset = WeightSpaceDataset(tmp_path / "out", log=False)
    assert dataset.meta["task"] == "regression" and "class_names" not in dataset.meta
    assert int(dataset.y.isnan().sum()) == 1
    (tmp_path / "targets.csv").write_text("\n".join(rows).replace("nan", "inf") + "\n")
    with pytest.raises(ValueError) as error:
        convert_checkpoints(src, tmp_path / "out2", labels=tmp_path / "targets.csv", progress=False)
    assert one_line_error(error) == f"{tmp_path / 'targets.csv'}: label 'inf' of 'net3.pt' is infinite"


def test_a_huge_class_label_from_a_labels_file_is_refused_before_training(tmp_path):
    src = tmp_path / "checkpoints"
    src.mkdir()
    rows = []
    for number in range(4):
        network = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
        torch.save(network.state_dict(), src / f"net{number}.pt")
        rows.append(f"net{number}.pt,{999999999999 if number == 2 else number % 2}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError) as error:
        convert_checkpoints(src, tmp_path / "out", labels=tmp_path / "labels.csv", progress=False)
    assert one_line_error(error) == (
        f"{tmp_path / 'labels.csv'}: class label 999999999999 of 'net2.pt' would make 1,000,000,000,000 classes, "
        "more than 100,000"
    )
    assert not (tmp_path / "out").exists()


def test_convert_records_shards_and_split_sizes(tmp_path):
    src = tmp_path / "checkpoints"
    src.mkdir()
    for number in range(5):
        network = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
        torch.save(network.state_dict(), src / f"net{number}.pt")
    convert_checkpoints(src, tmp_path / "out", shard_size=2, progress=False)
    meta = read_meta(tmp_path / "out")
    assert meta["num_shards"] == len(shard_paths(tmp_path / "out")) == 3
    assert meta["split_sizes"] == {name: len(WeightSpaceDataset(tmp_path / "out", split=name)) for name in SPLITS}
    assert sum(meta["split_sizes"].values()) == 5


def test_the_fingerprint_follows_the_data_not_its_place(tmp_path):
    shards = [random_shard((2, 4, 1), 6, seed=0), random_shard((2, 4, 1), 6, seed=1, first_index=6)]
    write_store(tmp_path / "a", shards)
    fingerprint = dataset_fingerprint(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    os.utime(shard_paths(tmp_path / "copy")[0], ns=(1, 1))
    assert dataset_fingerprint(tmp_path / "copy") == fingerprint
    recorded_store(tmp_path / "recorded", shards)
    assert dataset_fingerprint(tmp_path / "recorded") == fingerprint, "bookkeeping entries are not data"
    # A rerun of fit-inrs rewrites its PSNR table, whose float sums vary with the thread count.
    meta = read_meta(tmp_path / "copy")
    meta["psnr_db"] = {"all": {"count": 12, "mean": 23.446002621064867}}
    write_meta(tmp_path / "copy", {k: v for k, v in meta.items() if k not in ("format", "version")})
    assert dataset_fingerprint(tmp_path / "copy") == fingerprint, "fit-quality tables are derived from the shards"
    write_store(tmp_path / "b", [shards[0], random_shard((2, 4, 1), 6, seed=2, first_index=6)])
    assert dataset_fingerprint(tmp_path / "b") != fingerprint
    write_store(tmp_path / "c", shards, activation="relu")
    assert dataset_fingerprint(tmp_path / "c") != fingerprint


def test_building_the_cache_says_so_once_built_and_nothing_when_it_fails(tmp_path, monkeypatch, capsys):
    # Outside pytest a build is announced; a failing one must leave its error alone on stderr.
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    recorded_store(tmp_path / "good", [random_shard((2, 4, 1), 6, seed=0)], widths=[2, 4, 1])
    WeightSpaceDataset(tmp_path / "good")
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and said.startswith(f"Built the dataset cache {tmp_path / 'good' / 'processed'} (")
    WeightSpaceDataset(tmp_path / "good")
    assert capsys.readouterr().err == "", "an existing cache is not announced"

    recorded_store(tmp_path / "edited", [random_shard((2, 4, 1), 6, seed=0)], widths=[5, 4, 3])
    with pytest.raises(ValueError):
        WeightSpaceDataset(tmp_path / "edited")
    assert capsys.readouterr().err == ""


def test_a_folder_of_one_root_per_signature_names_its_roots(tmp_path):
    (tmp_path / "index.json").write_text("{}")
    for name in ("mlp-3layers-2in-1out", "mlp-2layers-3in-1out"):
        write_store(tmp_path / name, [random_shard((2, 4, 1), 6, seed=0)])
    with pytest.raises(FileNotFoundError) as error:
        WeightSpaceDataset(tmp_path)
    assert one_line_error(error) == (
        f"{tmp_path}: holds one dataset per signature (index.json lists them: mlp-2layers-3in-1out, "
        f"mlp-3layers-2in-1out); give one of them, e.g. {tmp_path / 'mlp-2layers-3in-1out'}"
    )


def _coded_shard(codes):
    shard = random_shard((2, 4, 1), 6, seed=0)
    shard.extras["activation_code"] = torch.tensor(codes, dtype=torch.int16)
    return shard


def test_networks_of_several_activations_each_keep_their_own(tmp_path):
    names = ["relu", "tanh", "sine(30.0)"]
    write_store(tmp_path, [_coded_shard([0, 1, 2, 1, 0, 2])], activation="unknown", activation_names=names)
    dataset = WeightSpaceDataset(tmp_path)
    order = [names[code] for code in [0, 1, 2, 1, 0, 2]]
    # The dataset lists its networks by split, then by position in the shard.
    split = random_shard((2, 4, 1), 6, seed=0).split.tolist()
    expected = [order[row] for code in range(3) for row in range(6) if split[row] == code]
    assert dataset.activations == expected == [graph.activation for graph in dataset]
    assert "activation_code" not in dataset[0] and "psnr" in dataset[0]


@pytest.mark.parametrize(
    ("codes", "names", "message"),
    [
        ([0, 1, 3, 0, 0, 0], ["relu", "tanh"], "activation codes must be integers 0..1 (meta.json lists 2"),
        ([0, -1, 0, 0, 0, 0], ["relu", "tanh"], "activation codes must be integers 0..1"),
        ([0, 1, 0, 0, 0, 0], None, "the shard numbers its networks' activations, but meta.json lists no activation"),
    ],
)
def test_activation_codes_that_do_not_fit_the_names_are_named(tmp_path, codes, names, message):
    extra = {} if names is None else {"activation_names": names}
    write_store(tmp_path, [_coded_shard(codes)], activation="unknown", **extra)
    with pytest.raises(ValueError) as error:
        WeightSpaceDataset(tmp_path)
    assert one_line_error(error).startswith(f"{tmp_path / 'shards' / 'shard-00000.pt'}: {message}")


@pytest.mark.parametrize(
    "names", [["relu"], ["relu", "relu"], ["sine(30)", "sine(30.0)"], ["relu", "swish"], "relu,tanh"]
)
def test_activation_names_must_be_two_or_more_known_names(tmp_path, names):
    write_store(tmp_path, [_coded_shard([0] * 6)], activation="unknown", activation_names=names)
    with pytest.raises(ValueError) as error:
        WeightSpaceDataset(tmp_path)
    assert "'activation_names' must be a list of two or more distinct known activation names" in one_line_error(error)


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (torch.tensor(1), "shard field 'activation_code' is a single value, not one entry per network"),
        (torch.zeros(6, dtype=torch.complex64), "activation codes must be integers 0..1"),
        (torch.zeros(6, dtype=torch.bool), "activation codes must be integers 0..1"),
    ],
)
def test_activation_codes_of_another_shape_or_kind_are_named(tmp_path, codes, message):
    shard = random_shard((2, 4, 1), 6, seed=0)
    shard.extras["activation_code"] = torch.zeros(6, dtype=torch.int16)
    write_store(tmp_path, [shard], activation="unknown", activation_names=["relu", "tanh"])
    payload = torch.load(shard_paths(tmp_path)[0], weights_only=True)
    payload["extras"]["activation_code"] = codes
    torch.save(payload, shard_paths(tmp_path)[0])
    with pytest.raises(ValueError) as error:
        WeightSpaceDataset(tmp_path)
    assert message in one_line_error(error) and "shard-00000.pt" in one_line_error(error)


def test_activation_names_that_contradict_the_recorded_counts_are_named(tmp_path):
    # Reordered names would run every network with another's activation; the counts meta.json keeps tell.
    write_store(
        tmp_path,
        [_coded_shard([0, 0, 0, 0, 1, 1])],
        activation="unknown",
        activation_names=["tanh", "relu"],
        activations={"relu": 4, "tanh": 2},
    )
    with pytest.raises(ValueError) as error:
        WeightSpaceDataset(tmp_path)
    assert one_line_error(error) == (
        f"{tmp_path / 'meta.json'}: 'activations' counts {{'relu': 4, 'tanh': 2}}, but the shards' activation codes "
        "with 'activation_names' ['tanh', 'relu'] give {'tanh': 4, 'relu': 2}; meta.json or a shard was edited"
    )
