"""Budgeted searches: rejected candidates do not use up a KerasTuner search.

KerasTuner records a trial that raises ``FailedTrialError`` (our
:class:`~keras_resnet.tuning.OverBudget`) as ``FAILED`` and moves on, but its
oracles (1.4) count such a trial against ``max_trials`` and stop the whole
search after ``max_consecutive_failed_trials`` (3) failures in a row. With a
tight budget most random candidates are rejected, so a search of 10 trials
would train only a few models, or stop with an error. :func:`budgeted` changes
that for any tuner over a :class:`~keras_resnet.tuning.ResNetHyperModel`:

* ``max_trials`` counts in-budget trials only: a budgeted search of N trials
  trains up to N models (rejections stay in the records, status ``FAILED``);
* rejections are not failures for ``max_consecutive_failed_trials`` (a trial
  that crashes still is), and reaching that limit stops the search (the oracle
  answers "stopped", ``oracle.stop_reason`` says why) instead of raising from
  inside the oracle, where a distributed chief would hang;
* Bayesian optimisation fits its Gaussian process to completed trials only, so
  it would propose a rejected region again and again: its over-budget proposals
  are replaced by random candidates;
* the search stops after ``max_consecutive_rejections`` rejections in a row
  (a space that barely fits the budget ends instead of spinning);
* a search in which every trained trial failed raises :class:`SearchFailed`
  (how many, and the first one's reason) instead of ending as if it had worked,
  and ``best_call`` refuses the hyperparameters of a trial that never completed.

KerasTuner's shipped tuners build their oracle inside their constructors, with
no argument to pass another class, so :func:`budgeted` gives the tuner's oracle
object a subclass with the accounting (the mixin below adds no state: it
derives everything from the trials, so a reloaded search counts the same).
In a distributed search the chief's oracle does the counting; on workers the
call changes nothing.
"""

from __future__ import annotations

import keras_tuner
from keras_tuner.oracles import BayesianOptimizationOracle

RUNNING, FAILED, COMPLETED = "RUNNING", "FAILED", "COMPLETED"
DEFAULT_MAX_CONSECUTIVE_REJECTIONS = 1000
# The attribute get_best_trials sets on the hyperparameters of a trial that never
# completed, which best_call refuses (KerasTuner pads its "best" list with such trials).
NEVER_COMPLETED = "keras_resnet_never_completed"


class SearchFailed(RuntimeError):
    """Every trial of a search failed: nothing was trained to completion."""


def all_failed(count, first_reason):
    """The one-line message of :class:`SearchFailed`."""
    return (f"all {count} trained trial{'s' if count != 1 else ''} failed, nothing to rank; "
            f"the first: {first_reason or 'no reason recorded'}")


class RejectionAccounting:
    """Mixin over a ``keras_tuner.Oracle``: see the module docstring.

    Attributes set by :func:`budgeted`: ``budget_rejection`` (a trial's values
    -> reason or None), ``budget_max_trials`` (the ``max_trials`` the user
    asked for) and ``max_consecutive_rejections``.
    """

    def is_rejected(self, trial):
        """Was ``trial`` rejected over budget (``FAILED``, and its network over budget)?"""
        if trial.status != FAILED:
            return False
        cache = self.__dict__.setdefault("_rejected_cache", {})
        if trial.trial_id not in cache:
            cache[trial.trial_id] = self.budget_rejection(trial.hyperparameters.values) is not None
        return cache[trial.trial_id]

    def rejected_trials(self):
        return [t for t in self.trials.values() if self.is_rejected(t)]

    @property
    def stop_reason(self):
        """Why this process stopped the search early (None: it did not)."""
        return self.__dict__.get("_stop_reason")

    def _stop(self, reason):
        if self.stop_reason is None:
            print(f"Stopping the search: {reason}.", flush=True)
            self.__dict__["_stop_reason"] = reason

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        if self.budget_max_trials is not None:
            self.max_trials = self.budget_max_trials + len(self.rejected_trials())
        streak = 0
        for trial_id in reversed(self.end_order):
            if not self.is_rejected(self.trials[trial_id]):
                break
            streak += 1
        if streak >= self.max_consecutive_rejections:
            self._stop(f"the last {streak} candidates were all over budget")
        if self.stop_reason is not None:
            self.max_trials = len(self.trials)   # the base class then answers STOPPED
        return super().create_trial(tuner_id)

    def get_best_trials(self, num_trials=1):
        # KerasTuner fills the list up with trials that did not complete; their
        # hyperparameters are marked so that best_call refuses them.
        # (KerasTuner also asks while a trial runs, to print the best so far: only
        # trials that ended are marked.)
        best = super().get_best_trials(num_trials)
        for trial in best:
            if trial.status in (FAILED, "INVALID"):
                setattr(trial.hyperparameters, NEVER_COMPLETED, f"trial {trial.trial_id}")
            elif trial.status == COMPLETED and hasattr(trial.hyperparameters, NEVER_COMPLETED):
                delattr(trial.hyperparameters, NEVER_COMPLETED)
        return best

    def failure(self):
        """Why nothing completed (every trained trial failed, or every candidate was over
        budget), or None when a trial completed or none ended."""
        trials = list(self.trials.values())
        if any(t.status == COMPLETED for t in trials):
            return None
        ended = [t for t in trials if t.status in (FAILED, "INVALID")]
        failed = [t for t in ended if not self.is_rejected(t)]
        if failed:
            lines = [line.strip() for line in (failed[0].message or "").splitlines()
                     if line.strip()]
            return all_failed(len(failed), lines[-1] if lines else None)
        if ended:   # Hyperband schedules a fixed number of candidates: all can be rejected
            reason = self.budget_rejection(ended[0].hyperparameters.values)
            return (f"no trial trained: all {len(ended)} candidates were over budget; "
                    f"the first: {reason}")
        return None

    def populate_space(self, trial_id):
        response = super().populate_space(trial_id)
        values = response.get("values")
        if (isinstance(self, BayesianOptimizationOracle) and response.get("status") == RUNNING
                and values and self.budget_rejection(values) is not None):
            values = self._random_values()
            response = {"status": RUNNING, "values": values} if values else \
                {"status": "STOPPED", "values": None}
        return response

    def _check_consecutive_failures(self):
        # KerasTuner's check (called when a trial ends), with two changes: rejected
        # trials are left out (neither failures nor a reset), and reaching the limit
        # stops the search (create_trial answers STOPPED) instead of raising. Raised in
        # a distributed chief, KerasTuner's RuntimeError goes back to the worker that
        # ended the trial and leaves the chief serving forever. Only the trials since
        # this process started count, so a resumed search tries again.
        started = self.__dict__.setdefault("_ended_before", len(self.end_order) - 1)
        consecutive, last = 0, None
        for trial_id in self.end_order[started:]:
            trial = self.trials[trial_id]
            if self.is_rejected(trial):
                continue
            if trial.status == FAILED:
                consecutive, last = consecutive + 1, trial
            else:
                consecutive = 0
        limit = self.max_consecutive_failed_trials
        if limit and consecutive >= limit:
            message = [line for line in (last.message or "").splitlines() if line.strip()]
            self._stop(f"{consecutive} trials in a row failed (the limit, "
                       f"max_consecutive_failed_trials, is {limit})"
                       + (f"; the last: {message[-1].strip()}" if message else ""))


