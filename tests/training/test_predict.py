"""``wsgraph predict``: a trained model's predictions for files, folders and datasets, with the
run's own evaluation as the reference."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from wsgraph import graph_to_mlp
from wsgraph.cli.main import main
from wsgraph.datasets import WeightSpaceDataset
from wsgraph.datasets.store import read_meta, write_meta
from wsgraph.training import train
from wsgraph.training.predict import load_predictor, predict
from wsgraph.training.run_checkpoints import OUTPUT_NAMES, load_run_checkpoint

from .conftest import WIDTHS, tiny_config, write_store

CLASS_NAMES = ["low", "middle", "high"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> tuple[Path, Path, dict]:
    """A DWSNet trained on a named-class root: ``(root, run folder, result)``."""
    folder = tmp_path_factory.mktemp("predict")
    root = write_store(folder / "classes")
    write_meta(root, {**read_meta(root), "class_names": CLASS_NAMES})
    result = train(tiny_config(root, folder / "run", "dwsnet"))
    return root, folder / "run", result


def read_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def save_test_networks(root: Path, folder: Path) -> list[int]:
    """The test split's networks as files, alternately state_dicts and saved modules (one in a
    subfolder); returns their labels in the sorted order of their paths."""
    dataset = WeightSpaceDataset(root, split="test", log=False)
    (folder / "sub").mkdir(parents=True)
    labels = {}
    for index in range(len(dataset)):
        network = graph_to_mlp(dataset[index])
        path = folder / ("sub" if index == 0 else "") / f"net{index:02d}.pt"
        torch.save(network if index % 2 else network.state_dict(), path)
        labels[path.relative_to(folder).as_posix()] = int(dataset[index].y)
    return [labels[name] for name in sorted(labels)]


def test_a_dataset_split_is_predicted_as_the_run_evaluated_it(classifier, capsys) -> None:
    root, run, result = classifier
    assert load_predictor(run).batch_size == 8
    assert main(["predict", str(run), str(root)]) == 0
    captured = capsys.readouterr()
    rows = read_rows(captured.out)
    assert len(rows) == len(WeightSpaceDataset(root, split="test", log=False))
    assert list(rows[0])[:3] == ["network", "predicted", "probability"]
    assert [key for key in rows[0] if key.startswith("p_")] == [f"p_{name}" for name in CLASS_NAMES]
    assert rows[0]["network"] == f"{root}[test][0]" and rows[0]["true"] in CLASS_NAMES
    accuracy = 100 * sum(row["predicted"] == row["true"] for row in rows) / len(rows)
    assert accuracy == pytest.approx(result["test_metric"], abs=1e-9)
    assert f"accuracy {result['test_metric']:.2f}% against the dataset's labels" in captured.err
    for row in rows:
        probabilities = [float(row[f"p_{name}"]) for name in CLASS_NAMES]
        assert sum(probabilities) == pytest.approx(1.0, abs=2e-4)
        assert row["predicted"] == CLASS_NAMES[max(range(3), key=probabilities.__getitem__)]


def test_checkpoint_files_get_the_predictions_of_their_networks(classifier, tmp_path, capsys) -> None:
    root, run, _ = classifier
    labels = save_test_networks(root, tmp_path / "files")
    predictor = load_predictor(run)
    from_dataset = predict(predictor, [root], batch_size=1000)
    from_files = predict(predictor, [tmp_path / "files"], batch_size=1000)
    assert from_files.networks[0] == str(tmp_path / "files" / "net01.pt")
    assert from_files.networks[-1] == str(tmp_path / "files" / "sub" / "net00.pt")
    assert from_dataset.true == [CLASS_NAMES[label] for label in [labels[-1], *labels[:-1]]]
    # The same networks, read back from files in another order: the same probabilities.
    reordered = torch.cat([from_dataset.outputs[1:], from_dataset.outputs[:1]])
    torch.testing.assert_close(from_files.outputs, reordered, rtol=1e-5, atol=1e-6)
    assert main(["predict", str(run), str(tmp_path / "files"), "--out", str(tmp_path / "p.csv")]) == 0
    rows = read_rows((tmp_path / "p.csv").read_text())
    assert len(rows) == len(labels) and "true" not in rows[0]
    assert f"wsgraph predict: {len(labels)} networks; wrote {tmp_path / 'p.csv'}" in capsys.readouterr().err


def test_a_regression_model_predicts_its_named_targets(tmp_path, capsys) -> None:
    root = write_store(tmp_path / "targets", task="regression")
    write_meta(root, {**read_meta(root), "target_names": ["mean_weight", "mean_bias"]})
    result = train(tiny_config(root, tmp_path / "run", "mlp"))
    assert load_run_checkpoint(tmp_path / "run" / "best.pt")[OUTPUT_NAMES] == ["mean_weight", "mean_bias"]
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run" / "best.pt"), str(root)]) == 0
    rows = read_rows(capsys.readouterr().out)
    assert list(rows[0]) == [
        "network",
        *(f"{k}_{n}" for k in ("predicted", "true") for n in ("mean_weight", "mean_bias")),
    ]
    squared = [
        (float(r[f"predicted_{n}"]) - float(r[f"true_{n}"])) ** 2 for r in rows for n in ("mean_weight", "mean_bias")
    ]
    assert sum(squared) / len(squared) == pytest.approx(result["test_metric"], rel=1e-4)


def test_an_older_checkpoint_takes_its_names_from_the_training_data(classifier, tmp_path) -> None:
    _, run, _ = classifier
    checkpoint = load_run_checkpoint(run / "best.pt")
    assert checkpoint[OUTPUT_NAMES] == CLASS_NAMES
    del checkpoint[OUTPUT_NAMES]
    torch.save(checkpoint, tmp_path / "best.pt")
    assert load_predictor(tmp_path / "best.pt").output_names == CLASS_NAMES
    checkpoint["config"]["data"] = str(tmp_path / "moved")
    torch.save(checkpoint, tmp_path / "best.pt")
    assert load_predictor(tmp_path / "best.pt").output_names == ["0", "1", "2"]


def test_a_network_the_model_cannot_take_is_named(classifier, tmp_path, capsys) -> None:
    _, run, _ = classifier
    (tmp_path / "in").mkdir()
    # Other hidden widths than the training networks' are fine for DWSNet; another input width is not.
    for name, width in (("a.pt", 2), ("b.pt", 3)):
        network = nn.Sequential(nn.Linear(width, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
        torch.save(network.state_dict(), tmp_path / "in" / name)
    assert main(["predict", str(run), str(tmp_path / "in")]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        f"wsgraph predict: error: {tmp_path / 'in' / 'b.pt'}: a network 3-5-4-1; "
        f"the dwsnet model takes networks {WIDTHS[0]}-*-*-{WIDTHS[-1]}"
    )


def test_a_flat_mlp_takes_its_one_architecture_only(tmp_path, capsys) -> None:
    root = write_store(tmp_path / "classes")
    train(tiny_config(root, tmp_path / "run", "mlp"))
    torch.save(
        nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1)), tmp_path / "n.pt"
    )
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "n.pt")]) == 1
    assert "n.pt: a network 2-8-4-1; the mlp model takes networks 2-8-8-1" in capsys.readouterr().err


def test_unreadable_files_stop_it_or_are_listed_with_skip_bad(classifier, tmp_path, capsys) -> None:
    root, run, _ = classifier
    save_test_networks(root, tmp_path / "files")
    (tmp_path / "files" / "broken.pt").write_bytes(b"not a checkpoint")
    assert main(["predict", str(run), str(tmp_path / "files")]) == 1
    assert capsys.readouterr().err.startswith(f"wsgraph predict: error: {tmp_path / 'files' / 'broken.pt'}: not a")
    assert main(["predict", str(run), str(tmp_path / "files"), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "broken.pt" not in captured.out
    assert f"  skipped {tmp_path / 'files' / 'broken.pt'}: not a readable PyTorch checkpoint" in captured.err
    assert ", 1 skipped" in captured.err


def test_a_file_that_runs_code_is_refused(classifier, tmp_path, capsys) -> None:
    _, run, _ = classifier
    marker = tmp_path / "ran"

    class RunsShell:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    network = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    network.payload = RunsShell()
    torch.save(network, tmp_path / "evil.pt")
    assert main(["predict", str(run), str(tmp_path / "evil.pt")]) == 1
    assert "--trust-pickles" in capsys.readouterr().err and not marker.exists()


def test_out_never_replaces_the_model_or_what_it_reads_even_with_force(classifier, tmp_path, capsys) -> None:
    root, run, _ = classifier
    (tmp_path / "net.pt").write_bytes(b"not read")
    cases = [
        (run / "best.pt", [str(root)], f"is the model ({run / 'best.pt'})"),
        (run / "result.json", [str(root)], "would replace the run's result.json"),
        (root / "meta.json", [str(root)], f"would replace a file in an input folder {root}"),
        (tmp_path / "net.pt", [str(tmp_path / "net.pt")], f"is an input ({tmp_path / 'net.pt'})"),
    ]
    # A dataset whose shard is a link to storage elsewhere: the write would replace the link.
    linked = tmp_path / "linked"
    shutil.copytree(root, linked)
    shard = next((linked / "shards").iterdir())
    (tmp_path / "store.pt").write_bytes(shard.read_bytes())
    shard.unlink()
    shard.symlink_to(tmp_path / "store.pt")
    cases.append((shard, [str(linked)], f"would replace a file in an input folder {linked}"))
    for out, inputs, message in cases:
        before = out.read_bytes()
        assert main(["predict", str(run / "best.pt"), *inputs, "--out", str(out), "--force"]) == 1
        assert capsys.readouterr().err == (
            f"wsgraph predict: error: --out {out}: {message}; write the predictions elsewhere\n"
        )
        assert out.read_bytes() == before
    assert shard.is_symlink()
    # Predictions beside the model, written again: the rerun replaces its own CSV.
    for _ in range(2):
        assert main(["predict", str(run), str(root), "--out", str(run / "predictions.csv"), "--force"]) == 0
    capsys.readouterr()
    (tmp_path / "link.csv").symlink_to(tmp_path / "nowhere.csv")
    assert main(["predict", str(run), str(root), "--out", str(tmp_path / "link.csv")]) == 1
    assert "link.csv exists; pass --force to replace it" in capsys.readouterr().err
    assert (tmp_path / "link.csv").is_symlink()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{tmp}/nowhere", "{tmp}"], "{tmp}/nowhere: no such checkpoint"),
        (["{tmp}", "{tmp}"], "{tmp}: a folder without best.pt; give a run folder or its best.pt"),
        (["{run}", "{tmp}/nowhere"], "{tmp}/nowhere: no such file or folder"),
        (["{run}", "{tmp}"], "{tmp}: no checkpoint files (.ckpt, .pt, .pth, .safetensors) and no meta.json"),
        (["{run}", "{tmp}", "--out", "{tmp}"], "--out {tmp} is a folder; give a file name"),
        (["{run}", "{tmp}", "--out", "{tmp}/taken.csv"], "--out {tmp}/taken.csv exists; pass --force to replace it"),
        (
            ["{run}", "{tmp}", "--out", "{tmp}/taken.csv/p.csv"],
            "--out {tmp}/taken.csv/p.csv: {tmp}/taken.csv exists and is not a folder",
        ),
    ],
    ids=["no-model", "folder-without-best", "no-input", "empty-folder", "out-folder", "out-exists", "out-in-a-file"],
)
def test_bad_arguments_get_one_line_naming_the_culprit(classifier, tmp_path, capsys, arguments, message) -> None:
    _, run, _ = classifier
    (tmp_path / "taken.csv").write_text("mine\n")
    argv = ["predict", *(a.format(tmp=tmp_path, run=run) for a in arguments)]
    assert main(argv) == 1
    assert capsys.readouterr().err == f"wsgraph predict: error: {message.format(tmp=tmp_path)}\n"
    assert (tmp_path / "taken.csv").read_text() == "mine\n"


def test_an_editing_model_is_refused(tmp_path) -> None:
    from .test_models import dilation_root

    root = dilation_root(tmp_path / "dilate")
    train(tiny_config(root, tmp_path / "run", "dwsnet", task="dilate"))
    with pytest.raises(ValueError, match=r"the model edits networks \(--task dilate\); predict is for"):
        predict(load_predictor(tmp_path / "run"), [root])


def test_a_model_of_some_targets_is_compared_with_those_targets(tmp_path, capsys) -> None:
    root = write_store(tmp_path / "targets", task="regression")
    write_meta(root, {**read_meta(root), "target_names": ["mean_weight", "mean_bias"]})
    result = train(tiny_config(root, tmp_path / "run", "dwsnet", targets=("mean_bias",)))
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), str(root)]) == 0
    rows = read_rows(capsys.readouterr().out)
    assert list(rows[0]) == ["network", "predicted_mean_bias", "true_mean_bias"]
    dataset = WeightSpaceDataset(root, split="test", log=False)
    assert [float(row["true_mean_bias"]) for row in rows] == pytest.approx(
        [float(g.y[0, 1]) for g in dataset], rel=1e-5
    )
    squared = [(float(row["predicted_mean_bias"]) - float(row["true_mean_bias"])) ** 2 for row in rows]
    assert sum(squared) / len(squared) == pytest.approx(result["test_metric"], rel=1e-4)


def test_a_classifier_shows_no_truth_for_a_regression_dataset(classifier, tmp_path, capsys) -> None:
    _, run, _ = classifier
    root = write_store(tmp_path / "targets", task="regression")
    assert main(["predict", str(run), str(root)]) == 0
    captured = capsys.readouterr()
    assert "true" not in read_rows(captured.out)[0] and "accuracy" not in captured.err


def test_a_cnn_file_for_an_mlp_model_is_refused(classifier, tmp_path, capsys) -> None:
    _, run, _ = classifier
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    torch.save(cnn, tmp_path / "cnn.pt")
    assert main(["predict", str(run), str(tmp_path / "cnn.pt")]) == 1
    assert (
        capsys.readouterr().err
        == f"wsgraph predict: error: {tmp_path / 'cnn.pt'}: a CNN; the model was trained on MLPs\n"
    )


def test_probe_features_need_the_activation_a_state_dict_does_not_record(tmp_path, capsys) -> None:
    root = write_store(tmp_path / "classes")
    train(tiny_config(root, tmp_path / "run", "dwsnet", probe_features=4))
    dataset = WeightSpaceDataset(root, split="test", log=False)
    (tmp_path / "in").mkdir()
    torch.save(graph_to_mlp(dataset[0]).state_dict(), tmp_path / "in" / "net.pt")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "in")]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"wsgraph predict: error: {tmp_path / 'in' / 'net.pt'}: the file does not record")
    assert "pass --activation" in error
    predictor = load_predictor(tmp_path / "run")
    from_file = predict(predictor, [tmp_path / "in"], activation="relu").outputs
    from_dataset = predict(predictor, [root], batch_size=1).outputs[:1]
    torch.testing.assert_close(from_file, from_dataset, rtol=1e-5, atol=1e-6)


def relabelled_copy(root: Path, out: Path, **meta) -> Path:
    """``root``'s networks under another ``meta.json`` (the shards are copied as they are)."""
    import shutil

    shutil.copytree(root / "shards", out / "shards")
    write_meta(out, {**read_meta(root), **meta})
    return out


