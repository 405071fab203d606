"""What a training run is: its settings (:class:`TrainConfig`) and their checks.

Backend-free and cheap to import (no keras, no TensorFlow): the command line
parses and checks flags with it before anything heavy is imported. Each
setting is declared once, with its help text and allowed values beside the
field (:func:`setting`); :mod:`keras_resnet.cli.fields` turns the fields into
command-line flags.
"""

from __future__ import annotations

import dataclasses
import math
import os

from keras_resnet import specs

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
SCHEDULES = ("step", "cosine")
ZERO_INIT = ("auto", "on", "off")
RECIPES = ("cifar10", "imagenet")
# The one table of the datasets the command lines name, by the recipe that trains on
# them (the search and the experiments train with the CIFAR recipe; the analyses take
# the CIFAR recipe's labelled datasets). keras_resnet.data.DATASETS is what the loader
# can load: every name here is one of them.
DATASETS = {"cifar10": ("cifar10", "cifar100", "digits", "synthetic"),
            "imagenet": ("imagenet2012", "synthetic")}
CIFAR_DATASETS = DATASETS["cifar10"]
IMAGENET_DATASETS = DATASETS["imagenet"]
BACKENDS = ("tensorflow", "jax")
# Training images of the datasets whose size is known without loading them (the
# command lines refuse a larger --batch-size before TensorFlow is imported).
TRAIN_SIZES = {"digits": 1437, "cifar10": 50000, "cifar100": 50000, "imagenet2012": 1281167}
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
RESUME_FREE = ("run_dir", "export", "no_export", "quiet", "fresh", "gpus", "xla",
               "deterministic", "steps_per_execution", "log_every", "backend")
# The builder's extras a run may set (keras_resnet.ResNet checks their values).
MODEL_EXTRAS = ("block", "ordering", "skip", "gate_bias", "dropout_rate", "stride_at")


def setting(default=None, *, help, choices=None, type=None, flag=None, negative=None,
            factory=None):
    """A dataclass field that carries its command-line description.

    Args:
        default: the field's default (``factory``: a default factory instead).
        help: the flag's help text; ``{name}`` placeholders are filled by the
            command that shows it (e.g. the recipe's default depth).
        choices: the allowed values, or None.
        type: the function that turns the flag's text into the value (default:
            the field's type; booleans are on/off flags); it raises ValueError
            with a message in the user's words.
        flag: the flag's spelling (default: ``--`` and the name with dashes).
        negative: for a tri-state ``bool | None`` field, the flag that sets False.
    """
    metadata = {"help": help, "choices": choices, "type": type, "flag": flag,
                "negative": negative}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def int_list(text):
    """``"20,56"`` -> ``(20, 56)``: the one parser of comma-separated integers.

    Raises:
        ValueError: in the user's words, for text that is not such a list.

    >>> int_list("20, 56,")
    (20, 56)
    """
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of integers, e.g. "
                         "20,56") from None


