"""``wsgraph train`` as a function: one run from a :class:`TrainConfig` to its result file."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from wsgraph.checks import is_count, is_number
from wsgraph.core.activations import UNKNOWN
from wsgraph.datasets.store import dataset_fingerprint
from wsgraph.datasets.transforms import (
    FirstLayerRotation,
    FirstLayerScale,
    LayerStatistics,
    LayerStdShift,
    NormalizeWeights,
    RandomHiddenPermutation,
    RandomInputTranslation,
    WeightDropout,
)
from wsgraph.errors import load_error_reason, short_repr, shown_path
from wsgraph.io import (
    atomic_write,
    missing_folders,
    refuse_output_inside,
    remove_empty_folders,
    unwritable_reason,
    write_json,
)
from wsgraph.layers import DWSNet
from wsgraph.locks import LockedError, write_lock
from wsgraph.runtime import derived_seed, preserved_random_state
from wsgraph.training import run_checkpoints
from wsgraph.training.config import TrainConfig
from wsgraph.training.data import TrainingData, open_training_data, output_names, resolve_task
from wsgraph.training.distributed import DistributedContext, all_gather_objects, barrier, setup
from wsgraph.training.loaders import (
    AUGMENT_STREAM,
    DROPOUT_STREAM,
    EpochPlan,
    GraphLoader,
    StackedLoader,
)
from wsgraph.training.loop import BatchPreparation, Loader, Precision, evaluate, train_epoch
from wsgraph.training.metrics import METRICS_CSV, RESULT_JSON, hardware, history_columns, write_history
from wsgraph.training.plots import EDITS_PNG, LEARNING_CURVES_PNG, plot_edits, plot_learning_curves
from wsgraph.training.registry import (
    PERMUTATION_AUGMENTED,
    ModelSpec,
    build_model,
    check_model_fits,
    check_model_options,
    check_stored_weights,
    count_parameters,
    model_spec,
    stored_model_spec,
    weights_difference,
)
from wsgraph.training.regression import (
    PREDICTED_VS_TRUE_PNG,
    PREDICTIONS_CSV,
    column_metrics,
    gather_predictions,
    plot_predicted_vs_true,
    write_predictions,
)
from wsgraph.training.run_checkpoints import (
    BEST,
    IMAGE_RENDERING,
    LAST,
    OUTPUT_NAMES,
    load_run_checkpoint,
    not_resumable,
    require_entries,
    save_run_checkpoint,
    stored_config,
)
from wsgraph.training.schedule import constant_rate, warmup_constant, warmup_cosine, warmup_steps_for
from wsgraph.training.tasks import DILATED_KEY, Dilation, ReferencePredictor, Regression, make_task
from wsgraph.training.trained import NormalizedModel, statistics_from_dict, statistics_to_dict

# How many test networks an editing run's edits.png shows.
EDITS_PREVIEW = 8
# The published INR augmentation's dropout probability (DWSNets, experiments/data.py).
AUGMENT_DROPOUT = 0.01
# Augmentations that keep a CNN graph's kernel padding at zero and need no coordinate inputs.
CNN_AUGMENTATIONS = ("permute", "shift", "scale", "dropout")
# The checkpoint entry holding the input normalisation, which the stored model cannot work without.
NORMALIZATION = "normalization"
# The checkpoint entry naming the data a run trains on, so that a resume cannot switch data.
DATA_FINGERPRINT = "data_fingerprint"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: the run stopped, its files keep the last finite epoch."""


def train(
    config: TrainConfig, resume: str | Path | None = None, *, lock_holder: str = "wsgraph train"
) -> dict[str, Any]:
    """Train, validate and test one model; write checkpoints, metrics, curves and the result.

    Under ``torchrun`` every process calls this; rank 0 writes the files. The run seeds
    torch's global generator from ``config.seed`` (initialisation, dropout) and gives
    the caller's global random states (torch, Python, NumPy) back when it returns.

    Args:
        config: the run's settings; ``config.out`` is the run folder.
        resume: a ``last.pt`` to continue from. Its settings must equal ``config``'s,
            except where things live and how fast they run (data path, device,
            workers, loader, progress bars), and the data must be the same (moved or
            copied is fine; :func:`~wsgraph.datasets.store.dataset_fingerprint`); the run
            then continues exactly as if it had never stopped (bitwise on CPU; CUDA's
            scatter kernels are not deterministic).

        lock_holder: how a second run of the same folder, refused while this one holds
            it, names this one (``wsgraph bench`` passes its own name).

    Returns:
        The result document, also written to ``config.out/result.json``.

    Raises:
        NonFiniteLossError: if the training or validation loss becomes NaN or infinite;
            ``last.pt`` then keeps the epoch before.
        LockedError: another process is writing ``config.out``.
    """
    context = setup(config.device)
    with preserved_random_state(context.device):
        return _Run(config, context, lock_holder).execute(resume)


@contextlib.contextmanager
def lock_in_every_process(target: Path, holder: str, context: DistributedContext, named: str) -> Iterator[None]:
    """:func:`wsgraph.locks.write_lock` on ``target``, taken by rank 0 for every process of ``context``: each
    learns rank 0's answer and raises its refusal too (rather than wait for rank 0 forever). A folder that
    cannot be written is named ``named`` (the flag that gave it)."""
    with contextlib.ExitStack() as stack:
        refusal: OSError | None = None
        if context.is_main:
            try:
                stack.enter_context(write_lock(target, holder))
            except LockedError as error:
                refusal = error
            except OSError as error:
                refusal = OSError(f"{named}: {str(error).removeprefix(f'{shown_path(target)}: ')}")
        answer = None if refusal is None else (isinstance(refusal, LockedError), str(refusal))
        answer = all_gather_objects(answer, context)[0]
        if refusal is not None:
            raise refusal
        if answer is not None:
            locked, message = answer
            raise (LockedError if locked else OSError)(message)
        yield


