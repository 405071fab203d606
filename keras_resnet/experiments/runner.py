"""The runner: one training recipe over a list of named configurations.

Every configuration is one ordinary training run of
:class:`keras_resnet.training.Trainer` (the same loop as the recipes) in its own
run directory ``<out_dir>/<name>/``, with the experiment's common settings, the
same data (one loaded dataset shared by all configurations of a seed: the same
split and the same order of examples) and the same seed. The results are read
back from the run directories (``config.json``, ``log.csv``, ``metrics.json``),
so a rerun that finds a configuration finished reports it without training it
again, and an interrupted configuration resumes through the trainer's own
checkpoints.

Errors and losses in the results are plain Python numbers: errors in percent
(training error: the running error on the augmented training batches of the
epoch, in training mode, as the papers' training curves; test error: after the
epoch, in inference mode), losses as the mean cross-entropy (``train_loss``,
without the L2 penalty, which is ``l2_loss``).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import sys
import time

import keras

from keras_resnet.experiments.configurations import RUNNER_FIELDS, Configuration
from keras_resnet.training.config import (ConfigError, TrainConfig, TrainingDiverged,
                                          resolve_config)
from keras_resnet.training.progress import fmt_seconds
from keras_resnet.training.rundir import check_run_dir, write_json
from keras_resnet.training.trainer import Trainer, load_data

# The runner's own record in each run directory: the configuration, its trainable
# parameters and how it ended ("finished" or "diverged"). A diverged configuration
# is reported by a rerun instead of training the same steps again (delete the run
# directory to retry it).
RECORD_FILE = "experiment.json"
HISTORY_KEYS = ("epoch", "train_loss", "train_error", "test_loss", "test_error", "l2_loss",
                "lr", "epoch_seconds")


def configure(configurations, base, out_dir):
    """The resolved :class:`TrainConfig` of every configuration (checks only, no writes).

    Args:
        configurations: a non-empty list of :class:`Configuration` with unique names.
        base: the :class:`TrainConfig` every configuration starts from.
        out_dir: str, the experiment's directory.

    Returns:
        A list of ``(configuration, resolved TrainConfig)``.

    Raises:
        ConfigError: a bad setting, or a run directory that holds a run of other settings.
        TypeError, ValueError: bad arguments.
    """
    if not isinstance(base, TrainConfig):
        raise TypeError(f"Argument `base` must be a TrainConfig; received {type(base).__name__}.")
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
        raise TypeError(f"Argument `out_dir` must be a path; received {out_dir!r}.")
    configurations = list(configurations)
    if not configurations:
        raise ValueError("Argument `configurations` is empty; expected at least one "
                         "Configuration.")
    names = set()
    for c in configurations:
        if not isinstance(c, Configuration):
            raise TypeError(f"Argument `configurations` must hold Configuration objects; "
                            f"received {type(c).__name__}.")
        if c.name in names:
            raise ValueError(f"Argument `configurations` names {c.name!r} twice; names must "
                             "be unique (each names a run directory).")
        names.add(c.name)
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError(f"--out {out_dir} exists and is not a directory.")
    resolved = []
    for c in configurations:
        settings = dict(c.settings)
        extras = {**(base.model_extras or {}), **settings.pop("model_extras", {})}
        config = dataclasses.replace(base, **settings, model_extras=extras,
                                     run_dir=os.path.join(out_dir, c.name), export=None,
                                     no_export=True, quiet=True)
        try:
            config = resolve_config(config)
        except ConfigError as e:
            raise ConfigError(f"configuration {c.name}: {e}") from None
        try:
            check_run_dir(config.run_dir, config)
        except ConfigError as e:   # in the experiment's words: --out, not --run-dir
            message = str(e).replace(f"--run-dir {config.run_dir}", f"{config.run_dir}")
            raise ConfigError(f"--out {out_dir}: configuration {c.name}: "
                              + message.replace("another --run-dir", "another --out")) from None
        resolved.append((c, config))
    return resolved


def _rows(run_dir):
    path = os.path.join(run_dir, "log.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def collect(configuration, run_dir):
    """The results of one configuration, read from its run directory (plain data).

    Returns:
        A dict: ``name``, ``label``, ``group``, ``settings``, ``paper``,
        ``source``, ``run_dir``, ``seed``, ``depth``, ``plain``, ``epochs``
        (planned), ``status`` (``"finished"``, ``"diverged"``, ``"incomplete"``
        or ``"not run"``), ``message``, ``history`` (a dict of per-epoch lists:
        ``epoch``, ``train_loss``, ``train_error``, ``test_loss``,
        ``test_error``, ``l2_loss``, ``lr``, ``epoch_seconds``), ``final`` (the
        last epoch's values), ``seconds`` (training and evaluation time summed
        over the epochs) and ``trainable_params`` (None if not recorded).
    """
    saved = _read_json(os.path.join(run_dir, "config.json")) or {}
    flags = saved.get("flags", {})
    plan = saved.get("plan", {})
    rows = _rows(run_dir)
    history = {k: [] for k in HISTORY_KEYS}
    for r in rows:
        history["epoch"].append(int(r["epoch"]))
        history["train_loss"].append(float(r["loss"]))
        history["train_error"].append(100.0 * (1.0 - float(r["accuracy"])))
        history["test_loss"].append(float(r["test_loss"]))
        history["test_error"].append(100.0 * (1.0 - float(r["test_accuracy"])))
        history["l2_loss"].append(float(r["l2_loss"]))
        history["lr"].append(float(r["lr"]))
        history["epoch_seconds"].append(float(r["epoch_seconds"]))
    epochs = plan.get("epochs")
    record = _read_json(os.path.join(run_dir, RECORD_FILE)) or {}
    metrics = _read_json(os.path.join(run_dir, "metrics.json"))
    if record.get("status") == "diverged":
        status, message = "diverged", record.get("message", "")
    elif metrics is not None and epochs is not None and rows and int(rows[-1]["epoch"]) >= epochs:
        status, message = "finished", ""
    elif saved:
        status, message = "incomplete", f"{len(rows)} of {epochs} epochs"
    else:
        status, message = "not run", ""
    final = {k: history[k][-1] for k in HISTORY_KEYS if k != "epoch_seconds"} if rows else {}
    return {
        "name": configuration.name, "label": configuration.label,
        "group": configuration.group, "settings": configuration.settings,
        "paper": configuration.paper, "source": configuration.source,
        "run_dir": run_dir, "seed": flags.get("seed"), "depth": flags.get("depth"),
        "plain": flags.get("plain"), "epochs": epochs, "status": status, "message": message,
        "history": history, "final": final, "seconds": sum(history["epoch_seconds"]),
        "trainable_params": record.get("trainable_params"),
    }


def is_done(run_dir):
    """True when the run directory holds a finished or diverged run (nothing left to train)."""
    if (_read_json(os.path.join(run_dir, RECORD_FILE)) or {}).get("status") == "diverged":
        return True
    saved = _read_json(os.path.join(run_dir, "config.json"))
    if saved is None or not os.path.exists(os.path.join(run_dir, "metrics.json")):
        return False
    rows = _rows(run_dir)
    return bool(rows) and int(rows[-1]["epoch"]) >= saved.get("plan", {}).get("epochs", 1 << 62)


def _cost(config):
    """Relative cost of one epoch of ``config`` for the ETA: its depth (layers per image)."""
    return float(config.depth) * float(config.width) ** 2


class ExperimentProgress(keras.callbacks.Callback):
    """The experiment's one progress display: configuration, epoch, ETA for the whole experiment.

    The ETA is the measured seconds per epoch per unit of cost (a configuration's
    depth x width^2, proportional to its multiply-adds for the same data) times
    the cost of the epochs left, plus the first-epoch overhead (building and
    compiling the model) measured so far for every configuration not started.
    It shows ``--`` until an epoch after a configuration's first was measured.

    Args:
        total: int, the number of configurations in the experiment.
        pending: list of ``(epochs left, cost per epoch)`` of the configurations
            that will train, in order.
        stream: where to write (default ``sys.stdout``).
        enabled: bool, False prints nothing.
    """

    def __init__(self, total, pending, stream=None, enabled=True):
        super().__init__()
        self.total = total
        self.pending = list(pending)
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self._steady = []        # (seconds, cost) of epochs after the first of a configuration
        self._overheads = []     # first-epoch seconds minus a steady epoch's
        self._first = []         # (seconds, cost) of first epochs
        self.index = 0

    def write(self, text):
        if self.enabled:
            self.stream.write(text + "\n")
            self.stream.flush()

    def start(self, index, name, run_dir, epochs, done_epochs, cost):
        """Configuration ``index`` (1-based) begins, ``done_epochs`` of ``epochs`` already done."""
        self.index, self.name, self.epochs, self.cost = index, name, epochs, cost
        self._epoch_in_process = 0
        self._last = None
        if self.pending:
            self.pending.pop(0)
        resumed = f", resuming after epoch {done_epochs}" if done_epochs else ""
        self.write(f"[{index}/{self.total}] {name}: {epochs} epochs{resumed} -> {run_dir}")

    def on_epoch_begin(self, epoch, logs=None):
        if self._last is None:
            self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        if self._epoch_in_process == 0:
            self._first.append((seconds, self.cost))
        else:
            self._steady.append((seconds, self.cost))
        self._epoch_in_process += 1
        logs = logs or {}
        left = self.epochs - (epoch + 1)
        eta = self.eta(left)
        self.write(f"[{self.index}/{self.total}] {self.name} epoch {epoch + 1}/{self.epochs}: "
                   f"loss {logs.get('loss', float('nan')):.4f} - train error "
                   f"{100 * (1 - logs.get('accuracy', float('nan'))):.2f}% - test error "
                   f"{100 * (1 - logs.get('val_accuracy', float('nan'))):.2f}% - "
                   f"{fmt_seconds(seconds)} - experiment ETA "
                   + ("--" if eta is None else fmt_seconds(eta)))

    def finished(self, status):
        """A configuration ended early (diverged): its epochs left no longer count."""
        if status != "finished" and self.enabled:
            self.write(f"[{self.index}/{self.total}] {self.name}: {status}")

    def eta(self, left_in_current):
        """Seconds left for the experiment, or None before anything was measured."""
        if self._steady:
            rate = sum(s for s, _ in self._steady) / sum(c for _, c in self._steady)
            overheads = [max(0.0, s - rate * c) for s, c in self._first]
            overhead = sum(overheads) / len(overheads) if overheads else 0.0
        elif self._first and left_in_current == 0 and all(e <= 1 for e, _ in self.pending):
            # Only first epochs are left: they cost what first epochs cost.
            rate = sum(s for s, _ in self._first) / sum(c for _, c in self._first)
            overhead = 0.0
        else:   # a first epoch includes building and compiling: wait for a steady one
            return None
        total = left_in_current * self.cost * rate
        for epochs, cost in self.pending:
            total += epochs * cost * rate + overhead
        return total


def _data_key(config):
    return (config.recipe, config.dataset, config.data_dir, config.seed, config.holdout,
            config.image_size, getattr(config, "synthetic_examples", None))


def run_experiment(configurations, base, out_dir, *, data=None, strategy=None, callbacks=None,
                   verbose=True, stream=None):
    """Train every configuration with the same recipe, data and seed; return the results.

    Args:
        configurations: a list of :class:`Configuration` (unique names).
        base: the :class:`~keras_resnet.training.TrainConfig` they share (recipe,
            dataset, epochs, batch size, learning rate, seed, hardware ...);
            ``run_dir``, ``export``, ``no_export`` and ``quiet`` are set per
            configuration (``<out_dir>/<name>``, no export).
        out_dir: str, the experiment's directory (created when the first
            configuration trains).
        data: a ``keras_resnet.data.InputData`` shared by every configuration, or
            None: loaded once per seed (the data's seed fixes the split and the
            order of the examples).
        strategy: a ``tf.distribute.Strategy`` for every configuration, or None
            (one from ``base.gpus``, TensorFlow backend).
        callbacks: ``keras.callbacks.Callback`` objects given to every run.
        verbose: bool, show the progress display.
        stream: where the progress goes (default ``sys.stdout``). The trainer's own
            messages are not shown (the run directories hold everything).

    Returns:
        A dict: ``out_dir``, ``base`` (the common settings, as ``config.json``
        writes them) and ``configurations`` (one :func:`collect` dict each, in order).

    Raises:
        ConfigError: bad settings or an out_dir of other settings (checked for
            every configuration before anything is trained or written).
        RunDirError: a run directory could not be written.

    Every configuration is checked (settings, builder arguments, run directory)
    before the first one trains. Configurations already finished in ``out_dir``
    are read back, not retrained; an unfinished one resumes from its checkpoint.
    A configuration whose loss becomes NaN/inf is recorded as ``"diverged"`` (with
    its epochs so far) and the experiment goes on.

    Example:

    >>> from keras_resnet.experiments import Configuration, run_experiment
    >>> from keras_resnet.training import TrainConfig
    >>> results = run_experiment(
    ...     [Configuration("plain-8", {"depth": 8, "plain": True}),
    ...      Configuration("resnet-8", {"depth": 8})],
    ...     TrainConfig(dataset="digits", epochs=1, batch_size=128),
    ...     getfixture("tmp_path") / "exp", verbose=False)
    >>> [(r["name"], r["status"], len(r["history"]["train_error"]))
    ...  for r in results["configurations"]]
    [('plain-8', 'finished', 1), ('resnet-8', 'finished', 1)]
    """
    out_dir = os.fspath(out_dir)
    resolved = configure(configurations, base, out_dir)
    stream = stream or sys.stdout
    cache = {}

    def data_for(config):
        if data is not None:
            return data
        key = _data_key(config)
        if key not in cache:
            cache.clear()            # one dataset in memory at a time
            cache[key] = load_data(config, keras.backend.backend())
        return cache[key]

    if strategy is None and keras.backend.backend() == "tensorflow":
        from keras_resnet.training.engine_tf import make_strategy

        strategy = make_strategy(base.gpus)
    # Check every configuration (builder arguments, batch against the data ...)
    # before the first trains: constructing a Trainer checks and writes nothing.
    todo = []
    for c, config in resolved:
        if is_done(config.run_dir):
            continue
        trainer = Trainer(config, data=data_for(config), strategy=strategy, verbose=False)
        todo.append((c, config, trainer.plan.epochs - _last_epoch(config.run_dir)))
        del trainer
    progress = ExperimentProgress(len(resolved), [(left, _cost(cfg)) for _, cfg, left in todo],
                                  stream=stream, enabled=verbose)
    training = {c.name for c, _, _ in todo}
    for index, (c, config) in enumerate(resolved, 1):
        if c.name not in training:
            if verbose:
                previous = collect(c, config.run_dir)
                progress.write(f"[{index}/{len(resolved)}] {c.name}: {previous['status']} in "
                               f"an earlier run ({config.run_dir}), not retrained")
            continue
        trainer = Trainer(config, data=data_for(config), strategy=strategy,
                          callbacks=[progress, *(callbacks or [])], verbose=False)
        progress.start(index, c.name, config.run_dir, trainer.plan.epochs,
                       _last_epoch(config.run_dir), _cost(config))
        status, message = "finished", ""
        try:
            # The trainer announces its run on stdout; the experiment shows one display.
            with contextlib.redirect_stdout(io.StringIO()), _quiet_retracing():
                trainer.run()
        except TrainingDiverged as e:
            status, message = "diverged", str(e)
        else:   # "finished", or "incomplete" when a callback stopped the run early
            status = collect(c, config.run_dir)["status"]
        _write_record(c, trainer, status, message)
        progress.finished(status)
        del trainer
        keras.backend.clear_session()
    results = [collect(c, config.run_dir) for c, config in resolved]
    base_flags = {k: v for k, v in base.flags().items() if k not in RUNNER_FIELDS}
    return {"out_dir": out_dir, "base": base_flags, "configurations": results}


@contextlib.contextmanager
def _quiet_retracing():
    """Silence TensorFlow's "N out of the last M calls ... triggered tf.function retracing".

    Every configuration is a new model, so its steps are traced anew: expected
    here, and the warning would suggest a problem that is not there. Other
    warnings still show; the logger's level is restored afterwards.
    """
    import logging

    logger = logging.getLogger("tensorflow")
    level = logger.level
    if keras.backend.backend() == "tensorflow":
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _last_epoch(run_dir):
    rows = _rows(run_dir)
    return int(rows[-1]["epoch"]) if rows else 0


def _write_record(configuration, trainer, status, message):
    """Write the runner's record (RECORD_FILE) into the configuration's run directory."""
    import math

    params = int(sum(math.prod(v.shape) for v in trainer.model.trainable_variables))
    write_json(os.path.join(trainer.run_dir, RECORD_FILE), {
        "name": configuration.name, "label": configuration.label,
        "settings": configuration.settings, "trainable_params": params, "status": status,
        "message": message})
