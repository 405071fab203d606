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
import gc
import io
import json
import os
import subprocess
import sys
import time

import keras
import keras_tuner

from keras_resnet.training.config import ConfigError
from keras_resnet.training.progress import fmt_seconds
from keras_resnet.training.rundir import RunLog, write_json
from keras_resnet.training.trainer import Trainer, load_data
from keras_resnet.tuning import results as R
from keras_resnet.tuning.config import (check_search_dir, distributed_role, flag_message,
                                        resolve_search)
from keras_resnet.tuning.hypermodel import OverBudget, ResNetHyperModel
from keras_resnet.tuning.oracles import budgeted
from keras_resnet.tuning.trial import error_summary, write_error

OBJECTIVE = "val_accuracy"


class TrialFailed(RuntimeError):
    """A trial's process failed; the message is its error's summary."""


def resident_bytes():
    """This process's resident memory in bytes (Linux ``/proc``; else psutil; else None)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return psutil.Process().memory_info().rss
        except Exception:  # noqa: BLE001 - memory is shown when it can be read
            return None


def make_oracle(config):
    """KerasTuner's oracle for ``config.tuner``, maximising validation accuracy."""
    common = {"objective": keras_tuner.Objective(OBJECTIVE, "max"),
              # KerasTuner draws a random seed for seed=0 (falsy), hence the + 1.
              "seed": config.train.seed + 1}
    if config.tuner == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=config.max_trials, **common)
    if config.tuner == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(max_trials=config.max_trials,
                                                              **common)
    return keras_tuner.oracles.HyperbandOracle(max_epochs=config.epochs, factor=config.factor,
                                               **common)


def planned_epochs(tuner, oracle, max_trials, epochs):
    """Epochs a search trains in all: ``max_trials x epochs``, or Hyperband's brackets.

    Hyperband's trials each train from scratch here, so a bracket costs the sum
    of its rounds' sizes times their epochs (the sizes and epochs are the
    oracle's own, KerasTuner 1.4); None when the oracle does not say.
    """
    if tuner != "hyperband":
        return max_trials * epochs
    try:
        brackets = oracle._get_num_brackets()
        one = sum(oracle._get_size(b, r) * oracle._get_epochs(b, r)
                  for b in range(brackets) for r in range(b + 1))
    except AttributeError:
        return None
    return one * oracle.hyperband_iterations


@contextlib.contextmanager
def _quiet_keras_tuner():
    # KerasTuner prints the traceback of every failed trial (its DEBUG flag, on by
    # default and not public). The search prints one line per trial instead and
    # keeps the traceback in DIR/errors/.
    from keras_tuner.src import config as kt_config

    previous = kt_config.DEBUG
    kt_config.DEBUG = False
    try:
        yield
    finally:
        kt_config.DEBUG = previous