def test_a_datasets_labels_are_matched_to_the_models_classes_by_name(classifier, tmp_path, capsys) -> None:
    root, run, _ = classifier
    renamed = relabelled_copy(root, tmp_path / "renamed", class_names=CLASS_NAMES[::-1])
    assert main(["predict", str(run), str(renamed)]) == 0
    captured = capsys.readouterr()
    original = predict(load_predictor(run), [root])
    rows = read_rows(captured.out)
    # Label 0 is "high" there and "low" here: the truth keeps each network's own class name.
    assert [row["true"] for row in rows] == [CLASS_NAMES[::-1][CLASS_NAMES.index(t)] for t in original.true]
    assert "note:" not in captured.err and "accuracy" in captured.err


def test_labels_of_classes_the_model_does_not_predict_are_noted_not_counted(classifier, tmp_path, capsys) -> None:
    root, run, _ = classifier
    other = relabelled_copy(root, tmp_path / "other", class_names=["low", "middle", "other"], num_classes=3)
    assert main(["predict", str(run), str(other)]) == 0
    captured = capsys.readouterr()
    rows = read_rows(captured.out)
    counted = [row for row in rows if row["true"] != "other"]
    accuracy = 100 * sum(row["predicted"] == row["true"] for row in counted) / len(counted)
    assert f"accuracy {accuracy:.2f}%" in captured.err
    foreign = len(rows) - len(counted)
    assert foreign > 0
    assert (
        f"note: {foreign} networks are labelled with classes the model does not predict (first: other)" in captured.err
    )


