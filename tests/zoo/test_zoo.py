"""wsgraph zoo: deterministic per seed, resumable, batched training equal to training alone,
recorded scores equal to re-evaluating the saved state_dicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional

from wsgraph.cli.main import main
from wsgraph.zoo import build as zoo_build
from wsgraph.zoo.build import CHECKPOINTS, ZooPlan, build_zoo, read_records
from wsgraph.zoo.data import load_zoo_data
from wsgraph.zoo.hyperparams import SearchSpace, draw_member
from wsgraph.zoo.members import MemberArchitecture, batched_forward
from wsgraph.zoo.training import epoch_orders, initial_parameters, member_subsets, subset_size, train_group

# Short trainings on the embedded 8x8 digits: large subsets, one or two epochs.
SPACE = SearchSpace(train_fraction=(0.1, 0.3), epochs=(1, 2), activations=("relu", "tanh"), dropout=(0.0, 0.4))


@pytest.fixture(scope="module")
def digits():
    data, shape, classes = load_zoo_data("digits", test_size=200)
    return data, shape, classes


def _plan(digits, arch: str = "cnn", count: int = 6, **changes) -> ZooPlan:
    _, shape, classes = digits
    settings = dict(
        source="digits",
        architecture=MemberArchitecture(arch, shape, classes, 8 if arch == "cnn" else 16),
        count=count,
        space=SPACE,
        batch_size=16,
        shard_size=3,
        group_size=4,
        train_eval_size=100,
        test_size=200,
    )
    settings.update(changes)
    return ZooPlan(**settings)


def _members(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {path.name: torch.load(path, weights_only=True) for path in sorted((out / CHECKPOINTS).rglob("*.pt"))}


def _scores(out: Path) -> list[dict]:
    return [{k: v for k, v in record.items()} for record in read_records(out)]


def _same_states(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(
        all(torch.equal(first[name][key], second[name][key]) for key in first[name]) for name in first
    )


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_a_zoo_is_deterministic_per_seed(digits, tmp_path: Path, arch: str) -> None:
    data = digits[0]
    build_zoo(_plan(digits, arch), data, tmp_path / "a", progress=False)
    build_zoo(_plan(digits, arch), data, tmp_path / "b", progress=False)
    build_zoo(_plan(digits, arch, seed=1), data, tmp_path / "c", progress=False)
    a, b, c = _members(tmp_path / "a"), _members(tmp_path / "b"), _members(tmp_path / "c")
    assert len(a) == 6 and _same_states(a, b)
    assert _scores(tmp_path / "a") == _scores(tmp_path / "b")
    assert not _same_states(a, c) if a.keys() == c.keys() else True
    assert [r["lr"] for r in _scores(tmp_path / "a")] != [r["lr"] for r in _scores(tmp_path / "c")]


def test_an_interrupted_zoo_resumes_to_the_same_result(digits, tmp_path: Path, monkeypatch) -> None:
    data = digits[0]
    plan = _plan(digits, save_epochs=(0, 1))
    build_zoo(plan, data, tmp_path / "whole", progress=False)

    original = zoo_build._train_shard

    def interrupted(plan, data, out, number, advance, workers):
        if number == 1:
            # Killed mid-shard: a partial folder is left behind and must not count.
            (out / CHECKPOINTS / ".shard-00001.partial").mkdir()
            raise KeyboardInterrupt
        return original(plan, data, out, number, advance, workers)

    monkeypatch.setattr(zoo_build, "_train_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_zoo(plan, data, tmp_path / "resumed", progress=False)
    assert (tmp_path / "resumed" / CHECKPOINTS / "shard-00000").is_dir()
    assert not (tmp_path / "resumed" / CHECKPOINTS / "shard-00001").exists()
    monkeypatch.setattr(zoo_build, "_train_shard", original)
    build_zoo(plan, data, tmp_path / "resumed", progress=False)
    assert not list((tmp_path / "resumed" / CHECKPOINTS).glob(".shard-*"))
    assert _same_states(_members(tmp_path / "whole"), _members(tmp_path / "resumed"))
    assert _scores(tmp_path / "whole") == _scores(tmp_path / "resumed")
    whole = (tmp_path / "whole" / "labels.csv").read_text()
    assert whole == (tmp_path / "resumed" / "labels.csv").read_text()
    # Every member at its initialisation and after epoch 1, and after epoch 2 for those that train 2 epochs.
    finals = [r for r in _scores(tmp_path / "whole") if r["final"]]
    assert len(finals) == 6
    assert len(whole.splitlines()) == 1 + sum(2 + (r["epochs"] == 2) for r in finals)


def test_a_zoo_with_other_settings_is_refused(digits, tmp_path: Path) -> None:
    build_zoo(_plan(digits, count=3), digits[0], tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"other settings.*count"):
        build_zoo(_plan(digits, count=4), digits[0], tmp_path, progress=False)


def test_a_zoo_that_failed_before_finishing_a_shard_starts_again_with_other_settings(
    digits, tmp_path: Path, monkeypatch
) -> None:
    def out_of_memory(*arguments):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(zoo_build, "_train_shard", out_of_memory)
    with pytest.raises(RuntimeError):
        build_zoo(_plan(digits, arch="mlp", count=3, batch_size=8), digits[0], tmp_path, progress=False)
    monkeypatch.undo()
    build_zoo(_plan(digits, arch="mlp", count=3), digits[0], tmp_path, progress=False)
    assert json.loads((tmp_path / "zoo.json").read_text())["plan"]["batch_size"] == 16


def test_a_new_zoo_that_fails_before_its_first_shard_leaves_no_folder(digits, tmp_path: Path, monkeypatch) -> None:
    def out_of_memory(*arguments):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(zoo_build, "_train_shard", out_of_memory)
    with pytest.raises(RuntimeError):
        build_zoo(_plan(digits, arch="mlp", count=3), digits[0], tmp_path / "new" / "zoo", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_sizes_past_any_zoo_are_refused_naming_the_flag(digits, tmp_path: Path, monkeypatch, capsys) -> None:
    with pytest.raises(ValueError, match=r"--width must be in 1\.\.4,096, got 5000"):
        _plan(digits, arch="mlp", architecture=MemberArchitecture("mlp", (8, 8, 1), 10, 5000))
    with pytest.raises(ValueError, match=r"--epochs range must be 1 <= low <= high <= 1,000,000, got 1..100000000"):
        SearchSpace(epochs=(1, 10**8))
    monkeypatch.setattr(zoo_build, "physical_memory", lambda: 1000)
    with pytest.raises(ValueError, match=r"^--width 16 with --group-size 4: a group's parameters and optimiser"):
        _plan(digits, arch="mlp")
    arguments = ["zoo", "--source", "digits", "--out", str(tmp_path / "zoo"), "--count", "2", "--arch", "mlp"]
    assert main([*arguments, "--group-size", "1"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("wsgraph zoo: error: --width 32 with --group-size 1: ") and error.count("\n") == 1
    assert error.endswith("lower --width or --group-size\n")
    assert not (tmp_path / "zoo").exists()


def test_settings_that_cannot_train_are_refused_before_anything_is_written(digits, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--seed must be at least 0, got -1"):
        _plan(digits, seed=-1)
    with pytest.raises(ValueError, match=r"--save-epochs 3: no member trains that long \(--epochs at most 2\)"):
        _plan(digits, save_epochs=(0, 3))
    pool = digits[0].train_images.size(0)
    with pytest.raises(ValueError, match=f"--batch-size 100000: the training pool has only {pool} images"):
        build_zoo(_plan(digits, batch_size=100_000), digits[0], tmp_path / "zoo", progress=False)
    assert not (tmp_path / "zoo").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda document: {**document, "records": 5}, "not a zoo shard's records"),
        (lambda document: [document], "not a zoo shard's records"),
        (lambda document: {**document, "seconds": "soon"}, "not a zoo shard's records"),
        (lambda document: {**document, "records": [7]}, "record 0: a int, not an object"),
        (lambda document: {**document, "records": [{k: v for k, v in document["records"][0].items() if k != "member"}]}, "record 0: no 'member'"),
        (lambda document: {**document, "records": [{**document["records"][0], "epoch": "1"}]}, "record 0: 'epoch' is '1'"),
        (lambda document: {**document, "records": [{**document["records"][0], "split": "holdout"}]}, "out of range"),
        (lambda document: {**document, "records": [{**document["records"][0], "path": "/etc/passwd"}]}, "leaves the zoo's checkpoints folder"),
        (lambda document: {**document, "records": [{**document["records"][0], "path": "../../x.pt"}]}, "leaves the zoo's checkpoints folder"),
        (lambda document: {**document, "records": [document["records"][0], {**document["records"][1], "path": document["records"][0]["path"]}]}, "record 1: path 'shard-00000/m000000-e..\\.pt' is recorded twice"),
        (lambda document: {**document, "records": [document["records"][0], dict(document["records"][0], path=None)]}, "record 1: member 0 after epoch .* is recorded twice"),
    ],
    ids=["records-number", "list", "seconds", "record-number", "missing", "type", "split", "absolute", "parent", "same-path", "same-checkpoint"],
)  # fmt: skip
def test_a_hand_edited_records_file_is_named_before_anything_is_written(digits, tmp_path: Path, edit, message) -> None:
    plan = _plan(digits, arch="mlp", count=3)
    build_zoo(plan, digits[0], tmp_path, progress=False)
    records = tmp_path / CHECKPOINTS / "shard-00000" / "records.json"
    records.write_text(json.dumps(edit(json.loads(records.read_text()))))
    index = (tmp_path / "index.csv").read_text()
    with pytest.raises(ValueError, match=rf"records\.json: .*{message}") as error:
        build_zoo(plan, digits[0], tmp_path, progress=False)
    assert "\n" not in str(error.value) and (tmp_path / "index.csv").read_text() == index


@pytest.mark.parametrize("plan", [5, [], None])
def test_a_zoo_file_without_a_plan_is_not_a_zoo(digits, tmp_path: Path, plan) -> None:
    build_zoo(_plan(digits, arch="mlp", count=3), digits[0], tmp_path, progress=False)
    zoo_file = tmp_path / "zoo.json"
    zoo_file.write_text(json.dumps({**json.loads(zoo_file.read_text()), "plan": plan}))
    with pytest.raises(ValueError, match=r"zoo\.json: not a wsgraph zoo"):
        build_zoo(_plan(digits, arch="mlp", count=3), digits[0], tmp_path, progress=False)


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_batched_training_equals_training_each_member_alone(digits, arch: str) -> None:
    data = digits[0]
    architecture = _plan(digits, arch).architecture
    members = [draw_member(SPACE, 3, number) for number in range(5)]
    members = [m for m in members if m.activation == members[0].activation]
    together = train_group(architecture, members, data, 16, save_epochs=(1,), train_eval_size=50)
    alone = [s for m in members for s in train_group(architecture, [m], data, 16, save_epochs=(1,), train_eval_size=50)]
    assert len(together) == len(alone) >= len(members)
    for batched, single in zip(together, alone):
        assert (batched.member, batched.epoch) == (single.member, single.epoch)
        for key in batched.state_dict:
            torch.testing.assert_close(batched.state_dict[key], single.state_dict[key], rtol=1e-4, atol=1e-5)
        assert batched.test_accuracy == pytest.approx(single.test_accuracy, abs=1 / 200)


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_a_member_trains_as_nn_sequential_with_torch_adam_would(digits, arch: str) -> None:
    """Without dropout, a member's training is the saved module trained with torch.optim.Adam
    (L2 weight decay) on the member's own batches."""
    data = digits[0]
    architecture = _plan(digits, arch).architecture
    space = SearchSpace(train_fraction=(0.2, 0.2), epochs=(2, 2), dropout=(0.0, 0.0), activations=("tanh",))
    member = draw_member(space, 0, 7)
    [trained] = train_group(architecture, [member], data, 16)

    model = architecture.build(member.activation)
    initial = {key: value[0] for key, value in initial_parameters(architecture, [member]).items()}
    model.load_state_dict(initial)
    optimizer = torch.optim.Adam(model.parameters(), lr=member.lr, weight_decay=member.weight_decay)
    pool = data.train_images.size(0)
    size = torch.tensor([subset_size(member, pool, 16)])
    keys = torch.tensor([member.key])
    subset = member_subsets(keys, size, pool)[0]
    steps = int(size) // 16
    for epoch in range(member.epochs):
        order = epoch_orders(keys, torch.tensor([epoch]), size)[0]
        for step in range(steps):
            chosen = subset[order[step * 16 : (step + 1) * 16]]
            optimizer.zero_grad()
            functional.cross_entropy(model(data.train_images[chosen]), data.train_labels[chosen]).backward()
            optimizer.step()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(trained.state_dict[key], value, rtol=1e-4, atol=1e-5)


