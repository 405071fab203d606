"""Run directories: every training run writes one self-describing directory.

Layout::

    runs/<name>/
      config.json      the settings, the plan, the builder arguments, the dataset, versions
      log.csv          one row per completed epoch
      checkpoints/     epoch-NNNN.npz (see keras_resnet.training.checkpoints)
      tensorboard/     scalars per epoch (TensorFlow backend)
      metrics.json     written when the run ends
      examples/        a few test images to try the export on (recipes)

Every file is replaced atomically (written as ``*.tmp``, flushed, renamed), so
a crash never leaves a half-written file that a rerun would read back.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile

from keras_resnet.training.checkpoints import fsync_dir
from keras_resnet.training.config import (RESUME_FREE, ConfigError, RunDirError, TrainConfig,
                                          flag)

LOG_FIELDS = ("epoch", "steps", "lr", "loss", "l2_loss", "accuracy", "test_loss",
              "test_accuracy", "epoch_seconds", "images_per_sec")
# How log.csv writes each number (the file's format). The rows the trainer keeps and
# RunLog reads back are numbers; text exists only in the file.
LOG_FORMATS = {"epoch": "d", "steps": "d", "lr": ".6g", "loss": ".6f", "l2_loss": ".6f",
               "accuracy": ".6f", "test_loss": ".6f", "test_accuracy": ".6f",
               "epoch_seconds": ".3f", "images_per_sec": ".1f"}


def log_row(**values):
    """A log row of numbers, each rounded to the precision log.csv keeps.

    Rounding once, here, makes a row the trainer holds equal to the same row read
    back from log.csv (a resumed run's history matches an uninterrupted one's).
    """
    row = {}
    for key, value in values.items():
        spec = LOG_FORMATS.get(key)
        if spec == "d":
            row[key] = int(value)
        elif spec == ".6g":
            value = float(value)   # six significant digits: round() counts decimals
            row[key] = round(value, 5 - math.floor(math.log10(abs(value)))) \
                if value and math.isfinite(value) else value
        elif spec is not None:
            row[key] = round(float(value), int(spec[1:-1]))
        else:
            row[key] = value
    return row


def settings_key(config, exclude=(), **extra):
    """Eight hex digits that change with every setting that changes what is trained.

    The outputs, the verbosity and the hardware (:data:`RESUME_FREE`) do not
    count, so the same command on another machine or with another ``--export``
    finds the same run. ``extra`` settings (a sweep's depths, seeds ...) count too.
    """
    flags = {k: v for k, v in config.flags().items()
             if k not in RESUME_FREE and k not in exclude}
    text = json.dumps([flags, extra], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def default_run_name(config):
    """``<dataset>_<model><depth>_<settings key>``, e.g. ``digits_resnet20_3f2a9c1e``."""
    prefix = "plain" if config.plain else ("preact_resnet" if config.preact else "resnet")
    return f"{config.dataset}_{prefix}{config.depth}_{settings_key(config)}"


def _numbered(base):
    """``base`` and its ``base-2``, ``base-3``, ... siblings that exist, in that order."""
    parent, name = os.path.dirname(base), os.path.basename(base)
    found = []
    for entry in os.listdir(parent or ".") if os.path.isdir(parent or ".") else []:
        suffix = entry[len(name) + 1:]
        if entry == name or (entry.startswith(name + "-") and suffix.isdigit()):
            found.append((int(suffix) if entry != name else 1, os.path.join(parent, entry)))
    return [path for _, path in sorted(found)]


def default_run_dir(config, root="runs", fresh=False):
    """The default run directory of ``config``: ``(path, resuming)``.

    The name carries the settings (:func:`default_run_name`), so rerunning the
    same command finds its run: the newest unfinished run of these settings
    (no ``metrics.json`` yet) is resumed. Otherwise, or with ``fresh``, a new
    directory: ``<name>``, else the first free ``<name>-2``, ``<name>-3``, ...
    Nothing is ever deleted.
    """
    base = os.path.join(root, default_run_name(config))
    existing = _numbered(base)
    if not fresh:
        unfinished = [d for d in existing if os.path.exists(os.path.join(d, "config.json"))
                      and not os.path.exists(os.path.join(d, "metrics.json"))]
        if unfinished:
            return unfinished[-1], True
    if not os.path.exists(base):
        return base, False
    n = 2
    while os.path.exists(f"{base}-{n}"):
        n += 1
    return f"{base}-{n}", False


# Attempts of check_output_dir when a folder on its way vanishes (see there).
_CHECK_ATTEMPTS = 5


def check_output_dir(path, flag):
    """Can ``path`` be created (if missing) and written? ConfigError naming ``flag`` if not.

    Called before any work starts, so a typo in an output location fails in one
    line instead of after hours of training. The check creates what is missing
    and one empty file, then removes what it created: nothing is left behind.

    Several processes may check locations under the same missing folder at
    once (the trials of a distributed search starting together, in
    ``DIR/runs/trial_<id>``; the chief and workers checking ``--dir``): a
    folder another process made meanwhile is used and left to it, and when one
    it made vanishes under this check (that process removing what its own check
    made) the check starts again. Only a folder this call made is removed.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag} {path} exists and is not a directory; choose another {flag}.")
    created = []
    try:
        for attempt in range(_CHECK_ATTEMPTS):
            try:
                _make_missing(os.path.abspath(path), created)
                fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
                break
            except FileNotFoundError:
                if attempt == _CHECK_ATTEMPTS - 1:
                    raise
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"{flag} {path} cannot be created or written ({e.strerror or e}); "
                          f"choose another {flag}.") from None
    finally:
        for folder in reversed(created):
            try:
                os.rmdir(folder)
            except OSError:   # gone already, or another process's files are in it now
                pass


