"""The sweep runner: many training runs, each in its own run directory.

:class:`Sweep` trains :class:`~keras_resnet.runs.Job` objects (a name and a
:class:`~keras_resnet.training.TrainConfig` with its ``run_dir``) with the
package's trainer, the same loop as the recipes. For every job it

* skips a run that is done (finished, or diverged: training it again would
  diverge again) and reads its results back from the run directory;
* resumes an unfinished run from its last checkpoint (the trainer's own resume);
* records how a run ended in a small JSON record in its run directory, with the
  one-line reason of a failure and the traceback in an error file, and goes on
  (a failed run is tried again by the next sweep over the same directory);
* shows one progress display with the sweep's ETA (:class:`SweepProgress`);
* optionally trains in a process of its own (:func:`~keras_resnet.runs.run_isolated`).

The tuner (each trial is a job) and the experiments (each configuration is a
job) are built on it. Metrics are numbers from the trainer to the results.
"""

from __future__ import annotations

import gc
import os
import sys
import time
import traceback

from keras_resnet.runs import records
from keras_resnet.runs.isolation import IsolatedError, error_summary, run_isolated
from keras_resnet.runs.jobs import Outcome, train_job, trainable_params
from keras_resnet.runs.progress import SweepProgress, job_cost
from keras_resnet.training.config import RunDirError, TrainingDiverged


def _cost(job):
    return job_cost(job.config) if job.cost is None else float(job.cost)


class Sweep:
    """Trains jobs one after another; see the module docstring.

    Args:
        isolate: bool, train every job in a process of its own.
        data: a ``keras_resnet.data.InputData`` for in-process jobs, or a function
            ``config -> InputData`` (None: each trainer loads its data).
        strategy: a ``tf.distribute.Strategy`` for in-process jobs, or None.
        callbacks: ``keras.callbacks.Callback`` objects given to in-process trainers.
        verbose: bool, show each trainer's own output (its lines and progress);
            the sweep's display is ``progress``.
        progress: a :class:`SweepProgress`, or None (no display).
        record_file: the record's file name in each run directory.
        label: how an isolated failure names the process (``"the trial's process"``).
        fatal: exception classes that end the sweep instead of failing one job
            (default: a run directory that cannot be written).
    """

    def __init__(self, *, isolate=False, data=None, strategy=None, callbacks=None,
                 verbose=False, progress=None, record_file="run.json",
                 label="the run's process", fatal=(RunDirError,)):
        if callbacks and isolate:
            raise ValueError("Argument `callbacks` needs in-process runs (isolate=False): Keras "
                             "callbacks are Python objects of this process.")
        self.isolate, self.data, self.strategy = isolate, data, strategy
        self.callbacks = list(callbacks or [])
        self.verbose, self.progress = verbose, progress
        self.record_file, self.label, self.fatal = record_file, label, tuple(fatal)
        self.done = []   # (epochs trained, wall seconds) of the jobs this sweep trained

    # -- state ---------------------------------------------------------------------------
    def state(self, job):
        """``(status, message)`` of ``job``'s run directory (see :func:`records.state`)."""
        return records.state(job.config.run_dir, self.record_file)

    def is_done(self, job):
        return self.state(job)[0] in records.DONE

    def outcome(self, job, **extra):
        """The job's results as its run directory holds them."""
        run_dir = job.config.run_dir
        status, message = self.state(job)
        record = records.read_json(os.path.join(run_dir, self.record_file)) or {}
        return Outcome(job.name, run_dir, status, message, history=records.history(run_dir),
                       metrics=records.read_json(os.path.join(run_dir, "metrics.json")),
                       trainable_params=record.get("trainable_params"), **extra)

    def _paths(self, job):
        run_dir = job.config.run_dir
        return (job.error_path or os.path.join(run_dir, "error.txt"),
                job.output_path or os.path.join(run_dir, "output.txt"))

    # -- running ---------------------------------------------------------------------------
    def run(self, job, index=1):
        """Train ``job`` (or skip it when done); return its :class:`Outcome`.

        Raises what ``fatal`` names, and KeyboardInterrupt; any other error of
        the run becomes a ``failed`` outcome.
        """
        if self.is_done(job):
            outcome = self.outcome(job, skipped=True)
            if self.progress is not None:
                self.progress.skipped(index, job.name, outcome.status, outcome.run_dir)
            return outcome
        error_path, output_path = self._paths(job)
        if os.path.exists(error_path):
            os.remove(error_path)
        before = records.last_epoch(job.config.run_dir)
        start = time.monotonic()
        status, message, params, peak = records.FINISHED, "", None, None
        self._params = None
        try:
            if self.isolate:
                params, peak = self._run_isolated(job, index, before, output_path)
            else:
                params = self._run_here(job, index, before)
        except self.fatal:
            raise
        except Exception as e:  # noqa: BLE001 - a failed run is recorded, the sweep goes on
            status, message, peak = self._failure(job, e, error_path, output_path)
            params = params if params is not None else self._params
        seconds = time.monotonic() - start
        trained = max(0, records.last_epoch(job.config.run_dir) - before)
        self.done.append((trained, seconds))
        if status == records.FINISHED:
            status = self.state(job)[0]   # finished, or incomplete (a callback stopped it)
        fields = {"name": job.name, **job.record, "status": status, "message": message}
        if params is not None:
            fields["trainable_params"] = params
        records.write_record(job.config.run_dir, self.record_file, **fields)
        if self.progress is not None:
            if self.isolate:
                self.progress.job_done(trained, seconds, _cost(job))
            self.progress.finished(status, message if status == records.FAILED else "")
        return self.outcome(job, peak_bytes=peak, seconds=seconds, trained_epochs=trained)

    def run_all(self, jobs):
        """Run every job in order; return their outcomes."""
        return [self.run(job, i) for i, job in enumerate(jobs, 1)]

    def _start(self, job, index, before, epochs):
        if self.progress is not None:
            self.progress.start(index, job.name, job.config.run_dir, epochs, before, _cost(job))

    def _data(self, config):
        return self.data(config) if callable(self.data) else self.data

    def _run_here(self, job, index, before):
        import keras

        from keras_resnet.training.trainer import Trainer

        trainer = None
        try:
            callbacks = ([self.progress] if self.progress is not None else []) + self.callbacks
            trainer = Trainer(job.config, data=self._data(job.config), strategy=self.strategy,
                              callbacks=callbacks, verbose=self.verbose)
            self._start(job, index, before, trainer.plan.epochs)
            with _quiet_retracing():
                trainer.run()
        finally:
            # Counted whether or not the run ended well (a diverged run is reported too).
            if trainer is not None and trainer.model is not None:
                self._params = trainable_params(trainer.model)
            trainer = None
            keras.backend.clear_session()
            gc.collect()
        return self._params

    def _run_isolated(self, job, index, before, output_path):
        import keras

        self._start(job, index, before, job.config.epochs or records.planned_epochs(
            job.config.run_dir) or 0)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
        env["KERAS_BACKEND"] = keras.backend.backend()
        done = run_isolated(train_job, (job.config, self.verbose), env=env,
                            output=None if self.verbose else output_path, label=self.label)
        return done.value["trainable_params"], done.peak_bytes

    def _failure(self, job, error, error_path, output_path):
        """``(status, one-line message, peak bytes)``; the error file is written."""
        os.makedirs(os.path.dirname(os.path.abspath(error_path)), exist_ok=True)
        if isinstance(error, IsolatedError):
            diverged = error.error_type == TrainingDiverged.__name__
            summary, peak = error.summary, error.peak_bytes
            detail = error.traceback or (f"Its output: {output_path}\n" if not self.verbose
                                         else "")
        else:
            diverged = isinstance(error, TrainingDiverged)
            summary, peak = error_summary(error), None
            detail = traceback.format_exc()
        with open(error_path, "w") as f:
            f.write(f"{summary}\n\n{detail}")
        return (records.DIVERGED if diverged else records.FAILED), summary, peak


