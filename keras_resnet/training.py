"""Training: strategies, precision, schedules, the training loop, checkpoints, run directories.

One training loop serves every strategy: the default (one device),
``tf.distribute.MirroredStrategy`` over the GPUs of one machine and
``tf.distribute.MultiWorkerMirroredStrategy`` across machines (``TF_CONFIG``).
A ``tf.function`` train step runs under ``strategy.run``; the Keras optimizer
all-reduces (sums) the gradients of the replicas, and every replica's loss is
divided by the *global* batch size so the sum is the mean over the global batch.
(``model.fit`` under MultiWorkerMirroredStrategy fails in TF 2.21 / Keras 3.15
with "Attempt to convert a value (PerReplica...) to a Tensor"; this loop does not.)

Weight decay is the papers' L2 penalty: ``weight_decay / 2 * sum(w ** 2)`` over
every convolution and dense kernel (not BatchNorm parameters, not biases) is added
to the loss, so its gradient ``weight_decay * w`` enters the SGD momentum update
exactly as Caffe's ``weight_decay`` did for He et al. (2015). (Keras's
``SGD(weight_decay=...)`` is the decoupled variant, a different update rule.)

A run is a directory (see :func:`train`): ``config.json``, ``log.csv`` (one row
per epoch), ``tensorboard/``, ``checkpoints/`` (model, optimizer, epoch counter;
written by ``tf.train.CheckpointManager``, whose index file is replaced
atomically) and ``metrics.json`` at the end. Running the same configuration
again in the same directory resumes after the last completed epoch; with the
same seed it ends with the same weights as an uninterrupted run.

The recipes ``recipes/cifar10.py`` and ``recipes/imagenet.py`` only call
:func:`main`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import math
import os
import signal
import sys
import time

import keras
import numpy as np
import tensorflow as tf

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
SCHEDULES = ("step", "cosine")
ZERO_INIT = ("auto", "on", "off")
CIFAR_DATASETS = ("cifar10", "cifar100", "digits", "synthetic")
IMAGENET_DATASETS = ("imagenet2012", "synthetic")
# Reference global batch of each recipe: ``--lr`` is the learning rate at this
# batch and the learning rate used is ``lr * batch_size / reference``
# (He et al. 2015: 0.1 at 128 on CIFAR, 0.1 at 256 on ImageNet; Goyal et al. 2017).
REFERENCE_BATCH = {"cifar10": 128, "imagenet": 256}
# The test-only fault injection hook: "EPOCH:STEP" makes the process SIGKILL
# itself just before that step (1-based) of that epoch (1-based).
KILL_AT_ENV = "KERAS_RESNET_KILL_AT"
# Flags that may change between the run and its resumption.
RESUME_FREE_FLAGS = ("run_dir", "export", "no_export", "quiet")


class ConfigError(ValueError):
    """Bad command-line input: the recipes print it on one line and exit with 2."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


# ---------------------------------------------------------------------------
# Learning-rate schedules (serializable, driven by optimizer.iterations, so a
# restored optimizer resumes its schedule exactly).


