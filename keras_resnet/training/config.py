"""What a training run is: its settings (:class:`TrainConfig`) and their checks.

Backend-free and cheap to import (no keras, no TensorFlow): the command line
parses and checks flags with it before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
import math
import os

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
SCHEDULES = ("step", "cosine")
ZERO_INIT = ("auto", "on", "off")
RECIPES = ("cifar10", "imagenet")
CIFAR_DATASETS = ("cifar10", "cifar100", "digits", "synthetic")
IMAGENET_DATASETS = ("imagenet2012", "synthetic")
DATASETS = {"cifar10": CIFAR_DATASETS, "imagenet": IMAGENET_DATASETS}
BACKENDS = ("tensorflow", "jax")
# Reference global batch of each recipe: ``lr`` is the learning rate at this
# batch and the learning rate used is ``lr * batch_size / reference``
# (He et al. 2015: 0.1 at 128 on CIFAR, 0.1 at 256 on ImageNet; Goyal et al. 2017).
REFERENCE_BATCH = {"cifar10": 128, "imagenet": 256}
# The `make demo` recipe on scikit-learn's 1,437 training digits (8x8): measured to
# reach >= 97% test accuracy with ResNet-20 in well under 3 minutes on 2 CPU cores.
DIGITS_DEFAULTS = {"batch_size": 64, "lr": 0.1, "schedule": "cosine", "epochs": 20}
# Settings that may change between a run and its resumption: where things are
# written, how much is printed, and the hardware (the checkpoint holds no
# strategy state, so a run started on 8 GPUs resumes on 4 or on the CPU with the
# same global batch). Everything else would change what is trained.
RESUME_FREE = ("run_dir", "export", "no_export", "quiet", "gpus", "xla", "deterministic",
               "steps_per_execution", "log_every", "backend")
# The builder's extras a run may set (keras_resnet.ResNet checks their values).
MODEL_EXTRAS = ("block", "ordering", "skip", "gate_bias", "dropout_rate", "stride_at")


class ConfigError(ValueError):
    """Bad settings: the recipes print the message on one line and exit with code 2."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class RunDirError(RuntimeError):
    """The run directory could not be written (disk full, read-only, ...).

    The last good checkpoint is kept; the recipes exit with code 1.
    """


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run: the recipes' flags (None: the recipe's default).

    The model fields are ``keras_resnet.ResNet`` arguments (``plain`` is
    ``residual=False``); ``model_extras`` holds further builder extras (see
    :data:`MODEL_EXTRAS`), e.g. ``{"ordering": "relu_preact"}`` or
    ``{"skip": "exclusive_gating", "gate_bias": -2.0}``.
    """

    recipe: str = "cifar10"
    dataset: str | None = None
    data_dir: str | None = None
    holdout: bool = False
    image_size: int | None = None
    synthetic_examples: int | None = None
    depth: int | None = None
    preact: bool = False
    width: float = 1.0
    shortcut: str | None = None
    plain: bool = False
    drop_path_rate: float = 0.0
    model_extras: dict = dataclasses.field(default_factory=dict)
    epochs: int | None = None
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str | None = None
    warmup_epochs: float | None = None
    label_smoothing: float = 0.0
    zero_init: str = "auto"
    sync_bn: bool = False
    remat: bool = False
    gpus: int | None = None
    precision: str = "float32"
    xla: bool = False
    seed: int = 0
    deterministic: bool | None = None
    steps_per_execution: int | None = None
    log_every: int | None = None
    backend: str | None = None
    run_dir: str | None = None
    export: str | None = None
    no_export: bool = False
    quiet: bool = False

    def flags(self):
        """The settings as a JSON-serialisable dict (written to ``config.json``)."""
        return dataclasses.asdict(self)


def flag(name):
    """The command-line spelling of a setting: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def _positive(name, value, kind=int, allow_zero=False):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{flag(name)} must be a number; received {value!r}.")
    if kind is int and not float(value).is_integer():
        raise ConfigError(f"{flag(name)} must be an integer; received {value!r}.")
    ok = (value >= 0) if allow_zero else (value > 0)
    if not ok or not math.isfinite(value):
        raise ConfigError(f"{flag(name)} must be {'>= 0' if allow_zero else 'positive'}; "
                          f"received {value!r}.")
    return value


def _choice(name, value, allowed):
    if value is not None and value not in allowed:
        raise ConfigError(f"{flag(name)} {value!r}: expected one of {', '.join(allowed)}.")