def test_recorded_scores_equal_re_evaluating_the_saved_state_dicts(digits, tmp_path: Path) -> None:
    data = digits[0]
    plan = _plan(digits, count=6, save_epochs=(0,))
    build_zoo(plan, data, tmp_path, progress=False)
    records = read_records(tmp_path)
    assert len(records) == 12
    for record in records:
        model = plan.architecture.build(record["activation"]).eval()
        model.load_state_dict(torch.load(tmp_path / CHECKPOINTS / record["path"], weights_only=True))
        with torch.no_grad():
            logits = model(data.test_images)
        accuracy = (logits.argmax(dim=1) == data.test_labels).double().mean().item()
        assert record["test_accuracy"] == accuracy
        assert record["test_loss"] == pytest.approx(functional.cross_entropy(logits, data.test_labels).item(), rel=1e-5)


def test_batched_forward_is_each_members_module(digits) -> None:
    data = digits[0]
    for arch in ("cnn", "mlp"):
        architecture = _plan(digits, arch).architecture
        members = [draw_member(SearchSpace(activations=("gelu",)), 0, n) for n in range(3)]
        params = initial_parameters(architecture, members)
        logits = batched_forward(architecture, params, data.test_images[:20], "gelu")
        for row in range(3):
            model = architecture.build("gelu")
            model.load_state_dict({key: value[row] for key, value in params.items()})
            torch.testing.assert_close(logits[row], model(data.test_images[:20]), rtol=1e-5, atol=1e-5)