class _WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Shared warm-up: ``warmup_steps`` steps at ``warmup_lr`` (constant) or
    from ``warmup_lr`` linearly up to ``peak_lr`` (linear)."""

    def __init__(self, peak_lr, warmup_steps=0, warmup_lr=None, warmup="linear"):
        if warmup not in ("linear", "constant"):
            raise ValueError(f"Invalid value for argument `warmup`: received {warmup!r}; "
                             "expected 'linear' or 'constant'.")
        self.peak_lr = float(peak_lr)
        self.warmup_steps = int(warmup_steps)
        self.warmup_lr = float(self.peak_lr / 10 if warmup_lr is None else warmup_lr)
        self.warmup = warmup

    def _warm(self, step, after):
        if self.warmup_steps <= 0:
            return after
        w = tf.cast(self.warmup_steps, tf.float32)
        if self.warmup == "constant":
            during = tf.constant(self.warmup_lr, tf.float32)
        else:
            during = self.warmup_lr + (self.peak_lr - self.warmup_lr) * step / w
        return tf.where(step < w, during, after)

    def get_config(self):
        return {"peak_lr": self.peak_lr, "warmup_steps": self.warmup_steps,
                "warmup_lr": self.warmup_lr, "warmup": self.warmup}


@keras.saving.register_keras_serializable(package="keras_resnet")
class StepDecay(_WarmupSchedule):
    """``peak_lr`` divided by 10 (``decay``) at each of ``boundaries`` (steps), after a warm-up.

    Example:

    >>> s = StepDecay(0.1, boundaries=[32000, 48000], warmup_steps=400, warmup_lr=0.01,
    ...               warmup="constant")
    >>> [round(float(s(i)), 6) for i in (0, 399, 400, 31999, 32000, 48000)]
    [0.01, 0.01, 0.1, 0.1, 0.01, 0.001]
    """

    def __init__(self, peak_lr, boundaries=(), decay=0.1, warmup_steps=0, warmup_lr=None,
                 warmup="linear"):
        super().__init__(peak_lr, warmup_steps, warmup_lr, warmup)
        self.boundaries = [int(b) for b in boundaries]
        self.decay = float(decay)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        passed = tf.zeros([], tf.float32)
        for b in self.boundaries:
            passed += tf.cast(step >= b, tf.float32)
        after = self.peak_lr * tf.pow(tf.constant(self.decay, tf.float32), passed)
        return self._warm(step, after)

    def get_config(self):
        return {**super().get_config(), "boundaries": self.boundaries, "decay": self.decay}


@keras.saving.register_keras_serializable(package="keras_resnet")
class CosineDecay(_WarmupSchedule):
    """Half-cosine from ``peak_lr`` to 0 at ``total_steps``, after a warm-up.

    Example:

    >>> s = CosineDecay(0.4, total_steps=100, warmup_steps=10, warmup_lr=0.1)
    >>> [round(float(s(i)), 6) for i in (0, 5, 10, 55, 100)]
    [0.1, 0.25, 0.4, 0.2, 0.0]
    """

    def __init__(self, peak_lr, total_steps=1, warmup_steps=0, warmup_lr=None, warmup="linear"):
        super().__init__(peak_lr, warmup_steps, warmup_lr, warmup)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
        after = 0.5 * self.peak_lr * (1.0 + tf.cos(math.pi * progress))
        return self._warm(step, after)

    def get_config(self):
        return {**super().get_config(), "total_steps": self.total_steps}


# ---------------------------------------------------------------------------
# Configuration.


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run (the recipes' flags; None: the recipe's default)."""

    recipe: str = "cifar10"
    dataset: str | None = None
    data_dir: str | None = None
    holdout: bool = False
    image_size: int | None = None
    depth: int | None = None
    preact: bool = False
    width: float = 1.0
    shortcut: str | None = None
    plain: bool = False
    drop_path_rate: float = 0.0
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
    gpus: int | None = None
    precision: str = "float32"
    xla: bool = False
    seed: int = 0
    deterministic: bool = True
    run_dir: str | None = None
    export: str | None = None
    no_export: bool = False
    quiet: bool = False

    def flags(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Plan:
    """The resolved recipe: what a configuration means for a dataset and a replica count."""

    dataset: str
    depth: int
    global_batch: int
    replicas: int
    per_replica_batch: int
    steps_per_epoch: int
    total_steps: int
    epochs: int
    lr: float
    schedule: dict
    zero_init: bool
    precision: str

    def steps_in_epoch(self, epoch):
        """Steps of 1-based ``epoch`` (the last one may be partial)."""
        return max(0, min(self.steps_per_epoch, self.total_steps - (epoch - 1) * self.steps_per_epoch))


def _positive(name, value, kind=int, allow_zero=False):
    if value is None:
        return None
    ok = (value >= 0) if allow_zero else (value > 0)
    if not ok or (kind is float and not math.isfinite(value)):
        raise ConfigError(f"--{name.replace('_', '-')} must be {'>= 0' if allow_zero else 'positive'}; "
                          f"received {value!r}.")
    return value


def resolve_config(config):
    """Fill in the recipe's defaults and check the flags; raise :class:`ConfigError`."""
    c = dataclasses.replace(config)
    if c.recipe not in REFERENCE_BATCH:
        raise ConfigError(f"Unknown recipe {c.recipe!r}; expected one of {tuple(REFERENCE_BATCH)}.")
    allowed = CIFAR_DATASETS if c.recipe == "cifar10" else IMAGENET_DATASETS
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
    if c.precision not in PRECISIONS:
        raise ConfigError(f"--precision {c.precision!r}: expected one of {', '.join(PRECISIONS)}.")
    if c.schedule is not None and c.schedule not in SCHEDULES:
        raise ConfigError(f"--schedule {c.schedule!r}: expected one of {', '.join(SCHEDULES)}.")
    if c.zero_init not in ZERO_INIT:
        raise ConfigError(f"--zero-init {c.zero_init!r}: expected one of {', '.join(ZERO_INIT)}.")
    if c.image_size is not None and c.dataset not in ("synthetic", "folder"):
        raise ConfigError(f"--image-size applies to --dataset synthetic and --data-dir; "
                          f"received --dataset {c.dataset}.")
    if not 0 <= c.label_smoothing < 1:
        raise ConfigError(f"--label-smoothing must be in [0, 1); received {c.label_smoothing!r}.")
    if not 0 <= c.drop_path_rate < 1:
        raise ConfigError(f"--drop-path-rate must be in [0, 1); received {c.drop_path_rate!r}.")
    for name in ("epochs", "steps", "batch_size", "depth", "image_size"):
        _positive(name, getattr(c, name))
    for name in ("lr", "width"):
        _positive(name, getattr(c, name), float)
    for name in ("weight_decay", "momentum", "warmup_epochs"):
        _positive(name, getattr(c, name), float, allow_zero=True)
    _positive("gpus", c.gpus, int, allow_zero=True)
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


# The `make demo` recipe on scikit-learn's 1,437 training digits (8x8): measured to
# reach >= 97% test accuracy with ResNet-20 in well under 3 minutes on 2 CPU cores.
DIGITS_DEFAULTS = {"batch_size": 64, "lr": 0.1, "schedule": "cosine", "epochs": 20}


def make_plan(config, train_size, replicas):
    """Resolve the schedule of a resolved ``config`` for ``train_size`` images and ``replicas``."""
    c = config
    if c.batch_size % replicas:
        raise ConfigError(f"--batch-size {c.batch_size} (the global batch) is not divisible "
                          f"by the {replicas} replicas; use a multiple of {replicas}.")
    steps_per_epoch = train_size // c.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"--batch-size {c.batch_size} is larger than the {train_size} "
                          "training images.")
    if c.steps is not None:
        total = c.steps
        epochs = math.ceil(total / steps_per_epoch)
    else:
        epochs = c.epochs
        total = epochs * steps_per_epoch
    reference = REFERENCE_BATCH[c.recipe]
    lr = c.lr * c.batch_size / reference
    large_batch = c.batch_size > reference
    warmup = {"warmup_steps": 0}
    if c.recipe == "cifar10":
        if c.depth >= 110 and c.dataset != "digits":
            # He et al. 2015 sec. 4.2: ResNet-110 warms up at 0.01 for ~400 iterations (batch 128).
            warmup = {"warmup_steps": max(1, round(400 * 128 / c.batch_size)),
                      "warmup_lr": lr / 10, "warmup": "constant"}
        fractions = (0.5, 0.75)          # 32k and 48k of 64k iterations
    else:
        warmup_epochs = c.warmup_epochs
        if warmup_epochs is None:
            warmup_epochs = 5.0 if large_batch else 0.0   # Goyal et al. 2017
        if warmup_epochs > 0:
            warmup = {"warmup_steps": max(1, round(warmup_epochs * steps_per_epoch)),
                      "warmup_lr": min(c.lr, lr), "warmup": "linear"}
        fractions = (30 / 90, 60 / 90, 80 / 90)
    if c.schedule == "step":
        schedule = {"class": "StepDecay", "peak_lr": lr,
                    "boundaries": [round(f * total) for f in fractions], **warmup}
    else:
        schedule = {"class": "CosineDecay", "peak_lr": lr, "total_steps": total, **warmup}
    zero_init = {"on": True, "off": False, "auto": large_batch}[c.zero_init]
    return Plan(dataset=c.dataset, depth=c.depth, global_batch=c.batch_size, replicas=replicas,
                per_replica_batch=c.batch_size // replicas, steps_per_epoch=steps_per_epoch,
                total_steps=total, epochs=epochs, lr=lr, schedule=schedule, zero_init=zero_init,
                precision=c.precision)