def resolve_config(config):
    """Check ``config`` and fill in the recipe's defaults; return a new :class:`TrainConfig`.

    Raises:
        ConfigError: naming the flag, the value received and what is allowed.

    Example:

    >>> c = resolve_config(TrainConfig(dataset="digits"))
    >>> c.depth, c.batch_size, c.epochs, c.schedule
    (20, 64, 20, 'cosine')
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"Argument `config` must be a TrainConfig; received "
                        f"{type(config).__name__}.")
    c = dataclasses.replace(config, model_extras=dict(config.model_extras or {}))
    _choice("recipe", c.recipe, RECIPES)
    allowed = DATASETS[c.recipe]
    if c.data_dir is not None:
        if c.dataset is not None:
            raise ConfigError(f"--dataset {c.dataset} and --data-dir {c.data_dir} conflict: "
                              "--data-dir trains on image folders; give one of them.")
        c.dataset = "folder"
    elif c.dataset is None:
        c.dataset = "cifar10" if c.recipe == "cifar10" else "imagenet2012"
    elif c.dataset not in allowed:
        raise ConfigError(f"--dataset {c.dataset!r} is unknown to recipes/{c.recipe}.py; "
                          f"expected one of {', '.join(allowed)} (or --data-dir DIR).")
    if c.epochs is not None and c.steps is not None:
        raise ConfigError(f"--epochs {c.epochs} and --steps {c.steps} conflict: "
                          "give the length of the run one way.")
    if c.export is not None and c.no_export:
        raise ConfigError(f"--export {c.export} and --no-export conflict; give one of them.")
    _choice("precision", c.precision, PRECISIONS)
    _choice("schedule", c.schedule, SCHEDULES)
    _choice("zero_init", c.zero_init, ZERO_INIT)
    _choice("backend", c.backend, BACKENDS)
    if c.image_size is not None and c.dataset not in ("synthetic", "folder"):
        raise ConfigError(f"--image-size applies to --dataset synthetic and --data-dir; "
                          f"received --dataset {c.dataset}.")
    for name, value in (("label_smoothing", c.label_smoothing), ("drop_path_rate", c.drop_path_rate)):
        _positive(name, value, float, allow_zero=True)
        if not value < 1:
            raise ConfigError(f"{flag(name)} must be in [0, 1); received {value!r}.")
    if c.synthetic_examples is not None and c.dataset != "synthetic":
        raise ConfigError(f"--synthetic-examples applies to --dataset synthetic; received "
                          f"--dataset {c.dataset}.")
    for name in ("epochs", "steps", "batch_size", "depth", "image_size", "steps_per_execution",
                 "log_every", "synthetic_examples"):
        _positive(name, getattr(c, name))
    for name in ("lr", "width"):
        _positive(name, getattr(c, name), float)
    for name in ("weight_decay", "momentum", "warmup_epochs"):
        _positive(name, getattr(c, name), float, allow_zero=True)
    _positive("gpus", c.gpus, int, allow_zero=True)
    _positive("seed", c.seed, int, allow_zero=True)
    unknown = sorted(set(c.model_extras) - set(MODEL_EXTRAS))
    if unknown:
        raise ConfigError(f"model_extras {unknown[0]!r} is not a setting of a training run; "
                          f"expected some of {', '.join(MODEL_EXTRAS)}.")
    if c.remat and c.backend == "tensorflow":
        raise ConfigError("--remat runs under the JAX backend (--backend jax); under "
                          "TensorFlow, lower --batch-size instead.")
    if c.warmup_epochs is not None and c.recipe != "imagenet":
        raise ConfigError("--warmup-epochs belongs to recipes/imagenet.py; the CIFAR recipe "
                          "warms up ResNet-110 and deeper at lr/10 for 400 iterations.")
    if c.run_dir is None and "TF_CONFIG" in os.environ:
        raise ConfigError("TF_CONFIG is set (multi-worker training): give every worker the "
                          "same --run-dir.")
    digits = c.dataset == "digits"
    if c.depth is None:
        c.depth = 20 if c.recipe == "cifar10" else 50
    if c.batch_size is None:
        c.batch_size = DIGITS_DEFAULTS["batch_size"] if digits else REFERENCE_BATCH[c.recipe]
    if c.lr is None:
        c.lr = DIGITS_DEFAULTS["lr"] if digits else 0.1
    if c.schedule is None:
        c.schedule = DIGITS_DEFAULTS["schedule"] if digits else "step"
    if c.epochs is None and c.steps is None:
        if digits:
            c.epochs = DIGITS_DEFAULTS["epochs"]
        elif c.recipe == "cifar10":
            # He et al. 2015: 64k iterations of batch 128, kept in images for other batches.
            c.steps = max(1, round(64000 * 128 / c.batch_size))
        else:
            c.epochs = 90
    return c