def test_the_small_cnn_zoo_network_has_4970_parameters() -> None:
    architecture = MemberArchitecture("cnn", (28, 28, 1), 10, 16)
    assert architecture.num_parameters == 4970
    assert sum(p.numel() for p in architecture.build("relu").parameters()) == 4970
    assert MemberArchitecture("mlp", (28, 28, 1), 10, 32).build("relu")(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_cli_writes_a_zoo_and_refuses_bad_ranges(tmp_path: Path, capsys) -> None:
    out = tmp_path / "zoo"
    arguments = ["zoo", "--source", "digits", "--out", str(out), "--count", "4", "--arch", "mlp", "--width", "8"]
    assert main([*arguments, "--epochs", "1", "--train-fraction", "0.2", "--test-size", "50", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["members"] == 4 and summary["checkpoints"] == 4
    assert main([*arguments, "--lr", "0.1,0.01"]) == 1
    assert "--lr range must be 0 < low <= high" in capsys.readouterr().err
    assert main([*arguments, "--activations", "swish"]) == 1
    assert "--activations must name some of" in capsys.readouterr().err


def test_cli_refuses_a_zero_width(tmp_path: Path, capsys) -> None:
    arguments = ["zoo", "--source", "digits", "--out", str(tmp_path / "zoo"), "--count", "2", "--arch", "mlp"]
    assert main([*arguments, "--width", "0"]) == 1
    assert "--width must be in 1..4,096, got 0" in capsys.readouterr().err
    assert not (tmp_path / "zoo").exists()


def test_cli_refuses_an_absurd_count_or_test_size_and_reports_members_not_saved(tmp_path: Path, capsys) -> None:
    arguments = ["zoo", "--source", "digits", "--out", str(tmp_path / "zoo"), "--arch", "mlp", "--no-progress"]
    assert main([*arguments, "--count", str(10**30)]) == 1
    assert capsys.readouterr().err == f"wsgraph zoo: error: --count must be at most 10,000,000, got {10**30}\n"
    with pytest.raises(SystemExit):
        main([*arguments, "--count", "2", "--test-size", "0"])
    assert "argument --test-size: expected a positive integer, got '0'" in capsys.readouterr().err
    assert not (tmp_path / "zoo").exists()
    # Weights scaled by 1e30 overflow in training: such checkpoints are not saved, and the command says so.
    assert main([*arguments, "--count", "2", "--init-scale", "1e30", "--epochs", "1"]) == 0
    summary = json.loads((tmp_path / "zoo" / "summary.json").read_text())
    assert summary["not_saved_non_finite"] > 0
    assert (
        f"not saved: {summary['not_saved_non_finite']} checkpoint(s) with NaN or infinite weights "
        f"(listed in {tmp_path / 'zoo' / 'index.csv'} without a path)"
    ) in capsys.readouterr().out