def make_schedule(spec):
    """A :class:`StepDecay` or :class:`CosineDecay` from a plan's ``schedule`` dict."""
    spec = dict(spec)
    cls = {"StepDecay": StepDecay, "CosineDecay": CosineDecay}[spec.pop("class")]
    return cls(**spec)


# ---------------------------------------------------------------------------
# Strategies and precision.


def _tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}).") from None
    return tf_config


def make_strategy(gpus=None):
    """The tf.distribute strategy for ``--gpus``: Mirrored (N > 1), multi-worker (TF_CONFIG) or default.

    Args:
        gpus: int or None. None: one GPU if any is present, else the CPU. 0: the CPU.
            N > 1: ``MirroredStrategy`` over the first N GPUs (per worker under TF_CONFIG).

    Raises:
        ConfigError: ``gpus`` exceeds the GPUs present.
    """
    present = tf.config.list_physical_devices("GPU")
    if gpus is not None and gpus > len(present):
        raise ConfigError(f"--gpus {gpus} asks for more GPUs than the {len(present)} present "
                          "on this machine.")
    if gpus is not None and len(present) > gpus:
        tf.config.set_visible_devices(present[:gpus], "GPU")
    tf_config = _tf_config()
    if tf_config and sum(len(v) for v in tf_config.get("cluster", {}).values()) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if gpus is not None and gpus > 1:
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(gpus)])
    return tf.distribute.get_strategy()


def strategy_name(strategy):
    """``"MirroredStrategy"``, ``"MultiWorkerMirroredStrategy"``, ``"DefaultDistributionStrategy"``..."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"   # an alias of CollectiveAllReduceStrategy
    return type(strategy).__name__.lstrip("_")


def is_chief(strategy):
    """True on the worker that writes the run directory (always, without TF_CONFIG)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def builder_kwargs(config, plan, input_shape, num_classes):
    """The ``keras_resnet.ResNet`` arguments of a run (also recorded in exports)."""
    kwargs = {"depth": config.depth, "preact": config.preact, "width": config.width,
              "shortcut": config.shortcut, "residual": not config.plain,
              "drop_path_rate": config.drop_path_rate, "input_shape": tuple(input_shape),
              "classes": num_classes, "family": "cifar" if config.recipe == "cifar10" else "imagenet",
              "seed": config.seed}
    if plan.zero_init:
        kwargs["zero_init"] = True
    return kwargs


def build_model(kwargs, precision="float32"):
    """Build ``keras_resnet.ResNet(**kwargs)`` under a precision policy.

    Under ``mixed_float16`` / ``mixed_bfloat16`` the body computes in 16 bits with
    float32 variables, while the classifier (``avg_pool`` and ``predictions``)
    computes in float32, so logits, softmax and loss stay float32. The model has
    the same layers, names and weights as ``ResNet(**kwargs)``.

    Example:

    >>> m = build_model({"depth": 8, "input_shape": (8, 8, 3), "classes": 10},
    ...                 "mixed_bfloat16")
    >>> m.get_layer("stem").compute_dtype, m.get_layer("predictions").compute_dtype
    ('bfloat16', 'float32')
    >>> m.output.dtype
    'float32'
    """
    import keras_resnet

    if precision not in PRECISIONS:
        raise ValueError(f"Invalid value for argument `precision`: received {precision!r}; "
                         f"expected one of {PRECISIONS}.")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:  # the builder keeps the classifier float32 under mixed policies
        return keras_resnet.ResNet(**kwargs)
    finally:
        keras.config.set_dtype_policy(previous)


def make_optimizer(plan, momentum):
    """SGD with momentum on the plan's schedule; loss scaling under mixed_float16."""
    optimizer = keras.optimizers.SGD(make_schedule(plan.schedule), momentum=momentum)
    if plan.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _tf_variable(variable):
    """The tf.Variable (or distributed variable) behind a Keras variable."""
    return getattr(variable, "value", variable)


def decay_variables(model):
    """The variables the L2 penalty covers: convolution and dense kernels."""
    return [v for v in model.trainable_variables if v.name in ("kernel", "depthwise_kernel")]


# ---------------------------------------------------------------------------
# Run directories.


def default_run_name(config):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    prefix = "plain" if config.plain else ("preact_resnet" if config.preact else "resnet")
    return f"{config.dataset}_{prefix}{config.depth}_{stamp}"


def _comparable(flags):
    return {k: v for k, v in flags.items() if k not in RESUME_FREE_FLAGS}


