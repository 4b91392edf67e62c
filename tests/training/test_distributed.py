"""Two gloo processes under torchrun agree with one process on the same global batch."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torchrun_launcher import run_two_processes

from wsgraph.training.distributed import DistributedContext
from wsgraph.training.run_checkpoints import load_run_checkpoint

from .ddp_worker import CLIP_GRAD_NORM, global_batch_gradients

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_processes_match_one(classification_root: Path, tmp_path: Path) -> None:
    run_two_processes(WORKER, str(classification_root), str(tmp_path))

    distributed = torch.load(tmp_path / "ddp_gradients.pt", weights_only=True)
    single, single_loss = global_batch_gradients(classification_root, DistributedContext(0, 1, 0, torch.device("cpu")))
    assert distributed["gradients"].keys() == single.keys()
    for name, gradient in single.items():
        torch.testing.assert_close(distributed["gradients"][name], gradient, rtol=1e-5, atol=1e-7, msg=name)
    assert abs(distributed["loss"] - single_loss) < 1e-6
    # Clipped after DDP's all-reduce: each process scales by the global batch's norm, as one process does.
    clipped, _ = global_batch_gradients(
        classification_root, DistributedContext(0, 1, 0, torch.device("cpu")), clip_grad_norm=CLIP_GRAD_NORM
    )
    norm = torch.linalg.vector_norm(torch.stack([gradient.norm() for gradient in single.values()]))
    assert norm > 10 * CLIP_GRAD_NORM
    for name, gradient in clipped.items():
        torch.testing.assert_close(distributed["clipped"][name], gradient, rtol=1e-5, atol=1e-9, msg=name)
        torch.testing.assert_close(gradient, single[name] * (CLIP_GRAD_NORM / norm), rtol=1e-4, atol=1e-9, msg=name)

    run = tmp_path / "run"
    result = json.loads((run / "result.json").read_text())
    assert result["hardware"]["processes"] == 2
    assert result["command"].startswith("torchrun --nproc-per-node 2 -m wsgraph train")
    assert result["epochs_run"] == 2 and len(load_run_checkpoint(run / "last.pt")["random_states"]) == 2
    assert sorted(path.name for path in run.iterdir()) == [
        "best.pt",
        "last.pt",
        "learning_curves.png",
        "metrics.csv",
        "result.json",
    ]