def _make_missing(path, created):
    """Make the missing folders down to ``path``; append those this call made to ``created``."""
    missing, head = [], path
    while not os.path.exists(head):
        missing.append(head)
        head = os.path.dirname(head)
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:
            continue   # made meanwhile by another process, which removes it
        created.append(folder)


def write_atomic(path, data):
    """Replace ``path`` by ``data`` (str or bytes) atomically; RunDirError on failure."""
    tmp = path + ".tmp"
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        with open(tmp, mode, **({} if mode == "wb" else {"newline": ""})) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(os.path.dirname(path) or ".")
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise RunDirError(f"could not write {path} ({e.strerror or e}); free space or fix "
                          "the permissions, then rerun the same command to resume.") from None


def write_json(path, obj):
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _defaults():
    return TrainConfig().flags()


def check_run_dir(run_dir, config):
    """Is ``run_dir`` new (False) or a run of the same settings to resume (True)? No writes.

    Raises:
        ConfigError: ``run_dir`` is a file, a non-empty folder that is not a run
            directory, or a run of other settings (naming each differing flag).
    """
    path = os.path.join(run_dir, "config.json")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ConfigError(f"--run-dir {run_dir} exists and is not a directory.")
    if not os.path.exists(path):
        if os.path.isdir(run_dir) and os.listdir(run_dir):
            raise ConfigError(f"--run-dir {run_dir} is not empty and holds no config.json: "
                              "not a run directory; choose another --run-dir.")
        return False
    try:
        with open(path) as f:
            saved = json.load(f).get("flags", {})
    except (OSError, ValueError) as e:
        raise ConfigError(f"--run-dir {run_dir}: its config.json cannot be read ({e}); "
                          "choose another --run-dir.") from None
    defaults, new = _defaults(), config.flags()
    old = {k: saved.get(k, defaults.get(k)) for k in new}
    diff = [k for k in new if k not in RESUME_FREE and old.get(k) != new.get(k)]
    if diff:
        def show(v):
            return "default" if v is None else repr(v)

        shown = ", ".join(f"{flag(k)} {show(old.get(k))} -> {show(new.get(k))}" for k in diff)
        raise ConfigError(f"--run-dir {run_dir} holds a run with other settings ({shown}); "
                          "rerun with the same flags to resume it (--gpus, --xla and the "
                          "output flags may change), or choose another --run-dir.")
    return True


class RunLog:
    """``log.csv``: one row per epoch, rewritten atomically after every epoch."""

    def __init__(self, path):
        self.path = path

    def rows(self):
        """The rows as numbers (``epoch`` and ``steps`` ints, the rest floats)."""
        if not os.path.exists(self.path):
            return []
        with open(self.path, newline="") as f:
            return [{k: (int(v) if LOG_FORMATS.get(k) == "d" else float(v))
                     if k in LOG_FORMATS and v not in (None, "") else v
                     for k, v in row.items()} for row in csv.DictReader(f)]

    def _write(self, rows):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, LOG_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: format(v, LOG_FORMATS[k]) if k in LOG_FORMATS and
                             isinstance(v, (int, float)) else v for k, v in row.items()})
        write_atomic(self.path, buffer.getvalue())

    def truncate(self, last_epoch):
        """Keep the rows of epochs <= ``last_epoch`` (rows after the restored checkpoint go)."""
        rows = self.rows()
        kept = [r for r in rows if int(r["epoch"]) <= last_epoch]
        if len(kept) != len(rows) or (rows and not os.path.exists(self.path)):
            self._write(kept)

    def append(self, row):
        self._write([*self.rows(), row])


def du(path):
    """Bytes under ``path`` (a file or a folder)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def human_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} GB"


def describe(path):
    """``path (3.2 MB: checkpoints/ 3.1 MB, log.csv 1.0 KB, ...)``: what a run wrote."""
    if not os.path.exists(path):
        return f"{path} (nothing)"
    if os.path.isfile(path):
        return f"{path} ({human_bytes(du(path))})"
    parts = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        parts.append((du(full), name + ("/" if os.path.isdir(full) else "")))
    parts.sort(reverse=True)
    inner = ", ".join(f"{name} {human_bytes(size)}" for size, name in parts)
    return f"{path} ({human_bytes(sum(s for s, _ in parts))}: {inner})"
