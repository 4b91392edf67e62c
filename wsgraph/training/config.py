"""Everything that defines a training run, validated once and stored with its checkpoints."""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsgraph.checks import MOST_EPOCHS, dataclass_gaps, first_repeat, is_number
from wsgraph.errors import short_repr
from wsgraph.layers.defaults import DEPTH, HIDDEN_CHANNELS, describe_per_family
from wsgraph.runtime import MAX_SEED

# --readout's poolings.
READOUTS = ("mean", "sum", "max")
MODEL_NAMES = (
    "dwsnet",
    "dwsnet-dense",
    "mlp",
    "mlp-aug",
    "gine",
    "pna",
    "gatv2",
    "transformer",
    "ng-gnn",
    "ng-transformer",
)
# Models that can edit weights (--task dilate): DWSEditNet and the flat MLP editor.
EDITING_MODELS = ("dwsnet", "dwsnet-dense", "mlp", "mlp-aug")
# Models `--compile` can hand to torch.compile(fullgraph=True) (tested in tests/layers/test_compile.py).
COMPILABLE_MODELS = ("dwsnet", "dwsnet-dense")
TASKS = ("classify", "regress", "dilate")
LOADERS = ("auto", "stacked", "pyg")
# The largest --hidden-channels (and --probe-features) and --depth a run accepts.
MOST_CHANNELS, MOST_DEPTH = 65_536, 1_000

# "constant" is the DWSNets trainer's (experiments/*/trainer.py): no warmup, no decay.
# "warmup-constant" is the Neural Graphs trainer's (WarmupLRScheduler): linear warmup, then constant.
SCHEDULES = ("warmup-cosine", "warmup-constant", "constant")
AUGMENTATIONS = ("permute", "translate", "rotate", "shift", "dropout", "scale")
# The DWSNets INR classification recipe's augmentations, in its order (experiments/data.py).
PUBLISHED_AUGMENTATIONS = ("translate", "rotate", "shift", "dropout", "scale")
# Settings that may differ when a run is resumed: where things are and how fast they run,
# not what is computed.
RESUMABLE_CHANGES = frozenset({"data", "out", "device", "num_workers", "loader", "progress", "compile"})


def setting(
    default: Any,
    help: str,
    group: str,
    *,
    default_text: str | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    aliases: tuple[str, ...] = (),
    exclusive: str | None = None,
    render: Callable[[Any], str] | None = None,
) -> Any:
    """A :class:`TrainConfig` field with what its command-line option needs (see :func:`wsgraph.cli.train.add_training_arguments`).

    Args:
        default: the field's default.
        help: the option's help; ``(default: ...)`` is appended (``default_text`` or the
            default itself; ``on``/``off`` for a flag) unless ``default_text=""``.
        group: the ``--help`` section.
        choices, metavar: as for :meth:`argparse.ArgumentParser.add_argument`.
        parse: turns the option's text into the value (by default the field's type).
        aliases: further option names (old spellings) for the same setting.
        exclusive: options with the same name here may not be given together.
        render: the value as the option's text, the inverse of ``parse`` (by default
            ``str``, and items joined by commas for a tuple).
    """
    metadata = {
        "help": help,
        "group": group,
        "default_text": default_text,
        "choices": choices,
        "metavar": metavar,
        "parse": parse,
        "aliases": aliases,
        "exclusive": exclusive,
        "render": render,
    }
    return dataclasses.field(default=default, metadata=metadata)


class NameListError(argparse.ArgumentTypeError, ValueError):
    """A comma list with an empty entry: argparse shows the message as it is, and Python callers
    catch it as the ``ValueError`` it also is."""


def parse_names(text: str) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")``; an empty entry (``"a,,b"``, ``"a,"``) is an argparse error, not
    a name quietly dropped."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > 1 and not all(parts):
        raise NameListError(f"empty entry in {text!r}; separate names with single commas")
    return tuple(part for part in parts if part)


# Constructor arguments that other settings own, so --model-options may not set them.
OWNED_MODEL_ARGUMENTS = {
    "hidden_channels": "--hidden-channels",
    "node_channels": "--hidden-channels",
    "depth": "--depth",
    "dropout": "--dropout",
    "readout": "--readout",
    "pooling": "--readout",
    "probe_features": "--probe-features",
    "probe_statistics": "--probe-features",
}


