"""KerasTuner searches over ResNet width and depth, within parameter and multiply-add budgets.

In your own code, with any tuner KerasTuner ships and ``model.fit``::

    import keras_tuner
    from keras_resnet.tuning import ResNetHyperModel, budgeted, best_call

    hypermodel = ResNetHyperModel(classes=10, max_params=1_000_000)
    tuner = budgeted(keras_tuner.Hyperband(hypermodel, objective="val_accuracy",
                                           max_epochs=30, directory="search"))
    tuner.search(x, y, validation_data=(xv, yv))
    print(best_call(tuner.get_best_hyperparameters()[0]))

From the command line, every trial trained by the package's trainer (run
directories, schedules, precision, GPUs, resumable): ``python recipes/tune.py``.

Modules:

* ``space``: the search space and its checks, counting and budgets (no Keras);
* ``hyperparameters``: the hyperparameter names and defaults, ``Range``, ``Space``
  and the depths of each family, re-exported by ``space``;
* ``rebuild``: :func:`best_call`, a trial as the builder call that rebuilds it;
* ``hypermodel``: :class:`ResNetHyperModel` and :class:`OverBudget`;
* ``oracles``: :func:`budgeted`, in-budget trial accounting for any tuner (and
  ``SearchFailed`` when no trial completed);
* ``trial``: :class:`SearchTuner`, whose trials are jobs of ``keras_resnet.runs.Sweep``;
* ``search``: the recipe's search (:func:`run_search`), the results and the retraining;
* ``results``: results.csv, the Pareto front, results.png, the ranked table.

The command line of ``recipes/tune.py`` is :mod:`keras_resnet.cli.tune`.

The names below load lazily: ``import keras_resnet.tuning`` imports neither Keras
nor KerasTuner.
"""

from keras_resnet.tuning.space import (BLOCK, DEFAULT_MAX_CIFAR_DEPTH, DEPTH, FAMILY,
                                       HYPERPARAMETERS, LEARNING_RATE, PREACT, SHORTCUT,
                                       WEIGHT_DECAY, WIDTH, Range, Space, best_call,
                                       family_depths, resolve_space)

_LAZY = {
    "ResNetHyperModel": "hypermodel", "OverBudget": "hypermodel",
    "budgeted": "oracles",
    "SearchConfig": "config", "run_search": "search", "SearchTuner": "trial",
    "read_results": "results", "pareto_front": "results",
}

__all__ = ["BLOCK", "DEFAULT_MAX_CIFAR_DEPTH", "DEPTH", "FAMILY", "HYPERPARAMETERS",
           "LEARNING_RATE", "PREACT", "SHORTCUT", "WEIGHT_DECAY", "WIDTH", "Range", "Space",
           "best_call", "family_depths", "resolve_space", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"keras_resnet.tuning.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'keras_resnet.tuning' has no attribute {name!r}")
