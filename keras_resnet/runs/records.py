"""What a run directory says about its run: history, state, and the sweep's record.

Plain Python, no keras. The history comes from ``log.csv`` as numbers
(:class:`~keras_resnet.training.rundir.RunLog`); the record is the sweep's own
JSON file in the run directory (``run.json`` by default): the run's name, how
it ended (``finished``, ``diverged`` or ``failed``), the one-line reason and
its trainable parameters, with the caller's extra keys.
"""

from __future__ import annotations

import os

from keras_resnet.data.common import read_json
from keras_resnet.training.rundir import RunLog, write_json

FINISHED, DIVERGED, FAILED, INCOMPLETE, NOT_RUN = (
    "finished", "diverged", "failed", "incomplete", "not run")
# A sweep never trains these again (delete the run directory to retry one). A failed
# run (out of memory, a crash) is tried again by a rerun.
DONE = (FINISHED, DIVERGED)


def history(run_dir):
    """The run's ``log.csv`` rows (numbers), oldest first."""
    return RunLog(os.path.join(run_dir, "log.csv")).rows()


def last_epoch(run_dir):
    rows = history(run_dir)
    return rows[-1]["epoch"] if rows else 0


def planned_epochs(run_dir):
    """The epochs the run's plan trains (config.json), or None before it started."""
    saved = read_json(os.path.join(run_dir, "config.json")) or {}
    return saved.get("plan", {}).get("epochs")


def state(run_dir, record_file="run.json"):
    """``(status, message)`` of the run in ``run_dir``.

    ``finished``: metrics.json written and every planned epoch logged;
    ``diverged``/``failed``: as the record says (the one-line reason as message),
    unless the run finished later; ``incomplete``: started (``"3 of 10 epochs"``);
    ``not run``: nothing there.
    """
    record = read_json(os.path.join(run_dir, record_file)) or {}
    rows = history(run_dir)
    epochs = planned_epochs(run_dir)
    if record.get("status") == DIVERGED:
        return DIVERGED, record.get("message", "")
    if os.path.exists(os.path.join(run_dir, "metrics.json")) and epochs is not None and rows \
            and rows[-1]["epoch"] >= epochs:
        return FINISHED, ""
    if record.get("status") == FAILED:
        return FAILED, record.get("message", "")
    if epochs is not None:
        return INCOMPLETE, f"{len(rows)} of {epochs} epochs"
    return NOT_RUN, ""


def write_record(run_dir, record_file, **fields):
    """Write the sweep's record of a run (atomically)."""
    os.makedirs(run_dir, exist_ok=True)
    write_json(os.path.join(run_dir, record_file), fields)