class SearchTuner(keras_tuner.Tuner):
    """A KerasTuner tuner that trains every trial with :class:`keras_resnet.training.Trainer`.

    Args:
        config: a resolved :class:`~keras_resnet.tuning.config.SearchConfig`.
        hypermodel: the :class:`~keras_resnet.tuning.ResNetHyperModel` of the space.
        data: the ``keras_resnet.data.InputData`` every trial trains on (in process).
        strategy: a ``tf.distribute.Strategy`` or None (the trainer's default; in process).
        callbacks: ``keras.callbacks.Callback`` objects given to every trial's trainer
            (in process).
        out: where the trial lines go (default ``sys.stdout``).

    Rejected candidates (over budget) are recorded and never trained, and do not
    count against ``max_trials`` (:func:`~keras_resnet.tuning.budgeted`).
    """

    def __init__(self, config, hypermodel, *, data=None, strategy=None, callbacks=None,
                 out=None):
        self.config, self.data, self.strategy = config, data, strategy
        self.callbacks = list(callbacks or [])
        self.out = out or sys.stdout
        self._done = []          # (epochs, wall seconds) of the trials this process trained
        self._last = {}
        with contextlib.redirect_stdout(io.StringIO()):   # KerasTuner's "Reloading Tuner from"
            super().__init__(oracle=make_oracle(config), hypermodel=hypermodel,
                             directory=config.directory, project_name="tuner", overwrite=False)
        budgeted(self)

    @property
    def space(self):
        return self.hypermodel.space

    def _populate_initial_space(self):
        # KerasTuner builds the hypermodel's defaults to discover conditional
        # hyperparameters; this space has none, so declaring it builds nothing.
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def trial_config(self, trial):
        """The :class:`~keras_resnet.training.TrainConfig` of one trial."""
        values = trial.hyperparameters.values
        kwargs = self.space.builder_kwargs(values)
        lr, weight_decay = self.space.training_values(values)
        extras = dict(self.config.train.model_extras)
        if "block" in kwargs:
            extras["block"] = kwargs["block"]
        return dataclasses.replace(
            self.config.train, depth=kwargs["depth"], preact=kwargs["preact"],
            width=float(kwargs["width"]), shortcut=kwargs.get("shortcut"), model_extras=extras,
            lr=lr, weight_decay=weight_decay,
            epochs=int(values.get("tuner/epochs", self.config.epochs)), steps=None,
            run_dir=self.run_dir(trial.trial_id), export=None, no_export=True,
            quiet=not self.config.verbose)

    def run_dir(self, trial_id):
        return os.path.join(self.config.directory, "runs", f"trial_{trial_id}")

    def error_path(self, trial_id):
        return os.path.join(self.config.directory, "errors", f"trial_{trial_id}.txt")

    def run_trial(self, trial, *args, **kwargs):
        """Train one trial with the package's trainer; return its metrics for the oracle."""
        self._last = {"trial_id": trial.trial_id}
        reason = self.hypermodel.rejection(trial.hyperparameters)
        if reason is not None:
            raise OverBudget(reason)
        config = self.trial_config(trial)
        log = RunLog(os.path.join(config.run_dir, "log.csv"))
        before, start = len(log.rows()), time.monotonic()
        if self.config.in_process:
            self._train_here(trial, config)
        else:
            self._train_in_subprocess(trial, config)
        history = log.rows()
        if not history:
            raise RuntimeError(f"trial {trial.trial_id} completed no epoch")
        accuracy = max(float(r["test_accuracy"]) for r in history)
        seconds = sum(float(r["epoch_seconds"]) for r in history)
        # The pace of the search: wall time per epoch, a trial's start-up included.
        self._done.append((len(history) - before, time.monotonic() - start))
        self._last.update({OBJECTIVE: accuracy, "train_seconds": seconds})
        return {OBJECTIVE: accuracy, "train_seconds": seconds}

    def _train_here(self, trial, config):
        """Train in this process; the Keras session is cleared and collected afterwards."""
        trainer = None
        try:
            # Without --verbose, the trainer's own lines (data, model, run directory)
            # give way to the one line per trial that on_trial_end prints.
            sink = contextlib.nullcontext() if self.config.verbose else \
                contextlib.redirect_stdout(io.StringIO())
            with sink:
                trainer = Trainer(config, data=self.data, strategy=self.strategy,
                                  callbacks=self.callbacks, verbose=self.config.verbose)
                trainer.run()
        except Exception as e:
            self._last["error"] = error_summary(e)
            write_error(self.error_path(trial.trial_id), e)
            raise
        finally:
            trainer = None
            keras.backend.clear_session()
            gc.collect()

    def _train_in_subprocess(self, trial, config):
        """Train in a new process (:mod:`keras_resnet.tuning.trial`); raise if it fails.

        Its output goes to ``DIR/logs/trial_<id>.txt`` (the terminal with
        ``verbose``); its peak resident memory is kept for the trial's line.
        """
        error_path = self.error_path(trial.trial_id)
        log_path = os.path.join(self.config.directory, "logs", f"trial_{trial.trial_id}.txt")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        os.makedirs(os.path.dirname(error_path), exist_ok=True)
        if os.path.exists(error_path):
            os.remove(error_path)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
        env["KERAS_BACKEND"] = keras.backend.backend()
        payload = json.dumps({"config": config.flags(), "verbose": self.config.verbose,
                              "error_path": error_path})
        with open(log_path, "ab") as log:
            output = None if self.config.verbose else log
            proc = subprocess.Popen([sys.executable, "-m", "keras_resnet.tuning.trial",
                                     str(os.getpid())],
                                    stdin=subprocess.PIPE, stdout=output,
                                    stderr=subprocess.STDOUT if output else None, env=env)
            try:
                proc.stdin.write(payload.encode())
                proc.stdin.close()
                # os.wait4 (not Popen.wait) reports this child's own peak memory.
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        self._last["peak_bytes"] = usage.ru_maxrss * 1024   # kilobytes on Linux
        if proc.returncode == 0:
            return
        if os.path.exists(error_path):   # the trial's own error, written by its process
            with open(error_path) as f:
                summary = f.readline().strip()
        else:
            if proc.returncode < 0:
                summary = (f"the trial's process was killed by signal {-proc.returncode}"
                           + (" (out of memory?)" if proc.returncode == -9 else ""))
            else:
                summary = f"the trial's process exited with code {proc.returncode}"
            with open(error_path, "w") as f:
                f.write(f"{summary}\n\nIts output: {log_path}\n")
        self._last["error"] = summary
        raise TrialFailed(summary)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)   # the oracle records the trial; the tuner saves its state
        local = isinstance(self.oracle, keras_tuner.Oracle)
        last = self._last if self._last.get("trial_id") == trial.trial_id else {}
        row = R.trial_row(trial, self.space, epochs=self.config.epochs, error=last.get("error"))
        if row["status"] == R.COMPLETED and row["val_accuracy"] is None:
            # On a worker the metrics went to the chief's oracle: take this run's.
            row.update({k: last.get(k) for k in (OBJECTIVE, "train_seconds")})
        if local:
            R.write_csv(os.path.join(self.config.directory, "results.csv"), self.rows())
        if not self.config.quiet:
            memory = []
            if last.get("peak_bytes"):
                memory.append(f"peak {R.human_bytes(last['peak_bytes'])}")
            if resident_bytes():
                memory.append(f"search {R.human_bytes(resident_bytes())}")
            progress = self.progress() if local else ""
            print(R.trial_line(row, "  ".join(p for p in (", ".join(memory), progress) if p)),
                  file=self.out, flush=True)

    def load_model(self, trial):
        raise NotImplementedError(
            f"Trials of a search run are trained by keras_resnet.training: trial "
            f"{trial.trial_id}'s run directory is {self.run_dir(trial.trial_id)}; retrain the "
            "best configuration with --final-epochs to export it.")

    # -- results and progress -------------------------------------------------------------
    def rows(self):
        """A results row per trial (the oracle's records; error files where present)."""
        rows = []
        for trial in self.oracle.trials.values():
            error = None
            path = self.error_path(trial.trial_id)
            if trial.status in ("FAILED", "INVALID") and os.path.exists(path):
                with open(path) as f:
                    error = f.readline().strip()
            rows.append(R.trial_row(trial, self.space, epochs=self.config.epochs, error=error))
        return R.sort_rows(rows)

    def planned_epochs(self):
        """Epochs the whole search trains (in-budget trials), or None when unknown."""
        return planned_epochs(self.config.tuner, self.oracle, self.config.max_trials,
                              self.config.epochs)

    def progress(self):
        """``[4/10 trials, ETA 3m20s]`` from this process's pace and the epochs left."""
        rows = [r for r in self.rows() if r["status"] in (R.COMPLETED, R.FAILED, R.REJECTED)]
        trained = [r for r in rows if r["status"] != R.REJECTED]
        if self.config.tuner == "hyperband":
            done = sum(int(r["epochs"] or 0) for r in rows)
            count = f"{len(trained)} trials"
        else:
            done = sum(int(r["epochs"] or 0) for r in trained)
            count = f"{len(trained)}/{self.config.max_trials} trials"
        planned = self.planned_epochs()
        epochs = sum(e for e, _ in self._done)
        if planned is None or not epochs:
            return f"[{count}]"
        pace = sum(s for _, s in self._done) / epochs
        return f"[{count}, search ETA {fmt_seconds(max(0, planned - done) * pace)}]"


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
        tuner.search(verbose=0)
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