def test_an_older_regression_checkpoint_names_the_targets_it_was_trained_on(tmp_path, capsys) -> None:
    root = write_store(tmp_path / "targets", task="regression")
    train(tiny_config(root, tmp_path / "run", "dwsnet", targets=(1,)))
    checkpoint = load_run_checkpoint(tmp_path / "run" / "best.pt")
    assert checkpoint[OUTPUT_NAMES] == ["y1"]
    del checkpoint[OUTPUT_NAMES]
    torch.save(checkpoint, tmp_path / "old.pt")
    predictor = load_predictor(tmp_path / "old.pt")
    assert predictor.output_names == ["y1"]
    dataset = WeightSpaceDataset(root, split="test", log=False)
    true = predict(predictor, [root]).true
    assert torch.equal(torch.stack(true), torch.stack([graph.y.view(-1)[[1]] for graph in dataset]))
    other = relabelled_copy(root, tmp_path / "other", target_names=["accuracy", "loss"])
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "old.pt"), str(other)]) == 0
    captured = capsys.readouterr()
    assert "true_y1" not in captured.out.splitlines()[0]
    assert f"note: {other}: has no target named y1 (its targets: accuracy, loss)" in captured.err


def test_nothing_to_predict_is_an_error(classifier, tmp_path, capsys) -> None:
    _, run, _ = classifier
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.pt").write_bytes(b"junk")
    (tmp_path / "bad" / "b.pt").write_bytes(b"junk")
    assert main(["predict", str(run), str(tmp_path / "bad"), "--skip-bad"]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"wsgraph predict: error: none of the 2 networks could be predicted for (first: {tmp_path}")
    no_test = write_store(tmp_path / "no-test", test_split=False)
    assert main(["predict", str(run), str(no_test)]) == 1
    assert capsys.readouterr().err == (
        f"wsgraph predict: error: {no_test}: no networks in its test split (choose another --split)\n"
    )
    assert main(["predict", str(run), str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"wsgraph predict: error: {tmp_path}: a folder of datasets (no-test); give them one by one\n"
    )


def test_activation_fills_in_only_what_a_file_does_not_record(tmp_path) -> None:
    root = write_store(tmp_path / "classes")
    train(tiny_config(root, tmp_path / "run", "dwsnet", probe_features=4))
    network = graph_to_mlp(WeightSpaceDataset(root, split="test", log=False)[0])
    torch.save(network, tmp_path / "module.pt")
    predictor = load_predictor(tmp_path / "run")
    recorded = predict(predictor, [tmp_path / "module.pt"]).outputs
    assert torch.equal(predict(predictor, [tmp_path / "module.pt"], activation="tanh").outputs, recorded)
    with pytest.raises(ValueError, match="unknown activation"):
        predict(predictor, [tmp_path / "module.pt"], activation="wobble")
    # A state_dict's activation from the activations.json beside it, as if given; a flag that contradicts it
    # is refused, and a saved module whose trace contradicts it is a bad file.
    (tmp_path / "files").mkdir()
    torch.save(network.state_dict(), tmp_path / "files" / "net.pt")
    torch.save(network, tmp_path / "files" / "module.pt")
    (tmp_path / "files" / "activations.json").write_text('{"net.pt": "tanh"}')
    torch.save(network.state_dict(), tmp_path / "bare.pt")
    listed = predict(predictor, [tmp_path / "files" / "net.pt"]).outputs
    assert torch.equal(listed, predict(predictor, [tmp_path / "bare.pt"], activation="tanh").outputs)
    assert not torch.equal(listed, predict(predictor, [tmp_path / "bare.pt"], activation="relu").outputs)
    with pytest.raises(ValueError, match=r"^--activation relu: .*activations.json records tanh for 1 of the"):
        predict(predictor, [tmp_path / "files"], activation="relu")
    (tmp_path / "files" / "activations.json").write_text('{"net.pt": "tanh", "module.pt": "tanh"}')
    with pytest.raises(ValueError, match=r"module.pt: the saved module's hidden activation is \w+, not tanh as "):
        predict(predictor, [tmp_path / "files" / "module.pt"])


def test_cnn_checkpoints_get_the_predictions_of_their_converted_graphs(tmp_path) -> None:
    from wsgraph.datasets.checkpoint_folders import convert_checkpoints

    from .test_cnn_training import write_cnn_zoo

    write_cnn_zoo(tmp_path, 24, (3, 5))
    root = tmp_path / "data"
    convert_checkpoints(tmp_path / "checkpoints", root, labels=tmp_path / "labels.csv", progress=False)
    train(tiny_config(root, tmp_path / "run", "dwsnet", epochs=1))
    predictor = load_predictor(tmp_path / "run")
    everything = predict(predictor, [root], split="train", batch_size=1000)
    everything = torch.cat(
        [everything.outputs, *(predict(predictor, [root], split=s).outputs for s in ("val", "test"))]
    )
    from_files = predict(predictor, [tmp_path / "checkpoints"], batch_size=1000)
    assert len(from_files.networks) == 24
    # The dataset holds every file's network: each file's prediction is one of the dataset's, exactly.
    for output in from_files.outputs:
        assert torch.isclose(everything, output, rtol=1e-5, atol=1e-6).all(dim=1).any()
    big = tmp_path / "big"
    big.mkdir()
    torch.save(
        nn.Sequential(
            nn.Conv2d(1, 4, 7),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 2),
        ),
        big / "net.pt",
    )
    with pytest.raises(ValueError, match=r"net\.pt: .*kernel 7x7 does not fit the grid 5x5, the model's"):
        predict(predictor, [big])