class ConfigError(ValueError):
    """Bad settings: the recipes print the message on one line and exit with code 2."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class RunDirError(RuntimeError):
    """The run directory could not be written (disk full, read-only, ...).

    The last good checkpoint is kept; the recipes exit with code 1.
    """


@dataclasses.dataclass
class ModelExtras:
    """The builder extras the training command line offers (into ``TrainConfig.model_extras``)."""

    block: str | None = setting(help="block kind (default: from the depth table)",
                                choices=specs.BLOCKS)
    ordering: str | None = setting(
        help="unit ordering of He et al. 2016, Fig. 4 (default: post; --preact: full_preact)",
        choices=specs.ORDERINGS)
    skip: str | None = setting(
        help="shortcut function of He et al. 2016, Fig. 2 (default: identity)",
        choices=specs.SKIPS)
    gate_bias: float | None = setting(
        help="initial gate bias b_g of the gating skips (default: -6)")


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run: the recipes' flags (None: the recipe's default).

    The model fields are ``keras_resnet.ResNet`` arguments (``plain`` is
    ``residual=False``); ``model_extras`` holds further builder extras (see
    :data:`MODEL_EXTRAS`), e.g. ``{"ordering": "relu_preact"}`` or
    ``{"skip": "exclusive_gating", "gate_bias": -2.0}``.
    """

    recipe: str = setting("cifar10", help="the recipe: cifar10 or imagenet", choices=RECIPES)
    dataset: str | None = setting(help="one of {datasets} (default: {dataset})")
    data_dir: str | None = setting(
        help="train on image folders DIR/train/<class>/ and DIR/val/<class>/ instead of "
             "--dataset")
    holdout: bool = setting(
        False, help="evaluate on 10%% of the training images held out (CIFAR-10: the paper's "
                    "45k/5k split) instead of the test set")
    val_split: float | None = setting(
        help="--data-dir without a val/ folder (class folders alone): the fraction of each "
             "class held out for validation, drawn with --seed (default: 0.1)")
    image_size: int | None = setting(
        help="input size for --dataset synthetic and --data-dir (default: {image_size})")
    synthetic_examples: int | None = setting(
        help="training images of --dataset synthetic (random pixels and labels; the test set "
             "has a quarter as many) (default: 1024)")
    depth: int | None = setting(help="network depth (default: {depth})")
    preact: bool = setting(False, help="full pre-activation units (He et al. 2016)")
    width: float = setting(1.0, help="widening factor k of every stage")
    shortcut: str | None = setting(
        help="shortcut option (default: A for CIFAR basic nets, else B)",
        choices=specs.SHORTCUTS)
    plain: bool = setting(False, help="the plain twin: the same layers, no shortcuts")
    drop_path_rate: float = setting(0.0, help="stochastic depth, linear decay over the blocks")
    model_extras: dict = setting(
        help="further builder extras (command line: --block, --ordering, --skip, --gate-bias)",
        factory=dict)
    epochs: int | None = setting(help="training epochs (default: {epochs})")
    steps: int | None = setting(help="training iterations instead of --epochs{steps}")
    batch_size: int | None = setting(help="global batch, split over all replicas "
                                          "(default: {batch_size})")
    lr: float | None = setting(help="learning rate at batch {reference}; the run uses lr x "
                                    "batch/{reference} (default: {lr})")
    momentum: float = setting(0.9, help="SGD momentum")
    weight_decay: float = setting(
        1e-4, help="L2 penalty weight_decay/2 x sum(w^2) over conv and dense kernels, added "
                   "to the loss (the papers' SGD weight decay)")
    schedule: str | None = setting(help="{schedule}", choices=SCHEDULES)
    warmup_epochs: float | None = setting(
        help="linear warm-up from lr to lr x batch/256 (default: 5 when the batch is above "
             "256, else 0)")
    label_smoothing: float = setting(0.0, help="label smoothing epsilon")
    zero_init: str = setting(
        "auto", help="zero-initialise the last BatchNorm gamma of each block; auto: when the "
                     "global batch is above {reference} (Goyal et al. 2017)", choices=ZERO_INIT)
    sync_bn: bool = setting(
        False, help="BatchNorm statistics over all replicas (small per-replica batches)")
    remat: bool = setting(
        False, help="recompute each block's activations in the backward pass: less memory "
                    "for very deep nets, about one more forward pass of compute (JAX)")
    unroll: bool = setting(
        False, help="compile every block into the step instead of one jax.lax.scan per run of "
                    "identical blocks (JAX; for comparison: compile time grows with depth)")
    gpus: int | None = setting(
        help="data-parallel over N GPUs (tf.distribute.MirroredStrategy, per worker under "
             "TF_CONFIG; jax: keras.distribution.DataParallel); 0: CPU (default: 1 GPU if "
             "present, else the CPU)")
    precision: str = setting(
        "float32", help="mixed_float16 uses loss scaling, mixed_bfloat16 none; the classifier "
                        "and the loss stay float32", choices=PRECISIONS)
    xla: bool = setting(False, help="XLA-compile the forward and backward pass (TensorFlow; "
                                    "the JAX backend always compiles with XLA)")
    seed: int = setting(0, help="seed of initialisation, data order and augmentation")
    deterministic: bool | None = setting(
        help="deterministic ops: bit-identical reruns on the same machine and software "
             "(default: on for the CPU, off on GPUs, where it selects slower kernels)",
        negative=("--nondeterministic", "allow nondeterministic (faster) ops (default: on GPUs)"))
    steps_per_execution: int | None = setting(
        help="train steps per compiled call (default: 4 on CPU, 32 on GPU)")
    log_every: int | None = setting(
        help="read metrics back from the device every N steps: progress and the NaN check "
             "(default: 4 on CPU, 128 on GPU)")
    backend: str | None = setting(
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow); jax runs --dataset "
             "digits and synthetic without TensorFlow, and on a CPU trains about 10x slower "
             "than tensorflow (use it for GPUs)", choices=BACKENDS)
    run_dir: str | None = setting(
        help="run directory; rerunning with the same one resumes it (default: "
             "runs/<dataset>_<model>_<settings key>: the same command resumes its unfinished "
             "run, --fresh starts over)")
    export: str | None = setting(
        help="export directory (default: saved_models/<run-name>; runs shorter than one epoch "
             "export only when this is given)")
    no_export: bool = setting(False, help="do not export the trained model")
    quiet: bool = setting(False, help="no progress display")
    fresh: bool = setting(False, help="start over in a new run directory instead of resuming "
                                      "the unfinished run of the same settings (the default "
                                      "--run-dir)")

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
    if c.fresh and c.run_dir is not None:
        raise ConfigError(f"--fresh and --run-dir {c.run_dir} conflict: --fresh starts the "
                          "default run directory over; give a new --run-dir instead.")
    if c.export is not None and c.no_export:
        raise ConfigError(f"--export {c.export} and --no-export conflict; give one of them.")
    _choice("precision", c.precision, PRECISIONS)
    _choice("schedule", c.schedule, SCHEDULES)
    _choice("zero_init", c.zero_init, ZERO_INIT)
    _choice("backend", c.backend, BACKENDS)
    if c.image_size is not None and c.dataset not in ("synthetic", "folder"):
        raise ConfigError(f"--image-size applies to --dataset synthetic and --data-dir; "
                          f"received --dataset {c.dataset}.")
    for name, value in (("label_smoothing", c.label_smoothing),
                        ("drop_path_rate", c.drop_path_rate)):
        _positive(name, value, float, allow_zero=True)
        if not value < 1:
            raise ConfigError(f"{flag(name)} must be in [0, 1); received {value!r}.")
    if c.val_split is not None:
        if c.dataset != "folder":
            raise ConfigError(f"--val-split applies to --data-dir; received --dataset "
                              f"{c.dataset}.")
        if isinstance(c.val_split, bool) or not isinstance(c.val_split, (int, float)) \
                or not 0 < c.val_split < 1:
            raise ConfigError(f"--val-split must be between 0 and 1 (exclusive); received "
                              f"{c.val_split!r}.")
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