def check_run_dir(run_dir, config):
    """Check that ``run_dir`` is new, or holds a run of the same flags (resume); no writes."""
    path = os.path.join(run_dir, "config.json")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ConfigError(f"--run-dir {run_dir} exists and is not a directory.")
    if not os.path.exists(path):
        if os.path.isdir(run_dir) and os.listdir(run_dir):
            raise ConfigError(f"--run-dir {run_dir} is not empty and holds no config.json: "
                              "not a run directory; choose another --run-dir.")
        return False
    with open(path) as f:
        saved = json.load(f).get("flags", {})
    old, new = _comparable(saved), _comparable(config.flags())
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        def show(v):
            return "default" if v is None else repr(v)

        shown = ", ".join(f"--{k.replace('_', '-')} {show(old.get(k))} -> {show(new.get(k))}"
                          for k in diff)
        raise ConfigError(f"--run-dir {run_dir} holds a run with other settings ({shown}); "
                          "rerun with the same flags to resume it, or choose another --run-dir.")
    return True


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, path)


LOG_FIELDS = ("epoch", "steps", "lr", "loss", "l2_loss", "accuracy", "test_loss",
              "test_accuracy", "epoch_seconds", "images_per_sec", "input_wait_fraction")


def _truncate_log(path, last_epoch):
    """Keep the rows of epochs <= ``last_epoch`` (rows after the restored checkpoint go)."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= last_epoch]
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _append_log(path, row):
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def _scalar(tag, value, step):
    """A TensorBoard scalar event, without needing the tensorboard package installed."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step,
                     metadata=metadata.SerializeToString())


def _versions():
    import platform

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__}


def _throughput(epochs):
    """Images per second over ``(images, seconds)`` epochs, leaving out the first of several."""
    if not epochs:
        return None
    kept = epochs[1:] if len(epochs) > 1 else epochs
    return sum(n for n, _ in kept) / max(sum(t for _, t in kept), 1e-9)


def _fmt_seconds(s):
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def _kill_point():
    raw = os.environ.get(KILL_AT_ENV)
    if not raw:
        return None
    epoch, step = raw.split(":")
    return int(epoch), int(step)


# ---------------------------------------------------------------------------
# The training loop.


def load_data(config):
    """``keras_resnet.data.load`` for a resolved config; its ValueErrors become ConfigErrors."""
    from keras_resnet import data as data_lib

    kwargs = {"seed": config.seed, "holdout": config.holdout}
    if config.image_size is not None:
        kwargs["image_size"] = config.image_size
    if config.dataset in ("synthetic", "folder") and config.image_size is None:
        kwargs["image_size"] = 32 if config.recipe == "cifar10" else 224
    if config.dataset == "synthetic":
        kwargs["num_classes"] = 10 if config.recipe == "cifar10" else 1000
    name = None if config.dataset == "folder" else config.dataset
    try:
        return data_lib.load(name, data_dir=config.data_dir, **kwargs)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0] if str(e) else repr(e)) from None