def parse_model_options(text: str) -> tuple[tuple[str, Any], ...]:
    """``"norm=minibatch, fourier_features=0, aggregators=mean+max"`` -> ``(("norm", "minibatch"),
    ("fourier_features", 0), ("aggregators", ("mean", "max")))``.

    A value is a bool (``true``/``false``), ``none``, an int, a float or else a string;
    ``+`` joins the items of a tuple (``max+`` is a tuple of one). A part without ``=`` is kept as ``(part, ...)``
    (``Ellipsis``) for :meth:`TrainConfig.validate` to name.
    """
    options: list[tuple[str, Any]] = []
    for part in parse_names(text):
        key, equals, value = part.partition("=")
        if not equals:
            options.append((part, ...))
            continue
        if "+" in value:  # a tuple; "max+" is the one-item tuple ("max",)
            parsed: Any = tuple(_option_scalar(item.strip()) for item in value.split("+") if item.strip())
        else:
            parsed = _option_scalar(value.strip())
        options.append((key.strip().replace("-", "_"), parsed))
    return tuple(options)


def normalize_model_options(options: Any) -> tuple[tuple[str, Any], ...]:
    """``((name, value), ...)`` from a dict (Python) or ``[name, value]`` lists (a stored run), a list value as
    a tuple."""
    pairs = options.items() if isinstance(options, dict) else options
    return tuple((str(name), tuple(value) if isinstance(value, list) else value) for name, value in pairs)


def render_model_options(options: tuple[tuple[str, Any], ...]) -> str:
    """The text :func:`parse_model_options` reads back as ``options``."""

    def text(value: Any) -> str:
        if isinstance(value, tuple):
            return "+".join(text(item) for item in value) + ("+" if len(value) == 1 else "")
        if isinstance(value, float):  # 1e+20 would read back as a tuple: "+" joins a tuple's items
            return repr(float(value)).replace("e+", "e")
        return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    return ",".join(f"{key}={text(value)}" for key, value in options)


