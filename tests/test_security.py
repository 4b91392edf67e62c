"""Files from strangers: no reader runs code from a file or materialises what a file only declares."""

from __future__ import annotations

import json
import os
import shlex
import warnings
from pathlib import Path

import pytest
import torch
from mlp_helpers import build_mlp
from torch import nn

from wsgraph import CheckpointError, NotAnMLPError, Sine, load_network_file
from wsgraph.cli.main import main
from wsgraph.core.network_files import SAFE_MODULE_CLASSES, graph_from_network_file
from wsgraph.datasets.checkpoint_folders import convert_checkpoints
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.store import read_shard, shard_paths
from wsgraph.training.run_checkpoints import load_run_checkpoint

SHELL_GLOBAL = f"'{os.system.__module__}.system'"


class RunsShell:
    """Pickles as a call of ``os.system``: what a crafted checkpoint carries."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


class RunsPython:
    """Pickles as a call of ``exec``, a global outside torch's blocked modules."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


class BuildsLinear:
    """Pickles as a call of an allowed class, ``nn.Linear(3, 3)``, instead of a restored instance."""

    def __reduce__(self):
        return (nn.Linear, (3, 3))


def plain_network() -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))


def save_malicious(path, marker) -> None:
    network = plain_network()
    network.payload = RunsShell(marker)
    torch.save(network, path)


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "MARKER"


@pytest.fixture
def malicious(tmp_path, marker):
    path = tmp_path / "net.pt"
    save_malicious(path, marker)
    return path


def assert_refusal(message: str, path) -> None:
    assert "\n" not in message.rstrip("\n")
    assert f"{path}: refuses to unpickle {SHELL_GLOBAL} (not a known torch.nn class); pass --trust-pickles" in message


def test_load_network_file_refuses_a_module_that_runs_a_command(malicious, marker):
    with pytest.raises(CheckpointError) as error:
        load_network_file(malicious)
    assert str(error.value).startswith(f"{malicious}: ")
    assert_refusal(str(error.value), malicious)
    assert not marker.exists()
    assert isinstance(load_network_file(malicious, trust_pickles=True), nn.Sequential)
    assert marker.exists()