class Trainer:
    """One training run: strategy, data, model, optimizer, checkpoints and the loop.

    Construct it (all checks, no writes), then call :meth:`run`.
    """

    def __init__(self, config, *, strategy=None, data=None):
        self.config = resolve_config(config)
        c = self.config
        self.strategy = strategy if strategy is not None else make_strategy(c.gpus)
        self.chief = is_chief(self.strategy)
        self.replicas = self.strategy.num_replicas_in_sync
        self.data = data if data is not None else load_data(c)
        self.plan = make_plan(c, self.data.train_size, self.replicas)
        if c.run_dir is None:
            c.run_dir = os.path.join("runs", default_run_name(c))
        self.run_dir = c.run_dir
        self.resuming = check_run_dir(self.run_dir, c) if self.chief else False
        self.export_dir = c.export or os.path.join("saved_models", os.path.basename(
            os.path.normpath(self.run_dir)))
        if c.export is not None and c.no_export:
            raise ConfigError(f"--export {c.export} and --no-export conflict; give one of them.")
        if self.chief and not c.no_export and os.path.isdir(self.export_dir) and os.listdir(self.export_dir) \
                and not os.path.exists(os.path.join(self.run_dir, "metrics.json")):
            raise ConfigError(f"--export {self.export_dir} already exists and is not empty; "
                              "choose another directory.")

    # -- setup -------------------------------------------------------------
    def build(self):
        """Create the model, optimizer, checkpoint manager and the step functions (no writes)."""
        if getattr(self, "model", None) is not None:
            return
        c, plan = self.config, self.plan
        # Global state changes only once every check has passed.
        keras.utils.set_random_seed(c.seed)
        if c.deterministic:
            tf.config.experimental.enable_op_determinism()
        self.builder = builder_kwargs(c, plan, self.data.input_shape(), self.data.num_classes)
        with self.strategy.scope():
            self.model = build_model(self.builder, c.precision)
            self.optimizer = make_optimizer(plan, c.momentum)
            self.optimizer.build(self.model.trainable_variables)
            self.epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.decayed = decay_variables(self.model)
        # Explicit variable lists (in a fixed order) rather than tf.train.Checkpoint's
        # object graph: the graph does not reach inside the composite block layers,
        # so tf.train.Checkpoint(model=model) silently leaves their BatchNorm moving
        # statistics out. model.variables covers every weight, statistic and seed state.
        self.checkpoint = tf.train.Checkpoint(
            model=[_tf_variable(v) for v in self.model.variables],
            optimizer=[_tf_variable(v) for v in self.optimizer.variables],
            epoch=self.epoch_var)
        if self.chief:
            ckpt_dir = os.path.join(self.run_dir, "checkpoints")
        else:
            resolver = self.strategy.cluster_resolver
            ckpt_dir = os.path.join(self.run_dir, f"{resolver.task_type}{resolver.task_id}",
                                    "checkpoints")
        self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir, max_to_keep=2)
        self._make_steps()

    def _write_config(self):
        c, plan = self.config, self.plan
        config = {"flags": c.flags(), "plan": dataclasses.asdict(plan), "builder": self.builder,
                  "dataset": {"name": self.data.name, "train_size": self.data.train_size,
                              "test_size": self.data.test_size, "classes": self.data.num_classes,
                              "preprocessing": self.data.preprocessing},
                  "strategy": strategy_name(self.strategy), "versions": _versions(),
                  "command": sys.argv}
        _write_json(os.path.join(self.run_dir, "config.json"), config)

    # -- steps -------------------------------------------------------------
    def _make_steps(self):
        c, plan = self.config, self.plan
        model, optimizer, decayed = self.model, self.optimizer, self.decayed
        classes = self.data.num_classes
        smoothing, wd, global_batch = c.label_smoothing, c.weight_decay, plan.global_batch

        def forward_backward(images, labels):
            with tf.GradientTape() as tape:
                probs = model(images, training=True)
                if smoothing:
                    onehot = tf.one_hot(labels, classes, dtype=tf.float32)
                    per_example = keras.losses.categorical_crossentropy(
                        onehot, probs, label_smoothing=smoothing)
                else:
                    per_example = keras.losses.sparse_categorical_crossentropy(labels, probs)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                l2 = wd * tf.add_n([tf.nn.l2_loss(tf.cast(v.value, tf.float32)) for v in decayed])
                # Each replica adds l2 / replicas: the all-reduced sum adds it once.
                total = loss + tf.nn.scale_regularization_loss(l2)
                scaled = optimizer.scale_loss(total)
            grads = tape.gradient(scaled, model.trainable_variables)
            correct = tf.reduce_sum(tf.cast(
                tf.equal(tf.argmax(probs, -1, output_type=tf.int32), tf.cast(labels, tf.int32)),
                tf.float32))
            return grads, loss, tf.nn.scale_regularization_loss(l2), correct

        if c.xla:
            forward_backward = tf.function(forward_backward, jit_compile=True)

        def replica_train(images, labels):
            grads, loss, l2, correct = forward_backward(images, labels)
            optimizer.apply(grads, model.trainable_variables)
            return loss, l2, correct

        strategy = self.strategy

        @tf.function
        def train_step(batch):
            per_replica = strategy.run(replica_train, args=batch)
            return [strategy.reduce("SUM", v, axis=None) for v in per_replica]

        def replica_eval(images, labels):
            probs = model(images, training=False)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probs)
            correct = tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32),
                                       tf.cast(labels, tf.int32)), tf.float32)
            return tf.reduce_sum(per_example), tf.reduce_sum(correct), \
                tf.cast(tf.shape(labels)[0], tf.float32)

        @tf.function
        def eval_step(batch):
            per_replica = strategy.run(replica_eval, args=batch)
            return [strategy.reduce("SUM", v, axis=None) for v in per_replica]

        # BatchNorm moving statistics are local to each replica (Keras creates them
        # with aggregation "none"): each replica updates its copy from its own part
        # of the batch. At the end of every epoch they are replaced by their mean
        # over all replicas, so every replica and worker evaluates and checkpoints
        # the same model.
        stats = [v for v in model.non_trainable_variables if "float" in str(v.dtype)]

        def replica_sync():
            ctx = tf.distribute.get_replica_context()
            means = ctx.all_reduce(tf.distribute.ReduceOp.MEAN,
                                   [tf.identity(v.value) for v in stats])
            for v, m in zip(stats, means):
                v.assign(m)

        @tf.function
        def sync_step():
            strategy.run(replica_sync)

        self.train_step, self.eval_step = train_step, eval_step
        self.sync_step = sync_step if (self.replicas > 1 and stats) else (lambda: None)

    def _distribute(self, dataset):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def _train_iterator(self, epoch, steps):
        """An iterator over the distributed training batches of ``epoch``.

        Repeated, so the dataset is known to be infinite: tf.distribute then skips
        the cross-worker "any data left?" check on every next(); the loop takes
        ``steps``. Across workers (MultiWorkerMirroredStrategy) every worker reads
        only its own shard of the epoch (examples ``i, i + N, ...``), sharded before
        decoding and augmentation, so the input work does not grow with the number
        of hosts; the examples of a global step are the same as on one machine.
        """
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return iter(self.strategy.distribute_datasets_from_function(
                lambda ctx: self.worker_dataset(ctx, epoch, steps)))
        dataset = self.data.train_dataset(self.plan.global_batch, epoch=epoch)
        return iter(self._distribute(dataset.take(steps).repeat()))

    def worker_dataset(self, ctx, epoch, steps):
        """One worker's training input (``ctx``: a ``tf.distribute.InputContext``):
        its shard of ``epoch``, in per-replica batches, ``steps`` steps, repeated."""
        per_replica = ctx.get_per_replica_batch_size(self.plan.global_batch)
        local_replicas = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        ds = self.data.train_dataset(per_replica, epoch=epoch,
                                     num_shards=ctx.num_input_pipelines,
                                     shard_index=ctx.input_pipeline_id)
        return ds.take(steps * local_replicas).repeat()

    def evaluate(self):
        """Test loss and accuracy over the whole test set."""
        loss = correct = count = 0.0
        for batch in self._distribute(self.data.test_dataset(self.plan.global_batch)):
            l, k, n = self.eval_step(batch)
            loss, correct, count = loss + float(l), correct + float(k), count + float(n)
        return loss / max(count, 1.0), correct / max(count, 1.0)

    def _lr_at(self, step):
        return float(make_schedule(self.plan.schedule)(step))

    # -- the loop ------------------------------------------------------------
    def run(self):
        """Train (or resume), evaluate, write metrics.json and export; return the metrics."""
        c, plan = self.config, self.plan
        self.build()
        start_epoch = 0
        if self.chief:
            os.makedirs(self.run_dir, exist_ok=True)
            if not self.resuming:
                self._write_config()
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_consumed()
            start_epoch = int(self.epoch_var.numpy())
        log_path = os.path.join(self.run_dir, "log.csv")
        if self.chief:
            _truncate_log(log_path, start_epoch)
        verbose = self.chief and not c.quiet          # progress bars
        say = print if self.chief else (lambda *a, **k: None)
        say(f"{self.data.name}: {self.data.train_size} training / {self.data.test_size} test images, "
            f"{self.model.name} ({self.model.count_params():,} parameters), "
            f"{strategy_name(self.strategy)} with {self.replicas} replica(s), "
            f"global batch {plan.global_batch}, lr {plan.lr:g}, {plan.epochs} epochs "
            f"({plan.total_steps} steps), precision {c.precision}.")
        if start_epoch:
            say(f"Resuming {self.run_dir} after epoch {start_epoch} "
                f"({self.manager.latest_checkpoint}).")
        say(f"Run directory: {self.run_dir}")
        writer = tf.summary.create_file_writer(os.path.join(self.run_dir, "tensorboard")) \
            if self.chief else tf.summary.create_noop_writer()
        kill_at = _kill_point()
        epoch_times, throughput, train_seconds, wait_seconds = [], [], 0.0, 0.0
        test_loss = test_acc = None
        for epoch in range(start_epoch + 1, plan.epochs + 1):
            steps = plan.steps_in_epoch(epoch)
            iterator = self._train_iterator(epoch, steps)
            bar = keras.utils.Progbar(steps, verbose=1 if verbose else 0,
                                      stateful_metrics=["loss", "accuracy"],
                                      unit_name="step") if verbose else None
            if verbose:
                print(f"Epoch {epoch}/{plan.epochs}")
            loss_sum = l2_sum = correct_sum = 0.0
            wait = 0.0
            t0 = time.perf_counter()
            for step in range(1, steps + 1):
                if kill_at == (epoch, step):
                    os.kill(os.getpid(), signal.SIGKILL)
                tw = time.perf_counter()
                batch = next(iterator)
                wait += time.perf_counter() - tw
                loss, l2, correct = (float(v) for v in self.train_step(batch))
                if not (math.isfinite(loss) and math.isfinite(l2)):
                    last = self.manager.latest_checkpoint
                    # The latest checkpoint is always the one of the previous epoch.
                    where = (f"the last good checkpoint is {last} (epoch {epoch - 1})"
                             if last else "no checkpoint was written yet")
                    raise TrainingDiverged(
                        f"the training loss became {loss + l2} at epoch {epoch}, step {step}; "
                        f"stopped without saving: {where}. Try a lower --lr "
                        f"(the run used {plan.lr:g} at batch {plan.global_batch}).")
                loss_sum += loss
                l2_sum += l2
                correct_sum += correct
                if bar is not None:
                    bar.update(step, [("loss", loss_sum / step),
                                      ("accuracy", correct_sum / (step * plan.global_batch))])
            seconds = time.perf_counter() - t0
            self.sync_step()
            test_loss, test_acc = self.evaluate()
            epoch_seconds = time.perf_counter() - t0
            epoch_times.append(epoch_seconds)
            throughput.append((steps * plan.global_batch, seconds))
            train_seconds += seconds
            wait_seconds += wait
            row = {"epoch": epoch, "steps": int(self.optimizer.iterations.numpy()),
                   "lr": f"{self._lr_at(max(0, (epoch - 1) * plan.steps_per_epoch)):.6g}",
                   "loss": f"{loss_sum / steps:.6f}", "l2_loss": f"{l2_sum / steps:.6f}",
                   "accuracy": f"{correct_sum / (steps * plan.global_batch):.6f}",
                   "test_loss": f"{test_loss:.6f}", "test_accuracy": f"{test_acc:.6f}",
                   "epoch_seconds": f"{epoch_seconds:.3f}",
                   "images_per_sec": f"{steps * plan.global_batch / seconds:.1f}",
                   "input_wait_fraction": f"{wait / seconds:.4f}"}
            if self.chief:
                _append_log(log_path, row)
                with writer.as_default(step=epoch):
                    for key in ("lr", "loss", "l2_loss", "accuracy", "test_loss", "test_accuracy",
                                "images_per_sec", "input_wait_fraction"):
                        _scalar(key, float(row[key]), epoch)
                    writer.flush()
            self.epoch_var.assign(epoch)
            self.manager.save(checkpoint_number=epoch)
            recent = epoch_times[1:] or epoch_times   # the first epoch also compiles
            remaining = (plan.epochs - epoch) * (sum(recent) / len(recent))
            say(f"epoch {epoch}/{plan.epochs}: loss {row['loss']} - accuracy {row['accuracy']} - "
                f"test_accuracy {row['test_accuracy']} - {_fmt_seconds(epoch_seconds)} - "
                f"{row['images_per_sec']} img/s - input wait {100 * wait / seconds:.1f}% - "
                f"run ETA {_fmt_seconds(remaining)}")
        if test_acc is None:   # nothing left to train (the run had finished): evaluate
            test_loss, test_acc = self.evaluate()
        metrics = {
            "test_accuracy": test_acc, "test_loss": test_loss,
            "epochs_completed": int(self.epoch_var.numpy()), "epochs": plan.epochs,
            "steps_completed": int(self.optimizer.iterations.numpy()),
            "replicas": self.replicas, "strategy": strategy_name(self.strategy),
            "global_batch": plan.global_batch, "precision": c.precision,
            # Steady state: the first epoch of a process also traces and compiles the step.
            "train_images_per_sec": _throughput(throughput),
            "input_wait_seconds": wait_seconds,
            "input_wait_fraction": wait_seconds / train_seconds if train_seconds else None,
            "train_seconds_this_process": train_seconds,
            "resumed_from_epoch": start_epoch, "skipped_files": int(self.data.skipped_files),
            "dataset": self.data.name, "model": self.model.name,
        }
        if self.chief:
            finished_before = start_epoch == plan.epochs
            if c.no_export:
                metrics["export_dir"] = None
            elif finished_before and os.path.exists(os.path.join(self.export_dir, "metadata.json")):
                metrics["export_dir"] = self.export_dir    # exported when the run finished
            else:
                metrics["export_dir"] = self.export()
            _write_json(os.path.join(self.run_dir, "metrics.json"), metrics)
            say(f"Metrics: {os.path.join(self.run_dir, 'metrics.json')}")
        return metrics

    def float32_model(self):
        """A float32 copy of the trained model outside any strategy scope (for export)."""
        copy = build_model(self.builder, "float32")
        copy.set_weights([np.asarray(w) for w in self.model.get_weights()])
        return copy

    def export(self):
        """Export the model with ``keras_resnet.export.export_model``; return its directory."""
        from keras_resnet import export as export_lib

        c = self.config
        metrics = {"test_accuracy": None}
        log_path = os.path.join(self.run_dir, "log.csv")
        if os.path.exists(log_path):
            with open(log_path, newline="") as f:
                rows = list(csv.DictReader(f))
            if rows:
                metrics = {"test_accuracy": float(rows[-1]["test_accuracy"]),
                           "test_loss": float(rows[-1]["test_loss"]),
                           "epochs_completed": int(rows[-1]["epoch"])}
        metadata = {"dataset": self.data.name,
                    "builder": {"name": "ResNet", "kwargs": self.builder},
                    "metrics": metrics, "run_dir": os.path.abspath(self.run_dir),
                    "training": {"recipe": c.recipe, "precision": c.precision,
                                 "global_batch": self.plan.global_batch, "lr": self.plan.lr,
                                 "epochs": self.plan.epochs, "seed": c.seed}}
        overwrite = c.export is None   # the default path belongs to this run
        return export_lib.export_model(self.float32_model(), self.export_dir,
                                       preprocessing=self.data.preprocessing,
                                       class_names=list(self.data.class_names),
                                       metadata=metadata, overwrite=overwrite)


