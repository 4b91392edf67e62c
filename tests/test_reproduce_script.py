"""benchmarks/reproduce.py: two chains that share an INR set."""

import importlib.util
import sys
import threading
from pathlib import Path

import pytest

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
    out, events = tmp_path / "mnist-inrs", []
    holding, may_release = threading.Event(), threading.Event()

    def other_chain():
        with write_lock(out, "a dataset writer (wsgraph fit-inrs / fit-sines)"):
            holding.set()
            may_release.wait(timeout=30)
            events.append("other fitter done")

    thread = threading.Thread(target=other_chain)
    thread.start()
    assert holding.wait(timeout=30)
    threading.Timer(0.2, may_release.set).start()
    reproduce.wait_for_another_fitter(["fit-inrs", "--source", "mnist", "--out", str(out)])
    events.append("this chain fits")
    thread.join(timeout=30)
    assert events == ["other fitter done", "this chain fits"]
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