def test_info_refuses_it_in_one_line(malicious, marker, capsys):
    assert main(["info", str(malicious)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"wsgraph info: error: {malicious}: ")
    assert_refusal(captured.err, malicious)
    assert not marker.exists()
    assert main(["info", "--json", "--trust-pickles", str(malicious)]) == 0
    assert json.loads(capsys.readouterr().out)["widths"] == [2, 4, 1]
    assert marker.exists()


@pytest.fixture
def folder_with_malicious(tmp_path, marker):
    src = tmp_path / "zoo"
    src.mkdir()
    for number in range(3):
        torch.save(build_mlp((2, 4, 1), seed=number).state_dict(), src / f"net{number}.pt")
    save_malicious(src / "evil.pt", marker)
    return src


def test_convert_stops_at_it(folder_with_malicious, marker, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["convert", str(folder_with_malicious), str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"wsgraph convert: error: {folder_with_malicious / 'evil.pt'}: ")
    assert_refusal(err, folder_with_malicious / "evil.pt")
    assert not out.exists() and not marker.exists()


def test_convert_skip_bad_lists_it_with_the_reason(folder_with_malicious, marker, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["convert", str(folder_with_malicious), str(out), "--skip-bad", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "converted 3 of 4 checkpoints" in printed
    line = next(line for line in printed.splitlines() if line.startswith("  evil.pt: "))
    assert line.startswith(f"  evil.pt: refuses to unpickle {SHELL_GLOBAL} (not a known torch.nn class)")
    (skipped,) = json.loads((out / "skipped.json").read_text())["skipped"]
    assert skipped["path"] == "evil.pt" and skipped["reason"].startswith(f"refuses to unpickle {SHELL_GLOBAL}")
    assert not marker.exists()


def test_convert_trusting_pickles_reads_it(folder_with_malicious, marker, tmp_path, capsys):
    argv = ["convert", str(folder_with_malicious), str(tmp_path / "out"), "--quiet", "--trust-pickles"]
    assert main(argv) == 0
    assert "converted 4 of 4 checkpoints" in capsys.readouterr().out and marker.exists()
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["recipe"]["trust_pickles"] is True
    marker.unlink()
    report = convert_checkpoints(folder_with_malicious, tmp_path / "again", progress=False, trust_pickles=True)
    assert report.num_networks == 4 and marker.exists()


@pytest.mark.parametrize("command", ["info", "convert"])
def test_trust_pickles_help_says_what_it_risks(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--trust-pickles" in text and "RUNS ANY CODE THE FILE CONTAINS" in text
    assert "only for files you made" in text


@pytest.mark.parametrize("container", ["sequential", "module_list", "module_dict"])
def test_every_container_loads_without_the_opt_in(tmp_path, container):
    layers = [nn.Linear(2, 4), nn.GELU(), nn.Dropout(0.1), nn.Linear(4, 1)]
    module = {
        "sequential": lambda: nn.Sequential(*layers),
        "module_list": lambda: nn.ModuleList(layers),
        "module_dict": lambda: nn.ModuleDict({f"layer{n}": layer for n, layer in enumerate(layers)}),
    }[container]()
    path = tmp_path / "net.pt"
    torch.save(module, path)
    loaded = load_network_file(path)
    assert type(loaded) is type(module)
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in module.state_dict().items())


@pytest.mark.parametrize(
    ("activation", "recorded"),
    [
        (nn.ReLU, "relu"),
        (nn.LeakyReLU, "leaky_relu"),
        (nn.ELU, "elu"),
        (nn.GELU, "gelu"),
        (nn.SiLU, "silu"),
        (nn.Tanh, "tanh"),
        (nn.Sigmoid, "sigmoid"),
        (nn.Softplus, "softplus"),
        (lambda: Sine(30.0), "sine(30.0)"),
        (nn.Identity, "identity"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_every_known_activation_loads_without_the_opt_in(tmp_path, capsys, activation, recorded):
    path = tmp_path / "net.pt"
    torch.save(build_mlp((2, 5, 5, 1), activation=activation, seed=3), path)
    assert main(["info", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["activation"] == recorded


def test_the_allow_list_is_the_documented_one():
    names = {cls.__name__ for cls in SAFE_MODULE_CLASSES}
    assert names == {
        "Sequential",
        "ModuleList",
        "ModuleDict",
        "Linear",
        "Conv2d",
        "AdaptiveAvgPool2d",
        "Flatten",
        "Dropout",
        "Identity",
        "ReLU",
        "LeakyReLU",
        "ELU",
        "GELU",
        "SiLU",
        "Tanh",
        "Sigmoid",
        "Softplus",
        "Sine",
    }
    doc = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    section = doc[doc.index("## Files from strangers") :]
    for cls in SAFE_MODULE_CLASSES:
        public_module = cls.__module__.split(".modules.")[0]
        assert f"`{public_module}.{cls.__name__}`" in section, cls


def test_a_file_may_not_call_an_allowed_class(tmp_path):
    path = tmp_path / "net.pt"
    torch.save({"model": BuildsLinear()}, path)
    with pytest.raises(CheckpointError, match=r"the file calls torch\.nn\.modules\.linear\.Linear\(\.\.\.\)") as error:
        load_network_file(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


def test_a_custom_class_in_an_old_format_file_is_refused(tmp_path, marker):
    path = tmp_path / "net.pt"
    network = plain_network()
    network.payload = RunsShell(marker)
    torch.save(network, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"old \(non-zip\) format .*--trust-pickles"):
        load_network_file(path)
    assert not marker.exists()
    torch.save(build_mlp((2, 3, 1)).state_dict(), path, _use_new_zipfile_serialization=False)
    assert set(load_network_file(path)) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_a_training_checkpoint_runs_no_code(tmp_path, marker):
    path = tmp_path / "last.pt"
    torch.save({"format": "wsgraph-train-checkpoint", "version": 1, "extra": RunsPython(marker)}, path)
    with pytest.raises(
        ValueError,
        match=r"last\.pt: not a readable checkpoint \(UnpicklingError: .*GLOBAL exec was not an allowed global",
    ):
        load_run_checkpoint(path)
    assert not marker.exists()


def test_a_training_checkpoint_names_a_blocked_global(tmp_path, marker):
    path = tmp_path / "last.pt"
    torch.save({"format": "wsgraph-train-checkpoint", "version": 1, "extra": RunsShell(marker)}, path)
    with pytest.raises(
        ValueError, match=r"last\.pt: not a readable checkpoint \(UnpicklingError: .*GLOBAL \S*system"
    ) as error:
        load_run_checkpoint(path)
    assert "\n" not in str(error.value) and "Weights only load failed" not in str(error.value)
    assert not marker.exists()


@pytest.fixture
def dataset_root(tmp_path):
    src = tmp_path / "zoo"
    src.mkdir()
    for number in range(4):
        torch.save(build_mlp((2, 4, 1), seed=number).state_dict(), src / f"net{number}.pt")
    root = tmp_path / "dataset"
    convert_checkpoints(src, root, progress=False, split_ratios=(0.5, 0.25, 0.25))
    return root


def test_a_processed_cache_runs_no_code(dataset_root, marker):
    WeightSpaceDataset(dataset_root, log=False)
    processed = next((dataset_root / "processed").glob("train-*.pt"))
    # exec is not in a module torch blocks outright: torch_geometric's loader would retry it unsafely.
    torch.save({"payload": RunsPython(marker)}, processed)
    with pytest.raises(ValueError, match=rf"{processed.name}: unreadable processed cache"):
        WeightSpaceDataset(dataset_root, split="train", log=False)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [RunsShell, RunsPython])
@pytest.mark.parametrize("record", ["pre_transform.pt", "pre_filter.pt"])
def test_a_processed_record_runs_no_code(dataset_root, marker, record, payload):
    WeightSpaceDataset(dataset_root, log=False)
    # torch_geometric's own Dataset._process unpickles these two files with weights_only=False.
    torch.save(payload(marker), dataset_root / "processed" / record)
    with pytest.raises(ValueError, match=rf"{record}: unreadable processed cache") as error:
        WeightSpaceDataset(dataset_root, log=False)
    assert "\n" not in str(error.value) and not marker.exists()


def test_train_on_a_folder_with_a_crafted_record_runs_no_code(marker, tmp_path, capsys):
    src, root = tmp_path / "zoo", tmp_path / "labelled"
    src.mkdir()
    for number in range(8):
        torch.save(build_mlp((2, 4, 1), seed=number).state_dict(), src / f"net{number}.pt")
    (src / "labels.csv").write_text("path,label\n" + "".join(f"net{n}.pt,{n % 2}\n" for n in range(8)))
    convert_checkpoints(src, root, labels=src / "labels.csv", progress=False, split_ratios=(0.5, 0.25, 0.25))
    WeightSpaceDataset(root, log=False)
    torch.save(RunsShell(marker), root / "processed" / "pre_transform.pt")
    argv = ["train", "--data", str(root), "--model", "mlp", "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert main([*argv, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pre_transform.pt: unreadable processed cache" in err
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_processed_records_are_plain_text_and_flag_another_pre_transform(dataset_root):
    WeightSpaceDataset(dataset_root, log=False)
    for record in ("pre_transform.pt", "pre_filter.pt"):
        assert torch.load(dataset_root / "processed" / record, weights_only=True) == "None"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        WeightSpaceDataset(dataset_root, log=False)
    with pytest.warns(UserWarning, match=r"processed was built with another `pre_transform`; pass force_reload=True"):
        WeightSpaceDataset(dataset_root, pre_transform=lambda batch: batch, log=False)


def test_a_shard_runs_no_code_and_declares_no_more_than_it_holds(dataset_root, marker):
    shard = shard_paths(dataset_root)[0]
    payload = torch.load(shard, weights_only=True)
    torch.save({**payload, "extras": {"payload": RunsPython(marker)}}, shard)
    with pytest.raises(
        ValueError, match=r"shard-00000\.pt: not a readable wsgraph shard .*GLOBAL exec was not an allowed global"
    ) as error:
        read_shard(shard)
    assert "\n" not in str(error.value) and not marker.exists()
    count = payload["y"].numel()
    payload["extras"] = {"psnr": torch.zeros(1).expand(count, 10**9)}
    torch.save(payload, shard)
    with pytest.raises(CheckpointError, match=r"'extras\.psnr' declares [\d,]+ elements .* but the file holds"):
        read_shard(shard)


def test_info_refuses_a_tensor_larger_than_its_file(tmp_path, capsys):
    path = tmp_path / "bomb.pt"
    weight = torch.zeros(1).expand(10**5, 10**5)
    torch.save({"0.weight": weight, "0.bias": torch.zeros(1).expand(10**5)}, path)
    assert path.stat().st_size < 4096 and weight.stride() == (0, 0)
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        f"wsgraph info: error: {path}: '0.weight' declares 10,000,000,000 elements (40,000,000,000 bytes) "
        f"but the file holds {path.stat().st_size:,} bytes"
    )


def test_a_saved_module_with_a_repeated_view_is_refused(tmp_path):
    module = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    module[0].weight = nn.Parameter(torch.zeros(1).expand(10**5, 2))
    path = tmp_path / "net.pt"
    torch.save(module, path)
    with pytest.raises(CheckpointError, match=r"'0\.weight' declares 200,000 elements \(800,000 bytes\)"):
        load_network_file(path)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (lambda: torch.eye(4).to_sparse(), r"'0\.weight' is a sparse tensor \(sparse_coo\)"),
        (lambda: torch.eye(4).to_sparse_csr(), r"'0\.weight' is a sparse tensor \(sparse_csr\)"),
        (lambda: torch.empty(4, 4, device="meta"), r"'0\.weight' is a meta tensor: the file records its shape"),
    ],
    ids=["sparse-coo", "sparse-csr", "meta"],
)
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_sparse_and_meta_tensors_are_named(tmp_path, capsys, tensor, message):
    path = tmp_path / "net.pt"
    torch.save({"0.weight": tensor(), "0.bias": torch.zeros(4)}, path)
    with pytest.raises(CheckpointError, match=message) as error:
        load_network_file(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)
    assert main(["info", str(path)]) == 1
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("saved", ["module", "state_dict"])
@pytest.mark.parametrize("widths", [(2, 0, 1), (0, 3, 1), (2, 3, 0)], ids=["hidden", "input", "output"])
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
def test_a_zero_width_layer_is_named(tmp_path, capsys, saved, widths):
    network = build_mlp(widths)
    path = tmp_path / "net.pt"
    torch.save(network if saved == "module" else network.state_dict(), path)
    with pytest.raises(NotAnMLPError, match=r"^\S*net\.pt: .*shape \(\d+, \d+\): a layer without neurons$"):
        graph_from_network_file(path)
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"wsgraph info: error: {path}: ")
    assert "a layer without neurons" in err


def test_a_file_name_with_a_newline_stays_on_one_line(tmp_path, capsys):
    path = tmp_path / "bad\nname.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as error:
        load_network_file(path)
    assert "\n" not in str(error.value) and str(error.value).startswith(repr(str(path)) + ": ")
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"wsgraph info: error: {str(path)!r}: not a readable")
    src = tmp_path / "zoo"
    src.mkdir()
    torch.save(build_mlp((2, 4, 1)).state_dict(), src / "good.pt")
    (src / "evil\n  good.pt: fine.pt").write_bytes(b"garbage")
    assert main(["convert", str(src), str(tmp_path / "out"), "--skip-bad", "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    skipped = [line for line in printed if line.startswith("  ") and "not a readable" in line]
    assert skipped == [line for line in printed if "evil" in line]
    assert len(skipped) == 1 and skipped[0].startswith("  'evil\\n  good.pt: fine.pt': ")


HOOK_REGISTRIES = ["_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_state_dict_hooks"]


@pytest.mark.parametrize("registry", HOOK_REGISTRIES)
@pytest.mark.parametrize("trust", [False, True], ids=["safe", "trusted"])
def test_hooks_of_the_standard_classes_are_refused(tmp_path, capsys, registry, trust):
    """A file of allowed classes may put allowed callables in a module's hooks, which would run
    with it; trusting the file's pickles changes nothing, as no class of its own needs them."""
    network = plain_network()
    getattr(network[0], registry)[0] = nn.Identity()
    path = tmp_path / "net.pt"
    torch.save(network, path)
    with pytest.raises(CheckpointError, match=rf"the saved Linear '0' carries '?{registry}'? in the file"):
        load_network_file(path, trust_pickles=trust)
    assert main(["info", str(path)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{path}: the saved Linear '0' carries" in error


def doubles_its_output(module, args, output):
    return 2 * output


class DoublingLinear(nn.Linear):
    """A class of the user's own, whose forward hook is part of its function."""


def test_a_trusted_module_of_its_own_classes_keeps_its_hooks(tmp_path):
    network = nn.Sequential(DoublingLinear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    network[0].register_forward_hook(doubles_its_output)
    path = tmp_path / "net.pt"
    torch.save(network, path)
    with pytest.raises(CheckpointError, match="--trust-pickles"):
        load_network_file(path)
    loaded = load_network_file(path, trust_pickles=True)
    inputs = torch.randn(3, 2)
    assert list(loaded[0]._forward_hooks.values()) == [doubles_its_output]
    assert torch.equal(loaded(inputs), network(inputs))


def test_a_network_saved_normally_loads(tmp_path):
    network = plain_network()
    path = tmp_path / "net.pt"
    torch.save(network, path)
    loaded = load_network_file(path)
    assert isinstance(loaded, nn.Sequential)
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in network.state_dict().items())