def _same_option(a: Any, b: Any) -> bool:
    """Equal and of the same types (``1``, ``1.0`` and ``True`` compare equal but build other models)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(map(_same_option, a, b))
    return type(a) is type(b) and a == b


def _option_scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_targets(text: str) -> tuple[int | str, ...]:
    """Column numbers or names, comma separated."""
    return tuple(int(part) if part.isdigit() else part for part in parse_names(text))


@dataclass
class TrainConfig:
    """The settings of one ``wsgraph train`` run; each field's metadata is its ``--option`` (see :func:`setting`).

    ``task=None`` takes the task from the dataset (classification or regression);
    ``hidden_channels``, ``depth`` and ``readout`` of ``None`` keep the model's own
    defaults; without ``warmup_steps`` and ``warmup_epochs`` the learning rate warms up
    over the first 5% of the steps. ``patience=0`` turns early stopping off.
    """

    # The dataset, the model and the run folder have options of their own in `wsgraph train` and `bench`.
    data: str
    model: str
    out: str
    task: str | None = setting(
        None, "default: the dataset's own (classification or regression)", "task", default_text="", choices=TASKS
    )
    epochs: int = setting(50, "training epochs", "optimisation")
    batch_size: int = setting(128, "networks per step, over all processes", "optimisation")
    lr: float = setting(1e-3, "peak learning rate of AdamW", "optimisation")
    weight_decay: float = setting(5e-4, "AdamW weight decay", "optimisation")
    amsgrad: bool = setting(False, "AdamW's AMSGrad variant, as DWSNets trains", "optimisation")
    schedule: str = setting(
        "warmup-cosine",
        "learning rate: warmup-cosine (default: linear warmup, cosine decay to 0), warmup-constant (linear "
        "warmup, then constant: the Neural Graphs trainer) or constant (DWSNets' trainer)",
        "optimisation",
        default_text="",
        choices=SCHEDULES,
    )
    warmup_steps: int | None = setting(
        None, "linear warmup steps", "optimisation", default_text="5%% of all steps", exclusive="warmup"
    )
    warmup_epochs: float | None = setting(
        None, "linear warmup, in epochs", "optimisation", default_text="", exclusive="warmup"
    )
    clip_grad_norm: float | None = setting(
        None,
        "clip the gradient's norm over all parameters to this value before each step (Neural Graphs: 10)",
        "optimisation",
        default_text="off",
        metavar="NORM",
    )
    hidden_channels: int | None = setting(
        None,
        "width (ng-transformer: its neurons' state size)",
        "model",
        default_text=describe_per_family(HIDDEN_CHANNELS),
    )
    depth: int | None = setting(
        None,
        "DWS layers, GNN message-passing rounds or transformer layers, or MLP hidden layers",
        "model",
        default_text=describe_per_family(DEPTH),
        aliases=("--num-dws-layers", "--num-rounds"),
    )
    readout: str | None = setting(None, "pooling of DWSNet and the GNNs", "model", default_text="", choices=READOUTS)
    dropout: float = setting(0.0, "dropout probability", "model")
    model_options: tuple[tuple[str, Any], ...] = setting(
        (),
        "further constructor arguments of the model class, comma separated, e.g. norm=minibatch,fourier_features=0 "
        "for ng-gnn (true/false, none, numbers, text; + joins a tuple's items: aggregators=mean+max, or max+ "
        "for one); repeatable, the options adding up",
        "model",
        default_text="the class's own defaults",
        metavar="KEY=VALUE,...",
        parse=parse_model_options,
        render=render_model_options,
    )
    probe_features: int = setting(
        0,
        "DWSNet and GNNs: learned input points at which each network is run; every neuron's values there join "
        "its features",
        "model",
    )
    augment: tuple[str, ...] = setting(
        (),
        f"training augmentations, applied in the order given, comma separated: {', '.join(AUGMENTATIONS)}, "
        f"or published (= {','.join(PUBLISHED_AUGMENTATIONS)}, the DWSNets INR recipe); mlp-aug always permutes",
        "optimisation",
        default_text="",
        metavar="NAMES",
        parse=parse_names,
    )
    targets: tuple[int | str, ...] | None = setting(
        None,
        "regression: the columns of y to predict, e.g. 1 or 0,1, or their names (a zoo's test_accuracy)",
        "task",
        default_text="all",
        metavar="COLUMNS",
        parse=parse_targets,
    )
    seed: int = setting(0, "seed of initialisation, batch order, dropout and augmentation", "optimisation")
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N", "hardware")
    amp: bool = setting(
        False, "mixed precision: bfloat16 autocast on CPU, float16 with a gradient scaler on CUDA", "hardware"
    )
    # Off by default: on the 2-core development CPU a compiled DWSNet step is no faster
    # than an eager one and compiling costs a minute or more (docs/benchmarks.md).
    compile: bool = setting(
        False, "torch.compile the DWSNet models (fullgraph; one process; compiling takes a minute or more)", "hardware"
    )
    patience: int = setting(
        10, "stop after this many epochs without a better validation metric; 0: never", "optimisation"
    )
    max_train: int | None = setting(
        None, "train on at most N networks (a fixed random subset)", "task", default_text=""
    )
    num_workers: int = setting(0, "worker processes of the PyG loader", "hardware")
    loader: str = setting(
        "auto",
        "batching (default: auto, stacked tensors for one architecture, else PyG)",
        "hardware",
        default_text="",
        choices=LOADERS,
    )
    progress: bool = setting(True, "progress bars", "hardware")

    def __post_init__(self) -> None:
        # "published" stands for the published recipe's list, in its order.
        expanded = [
            part for name in self.augment for part in (PUBLISHED_AUGMENTATIONS if name == "published" else (name,))
        ]
        self.augment = tuple(dict.fromkeys(expanded))
        self.model_options = normalize_model_options(self.model_options)
        if self.targets is not None:
            # Column numbers, or names the dataset's meta.json lists as target_names.
            self.targets = tuple(int(t) if isinstance(t, int) or str(t).isdigit() else str(t) for t in self.targets)
        self.validate()

    def validate(self) -> None:
        """Raise a ``ValueError`` naming the first setting that cannot work."""
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(MODEL_NAMES)}")
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        if self.task == "dilate" and self.model not in EDITING_MODELS:
            raise ValueError(
                f"--model {self.model} predicts per-network outputs and cannot edit weights; "
                f"for --task dilate use {', '.join(EDITING_MODELS)}"
            )
        if self.compile and self.model not in COMPILABLE_MODELS:
            raise ValueError(f"--compile is for {', '.join(COMPILABLE_MODELS)}, not --model {self.model}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.schedule == "constant" and (self.warmup_steps or self.warmup_epochs):
            raise ValueError("--schedule constant has no warmup; drop --warmup-steps/--warmup-epochs")
        if self.loader not in LOADERS:
            raise ValueError(f"unknown loader {self.loader!r}; choose from {', '.join(LOADERS)}")
        unknown = [name for name in self.augment if name not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTATIONS)}")
        if self.warmup_steps is not None and self.warmup_epochs is not None:
            raise ValueError("give --warmup-steps or --warmup-epochs, not both")
        _check(1 <= self.epochs <= MOST_EPOCHS, "epochs", self.epochs, f"in 1..{MOST_EPOCHS:,}")
        _check(self.batch_size >= 1, "batch-size", self.batch_size, "at least 1")
        # Torch seeds generators with 64-bit integers; a negative seed would alias a large one.
        _check(0 <= self.seed <= MAX_SEED, "seed", self.seed, f"in 0..{MAX_SEED}")
        # `float` parses "inf" and "nan", which would train on non-finite losses to the end; the optimiser
        # holds its settings as float32, where 1e300 is infinite too.
        _check(0 < self.lr <= FLOAT32_MAX, "lr", self.lr, f"a positive number up to {FLOAT32_MAX:.4g}")
        _check(
            0 <= self.weight_decay <= FLOAT32_MAX,
            "weight-decay",
            self.weight_decay,
            f"a number >= 0 up to {FLOAT32_MAX:.4g}",
        )
        _check(
            self.clip_grad_norm is None or (math.isfinite(self.clip_grad_norm) and self.clip_grad_norm > 0),
            "clip-grad-norm",
            self.clip_grad_norm,
            "a positive finite number",
        )
        self._validate_model_options()
        _check(0 <= self.dropout < 1, "dropout", self.dropout, "in [0, 1)")
        _check(self.patience >= 0, "patience", self.patience, "at least 0 (0: no early stopping)")
        _check(self.num_workers >= 0, "num-workers", self.num_workers, "at least 0")
        for name in ("warmup_steps", "warmup_epochs"):
            value = getattr(self, name)
            _check(
                value is None or (math.isfinite(value) and value >= 0), name.replace("_", "-"), value, "finite, >= 0"
            )
        _check(self.max_train is None or self.max_train >= 1, "max-train", self.max_train, "at least 1")
        # Past any useful model: building one with --depth 100000 filled the memory before anything said why.
        for name, most in (
            ("hidden_channels", MOST_CHANNELS),
            ("depth", MOST_DEPTH),
            ("probe_features", MOST_CHANNELS),
        ):
            value = getattr(self, name)
            least = 0 if name == "probe_features" else 1
            _check(value is None or least <= value <= most, name.replace("_", "-"), value, f"in {least}..{most:,}")
        if self.targets is not None:
            repeated = first_repeat(self.targets)
            if repeated is not None:
                raise ValueError(f"--targets names {repeated} twice")
            _check(
                len(self.targets) > 0 and all(bool(t) if isinstance(t, str) else t >= 0 for t in self.targets),
                "targets",
                self.targets,
                "column indices >= 0 or target names",
            )

    def _validate_model_options(self) -> None:
        keys = [key for key, _ in self.model_options]
        for key, value in self.model_options:
            if value is ...:
                raise ValueError(f"--model-options {key!r}: expected KEY=VALUE")
            if not key:
                raise ValueError(f"--model-options {render_model_options((('', value),))!r}: no name before =")
            if not key.isidentifier():
                raise ValueError(f"--model-options {key!r}: not an argument name")
            if key in OWNED_MODEL_ARGUMENTS:
                raise ValueError(f"--model-options {key}: set it with {OWNED_MODEL_ARGUMENTS[key]}")
            if keys.count(key) > 1:
                raise ValueError(f"--model-options {key}: given more than once")
            if value == "":
                raise ValueError(f"--model-options {key!r}: no value after =")
            items = value if isinstance(value, tuple) else (value,)
            if any(isinstance(item, float) and not math.isfinite(item) for item in items):
                raise ValueError(f"--model-options {key}: {value} is not a finite number")
            # The run's command line (result.json, a benchmark's table) has to give the same value back.
            back = parse_model_options(render_model_options(((key, value),)))[0][1]
            if not _same_option(back, value):
                raise ValueError(
                    f"--model-options {key}: {value!r} cannot be written as KEY=VALUE (it would read back as {back!r}); "
                    "values are true/false, none, numbers, text, or tuples of these"
                )

    def to_dict(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["augment"] = list(self.augment)
        document["model_options"] = [
            [key, list(value) if isinstance(value, tuple) else value] for key, value in self.model_options
        ]
        document["targets"] = None if self.targets is None else list(self.targets)
        return document

    @classmethod
    def from_dict(cls, document: Any) -> TrainConfig:
        """The settings a file stores (a checkpoint's or result's ``config``), each checked against its
        field's type first: a damaged or crafted file can hold anything there.

        Raises:
            ValueError: naming the first setting that is unknown, missing, of another type or invalid.
        """
        if not isinstance(document, dict):
            raise ValueError(f"the training settings are a {type(document).__name__}, not a dict")
        unknown, missing = dataclass_gaps(cls, document)
        if unknown:
            raise ValueError(f"unknown training settings {sorted(map(str, unknown))}")
        if missing:
            raise ValueError(f"the training settings lack {', '.join(missing)}")
        hints = typing.get_type_hints(cls)
        declared = {item.name: item.type for item in dataclasses.fields(cls)}  # as written, for the message
        for key, value in document.items():
            if not _stored_as(hints[key], value):
                raise ValueError(f"the training setting {key} must be {declared[key]}, got {short_repr(value)}")
        return cls(**document)

    def differences(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """``{setting: (mine, other's)}`` for the settings that differ and change the computation."""
        mine, theirs = self.to_dict(), other.to_dict()

        def comparable(key: str, value: Any) -> Any:
            # Model options are keyword arguments (each key once): their order changes nothing.
            return sorted(value, key=lambda pair: pair[0]) if key == "model_options" else value

        return {
            key: (mine[key], theirs[key])
            for key in mine
            if key not in RESUMABLE_CHANGES and comparable(key, mine[key]) != comparable(key, theirs[key])
        }

    @staticmethod
    def shown(key: str, value: Any) -> str:
        """A setting's stored value as an error message shows it: model options as ``--model-options`` takes them."""
        if key == "model_options":
            return repr(render_model_options(normalize_model_options(value)))
        return repr(value)

    def command(self, program: str = "wsgraph train") -> str:
        """The command line that makes this run: ``--data``, ``--model``, ``--out`` and every other setting
        that is not a default."""
        parts = [*shlex.split(program), "--data", self.data, "--model", self.model, "--out", self.out]
        return shlex.join(parts + self.option_arguments())

    def option_arguments(self) -> list[str]:
        """The command-line options, other than ``--data``, ``--model`` and ``--out``, that differ from the
        defaults."""
        arguments: list[str] = []
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name in ("data", "model", "out") or value == item.default:
                continue
            flag = "--" + item.name.replace("_", "-")
            if item.metadata.get("render"):
                arguments += [flag, item.metadata["render"](value)]
            elif isinstance(value, bool):
                arguments.append(flag if value else f"--no-{flag[2:]}")
            elif isinstance(value, tuple):
                arguments += [flag, ",".join(str(v) for v in value)]
            else:
                arguments += [flag, str(value)]
        return arguments


def _stored_as(hint: Any, value: Any) -> bool:
    """Whether ``value``, read from a file (lists for tuples), is of the type ``hint`` (a :class:`TrainConfig`
    field's: scalars, ``X | None``, ``tuple[X, ...]`` and ``tuple[X, Y]``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_stored_as(arm, value) for arm in args)
    if hint is Any:
        return True
    if hint is type(None) or hint is bool or hint is str:
        return type(value) is hint
    if hint is int:
        return type(value) is int
    if hint is float:  # a stored 1 for 1.0 is fine
        return is_number(value)
    if origin is tuple and isinstance(value, (list, tuple)):
        if args[-1:] == (Ellipsis,):
            return all(_stored_as(args[0], item) for item in value)
        return len(value) == len(args) and all(map(_stored_as, args, value))
    return False


# The largest float32: the optimiser keeps its settings in float32 tensors.
FLOAT32_MAX = 3.4028234663852886e38


def _check(condition: bool, flag: str, value: Any, requirement: str) -> None:
    if not condition:
        raise ValueError(f"--{flag} must be {requirement}, got {value}")
