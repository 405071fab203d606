"""What every part of :mod:`keras_resnet.data` shares: the error, the constants, the checks,
one split's examples, and the record of skipped files. NumPy only."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading

import numpy as np

DATASETS = ("cifar10", "cifar100", "digits", "synthetic", "imagenet2012")
TFDS_DATASETS = ("cifar10", "cifar100", "imagenet2012")
FAMILIES = ("cifar", "imagenet")
AUGMENTS = ("cifar", "digits", "imagenet")
HOLDOUT_FRACTION = 0.1  # CIFAR: 45k/5k
CIFAR_PAD = 4
DIGITS_PAD = 1  # +-1 pixel translations of the 8x8 digits, no flips
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)

log = logging.getLogger("keras_resnet.data")


class DataError(ValueError):
    """Bad data argument or missing data (a ``ValueError``; recipes exit with code 2)."""


def check_int(arg, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"Invalid value for argument `{arg}`: received {value!r}; "
                        f"expected an int >= {minimum}.")
    return int(value)


def check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise DataError(f"Invalid value for argument `batch_size`: received {batch_size!r}; "
                        "expected a positive int.")
    return int(batch_size)


@dataclasses.dataclass
class Split:
    """Examples of one split: uint8 images in memory, image files, or TFDS records.

    ``images`` is a uint8 array (N, H, W, 3) for in-memory data, or an array of
    file paths (str); ``records`` is a callable ``(seed, epoch) ->
    tf.data.Dataset`` of ``(encoded image bytes, label)`` for TFDS ImageNet.
    """

    labels: np.ndarray | None
    images: np.ndarray | None = None
    records: object = None
    size: int = 0

    def __post_init__(self):
        if self.labels is not None:
            self.labels = np.asarray(self.labels, np.int32)
            self.size = len(self.labels)

    @property
    def kind(self):
        if self.records is not None:
            return "records"
        return "files" if self.images.dtype.kind in "USO" else "array"


class SkipRecord:
    """The image files skipped so far, each with its reason; safe to share between threads.

    The pipelines add a file when they meet it (a decode that fails); a record
    tied to a folder listing (``cache_file``) also remembers what earlier passes
    over the same listing met, and writes each new entry back, so that the next
    load knows it at once. Skipping a file is a function of its content only,
    so a file already known to be bad gives the same batches as one met anew.
    """

    def __init__(self, cache_file=None, known=None):
        self._lock = threading.Lock()
        self._reasons = dict(known or {})
        self.cache_file = cache_file

    def add(self, path, reason, *, quiet=False):
        path = str(path)
        with self._lock:
            if path in self._reasons:
                return
            self._reasons[path] = reason
            snapshot = dict(self._reasons)
        if not quiet:
            log.warning("Skipped image file %s: %s", path, reason)
        if self.cache_file:
            _write_json(self.cache_file, {"format": 1, "skipped": snapshot})

    def __contains__(self, path):
        return str(path) in self._reasons

    def __len__(self):
        return len(self._reasons)

    @property
    def reasons(self):
        """``{path: reason}`` of the files skipped so far, in the order they were met."""
        with self._lock:
            return dict(self._reasons)


def _write_json(path, obj):
    """Write ``obj`` atomically; a read-only cache directory only costs the cache."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except OSError:
        pass


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
