"""The search's tuner: KerasTuner proposes trials, the sweep runner trains them.

:class:`SearchTuner` is a ``keras_tuner.Tuner`` whose ``run_trial`` turns a
trial's hyperparameters into a :class:`~keras_resnet.training.TrainConfig` and
hands it to :class:`keras_resnet.runs.Sweep` as one job: the run directory
``DIR/runs/trial_<id>/``, resuming a trial a killed search left unfinished,
recording a failure with its one-line reason (``DIR/errors/trial_<id>.txt``
holds the traceback), and, by default, training in a process of its own
(:func:`keras_resnet.runs.run_isolated`; its output in ``DIR/logs/trial_<id>.txt``).

Why a process per trial: TensorFlow keeps every traced graph of a process
alive after ``keras.backend.clear_session()`` (measured: resident memory grew by
about 10 MB per ResNet-8 trial and 67 MB per ResNet-56 trial, through the
package's trainer or ``model.fit`` alike). A process per trial returns all of
it, as well as what an out-of-memory error or a crash leaves behind.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys

import keras
import keras_tuner

from keras_resnet.runs import Job, Sweep
from keras_resnet.runs.progress import SweepProgress
from keras_resnet.tuning import results as R
from keras_resnet.tuning.hypermodel import OverBudget
from keras_resnet.tuning.oracles import budgeted

OBJECTIVE = "val_accuracy"


class TrialFailed(RuntimeError):
    """A trial failed; the message is its error's one-line summary."""


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


def hyperband_epochs(max_epochs, factor, min_epochs=1, iterations=1):
    """Epochs Hyperband trains in all when every trial trains from scratch.

    Hyperband (Li et al. 2018; KerasTuner's ``HyperbandOracle``) runs
    ``iterations`` iterations of brackets; the number of brackets is the number
    of times ``max_epochs`` can be divided by ``factor`` before it falls below
    ``min_epochs`` (about ``log_factor(max_epochs) + 1``). Bracket ``b`` has
    ``b + 1`` rounds; round ``r`` trains ``ceil(s / (b + 1) * factor^(b - r))``
    models, ``s = ceil(1 + log_factor(max_epochs))`` (every bracket about the same
    cost), for ``ceil(max_epochs / factor^(b - r))`` epochs each. Computed here
    from the schedule because KerasTuner exposes it only through private methods.
    """
    brackets, epochs = 0, max_epochs
    while epochs >= min_epochs:
        epochs /= factor
        brackets += 1
    end_size = math.ceil(1 + math.log(max_epochs, factor))
    one = sum(math.ceil(end_size / (b + 1) * factor ** (b - r))
              * math.ceil(max_epochs / factor ** (b - r))
              for b in range(brackets) for r in range(b + 1))
    return one * iterations


def planned_epochs(tuner, oracle, max_trials, epochs):
    """Epochs a search trains in all: ``max_trials x epochs``, or Hyperband's brackets."""
    if tuner != "hyperband":
        return max_trials * epochs
    return hyperband_epochs(oracle.max_epochs, oracle.factor, oracle.min_epochs,
                            oracle.hyperband_iterations)


class SearchTuner(keras_tuner.Tuner):
    """A KerasTuner tuner whose trials are jobs of :class:`keras_resnet.runs.Sweep`.

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
        self.config = config
        self.out = out or sys.stdout
        # The sweep's pace (wall time per epoch, a trial's start-up included) gives the ETA.
        self.pace = SweepProgress(0, [], enabled=False)
        self.sweep = Sweep(isolate=not config.in_process, data=data, strategy=strategy,
                           callbacks=callbacks, verbose=config.verbose, progress=None,
                           label="the trial's process", fatal=())
        self._trained_epochs = 0
        self._last = {}
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

    def job(self, trial):
        """The sweep job of ``trial``."""
        tid = trial.trial_id
        return Job(f"trial {tid}", self.trial_config(trial), cost=1.0,
                   record={"trial": tid}, error_path=self.error_path(tid),
                   output_path=os.path.join(self.config.directory, "logs", f"trial_{tid}.txt"))

    def run_trial(self, trial, *args, **kwargs):
        """Train one trial as a sweep job; return its metrics for the oracle."""
        self._last = {"trial_id": trial.trial_id}
        reason = self.hypermodel.rejection(trial.hyperparameters)
        if reason is not None:
            raise OverBudget(reason)
        outcome = self.sweep.run(self.job(trial))
        self._last["peak_bytes"] = outcome.peak_bytes
        self._trained_epochs += outcome.trained_epochs
        self.pace.job_done(outcome.trained_epochs, outcome.seconds, 1.0)
        if outcome.status in ("failed", "diverged"):
            self._last["error"] = outcome.message
            raise TrialFailed(outcome.message)
        accuracy = outcome.best("test_accuracy")
        if accuracy is None:
            raise TrialFailed(f"trial {trial.trial_id} completed no epoch")
        seconds = sum(row["epoch_seconds"] for row in outcome.history)
        self._last.update({OBJECTIVE: accuracy, "train_seconds": seconds})
        return {OBJECTIVE: accuracy, "train_seconds": seconds}

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
        """``[4/10 trials, search ETA 3m20s]`` from this process's pace and the epochs left."""
        rows = [r for r in self.rows() if r["status"] in (R.COMPLETED, R.FAILED, R.REJECTED)]
        trained = [r for r in rows if r["status"] != R.REJECTED]
        if self.config.tuner == "hyperband":
            done = sum(r["epochs"] or 0 for r in rows)
            count = f"{len(trained)} trials"
        else:
            done = sum(r["epochs"] or 0 for r in trained)
            count = f"{len(trained)}/{self.config.max_trials} trials"
        planned, pace = self.planned_epochs(), self.pace.pace()
        if planned is None or pace is None:
            return f"[{count}]"
        return f"[{count}, search ETA {R.fmt_seconds(max(0, planned - done) * pace)}]"


def keras_module():
    """The keras module (the trials' backend is this process's)."""
    return keras
