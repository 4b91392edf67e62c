"""Run a worker script in two gloo processes under torchrun, as the distributed tests do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def run_two_processes(worker: Path, *arguments: str, timeout: float = 180) -> None:
    """Launch ``worker`` under ``torch.distributed.run`` with 2 processes; fail with its stderr."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    # A session of its own, so that a timeout kills the workers too, not only the launcher
    # (orphaned workers would wait for their peers forever).
    launcher = subprocess.Popen(
        [*command, str(worker), *arguments],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = launcher.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.communicate()
        raise
    assert launcher.returncode == 0, stderr[-3000:]
