"""Checkpoints keyed by variable path, independent of the strategy and the backend.

A checkpoint is one NumPy ``.npz`` file per completed epoch,
``checkpoints/epoch-0007.npz``, holding every model variable under
``model/<variable path>`` (weights, BatchNorm statistics, the random-seed
states of stochastic depth and dropout), every optimizer variable under
``optimizer/<variable path>`` and the trainer's counters under ``trainer/...``.

Why not ``tf.train.Checkpoint``: it matches saved values by the object graph
and, for lists, by position, so two same-shaped variables could swap silently
when construction order changes; it does not exist under JAX; and a
distributed run's checkpoint should not depend on the strategy that wrote it.
Matching by Keras variable path (``stage2_block1/stage2_block1_conv1/kernel``)
is explicit: a checkpoint of another architecture fails at once, naming the
first path that does not match.

Writes are atomic: the file is written as ``*.tmp``, flushed to disk and
renamed, and only then is the previous checkpoint removed, so a crash at any
moment leaves the last good checkpoint readable.
"""

from __future__ import annotations

import os
import re

import numpy as np

from keras_resnet.training.config import RunDirError

PATTERN = re.compile(r"^epoch-(\d+)\.npz$")


class CheckpointMismatch(ValueError):
    """A checkpoint does not fit the model (another architecture or optimizer)."""


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class CheckpointStore:
    """The checkpoints of a run directory: list, save atomically, load.

    Args:
        directory: str, the ``checkpoints/`` folder (created on the first save).
        keep: int, how many of the newest checkpoints to keep (default 1: a
            checkpoint is for resuming; the trained model is in the export).
    """

    def __init__(self, directory, keep=1):
        self.directory = directory
        self.keep = max(1, int(keep))

    def epochs(self):
        """The epochs with a complete checkpoint, oldest first."""
        if not os.path.isdir(self.directory):
            return []
        found = [int(m.group(1)) for m in map(PATTERN.match, os.listdir(self.directory)) if m]
        return sorted(found)

    def path(self, epoch):
        return os.path.join(self.directory, f"epoch-{epoch:04d}.npz")

    def latest(self):
        """``(epoch, path)`` of the newest checkpoint, or None."""
        epochs = self.epochs()
        return (epochs[-1], self.path(epochs[-1])) if epochs else None

    def save(self, epoch, state):
        """Write ``state`` (name -> array) as the checkpoint of ``epoch``; return its path.

        Raises:
            RunDirError: the file could not be written (disk full, read-only...);
                nothing half-written is left and the previous checkpoint is kept.
        """
        path = self.path(epoch)
        tmp = path + ".tmp"
        try:
            os.makedirs(self.directory, exist_ok=True)
            with open(tmp, "wb") as f:
                np.savez(f, **state)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            fsync_dir(self.directory)
        except OSError as e:
            try:
                os.remove(tmp)
            except OSError:
                pass
            last = self.latest()
            kept = (f"the last good checkpoint, {last[1]} (epoch {last[0]}), is kept"
                    if last else "no earlier checkpoint exists")
            raise RunDirError(f"could not write the checkpoint of epoch {epoch} to {path} "
                              f"({e.strerror or e}); {kept}. Free space or fix the permissions "
                              f"of {self.directory}, then rerun the same command to resume."
                              ) from None
        for old in self.epochs()[:-self.keep]:
            try:
                os.remove(self.path(old))
            except OSError:
                pass
        return path

    def load(self, path):
        """The arrays of a checkpoint file, by name."""
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    def remove_temporary(self):
        """Delete ``*.tmp`` files a killed process left behind (never read back)."""
        if os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                if name.endswith(".tmp"):
                    try:
                        os.remove(os.path.join(self.directory, name))
                    except OSError:
                        pass


def collect(groups, read):
    """``{"<group>/<variable path>": array}`` for ``groups`` = {group: variables}.

    ``read`` turns a variable into a NumPy array (the engine's, so that
    distributed and JAX-held values are read correctly).
    """
    state = {}
    for group, variables in groups.items():
        for v in variables:
            key = f"{group}/{v.path}"
            if key in state:
                raise ValueError(f"Two variables share the path {v.path!r}; checkpoints "
                                 "need unique variable paths.")
            state[key] = read(v)
    return state


def restore(groups, state, assign, source="the checkpoint"):
    """Assign ``state`` to the variables of ``groups`` by path.

    Raises:
        CheckpointMismatch: naming the first variable path that is missing from
            ``state``, has another shape, or is in ``state`` but not in the model.
    """
    expected = set()
    plan = []
    for group, variables in groups.items():
        for v in variables:
            key = f"{group}/{v.path}"
            expected.add(key)
            if key not in state:
                raise CheckpointMismatch(
                    f"{source} does not fit this model: it has no variable {key!r} "
                    "(the first one missing); it was written by another architecture or "
                    "optimizer. Use another --run-dir, or the flags of that run.")
            value = state[key]
            if tuple(value.shape) != tuple(v.shape):
                raise CheckpointMismatch(
                    f"{source} does not fit this model: variable {key!r} has shape "
                    f"{tuple(value.shape)} there and {tuple(v.shape)} in the model.")
            plan.append((v, value))
    extra = [k for k in state if k.split("/", 1)[0] in groups and k not in expected]
    if extra:
        raise CheckpointMismatch(f"{source} does not fit this model: its variable {extra[0]!r} "
                                 "is not in the model.")
    for v, value in plan:
        assign(v, value)
