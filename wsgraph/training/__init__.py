"""Training and benchmarking models on weight-space datasets (``wsgraph train``, ``wsgraph bench``).

One module per job: :mod:`~wsgraph.training.config` (the settings of a run),
:mod:`~wsgraph.training.data` (splits and labels), :mod:`~wsgraph.training.loaders`
(batches, also across ``torchrun`` ranks), :mod:`~wsgraph.training.registry` (models by
name), :mod:`~wsgraph.training.tasks` (losses and metrics),
:mod:`~wsgraph.training.schedule` (warmup and cosine decay),
:mod:`~wsgraph.training.loop` (an epoch), :mod:`~wsgraph.training.run_checkpoints`,
:mod:`~wsgraph.training.metrics`, :mod:`~wsgraph.training.plots`,
:mod:`~wsgraph.training.distributed`, :mod:`~wsgraph.training.run` (a whole run),
:mod:`~wsgraph.training.bench` (many runs and their table),
:mod:`~wsgraph.training.network_inputs` (reading the networks a trained model is applied to),
:mod:`~wsgraph.training.predict` (a trained model's predictions for networks it has not seen) and
:mod:`~wsgraph.training.edit` (a trained editing model's edits of them).
"""

from wsgraph.training.config import MODEL_NAMES, TASKS, TrainConfig
from wsgraph.training.editors import FlatMLPEditor
from wsgraph.training.registry import ModelSpec, build_model, model_spec
from wsgraph.training.run import load_trained_model, train

__all__ = [
    "MODEL_NAMES",
    "TASKS",
    "FlatMLPEditor",
    "ModelSpec",
    "TrainConfig",
    "build_model",
    "load_trained_model",
    "model_spec",
    "train",
]