def train(config, *, strategy=None, data=None):
    """Run a training configuration to the end; return the metrics dict.

    Args:
        config: :class:`TrainConfig`.
        strategy: a ``tf.distribute.Strategy`` or None (:func:`make_strategy`).
        data: a ``keras_resnet.data.InputData`` or None (loaded from the config).

    Raises:
        ConfigError: bad settings (nothing is written).
        TrainingDiverged: NaN/inf loss (the last good checkpoint is kept).
    """
    return Trainer(config, strategy=strategy, data=data).run()


# ---------------------------------------------------------------------------
# Command line.


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: ...)`` unless the help text already names the default."""

    def _get_help_string(self, action):
        if "default" in (action.help or ""):
            return action.help
        if action.default is None:
            return f"{action.help} (default: none)"
        if action.default is False:
            return f"{action.help} (default: off)"
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump), exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(recipe):
    """The argparse parser of ``recipes/<recipe>.py``; every flag shows its default."""
    ref = REFERENCE_BATCH[recipe]
    if recipe == "cifar10":
        description = ("Train a CIFAR ResNet (He et al. 2015, sec. 4.2) with the paper's recipe: "
                       "SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1 divided by 10 at "
                       "32k and 48k iterations, 64k iterations, pad-4 crop + flip. "
                       "`--dataset digits` trains on scikit-learn's bundled digits (no download).")
        datasets = CIFAR_DATASETS
    else:
        description = ("Train an ImageNet ResNet (He et al. 2015, Goyal et al. 2017): SGD momentum "
                       "0.9, weight decay 1e-4, batch 256, lr 0.1 x batch/256, 90 epochs divided "
                       "by 10 at 30/60/80 (or cosine), 5 warm-up epochs above batch 256.")
        datasets = IMAGENET_DATASETS
    p = _Parser(prog=f"recipes/{recipe}.py", description=description,
                                formatter_class=_HelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--dataset", default=None,
                   help=f"one of {', '.join(datasets)} (default: {datasets[0]})")
    d.add_argument("--data-dir", default=None,
                   help="train on image folders DIR/train/<class>/ and DIR/val/<class>/ "
                        "instead of --dataset")
    if recipe == "cifar10":
        d.add_argument("--holdout", action="store_true",
                       help="evaluate on 10%% of the training images held out (CIFAR-10: the paper's "
                            "45k/5k split) instead of the test set")
    d.add_argument("--image-size", type=int, default=None,
                   help="input size for --dataset synthetic and --data-dir "
                        f"(default: {32 if recipe == 'cifar10' else 224})")
    m = p.add_argument_group("model (keras_resnet.ResNet)")
    m.add_argument("--depth", type=int, default=None,
                   help=f"network depth (default: {20 if recipe == 'cifar10' else 50})")
    m.add_argument("--preact", action="store_true", help="full pre-activation units (He et al. 2016)")
    m.add_argument("--width", type=float, default=1.0, help="widening factor k of every stage")
    m.add_argument("--shortcut", choices=("A", "B", "C"), default=None,
                   help="shortcut option (default: A for CIFAR basic nets, else B)")
    m.add_argument("--plain", action="store_true", help="the plain twin: the same layers, no shortcuts")
    m.add_argument("--drop-path-rate", type=float, default=0.0,
                   help="stochastic depth, linear decay over the blocks")
    m.add_argument("--zero-init", choices=ZERO_INIT, default="auto",
                   help=f"zero-initialise the last BatchNorm gamma of each block; auto: when "
                        f"the global batch is above {ref} (Goyal et al. 2017)")
    t = p.add_argument_group("optimisation")
    length = p.add_mutually_exclusive_group()
    if recipe == "cifar10":
        length.add_argument("--epochs", type=int, default=None,
                            help="training epochs (default: 64k iterations of batch 128, "
                                 "i.e. --steps 64000 x 128 / batch; digits: "
                                 f"{DIGITS_DEFAULTS['epochs']} epochs)")
        length.add_argument("--steps", type=int, default=None,
                            help="training iterations instead of --epochs (default: 64000 at batch 128)")
    else:
        length.add_argument("--epochs", type=int, default=None, help="training epochs (default: 90)")
        length.add_argument("--steps", type=int, default=None,
                            help="training iterations instead of --epochs")
    t.add_argument("--batch-size", type=int, default=None,
                   help=f"global batch, split over all replicas (default: {ref}"
                        + (f"; digits: {DIGITS_DEFAULTS['batch_size']})" if recipe == "cifar10" else ")"))
    t.add_argument("--lr", type=float, default=None,
                   help=f"learning rate at batch {ref}; the run uses lr x batch/{ref} "
                        f"(default: 0.1)")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    t.add_argument("--weight-decay", type=float, default=1e-4,
                   help="L2 penalty weight_decay/2 x sum(w^2) over conv and dense kernels, "
                        "added to the loss (the papers' SGD weight decay)")
    if recipe == "cifar10":
        t.add_argument("--schedule", choices=SCHEDULES, default=None,
                       help="step: lr/10 at 50%% and 75%% of the run (32k, 48k of 64k); "
                            "cosine: half-cosine to 0 (default: step; digits: "
                            f"{DIGITS_DEFAULTS['schedule']}). Depth >= 110 warms up at lr/10 "
                            "for 400 iterations of batch 128")
    else:
        t.add_argument("--schedule", choices=SCHEDULES, default=None,
                       help="step: lr/10 at epochs 30, 60, 80 of 90 (scaled to --epochs); "
                            "cosine: half-cosine to 0 (default: step)")
        t.add_argument("--warmup-epochs", type=float, default=None,
                       help="linear warm-up from lr to lr x batch/256 (default: 5 when the "
                            "batch is above 256, else 0)")
    t.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing epsilon")
    r = p.add_argument_group("hardware and reproducibility")
    r.add_argument("--gpus", type=int, default=None,
                   help="MirroredStrategy over N GPUs (per worker under TF_CONFIG); 0: CPU "
                        "(default: 1 GPU if present, else the CPU)")
    r.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="mixed_float16 uses loss scaling, mixed_bfloat16 none; the classifier "
                        "and the loss stay float32")
    r.add_argument("--xla", action="store_true", help="XLA-compile the forward and backward pass")
    r.add_argument("--seed", type=int, default=0,
                   help="seed of initialisation, data order and augmentation")
    r.add_argument("--nondeterministic", action="store_true",
                   help="allow nondeterministic (faster) ops; without it TF op determinism is on")
    o = p.add_argument_group("output")
    o.add_argument("--run-dir", default=None,
                   help="run directory; rerunning with the same one resumes it "
                        "(default: runs/<dataset>_<model>_<time>)")
    o.add_argument("--export", default=None,
                   help="export directory (default: saved_models/<run-name>)")
    o.add_argument("--no-export", action="store_true", help="do not export the trained model")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def config_from_args(recipe, argv=None):
    """Parse ``argv`` into a :class:`TrainConfig` (argparse exits 2 on syntax errors)."""
    args = build_parser(recipe).parse_args(argv)
    values = vars(args)
    deterministic = not values.pop("nondeterministic")
    return TrainConfig(recipe=recipe, deterministic=deterministic, **values)


def _error(prog, message):
    print(f"{prog}: error: {message}", file=sys.stderr)


def main(recipe, argv=None):
    """Entry point of ``recipes/<recipe>.py``; return the process exit code.

    0: done; 1: the run diverged (NaN loss); 2: bad input (nothing written).
    """
    prog = f"recipes/{recipe}.py"
    try:
        config = config_from_args(recipe, argv)
    except SystemExit as e:   # argparse already printed its one-line error
        return int(e.code or 0)
    try:
        trainer = Trainer(config)
    except ConfigError as e:
        _error(prog, e)
        return 2
    try:
        metrics = trainer.run()
    except TrainingDiverged as e:
        _error(prog, e)
        return 1
    if trainer.chief:
        export_dir = metrics.get("export_dir")
        print(f"\nTest accuracy: {metrics['test_accuracy']:.4f} ({metrics['dataset']}, "
              f"{metrics['epochs_completed']} epochs, {metrics['train_images_per_sec']:.0f} "
              f"train images/s)" if metrics["train_images_per_sec"] else
              f"\nTest accuracy: {metrics['test_accuracy']:.4f}")
        print(f"Run directory: {trainer.run_dir}")
        if export_dir:
            print(f"Exported model: {export_dir}\n"
                  f"  Keras:       keras.saving.load_model('{export_dir}/model.keras')\n"
                  f"  SavedModel:  tf.saved_model.load('{export_dir}/saved_model')"
                  ".signatures['serving_default'](images=uint8 RGB batch)['probabilities']\n"
                  f"  TFLite:      {export_dir}/model.tflite (uint8 RGB input, preprocessing inside)\n"
                  f"  metadata:    {export_dir}/metadata.json")
            examples = write_examples(trainer.data, os.path.join(trainer.run_dir, "examples"))
            if examples:
                print(f"Classify images with it (a few test images were saved for you):\n"
                      f"  python recipes/predict.py {export_dir} "
                      f"{os.path.join(trainer.run_dir, 'examples', '*.png')}")
    return 0


def write_examples(data, directory, n=5):
    """Save ``n`` raw test images as PNG files named ``<i>_<class>.png``; return their paths.

    They let a user try ``recipes/predict.py`` on the export straight away.
    """
    from PIL import Image

    try:
        images, labels = data.raw_test_images(n)
    except Exception:  # noqa: BLE001 - examples are a convenience, never a failure
        return []
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        name = str(data.class_names[int(label)]).replace(os.sep, "_")
        path = os.path.join(directory, f"{i}_{name}.png")
        Image.fromarray(np.asarray(image, np.uint8)).save(path)
        paths.append(path)
    return paths