def _quiet_retracing():
    """Silence TensorFlow's "N out of the last M calls ... triggered tf.function retracing".

    Every run of a sweep is a new model, so its steps are traced anew: expected
    here, and the warning would suggest a problem that is not there.
    """
    import contextlib
    import logging

    import keras

    @contextlib.contextmanager
    def quiet():
        logger = logging.getLogger("tensorflow")
        level = logger.level
        if keras.backend.backend() == "tensorflow":
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)

    return quiet()


def run_sweep(jobs, *, stream=None, verbose=True, what="sweep", **kwargs):
    """Run ``jobs`` with one progress display; return their outcomes.

    Keyword arguments as :class:`Sweep`'s (``progress`` is made here).

    Example:

    >>> from keras_resnet.runs import Job, run_sweep
    >>> from keras_resnet.training import TrainConfig
    >>> tmp = getfixture("tmp_path")
    >>> jobs = [Job("resnet-8", TrainConfig(dataset="digits", depth=8, epochs=1,
    ...                                     batch_size=128, no_export=True,
    ...                                     run_dir=str(tmp / "resnet-8")))]
    >>> [(o.name, o.status, len(o.history)) for o in run_sweep(jobs, verbose=False)]
    [('resnet-8', 'finished', 1)]
    >>> [o.skipped for o in run_sweep(jobs, verbose=False)]   # a rerun trains nothing
    [True]
    """
    jobs = list(jobs)
    pending = [(max(0, (j.config.epochs or 0) - records.last_epoch(j.config.run_dir)), _cost(j))
               for j in jobs if records.state(j.config.run_dir, kwargs.get(
                   "record_file", "run.json"))[0] not in records.DONE]
    progress = SweepProgress(len(jobs), pending, stream=stream or sys.stdout, enabled=verbose,
                             what=what)
    return Sweep(progress=progress, **kwargs).run_all(jobs)
