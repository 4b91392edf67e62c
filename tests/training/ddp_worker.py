"""Run by ``torchrun --nproc-per-node 2`` from test_distributed.py (gloo, CPU).

Computes the gradient of one global batch with the trainer's own epoch loop, saves it
(rank 0), then trains a whole run through the ``wsgraph train`` command line in the same
process group.

Usage: ``torchrun --standalone --nproc-per-node 2 ddp_worker.py DATA OUT``
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from wsgraph.cli.main import main as wsgraph_main
from wsgraph.datasets.transforms import NormalizeWeights
from wsgraph.training.data import open_training_data
from wsgraph.training.distributed import DistributedContext, setup
from wsgraph.training.loaders import EpochPlan, StackedLoader
from wsgraph.training.loop import BatchPreparation, Precision, train_epoch
from wsgraph.training.registry import build_model, model_spec
from wsgraph.training.schedule import warmup_cosine
from wsgraph.training.tasks import Classification

# Seven networks: the two processes get parts of 4 and 3, so their losses need unequal weights.
GLOBAL_BATCH = 7
# Small enough that clipping scales the gradient down: it must see the whole global batch's gradient.
CLIP_GRAD_NORM = 1e-3
RUN_ARGUMENTS = ["--model", "dwsnet", "--epochs", "2", "--batch-size", "8", "--hidden-channels", "8", "--depth", "2"]


def global_batch_gradients(
    root: str | Path, context: DistributedContext, clip_grad_norm: float | None = None
) -> tuple[dict[str, torch.Tensor], float]:
    """The gradient (and mean loss) of DWSNet on the first global batch of ``root``'s train split,
    clipped to norm ``clip_grad_norm`` when given."""
    data = open_training_data(root, "classify", log=False)
    data.train.rows = data.train.rows[:GLOBAL_BATCH]
    torch.manual_seed(0)
    model = build_model(model_spec("dwsnet", "classify", data.architectures, 3, hidden_channels=8, depth=2))
    trained = DistributedDataParallel(model) if context.is_distributed else model
    plan = EpochPlan(len(data.train), GLOBAL_BATCH, shuffle=True, seed=0, context=context)
    loader = StackedLoader(data.train, data.uniform_spec, plan, context.device)
    # Learning rate zero: the step leaves the parameters alone and their gradients readable.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    precision = Precision(False, "cpu")
    result = train_epoch(
        trained,
        loader,
        Classification(3),
        optimizer,
        warmup_cosine(optimizer, 0, 1),
        precision.grad_scaler(),
        BatchPreparation(NormalizeWeights(data.statistics)),
        precision,
        context,
        progress=False,
        clip_grad_norm=clip_grad_norm,
    )
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}, result.loss


def main(root: str, out: str) -> None:
    context = setup("cpu")
    gradients, loss = global_batch_gradients(root, context)
    clipped, _ = global_batch_gradients(root, context, clip_grad_norm=CLIP_GRAD_NORM)
    if context.is_main:
        torch.save({"gradients": gradients, "clipped": clipped, "loss": loss}, Path(out) / "ddp_gradients.pt")
    status = wsgraph_main(["train", "--data", root, "--out", str(Path(out) / "run"), "--no-progress", *RUN_ARGUMENTS])
    sys.exit(status)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
