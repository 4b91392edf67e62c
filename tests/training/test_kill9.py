"""What survives ``kill -9``: long jobs killed mid-run leave only whole files, and a rerun
finishes exactly the job an uninterrupted run does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from wsgraph.cli.main import main
from wsgraph.datasets.store import read_meta, read_shard, shard_paths
from wsgraph.training.run_checkpoints import load_run_checkpoint

from .conftest import write_store

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

# Runs the wsgraph command line with one function slowed down, so the test can kill the
# process at a known stage; the slowing changes no computation.
SLOWED = """
import sys, time, importlib
module, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
owner = importlib.import_module(module)
real = getattr(owner, name)
def slowed(*args, **kwargs):
    result = real(*args, **kwargs)
    time.sleep(seconds)
    return result
setattr(owner, name, slowed)
from wsgraph.cli.main import main
raise SystemExit(main(sys.argv[4:]))
"""


def kill_when(arguments: list[str], slowed: tuple[str, str, float], ready: Callable[[], bool]) -> None:
    """Start ``wsgraph ARGUMENTS`` with ``slowed`` slowed down and SIGKILL it once ``ready()``."""
    command = [sys.executable, "-c", SLOWED, *slowed[:2], str(slowed[2]), *arguments]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"finished before it could be killed: {process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("never reached the stage to kill it at")
            time.sleep(0.05)
    finally:
        still_running = process.poll() is None
        process.send_signal(signal.SIGKILL)
        returncode = process.wait()
    # Only once the loop got there: a run that ended by itself has already failed, with its message.
    assert not still_running or returncode == -signal.SIGKILL


def epochs_recorded(metrics: Path, epochs: int) -> Callable[[], bool]:
    """Whether ``metrics`` (a run's metrics.csv, the last file each epoch writes) has ``epochs`` rows."""

    def ready() -> bool:
        return metrics.is_file() and len(metrics.read_text().splitlines()) >= 1 + epochs

    return ready


def test_train_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    data = write_store(tmp_path / "data")
    settings = ["--model", "mlp", "--epochs", "8", "--batch-size", "8", "--lr", "0.01", "--hidden-channels", "8"]
    settings += ["--depth", "2", "--patience", "0", "--device", "cpu", "--no-progress"]
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "whole"), *settings]) == 0

    killed = tmp_path / "killed"
    arguments = ["train", "--data", str(data), "--out", str(killed), *settings]
    kill_when(arguments, ("wsgraph.training.run", "train_epoch", 0.4), epochs_recorded(killed / "metrics.csv", 3))
    survived = load_run_checkpoint(killed / "last.pt")
    assert 3 <= survived["epoch"] < 8 and len(survived["history"]) == survived["epoch"]
    assert load_run_checkpoint(killed / "best.pt")["epoch"] <= survived["epoch"]
    assert not (killed / "result.json").exists()
    # metrics.csv follows last.pt each epoch, so a kill between the two leaves it one row behind.
    rows = len((killed / "metrics.csv").read_text().splitlines()) - 1
    assert rows in (survived["epoch"] - 1, survived["epoch"])

    assert main(["train", "--out", str(killed), "--resume"]) == 0
    whole, resumed = load_run_checkpoint(tmp_path / "whole" / "last.pt"), load_run_checkpoint(killed / "last.pt")
    assert [row["train_loss"] for row in resumed["history"]] == [row["train_loss"] for row in whole["history"]]
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name


def test_fit_inrs_killed_mid_run_resumes_to_the_same_shards(tmp_path: Path) -> None:
    fit = ["fit-inrs", "--source", "digits", "--limit", "3", "--steps", "30", "--shard-size", "2", "--no-progress"]
    assert main([*fit, "--out", str(tmp_path / "whole")]) == 0

    killed = tmp_path / "killed"
    kill_when(
        [*fit, "--out", str(killed)],
        ("wsgraph.datasets.build", "write_shard", 1.0),
        lambda: len(shard_paths(killed)) >= 2,
    )
    survived = shard_paths(killed)
    assert 2 <= len(survived) < 5 and read_meta(killed)["num_shards"] == 5
    for path in survived:
        read_shard(path)  # whole: each one reads
    leftovers = [p.name for p in (killed / "shards").iterdir() if p not in survived]
    assert all(name.startswith(".shard-") and name.endswith(".tmp") for name in leftovers)

    assert main([*fit, "--out", str(killed)]) == 0
    for first, second in zip(shard_paths(tmp_path / "whole"), shard_paths(killed), strict=True):
        a, b = read_shard(first), read_shard(second)
        assert all(torch.equal(x, y) for x, y in zip([*a.weights, *a.biases], [*b.weights, *b.biases]))
    assert os.path.isfile(killed / "summary.json")
