"""The runner: one training recipe over a list of named configurations.

Every configuration is one ordinary training run of
:class:`keras_resnet.training.Trainer` (the same loop as the recipes) in its own
run directory ``<out_dir>/<name>/``, with the experiment's common settings, the
same data (one loaded dataset shared by all configurations of a seed: the same
split and the same order of examples) and the same seed. The results are read
back from the run directories (``config.json``, ``log.csv``, ``metrics.json``),
so a rerun that finds a configuration finished reports it without training it
again, and an interrupted configuration resumes through the trainer's own
checkpoints. The sweep runner (:class:`keras_resnet.runs.Sweep`) does the
skipping, resuming, recording and the progress display.

Errors and losses in the results are plain Python numbers: errors in percent
(training error: the running error on the augmented training batches of the
epoch, in training mode, as the papers' training curves; test error: after the
epoch, in inference mode), losses as the mean cross-entropy (``train_loss``,
without the L2 penalty, which is ``l2_loss``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time  # noqa: F401 - the progress display's clock (tests set it)

import keras

from keras_resnet.experiments.configurations import RUNNER_FIELDS, Configuration
from keras_resnet.runs import records
from keras_resnet.runs.jobs import Job
from keras_resnet.runs.progress import SweepProgress, job_cost
from keras_resnet.runs.sweep import Sweep
from keras_resnet.training.config import ConfigError, TrainConfig, resolve_config
from keras_resnet.training.rundir import check_output_dir, check_run_dir
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
    check_output_dir(out_dir, "--out")   # the run directories, tables and pictures go there
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


def collect(configuration, run_dir):
    """The results of one configuration, read from its run directory (plain data).

    Returns:
        A dict: ``name``, ``label``, ``group``, ``settings``, ``paper``,
        ``source``, ``run_dir``, ``seed``, ``depth``, ``plain``, ``epochs``
        (planned), ``status`` (``"finished"``, ``"diverged"``, ``"failed"``,
        ``"incomplete"`` or ``"not run"``), ``message``, ``history`` (a dict of
        per-epoch lists: ``epoch``, ``train_loss``, ``train_error``,
        ``test_loss``, ``test_error``, ``l2_loss``, ``lr``, ``epoch_seconds``),
        ``final`` (the last epoch's values), ``seconds`` (training and evaluation
        time summed over the epochs) and ``trainable_params`` (None if not recorded).
    """
    saved = records.read_json(os.path.join(run_dir, "config.json")) or {}
    flags = saved.get("flags", {})
    rows = records.history(run_dir)   # numbers, as the trainer logged them
    history = {k: [] for k in HISTORY_KEYS}
    for r in rows:
        history["epoch"].append(r["epoch"])
        history["train_loss"].append(r["loss"])
        history["train_error"].append(100.0 * (1.0 - r["accuracy"]))
        history["test_loss"].append(r["test_loss"])
        history["test_error"].append(100.0 * (1.0 - r["test_accuracy"]))
        history["l2_loss"].append(r["l2_loss"])
        history["lr"].append(r["lr"])
        history["epoch_seconds"].append(r["epoch_seconds"])
    status, message = records.state(run_dir, RECORD_FILE)
    record = records.read_json(os.path.join(run_dir, RECORD_FILE)) or {}
    final = {k: history[k][-1] for k in HISTORY_KEYS if k != "epoch_seconds"} if rows else {}
    return {
        "name": configuration.name, "label": configuration.label,
        "group": configuration.group, "settings": configuration.settings,
        "paper": configuration.paper, "source": configuration.source,
        "run_dir": run_dir, "seed": flags.get("seed"), "depth": flags.get("depth"),
        "plain": flags.get("plain"), "epochs": saved.get("plan", {}).get("epochs"),
        "status": status, "message": message,
        "history": history, "final": final, "seconds": sum(history["epoch_seconds"]),
        "trainable_params": record.get("trainable_params"),
    }


def is_done(run_dir):
    """True when the run directory holds a finished or diverged run (nothing left to train)."""
    return records.state(run_dir, RECORD_FILE)[0] in records.DONE


# The experiment's progress display is the sweep's (its ETA named "experiment ETA").
def ExperimentProgress(total, pending, stream=None, enabled=True):  # noqa: N802 - a class before
    """The sweep's :class:`~keras_resnet.runs.SweepProgress`, its ETA named for the experiment."""
    return SweepProgress(total, pending, stream=stream, enabled=enabled, what="experiment")


def _data_key(config):
    return (config.recipe, config.dataset, config.data_dir, config.seed, config.holdout,
            config.image_size, getattr(config, "synthetic_examples", None),
            getattr(config, "val_split", None))


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
    jobs, pending = [], []
    for c, config in resolved:
        job = Job(c.name, config, record={"label": c.label, "settings": c.settings})
        jobs.append(job)
        if is_done(config.run_dir):
            continue
        trainer = Trainer(config, data=data_for(config), strategy=strategy, verbose=False)
        pending.append((trainer.plan.epochs - records.last_epoch(config.run_dir),
                        job_cost(config)))
        del trainer
    progress = ExperimentProgress(len(resolved), pending, stream=stream, enabled=verbose)
    # The trainers print nothing (verbose=False): the experiment shows one display.
    sweep = Sweep(data=data_for, strategy=strategy, callbacks=callbacks, verbose=False,
                  progress=progress, record_file=RECORD_FILE)
    sweep.run_all(jobs)
    results = [collect(c, config.run_dir) for c, config in resolved]
    base_flags = {k: v for k, v in base.flags().items() if k not in RUNNER_FIELDS}
    return {"out_dir": out_dir, "base": base_flags, "configurations": results}
