"""Predicting zoo members' test accuracy: the zoo converts into a regression dataset with
named targets and per-member splits; the stats baseline and a trained model rank members
better than chance; the ranking metrics are right."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch_geometric.data import Batch

from wsgraph.cli.main import main
from wsgraph.core.convert_mlp import graph_to_mlp
from wsgraph.datasets.checkpoint_folders import convert_checkpoints
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.training import TrainConfig
from wsgraph.training.data import SplitData
from wsgraph.training.distributed import DistributedContext
from wsgraph.training.loaders import EpochPlan, StackedLoader
from wsgraph.training.regression import ranking_metrics
from wsgraph.training.run import train
from wsgraph.zoo.adapt import AdaptConfig, run_adaptation
from wsgraph.zoo.build import CHECKPOINTS, LABELS_CSV, TARGET_COLUMNS, ZooPlan, build_zoo, read_records
from wsgraph.zoo.data import load_zoo_data
from wsgraph.zoo.hyperparams import SearchSpace
from wsgraph.zoo.members import MemberArchitecture
from wsgraph.zoo.stats import fit_stats_gbt, weight_statistics


@pytest.fixture(scope="module")
def mlp_zoo(tmp_path_factory) -> Path:
    """160 digit MLPs (64-16-16-10) whose accuracies spread from chance to about 90%."""
    data, shape, classes = load_zoo_data("digits", test_size=200)
    plan = ZooPlan(
        source="digits",
        architecture=MemberArchitecture("mlp", shape, classes, 16),
        count=160,
        space=SearchSpace(train_fraction=(0.05, 0.6), epochs=(1, 4), lr=(1e-4, 3e-2)),
        batch_size=16,
        shard_size=80,
        test_size=200,
        train_eval_size=100,
    )
    out = tmp_path_factory.mktemp("zoo") / "digits-mlp"
    build_zoo(plan, data, out, progress=False)
    return out


@pytest.fixture(scope="module")
def mlp_dataset(mlp_zoo: Path) -> Path:
    out = mlp_zoo.parent / "digits-mlp-data"
    convert_checkpoints(mlp_zoo / CHECKPOINTS, out, labels=mlp_zoo / LABELS_CSV, progress=False)
    return out


def test_the_converted_zoo_keeps_named_targets_and_member_splits(mlp_zoo: Path, mlp_dataset: Path) -> None:
    meta = json.loads((mlp_dataset / "meta.json").read_text())
    assert meta["task"] == "regression" and meta["target_names"] == list(TARGET_COLUMNS)
    records = {r["path"]: r for r in read_records(mlp_zoo)}
    paths = json.loads((mlp_dataset / "checkpoints.json").read_text())["paths"]
    for split in ("train", "val", "test"):
        dataset = WeightSpaceDataset(mlp_dataset, split=split)
        for row in range(len(dataset)):
            record = records[paths[str(int(dataset.source_id[row]))]]
            assert record["split"] == split
            assert float(dataset.y[row, 0]) == pytest.approx(record["test_accuracy"], abs=1e-6)


def test_each_converted_member_records_and_runs_with_its_own_activation(
    mlp_zoo: Path, mlp_dataset: Path, capsys
) -> None:
    records = {r["path"]: r for r in read_records(mlp_zoo) if r["path"] is not None}
    counts = {name: sum(r["activation"] == name for r in records.values()) for name in ("relu", "tanh")}
    assert min(counts.values()) > 0
    meta = json.loads((mlp_dataset / "meta.json").read_text())
    assert meta["activations"] == counts and meta["activation"] == "unknown"
    assert main(["info", str(mlp_dataset)]) == 0
    assert f"activation  per network: relu {counts['relu']}, tanh {counts['tanh']}" in capsys.readouterr().out
    paths = json.loads((mlp_dataset / "checkpoints.json").read_text())["paths"]
    images = load_zoo_data("digits", test_size=20)[0].test_images
    dataset = WeightSpaceDataset(mlp_dataset, split="test")
    own = [records[paths[str(int(graph.source_id))]]["activation"] for graph in dataset]
    assert dataset.activations == own and set(own) == {"relu", "tanh"}
    # Also through a copy (storage re-collated from whole graphs) and a selection of networks.
    assert [graph.activation for graph in dataset.copy()] == own
    assert dataset[[2, 0]].activations == dataset[[2, 0]].copy().activations == [own[2], own[0]]
    for graph, activation in zip(dataset, own):
        assert graph.activation == activation and "activation_code" not in graph
        record = records[paths[str(int(graph.source_id))]]
        member = MemberArchitecture("mlp", (8, 8, 1), 10, 16).build(activation).eval()
        member.load_state_dict(torch.load(mlp_zoo / CHECKPOINTS / record["path"], weights_only=True))
        with torch.no_grad():
            torch.testing.assert_close(graph_to_mlp(graph)(images.flatten(1)), member(images))
    # A batch names each graph's own, from PyG's collation and from the stacked loader alike.
    assert Batch.from_data_list(list(dataset)).activation == own
    cpu = torch.device("cpu")
    plan = EpochPlan(len(dataset), 5, shuffle=False, seed=0, context=DistributedContext(0, 1, 0, cpu))
    loader = StackedLoader(SplitData("test", dataset, torch.arange(len(dataset))), dataset.architectures[0], plan, cpu)
    assert [name for batch in loader for name in batch.activation] == own


def test_adapt_runs_each_member_of_a_mixed_zoo_with_its_own_activation(mlp_zoo: Path, mlp_dataset: Path) -> None:
    # The unedited members, run by adapt on the zoo's own test images, score what the zoo recorded for them:
    # a tanh member run as a ReLU network would not.
    config = AdaptConfig(data=str(mlp_dataset), source="digits", editors=("mlp",), epochs=1, test_size=200)
    result = run_adaptation(config)
    records = {r["path"]: r for r in read_records(mlp_zoo) if r["path"] is not None}
    paths = json.loads((mlp_dataset / "checkpoints.json").read_text())["paths"]
    test = WeightSpaceDataset(mlp_dataset, split="test")
    recorded = [records[paths[str(int(graph.source_id))]]["test_accuracy"] for graph in test]
    assert {records[paths[str(int(graph.source_id))]]["activation"] for graph in test} == {"relu", "tanh"}
    unedited = result["methods"]["unedited"]["source_accuracy"]
    assert unedited["mean"] == pytest.approx(float(np.mean(recorded)), abs=1e-9)
    assert (unedited["min"], unedited["max"]) == pytest.approx((min(recorded), max(recorded)), abs=1e-9)


def test_one_activation_for_a_mixed_zoo_is_refused_before_anything_is_written(mlp_zoo: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--activation relu: .*activations.json records tanh for \d+ of the"):
        convert_checkpoints(mlp_zoo / CHECKPOINTS, tmp_path / "out", activation="relu", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_labels_csv_split_must_be_a_known_split(mlp_zoo: Path, tmp_path: Path) -> None:
    rows = list(csv.reader((mlp_zoo / LABELS_CSV).open()))
    rows[1][1] = "holdout"
    bad = tmp_path / "labels.csv"
    with bad.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(ValueError, match="split 'holdout' is not one of train, val, test"):
        convert_checkpoints(mlp_zoo / CHECKPOINTS, tmp_path / "out", labels=bad, progress=False)


def test_stats_gbt_ranks_members_far_better_than_chance(mlp_zoo: Path, tmp_path: Path) -> None:
    result = fit_stats_gbt(mlp_zoo, tmp_path, ("test_accuracy",))
    assert result["test_ranking"]["kendall_tau"] > 0.3
    assert result["test_metric"] < result["reference"]["test_metric"]
    assert (tmp_path / "predicted_vs_true.png").stat().st_size > 0
    assert len((tmp_path / "test_predictions.csv").read_text().splitlines()) == 1 + result["networks"]["test"]


def test_stats_gbt_keeps_earlier_results_and_needs_a_target(mlp_zoo: Path, tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"already holds results \(result\.json\); choose another --out"):
        fit_stats_gbt(mlp_zoo, tmp_path, ("test_accuracy",))
    assert (tmp_path / "result.json").read_text() == "{}"
    with pytest.raises(ValueError, match="--targets names no target: a zoo's targets are"):
        fit_stats_gbt(mlp_zoo, tmp_path / "fresh", ())
    with pytest.raises(ValueError, match="--targets names test_accuracy twice"):
        fit_stats_gbt(mlp_zoo, tmp_path / "fresh", ("test_accuracy", "test_accuracy"))
    assert not (tmp_path / "fresh").exists()


def test_weight_statistics_are_moments_and_quantiles_per_tensor() -> None:
    import torch

    state = {"1.weight": torch.arange(10.0).view(2, 5), "1.bias": torch.tensor([1.0, 3.0])}
    features = weight_statistics(state)
    assert features.tolist() == [4.5, 8.25, 0.0, 2.25, 4.5, 6.75, 9.0, 2.0, 1.0, 1.0, 1.5, 2.0, 2.5, 3.0]


def test_train_regresses_test_accuracy_by_name_better_than_the_mean(mlp_dataset: Path, tmp_path: Path) -> None:
    # A small DWSNet: on 128 training networks the flat MLP baseline does not reliably beat chance.
    config = TrainConfig(
        data=str(mlp_dataset),
        model="dwsnet",
        out=str(tmp_path / "run"),
        task="regress",
        targets=("test_accuracy",),
        epochs=10,
        batch_size=16,
        hidden_channels=8,
        depth=2,
        patience=0,
        progress=False,
    )
    result = train(config)
    ranking = result["test_ranking"]
    assert ranking["kendall_tau"] > 0
    assert result["test_metric"] < result["reference"]["test_metric"]
    assert set(ranking["columns"]) == {"test_accuracy"}
    assert (tmp_path / "run" / "predicted_vs_true.png").is_file()
    rows = list(csv.DictReader((tmp_path / "run" / "test_predictions.csv").open()))
    true = np.array([float(row["true_test_accuracy"]) for row in rows])
    predicted = np.array([float(row["predicted_test_accuracy"]) for row in rows])
    assert ranking["kendall_tau"] == pytest.approx(stats.kendalltau(predicted, true).statistic, abs=1e-3)


def test_an_unknown_target_name_is_refused_naming_the_known_ones(mlp_dataset: Path, tmp_path: Path, capsys) -> None:
    arguments = ["train", "--data", str(mlp_dataset), "--model", "mlp", "--out", str(tmp_path / "r")]
    assert main([*arguments, "--task", "regress", "--targets", "accuracy", "--no-progress"]) == 1
    assert "--targets accuracy: " in capsys.readouterr().err
    # Column 0 is test_accuracy: named once by number and once by name, it is still one column twice.
    assert main([*arguments, "--task", "regress", "--targets", "0,test_accuracy", "--no-progress"]) == 1
    assert "--targets names column 0 twice" in capsys.readouterr().err


def test_ranking_metrics_match_scipy_and_sklearn() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(size=50)
    predicted = true + rng.normal(scale=0.2, size=50)
    scores = ranking_metrics(predicted, true)
    assert scores["kendall_tau"] == pytest.approx(stats.kendalltau(predicted, true).statistic)
    assert scores["spearman_rho"] == pytest.approx(stats.spearmanr(predicted, true).statistic)
    assert scores["r2"] == pytest.approx(1 - ((predicted - true) ** 2).sum() / ((true - true.mean()) ** 2).sum())
    assert ranking_metrics(true, true)["kendall_tau"] == pytest.approx(1.0)
    assert math.isnan(ranking_metrics(np.ones(5), true[:5])["kendall_tau"])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[:100]), "not a readable checkpoint (PytorchStreamReader"),
        (lambda path: path.write_bytes(b"\x80\x04\x95"), "not a readable checkpoint"),
        (lambda path: path.unlink(), "no such zoo checkpoint"),
        (lambda path: torch.save([1, 2], path), "holds a list, expected a state_dict"),
        (
            lambda path: torch.save({"1.weight": torch.zeros(0)}, path),
            "'1.weight' is not a non-empty real dense tensor",
        ),
        (lambda path: torch.save({"1.weight": torch.zeros(3)}, path), "its tensors (names and shapes) differ from"),
    ],
    ids=["truncated", "not-a-checkpoint", "missing", "a-list", "empty-tensor", "other-tensors"],
)
def test_stats_gbt_names_a_damaged_member_in_one_line(mlp_zoo: Path, tmp_path: Path, capsys, damage, message) -> None:
    import shutil

    zoo = tmp_path / "zoo"
    shutil.copytree(mlp_zoo, zoo)
    member = zoo / CHECKPOINTS / read_records(zoo)[1]["path"]
    damage(member)
    assert main(["zoo-stats", "--zoo", str(zoo), "--out", str(tmp_path / "out"), "--n-estimators", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"wsgraph zoo-stats: error: {member}: ") and message in err, err
    assert not (tmp_path / "out").exists()


def test_stats_gbt_names_the_members_it_leaves_out_for_non_finite_weights(
    mlp_zoo: Path, tmp_path: Path, capsys
) -> None:
    import shutil

    zoo = tmp_path / "zoo"
    shutil.copytree(mlp_zoo, zoo)
    record = read_records(zoo)[1]
    member = zoo / CHECKPOINTS / record["path"]
    state = torch.load(member, weights_only=True)
    next(iter(state.values()))[0, 0] = float("nan")
    torch.save(state, member)
    assert main(["zoo-stats", "--zoo", str(zoo), "--out", str(tmp_path / "out"), "--n-estimators", "2"]) == 0
    assert f"left out 1 member checkpoint(s) with non-finite weights, e.g. {record['path']}" in capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["left_out"] == {"non_finite_weights": [record["path"]], "non_finite_targets": []}
    assert sum(result["networks"].values()) == len(read_records(zoo)) - 1


@pytest.mark.filterwarnings(
    "ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning"
)
def test_stats_gbt_that_diverges_writes_nothing(mlp_zoo: Path, tmp_path: Path) -> None:
    # Shrinkage above 2 makes every tree overshoot the last; the predictions overflow to NaN.
    with pytest.raises(ValueError, match=r"non-finite \w+ predictions with learning_rate=100; lower it"):
        fit_stats_gbt(mlp_zoo, tmp_path / "out", ("test_accuracy",), n_estimators=300, learning_rate=100.0)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seed", "-1"], "--seed must be in 0..4294967295, got -1"),
        (["--seed", str(2**32)], "--seed must be in 0..4294967295"),
        (["--learning-rate", "inf"], "--learning-rate must be in (0, 1], got inf"),
        (["--learning-rate", "1e300"], "--learning-rate must be in (0, 1], got 1e+300"),
        (["--learning-rate", "100"], "--learning-rate must be in (0, 1], got 100.0"),
        (["--n-estimators", "10000000000"], "--n-estimators must be in 1..1,000,000, got 10000000000"),
        (["--max-depth", str(10**20)], f"--max-depth must be in 1..1,000, got {10**20}"),
        (["--out", "{blocker}"], "--out {blocker}: {blocker} exists and is not a folder"),
        (["--out", "{blocker}/out"], "--out {blocker}/out: cannot write there (Not a directory)"),
    ],
)
def test_zoo_stats_refuses_bad_flags_before_reading_the_zoo(
    mlp_zoo: Path, tmp_path: Path, capsys, monkeypatch, flags, message
) -> None:
    from wsgraph.zoo import stats

    def no_reading(*args, **kwargs):
        raise AssertionError("read the zoo before refusing the flags")

    monkeypatch.setattr(stats, "zoo_features", no_reading)
    blocker = tmp_path / "a-file"
    blocker.write_text("kept\n")
    flags = [flag.format(blocker=blocker) for flag in flags]
    argv = ["zoo-stats", "--zoo", str(mlp_zoo), "--out", str(tmp_path / "out"), *flags]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(blocker=blocker) in err, err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]


def test_stats_gbt_names_the_odd_member_even_when_it_comes_first(mlp_zoo: Path, tmp_path: Path, capsys) -> None:
    import shutil

    zoo = tmp_path / "zoo"
    shutil.copytree(mlp_zoo, zoo)
    first = zoo / CHECKPOINTS / read_records(zoo)[0]["path"]
    torch.save({"1.weight": torch.zeros(3)}, first)
    assert main(["zoo-stats", "--zoo", str(zoo), "--out", str(tmp_path / "out"), "--n-estimators", "2"]) == 1
    assert capsys.readouterr().err.startswith(f"wsgraph zoo-stats: error: {first}: its tensors (names and shapes)")


def test_zoo_stats_refuses_an_out_inside_the_zoo(mlp_zoo: Path, capsys) -> None:
    out = mlp_zoo / CHECKPOINTS / "stats"
    assert main(["zoo-stats", "--zoo", str(mlp_zoo), "--out", str(out), "--n-estimators", "2"]) == 1
    assert capsys.readouterr().err == (
        f"wsgraph zoo-stats: error: --out {out}: inside the zoo {mlp_zoo}; write it outside the folder the command "
        "reads\n"
    )
    assert not out.exists()


def test_members_without_an_activation_are_named_before_probes_or_adapt_run_them(
    mlp_zoo: Path, tmp_path: Path, capsys
) -> None:
    import shutil

    shutil.copytree(mlp_zoo / CHECKPOINTS, tmp_path / "checkpoints")
    listed = json.loads((tmp_path / "checkpoints" / "activations.json").read_text())
    kept = dict(list(listed.items())[: len(listed) // 2])
    (tmp_path / "checkpoints" / "activations.json").write_text(json.dumps(kept))
    data = tmp_path / "data"
    convert_checkpoints(tmp_path / "checkpoints", data, labels=mlp_zoo / LABELS_CSV, progress=False)
    assert "unknown" in WeightSpaceDataset(data, split="train").activations
    command = ["train", "--data", str(data), "--model", "dwsnet", "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert main([*command, "--task", "regress", "--targets", "test_accuracy", "--probe-features", "4"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"wsgraph train: error: --probe-features 4: {data} records no hidden activation for ")
    assert error.endswith("convert them with --activation (or an activations.json beside them)\n")
    assert not (tmp_path / "run").exists()
    assert main(["adapt", "--data", str(data), "--source", "digits", "--out", str(tmp_path / "adapt")]) == 1
    assert "records the hidden activation of some members only (the others': relu, tanh)" in capsys.readouterr().err


def test_split_ratios_with_a_labels_csv_that_gives_the_splits_are_refused(
    mlp_zoo: Path, tmp_path: Path, capsys
) -> None:
    labels = mlp_zoo / LABELS_CSV
    command = ["convert", str(mlp_zoo / CHECKPOINTS), str(tmp_path / "out"), "--labels", str(labels), "--quiet"]
    assert main([*command, "--split-ratios", "0.5,0.25,0.25"]) == 1
    assert capsys.readouterr().err == (
        f"wsgraph convert: error: --split-ratios: {labels} gives each file's split (its split column); "
        "give one or the other\n"
    )
    assert not (tmp_path / "out").exists()
