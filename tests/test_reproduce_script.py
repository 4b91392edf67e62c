"""benchmarks/reproduce.py: two chains that share an INR set."""

import importlib.util
import sys
from pathlib import Path

import pytest
from lock_helpers import lock_held_by_another

from wsgraph.locks import lock_path, write_lock

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "reproduce.py"


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_a_fitting_step_waits_for_another_fitter_of_the_same_inrs(reproduce, tmp_path, capsys):
    out = tmp_path / "mnist-inrs"
    holder = "a dataset writer (wsgraph fit-inrs / fit-sines)"
    with lock_held_by_another(out, holder, release_after=0.2) as events:
        reproduce.wait_for_another_fitter(["fit-inrs", "--source", "mnist", "--out", str(out)])
        events.append("this chain fits")
    assert events == ["released", "this chain fits"]
    printed = capsys.readouterr().out
    assert printed.startswith(f"  waiting: {out}: a dataset writer (wsgraph fit-inrs / fit-sines) (process ")
    assert printed.count("\n") == 1 and not lock_path(out).exists()


def test_a_free_folder_or_a_training_step_does_not_wait(reproduce, tmp_path, capsys):
    out = tmp_path / "mnist-inrs"
    reproduce.wait_for_another_fitter(["fit-inrs", "--out", str(out)])
    with write_lock(out, "someone"):
        # Only fitting steps share a folder across chains; bench writes its own tables.
        reproduce.wait_for_another_fitter(["bench", "--data", str(out), "--out", str(tmp_path / "t.md")])
    assert capsys.readouterr().out == "" and not lock_path(out).exists()