def test_a_kernel_larger_than_the_models_window_for_its_layer_is_named(tmp_path) -> None:
    from wsgraph.datasets.checkpoint_folders import convert_checkpoints

    def cnn(second_kernel: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(1, 4, 5),
            nn.ReLU(),
            nn.Conv2d(4, 4, second_kernel),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 2),
        )

    (tmp_path / "zoo").mkdir()
    for number in range(12):
        torch.save(cnn(3).state_dict(), tmp_path / "zoo" / f"m{number:02d}.pt")
    (tmp_path / "labels.csv").write_text("".join(f"m{number:02d}.pt,{number % 2}\n" for number in range(12)))
    convert_checkpoints(tmp_path / "zoo", tmp_path / "data", labels=tmp_path / "labels.csv", progress=False)
    train(tiny_config(tmp_path / "data", tmp_path / "run", "dwsnet", epochs=1))
    (tmp_path / "new").mkdir()
    torch.save(cnn(5).state_dict(), tmp_path / "new" / "net.pt")
    with pytest.raises(ValueError, match=r"net\.pt: layer 2's kernel is 5x5; the dwsnet model reads 3x3 there"):
        predict(load_predictor(tmp_path / "run"), [tmp_path / "new"])


def test_a_network_whose_prediction_overflows_is_named_or_skipped(classifier, tmp_path, capsys) -> None:
    root, run, _ = classifier
    dataset = WeightSpaceDataset(root, split="test", log=False)
    (tmp_path / "files").mkdir()
    for index in range(3):
        network = graph_to_mlp(dataset[index], "relu")
        if index == 1:
            with torch.no_grad():
                network[0].weight.fill_(3e38)  # finite, but the model's arithmetic overflows on it
        torch.save(network, tmp_path / "files" / f"net{index}.pt")
    huge = tmp_path / "files" / "net1.pt"
    assert main(["predict", str(run), str(tmp_path / "files")]) == 1
    assert capsys.readouterr().err == (
        f"wsgraph predict: error: {huge}: the model's output for it is not finite (NaN or infinite; are its "
        "weights huge?) (pass --skip-bad to predict for the others)\n"
    )
    assert main(["predict", str(run), str(tmp_path / "files"), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert [row["network"] for row in read_rows(captured.out)] == [
        str(tmp_path / "files" / f"net{i}.pt") for i in (0, 2)
    ]
    assert "nan" not in captured.out.lower()
    assert f"skipped {huge}: the model's output for it is not finite" in captured.err


@pytest.mark.parametrize("command", ["predict", "edit", "adapt"])
def test_an_unknown_activation_flag_is_named_before_anything_is_read(tmp_path, capsys, command) -> None:
    arguments = {
        "predict": ["predict", str(tmp_path / "run"), str(tmp_path)],
        "edit": ["edit", str(tmp_path / "run"), str(tmp_path), "--out", str(tmp_path / "out")],
        "adapt": ["adapt", "--data", str(tmp_path), "--source", "digits", "--out", str(tmp_path / "out")],
    }[command]
    with pytest.raises(SystemExit):
        main([*arguments, "--activation", "bogus"])
    assert "argument --activation: unknown activation 'bogus'; known: identity, relu" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_input_given_twice_is_refused(classifier, capsys) -> None:
    root, run, _ = classifier
    assert main(["predict", str(run), str(root), str(root)]) == 1
    assert capsys.readouterr().err == f"wsgraph predict: error: {root}: given twice as an input\n"
    with pytest.raises(ValueError, match=r"given twice as an input \(also as "):
        predict(load_predictor(run), [root, f"{root}/../{root.name}"])


def test_an_input_inside_an_input_folder_is_refused(classifier, tmp_path, capsys) -> None:
    _, run, _ = classifier
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.pt").write_bytes(b"junk")
    assert main(["predict", str(run), str(tmp_path / "files" / "a.pt"), str(tmp_path / "files")]) == 1
    assert capsys.readouterr().err == (
        f"wsgraph predict: error: {tmp_path / 'files' / 'a.pt'}: inside the input folder {tmp_path / 'files'}, "
        "whose networks it would repeat\n"
    )


def test_a_file_reached_twice_through_a_symlink_is_refused(classifier, tmp_path, capsys) -> None:
    root, run, _ = classifier
    dataset = WeightSpaceDataset(root, split="test", log=False)
    (tmp_path / "files").mkdir()
    torch.save(graph_to_mlp(dataset[0], "relu"), tmp_path / "files" / "net.pt")
    (tmp_path / "outer").mkdir()
    (tmp_path / "outer" / "inner").symlink_to(tmp_path / "files")
    assert main(["predict", str(run), str(tmp_path / "outer"), str(tmp_path / "files")]) == 1
    assert capsys.readouterr().err == (
        f"wsgraph predict: error: {tmp_path / 'files' / 'net.pt'}: the same file as "
        f"{tmp_path / 'outer' / 'inner' / 'net.pt'}, which is read already; give each network once\n"
    )