def preflight(config):
    """The checks of a resolved ``config`` that need neither Keras nor the data.

    The command lines run them before TensorFlow is imported, so these
    mistakes are answered at once: the model's arguments (a depth the family
    does not have, an ordering that contradicts ``--preact``, ...), a missing
    ``--data-dir``, and a batch larger than a dataset of known size.

    Raises:
        ConfigError: naming the flag, the value received and what is allowed.
    """
    from keras_resnet import architecture

    c = config
    kwargs = dict(c.model_extras)
    try:
        architecture.resolve_resnet(
            c.depth, preact=c.preact, family="cifar" if c.recipe == "cifar10" else "imagenet",
            width=c.width, shortcut=c.shortcut, residual=not c.plain,
            drop_path_rate=c.drop_path_rate, **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None
    if c.data_dir is not None and not os.path.isdir(c.data_dir):
        raise ConfigError(f"--data-dir {c.data_dir} is not an existing folder; expected "
                          "DIR/train/<class>/ and DIR/val/<class>/ image folders, or class "
                          "folders alone (see --val-split).")
    size = (c.synthetic_examples or 1024) if c.dataset == "synthetic" \
        else TRAIN_SIZES.get(c.dataset)
    if size is not None and c.batch_size > size:
        raise ConfigError(f"--batch-size {c.batch_size} is larger than the {size} training "
                          "images.")
