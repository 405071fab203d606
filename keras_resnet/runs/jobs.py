"""A sweep's job: one training run, as a :class:`Job` and as the function a process runs.

Cheap to import (no keras): :func:`train_job` is what an isolated run's process
unpickles and calls, and it must fix the environment (backend, TensorFlow's
CPU settings) before keras is imported there.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Job:
    """One run of a sweep.

    Args:
        name: str, the run's name in the progress display and the records.
        config: a :class:`~keras_resnet.training.TrainConfig` whose ``run_dir`` is set.
        cost: float or None, the relative cost of one epoch for the ETA
            (None: depth x width^2).
        record: dict, extra keys for the run's record file (JSON data).
        error_path: str or None, where a failure's summary and traceback go
            (default ``<run_dir>/error.txt``).
        output_path: str or None, where an isolated run's output goes
            (default ``<run_dir>/output.txt``; the terminal when the sweep is verbose).
    """

    name: str
    config: object
    cost: float | None = None
    record: dict = dataclasses.field(default_factory=dict)
    error_path: str | None = None
    output_path: str | None = None


@dataclasses.dataclass
class Outcome:
    """How a job ended; every metric a number.

    ``status``: ``finished``, ``diverged``, ``failed`` or ``incomplete`` (a callback
    stopped it); ``message``: the one-line reason (``"TrainingDiverged: the
    training loss became nan ..."``); ``history``: the log rows (numbers);
    ``metrics``: metrics.json (None if not written); ``skipped``: found done, not
    trained; ``peak_bytes``: an isolated run's peak memory; ``seconds``: the wall
    time this sweep spent on it; ``trained_epochs``: epochs trained this time.
    """

    name: str
    run_dir: str
    status: str
    message: str = ""
    history: list = dataclasses.field(default_factory=list)
    metrics: dict | None = None
    trainable_params: int | None = None
    skipped: bool = False
    peak_bytes: int | None = None
    seconds: float = 0.0
    trained_epochs: int = 0

    def best(self, key="test_accuracy"):
        """The best value of ``key`` over the history (None: no epoch)."""
        values = [row[key] for row in self.history if row.get(key) is not None]
        return max(values) if values else None


def trainable_params(model):
    import math

    return int(sum(math.prod(v.shape) for v in model.trainable_variables))


def train_job(config, verbose=False):
    """Train ``config`` to its end in this process (an isolated run's body).

    Returns ``{"trainable_params": int}``; raises what the trainer raises.
    """
    import logging

    from keras_resnet.training.environment import prepare_environment

    prepare_environment(config)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)   # retracing notes
    from keras_resnet.training.trainer import Trainer

    trainer = Trainer(config, verbose=bool(verbose))
    trainer.run()
    return {"trainable_params": trainable_params(trainer.model)}
