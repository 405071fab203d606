"""Training: one run is a :class:`Trainer` over a :class:`TrainConfig`.

Modules, each one concern:

* ``config``: the settings of a run and their checks (no keras, no TensorFlow);
* ``plan``: batches, steps, epochs and the learning-rate schedule (no keras);
* ``schedules``: the schedules as Keras schedules;
* ``model``: builder arguments, precision, the optimizer, the L2 penalty;
* ``checkpoints``: checkpoints keyed by variable path, written atomically;
* ``rundir``: the run directory (config.json, log.csv, metrics.json);
* ``progress``: the one progress display;
* ``engine``: the engine interface, and the loss, L2 penalty, accuracy and
  evaluation sums both engines compute (``keras.ops``);
* ``engine_tf`` / ``engine_jax``: compiling, distributing and feeding per backend;
* ``trainer``: the loop, as a few named steps, and its checkpoints and resuming;
* ``outputs``: what a run writes besides (config.json, TensorBoard, metrics.json,
  the export), a mixin of the trainer;
* ``environment``: the backend's environment, and importing it quietly;
* ``report``: the run's last lines (what was written where, what to run next).

The command line (``recipes/cifar10.py``, ``keras-resnet train``) is
:mod:`keras_resnet.cli.train`.

The public names below are imported lazily, so ``import keras_resnet.training``
(and the recipes' ``--help``) does not import keras or TensorFlow.

Example:

>>> from keras_resnet.training import TrainConfig, train
>>> metrics = train(TrainConfig(dataset="digits", depth=8, epochs=1, no_export=True,
...                             run_dir=str(getfixture("tmp_path") / "run")), verbose=False)
>>> metrics["epochs_completed"], len(metrics["history"])
(1, 1)
"""

from keras_resnet.training.config import (ConfigError, RunDirError, TrainConfig, TrainingDiverged,
                                          resolve_config)
from keras_resnet.training.plan import Plan, make_plan

_LAZY = {
    "Trainer": "trainer", "train": "trainer", "load_data": "trainer", "make_engine": "trainer",
    "build_model": "model", "builder_kwargs": "model", "make_optimizer": "model",
    "make_schedule": "schedules", "WarmupSchedule": "schedules",
    "CheckpointMismatch": "checkpoints", "make_strategy": "engine_tf", "Engine": "engine",
}

__all__ = ["ConfigError", "RunDirError", "TrainConfig", "TrainingDiverged", "resolve_config",
           "Plan", "make_plan", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"keras_resnet.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'keras_resnet.training' has no attribute {name!r}")