_CLASSES = {}


def _with_accounting(cls):
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Budgeted{cls.__name__}", (RejectionAccounting, cls),
                             {"__module__": __name__})
    return _CLASSES[cls]


def budgeted(tuner, *, max_consecutive_rejections=DEFAULT_MAX_CONSECUTIVE_REJECTIONS):
    """Make ``tuner`` count only in-budget trials; return it.

    Args:
        tuner: a KerasTuner tuner (``RandomSearch``, ``BayesianOptimization``,
            ``Hyperband``, ``GridSearch`` or any ``keras_tuner.Tuner``) whose
            hypermodel is a :class:`~keras_resnet.tuning.ResNetHyperModel`.
        max_consecutive_rejections: int, stop the search after this many
            rejections in a row.

    Returns:
        ``tuner``, whose oracle now leaves rejected candidates out of
        ``max_trials`` and ``max_consecutive_failed_trials``.

    Example::

        hypermodel = ResNetHyperModel(classes=10, max_params=1_000_000)
        tuner = budgeted(keras_tuner.RandomSearch(hypermodel, objective="val_accuracy",
                                                  max_trials=20, directory="search"))
        tuner.search(x, y, validation_data=(xv, yv), epochs=10)   # trains up to 20 models
    """
    rejection = getattr(tuner.hypermodel, "rejection", None)
    if not callable(rejection):
        raise TypeError("Argument `tuner` must be a KerasTuner tuner over a "
                        "keras_resnet.tuning.ResNetHyperModel (its hypermodel says which "
                        f"candidates are over budget); received a tuner over "
                        f"{type(tuner.hypermodel).__name__}.")
    if isinstance(max_consecutive_rejections, bool) or \
            not isinstance(max_consecutive_rejections, int) or max_consecutive_rejections < 1:
        raise ValueError(f"Invalid value for argument `max_consecutive_rejections`: received "
                         f"{max_consecutive_rejections!r}; expected a positive int.")
    oracle = tuner.oracle
    if not isinstance(oracle, keras_tuner.Oracle):
        return tuner   # a worker's client of the chief's oracle, which does the counting
    if not isinstance(oracle, RejectionAccounting):
        oracle.budget_max_trials = oracle.max_trials
        oracle.__class__ = _with_accounting(type(oracle))
    oracle.budget_rejection = rejection
    oracle.max_consecutive_rejections = max_consecutive_rejections
    if not getattr(tuner, "_keras_resnet_checked_search", False):
        search = tuner.search

        def checked_search(*args, **kwargs):
            """KerasTuner's ``search``; raises SearchFailed when every trained trial failed."""
            result = search(*args, **kwargs)
            message = oracle.failure()
            if message is not None:
                raise SearchFailed(message)
            return result

        tuner.search = checked_search   # this instance only: a search of nothing raises
        tuner._keras_resnet_checked_search = True
    return tuner
