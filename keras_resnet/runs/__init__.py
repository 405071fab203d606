"""Sweeps: many training runs, each in its own run directory (the tuner and experiments use it).

* :class:`Sweep`, :func:`run_sweep`: jobs -> run directories; skip what is done,
  resume what is not, record failures with their reason, one progress display.
* :class:`Job`, :class:`Outcome`: a run to do and how it ended (numbers, not text).
* :func:`isolated`, :func:`run_isolated`: call a function in a fresh process that
  dies with its parent (the package's one subprocess mechanism).
* :mod:`~keras_resnet.runs.records`: what a run directory says about its run.

Imported lazily: ``import keras_resnet.runs`` loads no keras.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Job": "jobs", "Outcome": "jobs", "train_job": "jobs",
    "Sweep": "sweep", "run_sweep": "sweep",
    "SweepProgress": "progress", "job_cost": "progress",
    "isolated": "isolation", "run_isolated": "isolation", "IsolatedError": "isolation",
    "error_summary": "isolation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