def open_run_data(config: TrainConfig, context: DistributedContext) -> tuple[TrainingData, str]:
    """The data and task name of a run, opened by every process of ``context``."""
    task = resolve_task(config.data, config.task)
    # Rank 0 opens first: it processes the raw files once, the others then read the cache.
    if context.is_main:
        data = open_training_data(config.data, task, config.targets, config.max_train, log=True)
    barrier(context)
    if not context.is_main:
        data = open_training_data(config.data, task, config.targets, config.max_train, log=False)
    return data, task


class _Run:
    def __init__(self, config: TrainConfig, context: DistributedContext, lock_holder: str = "wsgraph train") -> None:
        self.config = config
        self.context = context
        self.lock_holder = lock_holder
        self.out = Path(config.out)
        self.wall_start = time.perf_counter()

    # -- setting up -------------------------------------------------------------------

    def execute(self, resume: str | Path | None) -> dict[str, Any]:
        # Before the run folder is made; build_model checks them again against the one class the data asks for.
        check_model_options(self.config.model, self.config.model_options)
        refuse_output_inside(self.out, self.config.data, f"--out {self.config.out}", f"--data {self.config.data}")
        made = missing_folders(self.out)
        holds_folder = False
        try:
            # The lock comes first: a run refused it must not make (or count as its own) the other run's folder.
            with self._run_folder_lock():
                holds_folder = True
                try:
                    self._check_out_writable()
                    return self._execute(resume)
                except BaseException:
                    # A run that fails before writing anything leaves no empty run folder behind; removed while
                    # the lock is held, so that it cannot be a folder the next run has just made.
                    if self.context.is_main:
                        remove_empty_folders([folder for folder in made if folder == self.out])
                    raise
        except BaseException as error:
            # The parents it made go once the lock file beside the folder is gone; where another run holds the
            # folder, whatever is there is that run's.
            refused = isinstance(error, LockedError) and not holds_folder
            if self.context.is_main and not refused:
                remove_empty_folders([folder for folder in made if folder != self.out])
            raise

    def _run_folder_lock(self) -> contextlib.AbstractContextManager:
        """Hold the lock on the run folder while the run writes it: two runs writing one folder would
        interleave their checkpoints, so the second refuses."""
        return lock_in_every_process(self.out, self.lock_holder, self.context, f"--out {self.out}")

    def _execute(self, resume: str | Path | None) -> dict[str, Any]:
        checkpoint = self._read_resume(resume)
        normalization = self._open_task()
        self.data_fingerprint = dataset_fingerprint(self.data.root)
        if checkpoint is not None:
            self._check_same_data(resume, checkpoint)
        self._build_model()
        self.loaders = {name: self._loader(name) for name in ("train", "val", "test")}
        warmup = self._build_optimisation()
        self.augment_generator = torch.Generator(device=self.context.device)
        self.augment_generator.manual_seed(derived_seed(self.config.seed, AUGMENT_STREAM, self.context.rank))
        self.prepare = BatchPreparation(normalization, self._augmentations())
        self.state = _fresh_state() if checkpoint is None else self._restore(resume, checkpoint)
        self._announce(warmup)
        self._copy_best_of_moved_run()
        self._fit()
        return self._finish()

    def reference(self) -> dict[str, Any]:
        """Only the reference predictor's test metric (no model, no training, no files)."""
        normalization = self._open_task()
        self.prepare = BatchPreparation(normalization, [])
        self.precision = Precision(self.config.amp, self.context.device.type)
        return self._evaluate_reference(self._loader("test"))

    def _open_task(self) -> NormalizeWeights:
        """Open the data and make the task; returns the input normalisation."""
        self.data, self.task_name = self._open_data()
        normalization = NormalizeWeights(_to_device(self.data.statistics, self.context.device))
        self.task = make_task(self.task_name, self.data, self.data.target_columns, normalization)
        return normalization

    def _evaluate_reference(self, loader: Loader) -> dict[str, Any]:
        test = evaluate(ReferencePredictor(self.task), loader, self.task, self.prepare, self.precision, self.context)
        return {"predictor": self.task.reference, "test_metric": None if test is None else test[1]}

    def _build_model(self) -> None:
        config, context = self.config, self.context
        self.spec = _checked_model_spec(config, self.data, self.task_name, self.task.out_features, context)
        torch.manual_seed(config.seed)
        self.model = build_model(self.spec, self.data.statistics).to(context.device)
        # Processes share the initialisation (DDP also broadcasts rank 0's), not their dropout masks.
        torch.manual_seed(derived_seed(config.seed, DROPOUT_STREAM, context.rank))
        self.trained = self._wrap(self._compiled(self.model) if config.compile else self.model)

    def _build_optimisation(self) -> int:
        """AdamW, the learning-rate schedule and the gradient scaler; returns the warmup steps."""
        config = self.config
        self.precision = Precision(config.amp, self.context.device.type)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay, amsgrad=config.amsgrad
        )
        steps_per_epoch = len(self.loaders["train"])
        total_steps = config.epochs * steps_per_epoch
        warmup = warmup_steps_for(total_steps, steps_per_epoch, config.warmup_steps, config.warmup_epochs)
        if config.schedule == "constant":
            warmup = 0
            self.scheduler = constant_rate(self.optimizer)
        elif config.schedule == "warmup-constant":
            self.scheduler = warmup_constant(self.optimizer, warmup)
        else:
            self.scheduler = warmup_cosine(self.optimizer, warmup, total_steps)
        self.scaler = self.precision.grad_scaler()
        return warmup

    def _check_out_writable(self) -> None:
        """Fail now, naming the run folder, rather than after the first epoch when
        checkpoints are written (every process learns rank 0's answer)."""
        problem = unwritable_reason(self.out) if self.context.is_main else None
        problem = all_gather_objects(problem, self.context)[0]
        if problem is not None:
            raise OSError(f"--out {self.out}: {problem}")

    def _check_same_data(self, resume: str | Path, checkpoint: dict[str, Any]) -> None:
        # Checkpoints from before the fingerprint was stored cannot be checked.
        stored = checkpoint.get(DATA_FINGERPRINT)
        if stored is None or stored == self.data_fingerprint:
            return
        trained_on = checkpoint["config"]["data"]
        raise ValueError(
            f"{resume}: the run trained on {trained_on} (data fingerprint {stored}), --data {self.config.data} "
            f"holds other data ({self.data_fingerprint}); resume with the same data or start a new --out"
        )

    def _read_resume(self, resume: str | Path | None) -> dict[str, Any] | None:
        held = _run_files(self.out)
        self.moved_best: Path | None = None
        if resume is None:
            if held:
                raise ValueError(
                    f"--out {self.out} already holds a run ({', '.join(held)}); pass --resume to continue it or "
                    "choose another --out"
                )
            _refuse_files_in_the_way(self.out)
            return None
        required = ("config", "model", "optimizer", "scheduler", "scaler", "random_states", *_fresh_state())
        checkpoint = load_run_checkpoint(resume, required=required)
        stored = stored_config(resume, checkpoint)
        _check_progress(resume, checkpoint, stored.epochs)
        differences = stored.differences(self.config)
        if differences:
            listed = "; ".join(
                f"{key}: {TrainConfig.shown(key, old)} in the checkpoint, {TrainConfig.shown(key, new)} now"
                for key, (old, new) in differences.items()
            )
            raise ValueError(f"{resume}: cannot resume with different settings ({listed})")
        # The run's best checkpoint lies beside its last one: the test at the end reads it.
        source = Path(resume).parent
        moved = source.resolve() != self.out.resolve()
        if moved and held:
            raise ValueError(
                f"--out {self.out} holds another run ({', '.join(held)}); resume {resume} in its own folder "
                f"({source}) or in a new --out"
            )
        if checkpoint["best_epoch"] is not None and not (source / BEST).is_file():
            raise ValueError(
                f"{resume}: its run's best checkpoint {source / BEST} (epoch {checkpoint['best_epoch']}) is missing; "
                "the test at the end needs it"
            )
        if moved:
            _refuse_files_in_the_way(self.out)
            if checkpoint["best_epoch"] is not None:
                self.moved_best = source / BEST
        return checkpoint

    def _copy_best_of_moved_run(self) -> None:
        """Copy the best checkpoint of a run resumed in a new folder there (the test at the end reads it), once
        everything has been checked: a refused resume leaves nothing in the new folder."""
        source = self.moved_best
        if source is not None and self.context.is_main:
            atomic_write(self.out / BEST, lambda handle: handle.write(source.read_bytes()))
        barrier(self.context)

    def _open_data(self) -> tuple[TrainingData, str]:
        config, context = self.config, self.context
        data, task = open_run_data(config, context)
        least = 2 * context.world_size
        if len(data.train) < least:
            # Two per process: a batch of one network has no batch statistics (mlp-aug's batch norm refuses it).
            culprit = f"--max-train {config.max_train}" if (config.max_train or least) < least else config.data
            raise ValueError(
                f"{culprit}: {len(data.train)} training networks are too few; "
                f"training needs at least {least} ({context.world_size} process(es))"
            )
        return data, task

    def _compiled(self, model: nn.Module) -> nn.Module:
        """The model that training steps call under ``--compile`` (evaluation stays eager: it
        would compile a second graph for a small share of the time)."""
        if self.context.is_distributed:
            raise ValueError("--compile runs in one process; drop it under torchrun")
        if type(model) is not DWSNet:
            raise ValueError(f"--compile is for DWSNet predictors on MLP weight spaces, not {type(model).__name__}")
        return torch.compile(model, fullgraph=True)

    def _wrap(self, model: nn.Module) -> nn.Module:
        if not self.context.is_distributed:
            return model
        if self.context.device.type == "cuda":
            return DistributedDataParallel(model, device_ids=[self.context.device.index])
        return DistributedDataParallel(model)

    def _loader(self, name: str) -> Loader:
        config, context = self.config, self.context
        split = self.data.splits[name]
        plan = EpochPlan(len(split), config.batch_size, name == "train", config.seed, context)
        uniform = self.data.uniform_spec
        if config.loader == "stacked" and uniform is None:
            names = ", ".join(str(spec) for spec in self.data.architectures[:4])
            raise ValueError(f"--loader stacked needs networks of one architecture, the dataset has several ({names})")
        if uniform is not None and config.loader != "pyg":
            return StackedLoader(split, uniform, plan, context.device, self.task.batch_keys)
        return GraphLoader(split, plan, context.device, config.num_workers)

    def _augmentations(self) -> list:
        names = list(self.config.augment)
        unfit = [name for name in names if name not in CNN_AUGMENTATIONS]
        if self.data.kernel_grid is not None and unfit:
            raise ValueError(
                f"--augment {','.join(unfit)}: not for CNN datasets (moves input coordinates, which a CNN's "
                f"input channels are not); use {', '.join(CNN_AUGMENTATIONS)}"
            )
        if self.config.model in PERMUTATION_AUGMENTED and "permute" not in names:
            names.append("permute")
        generator = self.augment_generator
        factories = {
            "permute": lambda: RandomHiddenPermutation(generator),
            "translate": lambda: RandomInputTranslation(generator=generator),
            "rotate": lambda: FirstLayerRotation(generator=generator),
            "shift": lambda: LayerStdShift(),
            "scale": lambda: FirstLayerScale(generator=generator),
            "dropout": lambda: WeightDropout(AUGMENT_DROPOUT, generator),
        }
        return [factories[name]() for name in names]

    def _restore(self, resume: str | Path, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """Load what ``checkpoint`` (read from ``resume``) stores into the run; anything that does not fit the run
        its settings build is an error naming the file."""
        columns = history_columns(self.task.metric)
        for row in checkpoint["history"]:
            missing = [name for name in columns if name not in row]
            if missing:
                raise not_resumable(resume, "history", f"a row lacks {', '.join(missing)}")
        difference = weights_difference(self.model.state_dict(), checkpoint["model"], "the model its settings build")
        if difference:
            raise not_resumable(resume, "model", difference)
        self.model.load_state_dict(checkpoint["model"])
        groups = self.optimizer.state_dict()["param_groups"]
        with _restoring(resume, "optimizer state"):
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        _check_optimizer(resume, self.optimizer, groups)
        for key, restored in (("scheduler", self.scheduler), ("scaler", self.scaler)):
            fresh, stored = restored.state_dict(), checkpoint[key]
            if isinstance(stored, dict):
                # Entries another torch version kept (say a scheduler's old `verbose`) are dropped, not
                # refused; load_state_dict sets every entry as an attribute, so no unknown one gets there.
                stored = {name: value for name, value in stored.items() if name in fresh}
            # A disabled scaler (CPU, or no --amp) has no state and ignores the stored one.
            difference = _state_difference(fresh, stored, key) if fresh else None
            if difference:
                raise not_resumable(resume, f"{key} state", difference)
            with _restoring(resume, f"{key} state"):
                restored.load_state_dict(stored)
        states = checkpoint["random_states"]
        if len(states) == self.context.world_size:
            with _restoring(resume, "random state"):
                run_checkpoints.restore_random_state(states[self.context.rank], self.augment_generator)
        elif self.context.is_main:
            tqdm.write(
                f"wsgraph train: the checkpoint was written by {len(states)} process(es), this run has "
                f"{self.context.world_size}: random streams restart, so the continuation is not bitwise identical"
            )
        return {key: checkpoint[key] for key in _fresh_state()}

    def _announce(self, warmup: int) -> None:
        if not self.context.is_main:
            return
        sizes = "/".join(str(len(split)) for split in self.data.splits.values())
        architectures = ", ".join(str(spec) for spec in self.data.architectures[:3])
        loader = "stacked" if isinstance(self.loaders["train"], StackedLoader) else "PyG"
        resumed = f", resuming after epoch {self.state['epoch']}" if self.state["epoch"] else ""
        tqdm.write(
            f"wsgraph train: {self.config.model} for {self.task_name} on {self.data.root} "
            f"({sizes} train/val/test networks of {architectures}); {count_parameters(self.model):,} parameters; "
            f"{self.context.device} x{self.context.world_size}, {loader} loader, "
            f"{len(self.loaders['train'])} steps/epoch, "
            f"{warmup} warmup steps{resumed}"
        )
        total_steps = self.config.epochs * len(self.loaders["train"])
        if warmup > total_steps:
            tqdm.write(
                f"wsgraph train: note: the warmup ({warmup} steps) is longer than the run ({total_steps} steps); "
                f"the learning rate ends at {total_steps / warmup:.3g} of --lr {self.config.lr:g}"
            )

    # -- training ---------------------------------------------------------------------

    def _fit(self) -> None:
        config, state = self.config, self.state
        show = config.progress and self.context.is_main
        while state["epoch"] < config.epochs and not state["stopped_early"]:
            epoch = state["epoch"]
            self.loaders["train"].set_epoch(epoch)
            result = train_epoch(
                self.trained,
                self.loaders["train"],
                self.task,
                self.optimizer,
                self.scheduler,
                self.scaler,
                self.prepare,
                self.precision,
                self.context,
                description=f"epoch {epoch + 1}/{config.epochs}",
                progress=show,
                clip_grad_norm=config.clip_grad_norm,
            )
            if result.first_non_finite_step is not None:
                self._stop_non_finite("training", result.first_non_finite_step)
            eval_start = time.perf_counter()
            val_loss, val_metric = evaluate(
                self.model, self.loaders["val"], self.task, self.prepare, self.precision, self.context
            )
            if not math.isfinite(val_loss):
                self._stop_non_finite("validation", None)
            row = {
                "epoch": epoch + 1,
                "train_loss": result.loss,
                "val_loss": val_loss,
                f"val_{self.task.metric}": val_metric,
                "lr": self.scheduler.get_last_lr()[0],
                "train_seconds": result.seconds,
                "eval_seconds": time.perf_counter() - eval_start,
                "train_networks_per_second": result.networks_per_second,
            }
            improved = self.task.is_better(val_metric, state["best_metric"])
            state["epoch"] = epoch + 1
            state["history"].append(row)
            state["train_seconds"] += result.seconds
            state["train_networks"] += result.networks
            if improved:
                state.update(best_metric=val_metric, best_epoch=epoch + 1, epochs_since_best=0)
                self._save_best()
            else:
                state["epochs_since_best"] += 1
            state["stopped_early"] = bool(config.patience) and state["epochs_since_best"] >= config.patience
            self._save_last()
            self._log_epoch(row, improved)

    def _stop_non_finite(self, which: str, step: int | None) -> None:
        """End the run before it saves anything of this epoch: what the files hold stays finite."""
        epoch = self.state["epoch"]
        where = f"epoch {epoch + 1}" + ("" if step is None else f", step {step + 1} of {len(self.loaders['train'])}")
        kept = f"{LAST} keeps epoch {epoch}" if epoch else "nothing was saved"
        raise NonFiniteLossError(
            f"{self.out}: the {which} loss became non-finite at {where}; stopped ({kept}); "
            f"try a lower --lr (now {self.config.lr:g}){self._weight_decay_hint()} or check the data"
        )

    def _weight_decay_hint(self) -> str:
        # AdamW shrinks every weight by lr * weight_decay per step: beyond 1 the weights flip sign and blow up.
        shrink = self.config.lr * self.config.weight_decay
        return f" or --weight-decay (now {self.config.weight_decay:g})" if shrink >= 1 else ""

    def _save_best(self) -> None:
        if self.context.is_main:
            save_run_checkpoint(
                self.out / BEST,
                {
                    "config": self.config.to_dict(),
                    "model_spec": self.spec.to_dict(),
                    "model": self.model.state_dict(),
                    NORMALIZATION: statistics_to_dict(self.data.statistics),
                    DATA_FINGERPRINT: self.data_fingerprint,
                    OUTPUT_NAMES: self._output_names(),
                    IMAGE_RENDERING: self._image_rendering(),
                    "epoch": self.state["best_epoch"],
                    "metric": self.task.metric,
                    "val_metric": self.state["best_metric"],
                },
            )

    def _output_names(self) -> list[str] | None:
        """The classes or regression targets the model's outputs stand for (``None`` for editing)."""
        if self.task_name == "dilate":
            return None
        columns = self.task.columns if isinstance(self.task, Regression) else None
        return output_names(self.task_name, self.data.meta, self.task.out_features, columns)

    def _image_rendering(self) -> dict[str, Any] | None:
        """How the INRs an editing model was trained on show their images, for ``wsgraph edit``."""
        if not isinstance(self.task, Dilation):
            return None
        shape = [int(n) for n in self.data.meta["image_shape"]]
        return {"image_shape": shape, "output_offset": self.task.output_offset}

    def _save_last(self) -> None:
        random_states = all_gather_objects(run_checkpoints.random_state(self.augment_generator), self.context)
        if not self.context.is_main:
            return
        state = dict(self.state, wall_seconds=self.state["wall_seconds"] + self._elapsed())
        save_run_checkpoint(
            self.out / LAST,
            {
                "config": self.config.to_dict(),
                "model_spec": self.spec.to_dict(),
                "model": self.model.state_dict(),
                NORMALIZATION: statistics_to_dict(self.data.statistics),
                DATA_FINGERPRINT: self.data_fingerprint,
                IMAGE_RENDERING: self._image_rendering(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "random_states": random_states,
                **state,
            },
        )
        write_history(self.out / METRICS_CSV, self.state["history"], self.task.metric)

    def _log_epoch(self, row: dict[str, Any], improved: bool) -> None:
        if not self.context.is_main:
            return
        metric = self.task.metric
        notes = " *best*" if improved else ""
        if self.state["stopped_early"]:
            notes += f" (no improvement for {self.config.patience} epochs: stopping)"
        tqdm.write(
            f"epoch {row['epoch']:>3}/{self.config.epochs}  train loss {row['train_loss']:.4g}  "
            f"val loss {row['val_loss']:.4g}  val {metric} {row[f'val_{metric}']:.4g}  lr {row['lr']:.3g}  "
            f"{row['train_networks_per_second']:.0f} networks/s{notes}"
        )

    def _elapsed(self) -> float:
        return time.perf_counter() - self.wall_start

    # -- testing and reporting --------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        barrier(self.context)
        best = load_run_checkpoint(self.out / BEST, required=("model",))
        difference = weights_difference(self.model.state_dict(), best["model"], "the model the run's settings build")
        if difference:
            raise ValueError(f"{shown_path(self.out / BEST)}: not this run's best model ({difference})")
        self.model.load_state_dict(best["model"])
        test = evaluate(self.model, self.loaders["test"], self.task, self.prepare, self.precision, self.context)
        reference = self._evaluate_reference(self.loaders["test"])
        state = self.state
        train_seconds = state["train_seconds"]
        program = "wsgraph train"
        if self.context.is_distributed:
            program = f"torchrun --nproc-per-node {self.context.world_size} -m wsgraph train"
        result = {
            "model": self.config.model,
            "task": self.task_name,
            "metric": self.task.metric,
            "higher_is_better": self.task.higher_is_better,
            "test_metric": None if test is None else test[1],
            "test_loss": None if test is None else test[0],
            "reference": reference,
            "best_val_metric": state["best_metric"],
            "best_epoch": state["best_epoch"],
            "epochs_run": state["epoch"],
            "stopped_early": state["stopped_early"],
            "parameters": count_parameters(self.model),
            "wall_seconds": state["wall_seconds"] + self._elapsed(),
            "train_seconds": train_seconds,
            "train_networks_per_second": state["train_networks"] / train_seconds if train_seconds > 0 else math.nan,
            "command": self.config.command(program),
            "config": self.config.to_dict(),
            "model_spec": self.spec.to_dict(),
            "dataset": {**self.data.summary(), "fingerprint": self.data_fingerprint},
            "hardware": hardware(self.context.device, self.context.world_size),
        }
        if isinstance(self.task, Regression):
            result["test_ranking"] = self._test_ranking()
        if self.context.is_main:
            write_history(self.out / METRICS_CSV, state["history"], self.task.metric)
            title = f"{self.config.model} on {self.data.root.name} ({self.task_name})"
            plot_learning_curves(self.out / LEARNING_CURVES_PNG, state["history"], self.task.metric, title)
            write_json(self.out / RESULT_JSON, result, sort_keys=True)
            # Drawn once the result is safe: a failure here cannot cost the run its result.
            if isinstance(self.task, Dilation):
                self._plot_test_edits()
            if test is not None:
                ranking = result.get("test_ranking")
                extra = "" if not ranking else f", Kendall tau {ranking['kendall_tau']:.3f}, R^2 {ranking['r2']:.3f}"
                tqdm.write(
                    f"wsgraph train: test {self.task.metric} {test[1]:.4g}{extra} (best epoch {state['best_epoch']}); "
                    f"results in {self.out}"
                )
        return result

    def _plot_test_edits(self) -> None:
        """``edits.png``: the first test networks' images as given, as the best model edits them,
        and dilated."""
        task = self.task
        batch = next(iter(self.loaders["test"]), None)
        if batch is None:
            return
        batch = self.prepare(batch, False)
        self.model.eval()
        with torch.no_grad(), self.precision.autocast():
            edited = self.model(batch)
        with torch.no_grad():
            shape = (batch.num_graphs, task.height, task.width, -1)
            given, edits = task.render(batch).reshape(shape), task.render(edited).reshape(shape)
            targets = batch[DILATED_KEY].reshape(shape).float()
        count = min(EDITS_PREVIEW, batch.num_graphs)
        plot_edits(self.out / EDITS_PNG, [(given[i], edits[i], targets[i]) for i in range(count)])

    def _test_ranking(self) -> dict[str, Any] | None:
        """Kendall tau, Spearman rho and R^2 of the best model on the test split; the predictions
        go to ``test_predictions.csv`` and ``predicted_vs_true.png``."""
        task = self.task
        predicted, true = gather_predictions(
            self.model, self.loaders["test"], self.prepare, task.targets, self.precision
        )
        parts = all_gather_objects((predicted, true), self.context)
        parts = [part for part in parts if part[0].size]
        if not parts:
            return None
        predicted = np.concatenate([part[0] for part in parts])
        true = np.concatenate([part[1] for part in parts])
        names = output_names("regress", self.data.meta, task.out_features, task.columns)
        metrics = column_metrics(predicted, true, names)
        if self.context.is_main:
            write_predictions(self.out / PREDICTIONS_CSV, predicted, true, names)
            panels = [(f"{self.config.model}: {name}", predicted[:, c], true[:, c]) for c, name in enumerate(names)]
            plot_predicted_vs_true(self.out / PREDICTED_VS_TRUE_PNG, panels, "target", self.data.root.name)
        return metrics


def reference_result(config: TrainConfig) -> dict[str, Any]:
    """The test metric of the reference predictor of ``config``'s task on its data: the
    most frequent class, the mean target, or the unedited networks (see
    :meth:`wsgraph.training.tasks.Task.reference_output`), as ``{"predictor", "test_metric"}``."""
    return _Run(config, setup(config.device)).reference()


def load_trained_model(
    path: str | Path, device: str | torch.device = "cpu", statistics: LayerStatistics | None = None
) -> NormalizedModel:
    """The model a ``best.pt`` or ``last.pt`` holds, rebuilt and loaded, in eval mode.

    The model takes raw networks, as a dataset stores them: it normalises them with the
    statistics of its training data, which the checkpoint stores (see
    :class:`~wsgraph.training.trained.NormalizedModel`), so
    ``load_trained_model("best.pt")(raw_batch)`` gives the predictions the run's
    evaluation made. Its ``spec`` attribute is the :class:`ModelSpec` it was built from.

    Args:
        path: the checkpoint.
        device: where the model goes.
        statistics: the training data's normalisation, only for checkpoints written
            before checkpoints stored it (``WeightSpaceDataset(data).statistics``).

    Raises:
        ValueError: if the checkpoint is damaged, or stores no normalisation and
            ``statistics`` is not given.
    """
    checkpoint = load_run_checkpoint(path, required=("model", "model_spec"))
    return trained_model_from_checkpoint(checkpoint, path, device, statistics)


def trained_model_from_checkpoint(
    checkpoint: dict[str, Any],
    path: str | Path,
    device: str | torch.device = "cpu",
    statistics: LayerStatistics | None = None,
) -> NormalizedModel:
    """:func:`load_trained_model` for a checkpoint already read (by
    :func:`~wsgraph.training.run_checkpoints.load_run_checkpoint`) from ``path``."""
    require_entries(checkpoint, path, ("model", "model_spec"))
    source = shown_path(path)
    spec = stored_model_spec(checkpoint["model_spec"], source)
    if NORMALIZATION in checkpoint:
        statistics = statistics_from_dict(checkpoint[NORMALIZATION], source)
        given = "the stored input normalisation"
    elif statistics is None:
        config = checkpoint.get("config")
        data = config.get("data", "DATA") if isinstance(config, dict) else "DATA"
        raise ValueError(
            f"{path}: an older checkpoint without its input normalisation; pass "
            f"statistics=WeightSpaceDataset({data!r}).statistics to load_trained_model, or train again"
        )
    else:
        given = "the statistics given"
    if statistics.num_weight_layers != spec.signature[0]:
        raise ValueError(
            f"{source}: model_spec has {spec.signature[0]} weight layers, {given} {statistics.num_weight_layers}"
        )
    # The checkpoint's weights replace the initialisation, which must not move the caller's generator.
    with preserved_random_state():
        check_stored_weights(spec, checkpoint["model"], source)
        model = build_model(spec)
    model.load_state_dict(checkpoint["model"])
    trained = NormalizedModel(model, statistics, edits=spec.task == "dilate", spec=spec)
    return trained.to(device).eval()


def _refuse_files_in_the_way(folder: Path) -> None:
    """Raise a ``ValueError`` if ``folder`` (holding no run) holds files a run would overwrite: someone else's
    ``best.pt``, plots or predictions. A ``best.pt`` that is a wsgraph training checkpoint is a run's that stopped
    while saving its first epoch, which the new run may replace."""
    outputs = (BEST, LEARNING_CURVES_PNG, PREDICTIONS_CSV, PREDICTED_VS_TRUE_PNG, EDITS_PNG)
    in_the_way = [name for name in outputs if (folder / name).exists() and not _stopped_runs_best(folder / name)]
    if in_the_way:
        raise ValueError(
            f"--out {folder} holds files a run would overwrite ({', '.join(in_the_way)}); choose another --out"
        )


def _stopped_runs_best(path: Path) -> bool:
    if path.name != BEST or not path.is_file():
        return False
    try:
        load_run_checkpoint(path, required=("model",))
    except (OSError, ValueError):
        return False
    return True


def check_models(configs: list[TrainConfig], data: TrainingData, task_name: str, context: DistributedContext) -> None:
    """Everything the model of each of ``configs`` (runs on ``data``, opened for ``task_name``) checks when
    it is built, on the ``meta`` device: a benchmark's later model whose settings it refuses must not wait
    for the earlier ones to train."""
    out_features = make_task(task_name, data, data.target_columns, NormalizeWeights(data.statistics)).out_features
    for config in configs:
        _checked_model_spec(config, data, task_name, out_features, context)


def _checked_model_spec(
    config: TrainConfig, data: TrainingData, task_name: str, out_features: int, context: DistributedContext
) -> ModelSpec:
    """The model spec of ``config`` on ``data``, once its model is known to build and to fit in the memory
    of ``context``'s device."""
    if config.probe_features:
        _check_probe_activations(data, config)
    spec = model_spec(
        config.model,
        task_name,
        data.architectures,
        out_features,
        config.hidden_channels,
        config.depth,
        config.readout,
        config.dropout,
        data.train_architecture_counts(),
        config.probe_features,
        data.kernel_sizes,
        data.kernel_grid,
        config.model_options,
    )
    # torchrun's processes on one machine each build and train a copy.
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if context.is_distributed else 1
    check_model_fits(spec, data.statistics, context.device, 3 if config.amsgrad else 2, processes)
    return spec


def _check_probe_activations(data: TrainingData, config: TrainConfig) -> None:
    """Probe features run every network with its hidden activation: refuse, naming the data, networks
    that record none (state_dicts converted without ``--activation``), before the first step fails."""
    for split in data.splits.values():
        activations = split.dataset.activations
        unknown = sum(activations[row] == UNKNOWN for row in split.rows.tolist())
        if unknown and any(spec.num_weight_layers > 1 for spec in data.architectures):
            raise ValueError(
                f"--probe-features {config.probe_features}: {config.data} records no hidden activation for "
                f"{unknown} {split.name} networks, and the probe features run every network with its own; "
                "convert them with --activation (or an activations.json beside them)"
            )


def _run_files(folder: Path) -> list[str]:
    """The files that show ``folder`` holds a run, which another run there would overwrite. A lone ``best.pt`` does
    not: it is a run stopped during its first epoch's saving (``metrics.csv`` follows ``last.pt`` every epoch)."""
    return [name for name in (LAST, RESULT_JSON, METRICS_CSV) if (folder / name).exists()]


def _check_progress(resume: str | Path, checkpoint: dict[str, Any], epochs: int) -> None:
    """Raise a ``ValueError`` naming ``resume`` unless ``checkpoint``'s progress entries (those of
    :func:`_fresh_state`, the random states, the data fingerprint) are of the types and in the ranges
    a run of ``epochs`` epochs writes."""
    epoch = checkpoint["epoch"]
    if not is_count(epoch) or epoch > epochs:
        raise not_resumable(
            resume, "epoch", f"must be an integer in 0..{epochs} (the run's epochs), got {short_repr(epoch)}"
        )
    best_epoch, best_metric = checkpoint["best_epoch"], checkpoint["best_metric"]
    since, seconds = checkpoint["epochs_since_best"], checkpoint["train_seconds"]
    checks = [
        (
            "best_epoch",
            best_epoch is None or (is_count(best_epoch) and 1 <= best_epoch <= epoch),
            f"an integer in 1..{epoch} or None",
        ),
        # The best metric is set with the best epoch.
        ("best_metric", is_number(best_metric) if best_epoch is not None else best_metric is None, "a number"),
        ("epochs_since_best", is_count(since) and since <= epoch, f"an integer in 0..{epoch}"),
        ("stopped_early", isinstance(checkpoint["stopped_early"], bool), "true or false"),
        ("train_networks", is_count(checkpoint["train_networks"]), "an integer >= 0"),
        ("train_seconds", is_number(seconds) and seconds >= 0, "a number >= 0"),
        ("wall_seconds", is_number(checkpoint["wall_seconds"]) and checkpoint["wall_seconds"] >= 0, "a number >= 0"),
        (DATA_FINGERPRINT, isinstance(checkpoint.get(DATA_FINGERPRINT), (str, type(None))), "text"),
    ]
    for key, good, requirement in checks:
        if not good:
            raise not_resumable(resume, key, f"must be {requirement}, got {short_repr(checkpoint[key])}")
    history = checkpoint["history"]
    if not isinstance(history, list) or len(history) != epoch:
        raise not_resumable(resume, "history", f"{short_repr(history)} is not a list of {epoch} rows, one per epoch")
    for row in history:
        if not isinstance(row, dict) or not all(isinstance(k, str) and is_number(v) for k, v in row.items()):
            raise not_resumable(resume, "history", f"the row {short_repr(row)} is not a dict of numbers")
    states = checkpoint["random_states"]
    if not isinstance(states, list) or not all(isinstance(state, dict) for state in states):
        raise not_resumable(resume, "random_states", f"{short_repr(states)} is not a list of dicts, one per process")


def _check_optimizer(resume: str | Path, optimizer: torch.optim.Optimizer, fresh: list[dict[str, Any]]) -> None:
    """Raise a ``ValueError`` naming ``resume`` unless the optimizer state just loaded is of the
    types and shapes its parameters and ``fresh`` (its groups before loading) have: torch
    takes the stored entries as they come, and a stray one would fail only in a later step."""
    for number, (group, before) in enumerate(zip(optimizer.param_groups, fresh, strict=True)):
        # Settings a group gained or lost between torch versions are left to torch.
        shared = {key: before[key] for key in before if key in group and key != "params"}
        difference = _state_difference(shared, {key: group[key] for key in shared}, f"param_groups[{number}]")
        if difference:
            raise not_resumable(resume, "optimizer state", difference)
    # torch keeps the state of indices that name no parameter, and any value, as stored.
    for parameter, state in optimizer.state.items():
        if not isinstance(parameter, torch.Tensor) or not isinstance(state, dict):
            raise not_resumable(resume, "optimizer state", f"state {short_repr(state)} for no parameter of the model")
        for key, value in state.items():
            # AdamW's step count is a scalar (a number in older torch), its moments have the parameter's shape.
            shape = torch.Size() if key == "step" else parameter.shape
            if key == "step" and is_number(value):
                continue
            if not isinstance(value, torch.Tensor) or value.shape != shape or not value.is_floating_point():
                got = (
                    f"{value.dtype} of shape {tuple(value.shape)}"
                    if isinstance(value, torch.Tensor)
                    else short_repr(value)
                )
                raise not_resumable(
                    resume, "optimizer state", f"{key} for a parameter of shape {tuple(parameter.shape)} is {got}"
                )


def _state_difference(fresh: Any, stored: Any, where: str) -> str | None:
    """Where ``stored`` (a file's) differs in layout or type from ``fresh`` (what the object to
    load it gives before loading), or ``None``; ``where`` names the top."""
    if isinstance(fresh, dict):
        if not isinstance(stored, dict):
            return f"{where} is a {type(stored).__name__}, not a dict"
        unknown = [key for key in stored if key not in fresh]
        if unknown:
            return f"{where} has an unknown entry {short_repr(unknown[0])}"
        differences = (_state_difference(fresh[key], stored[key], f"{where}[{key!r}]") for key in stored)
        return next((difference for difference in differences if difference), None)
    if isinstance(fresh, (list, tuple)):
        if type(stored) is not type(fresh) or len(stored) != len(fresh):
            return f"{where} is {short_repr(stored)}, not a {type(fresh).__name__} of {len(fresh)}"
        differences = (_state_difference(a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(fresh, stored)))
        return next((difference for difference in differences if difference), None)
    if isinstance(fresh, torch.Tensor):
        fits = isinstance(stored, torch.Tensor) and stored.shape == fresh.shape and stored.dtype == fresh.dtype
    elif isinstance(fresh, float):
        fits = is_number(stored)
    else:
        fits = type(stored) is type(fresh)
    return None if fits else f"{where} is {short_repr(stored)}, not a {type(fresh).__name__}"


@contextlib.contextmanager
def _restoring(resume: str | Path, part: str) -> Iterator[None]:
    """Whatever restoring ``part`` raises on a damaged or crafted checkpoint, as one line naming the file."""
    try:
        yield
    except Exception as error:
        raise not_resumable(resume, part, f"{type(error).__name__}: {load_error_reason(error)}") from None


def _fresh_state() -> dict[str, Any]:
    """The progress of a run that has not trained yet (what ``last.pt`` stores besides the modules)."""
    return {
        "epoch": 0,
        "best_metric": None,
        "best_epoch": None,
        "epochs_since_best": 0,
        "stopped_early": False,
        "history": [],
        "train_seconds": 0.0,
        "train_networks": 0,
        "wall_seconds": 0.0,
    }


def _to_device(statistics: LayerStatistics, device: torch.device) -> LayerStatistics:
    return LayerStatistics(**{key: value.to(device) for key, value in statistics.to_dict().items()})
