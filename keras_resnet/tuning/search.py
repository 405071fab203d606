"""The search recipe: a KerasTuner search whose every trial is a run of the package's trainer.

:func:`run_search` (``recipes/tune.py``) searches a
:class:`~keras_resnet.tuning.ResNetHyperModel` space with KerasTuner's random,
Bayesian or Hyperband oracle. :class:`SearchTuner` trains each trial with
:class:`keras_resnet.training.Trainer`, exactly as ``recipes/cifar10.py`` would
(strategy, precision, schedule, augmentation, checkpoints, run directory), so
there is no second training loop. A search directory ``DIR`` holds::

    DIR/search.json         the settings (a rerun with other settings is refused)
    DIR/tuner/              KerasTuner's oracle and trial records
    DIR/runs/trial_<id>/    each trial's run directory (config, log.csv, checkpoints)
    DIR/errors/trial_<id>.txt   the error and traceback of a failed trial
    DIR/logs/trial_<id>.txt     the output of each trial's process
    DIR/results.csv, DIR/results.png

Rerunning with the same ``DIR`` resumes: finished trials are not rerun, and a
trial that was killed midway is rerun in its run directory, where the trainer
resumes it from its last completed epoch.

Under Hyperband a promoted trial trains from scratch for its larger epoch
budget (KerasTuner's own tuner continues from the previous round's weights):
each trial's learning-rate schedule then spans its whole run, where a
continuation would restart from a schedule that had already decayed.

Each trial trains in a process of its own (:mod:`keras_resnet.tuning.trial`):
TensorFlow keeps the graphs a process traced after ``clear_session()``, so a
long search in one process grows by every trial's graphs, and a process per
trial also returns whatever an out-of-memory error or a crash leaves behind.
The search's own memory stays flat. With ``in_process=True`` (``--in-process``)
trials train in the search's process, sharing its data and strategy, with the
Keras session cleared and garbage collected between them: faster to start,
but memory grows by the graphs of every trial. Any exception in a trial (out
of memory, a NaN loss, a killed process, ...) marks that trial failed with its
error and the search goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys

import keras

from keras_resnet.training.config import ConfigError
from keras_resnet.training.rundir import check_output_dir, write_json
from keras_resnet.training.trainer import Trainer, load_data
from keras_resnet.tuning import results as R
from keras_resnet.tuning.config import (check_search_dir, distributed_role, flag_message,
                                        resolve_search)
from keras_resnet.tuning.hypermodel import ResNetHyperModel
from keras_resnet.tuning.oracles import SearchFailed, all_failed
from keras_resnet.tuning.trial import (OBJECTIVE, SearchTuner, TrialFailed,  # noqa: F401
                                       make_oracle, planned_epochs, resident_bytes)


@contextlib.contextmanager
def _quiet_keras_tuner():
    # KerasTuner prints the traceback of every failed trial; the search prints one
    # line per trial instead and keeps the traceback in DIR/errors/. KerasTuner has
    # no public switch for this: its module flag is set when it exists.
    try:
        from keras_tuner.src import config as kt_config
    except ImportError:
        yield
        return
    previous = getattr(kt_config, "DEBUG", None)
    kt_config.DEBUG = False
    try:
        yield
    finally:
        kt_config.DEBUG = previous


@dataclasses.dataclass
class SearchResult:
    """What :func:`run_search` returns (None on a distributed worker)."""

    rows: list
    best: dict | None
    best_call: str | None
    directory: str
    final: dict | None = None
    stop_reason: str | None = None   # why the search stopped early (consecutive failures)


def _say(out, text=""):
    print(text, file=out, flush=True)


def run_search(config, *, callbacks=None, out=None):
    """Run (or resume) the search of ``config``; write results.csv and results.png.

    Args:
        config: a :class:`~keras_resnet.tuning.config.SearchConfig`.
        callbacks: ``keras.callbacks.Callback`` objects given to every trial's trainer.
        out: where to print (default ``sys.stdout``).

    Returns:
        A :class:`SearchResult` (None on a distributed worker).

    Raises:
        ConfigError: bad settings (nothing is written).
    """
    out = out or sys.stdout
    role = distributed_role()
    config, _ = resolve_search(config)
    # Every output location can be written before anything is loaded or trained.
    check_output_dir(config.directory, "--dir")
    if config.final_epochs and config.train.export is not None:
        check_output_dir(config.train.export, "--export")
    if callbacks and not config.in_process:
        raise ValueError("Argument `callbacks` needs `SearchConfig(in_process=True)`: Keras "
                         "callbacks are Python objects of this process, and by default every "
                         "trial trains in a process of its own.")
    # Loaded once: the data are checked (a bad --data-dir fails here, before anything is
    # written) and give the input shape and classes; trials in process share them.
    data = load_data(config.train, keras.backend.backend())
    shape, classes = data.input_shape(), data.num_classes
    config, _ = resolve_search(config, shape, classes)
    try:
        hypermodel = ResNetHyperModel("cifar", shape, classes, compile=False,
                                      **config.space_kwargs())
    except (ValueError, TypeError) as e:
        raise ConfigError(flag_message(e)) from None
    resuming = check_search_dir(config.directory, config, distributed=role is not None)
    strategy = None
    if not config.in_process:
        data = None   # each trial's process loads its own
    elif role != "chief" and keras.backend.backend() == "tensorflow":
        from keras_resnet.training.engine_tf import make_strategy

        strategy = make_strategy(config.train.gpus)
    # Everything is checked: from here on the search writes.
    os.makedirs(config.directory, exist_ok=True)
    if role != "worker" and not resuming:
        write_json(os.path.join(config.directory, "search.json"),
                   {"flags": config.flags(), "command": sys.argv})
    with _quiet_keras_tuner():
        tuner = SearchTuner(config, hypermodel, data=data, strategy=strategy,
                            callbacks=callbacks, out=out)
        space = hypermodel.space
        if role is None:
            ended = [r for r in tuner.rows() if r["status"] != "running"]
            if ended:
                _say(out, f"Resuming the search in {config.directory}: {R.summary(ended)}.")
        _say(out, f"Searching {len(space.depths)} depths ({space.depths[0]}..{space.depths[-1]})"
                  f", widths {_choice_text(space.widths)}, preact {_choice_text(space.preact)}"
                  f" with {config.tuner} search"
                  + (f", {config.max_trials} trials" if config.tuner != "hyperband" else "")
                  + f", {config.epochs} epoch{'s' if config.epochs > 1 else ''} each"
                  + (" (the most)" if config.tuner == "hyperband" else "")
                  + _budget_text(space) + f"; results in {config.directory}")
        if role == "chief":
            _say(out, f"Chief: serving the oracle at {os.environ['KERASTUNER_ORACLE_IP']}:"
                      f"{os.environ['KERASTUNER_ORACLE_PORT']}; the workers train the trials.")
        try:
            tuner.search(verbose=0)
        except SearchFailed:
            pass   # finish() writes the records and the picture, then raises it
    if role == "worker":
        return None
    return finish(config, tuner, data, strategy, out)


def _choice_text(choice):
    from keras_resnet.tuning.space import Range, _number

    if isinstance(choice, Range):
        return f"{_number(choice.low)}..{_number(choice.high)}"
    return "/".join(_number(c) if not isinstance(c, bool) else ("on" if c else "off")
                    for c in choice)


def _budget_text(space):
    parts = []
    if space.max_params:
        parts.append(f"max {R.human(space.max_params)} params")
    if space.max_macs:
        parts.append(f"max {R.human(space.max_macs)} MACs")
    return (", " + ", ".join(parts)) if parts else ""


def finish(config, tuner, data, strategy, out):
    """Write results.csv and results.png, print the table and the best call, retrain the best."""
    rows = tuner.rows()
    directory = config.directory
    stop_reason = getattr(tuner.oracle, "stop_reason", None)
    R.write_csv(os.path.join(directory, "results.csv"), rows)
    R.plot(os.path.join(directory, "results.png"), rows, max_macs=tuner.space.max_macs)
    _say(out, f"\n{R.summary(rows)}. Wrote {os.path.join(directory, 'results.csv')} and "
              f"{os.path.join(directory, 'results.png')}.")
    ranked = R.ranked(rows)
    if not ranked:
        failed = [r for r in rows if r["status"] == R.FAILED]
        if failed:   # nothing trained: a search that "succeeds" here would mislead
            raise SearchFailed(all_failed(len(failed), failed[0]["error"]))
        _say(out, "No trial completed: nothing to rank.")
        return SearchResult(rows, None, None, directory, stop_reason=stop_reason)
    _say(out, R.ranked_table(rows))
    best = ranked[0]
    trial = tuner.oracle.get_trial(best["trial"])
    call = tuner.hypermodel.best_call(trial.hyperparameters)
    _say(out, f"\nBest (trial {best['trial']}, validation accuracy {best['val_accuracy']:.4f}, "
              f"lr {best['learning_rate']:g}, weight decay {best['weight_decay']:g}):\n  {call}")
    result = SearchResult(rows, best, call, directory, stop_reason=stop_reason)
    if config.final_epochs and stop_reason is None:
        result.final = retrain(config, tuner, trial, data, strategy, out)
    return result


def retrain(config, tuner, trial, data, strategy, out):
    """Retrain ``trial``'s configuration for ``config.final_epochs`` and export it."""
    from keras_resnet.training.report import report

    base = os.path.basename(os.path.normpath(config.directory))
    final = dataclasses.replace(
        tuner.trial_config(trial), epochs=config.final_epochs,
        run_dir=os.path.join(config.directory, f"final_trial_{trial.trial_id}"),
        export=config.train.export or (None if config.train.no_export else
                                       os.path.join("saved_models", f"{base}_best")),
        no_export=config.train.no_export, quiet=config.train.quiet)
    _say(out, f"\nRetraining trial {trial.trial_id}'s configuration for "
              f"{config.final_epochs} epochs:")
    trainer = Trainer(final, data=data, strategy=strategy)
    metrics = trainer.run()
    report(trainer, metrics)
    return metrics
