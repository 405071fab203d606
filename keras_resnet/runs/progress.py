"""The sweep's one progress display: which run, its epoch, and an ETA for the whole sweep.

A run trained in this process reports every epoch (:class:`SweepProgress` is a
Keras callback the trainer calls); a run trained in a process of its own
reports when it ends (:meth:`SweepProgress.job_done`). The ETA is the measured
seconds per epoch per unit of cost (a run's cost: its depth x width^2,
proportional to its multiply-adds on the same data) times the cost of the
epochs left, plus the first-epoch overhead (building and compiling a model,
starting a process) measured so far for every run not started. Numbers stay
numbers until a line is printed.
"""

from __future__ import annotations

import sys
import time

import keras

from keras_resnet.training.progress import fmt_seconds


def job_cost(config):
    """Relative cost of one epoch of ``config`` for the ETA: depth x width^2."""
    return float(config.depth) * float(config.width) ** 2


class SweepProgress(keras.callbacks.Callback):
    """One line per epoch (or per run), with the sweep's ETA.

    Args:
        total: int, the number of runs in the sweep.
        pending: list of ``(epochs left, cost per epoch)`` of the runs that will
            train, in order.
        stream: where to write (default ``sys.stdout``).
        enabled: bool, False prints nothing.
        what: the ETA's name in the lines (``"experiment ETA 2m10s"``).
    """

    def __init__(self, total, pending, stream=None, enabled=True, what="sweep"):
        super().__init__()
        self.total = total
        self.pending = list(pending)
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.what = what
        self._steady = []        # (seconds, cost) of epochs after a run's first
        self._first = []         # (seconds, cost) of first epochs (build, compile included)
        self.index, self.name, self.epochs, self.cost = 0, "", 0, 1.0
        self._epoch_in_process, self._last = 0, None

    def write(self, text):
        if self.enabled:
            self.stream.write(text + "\n")
            self.stream.flush()

    def start(self, index, name, run_dir, epochs, done_epochs, cost):
        """Run ``index`` (1-based) begins, ``done_epochs`` of ``epochs`` already done."""
        self.index, self.name, self.epochs, self.cost = index, name, epochs, cost
        self._epoch_in_process = 0
        self._last = None
        if self.pending:
            self.pending.pop(0)
        resumed = f", resuming after epoch {done_epochs}" if done_epochs else ""
        self.write(f"[{index}/{self.total}] {name}: {epochs} epochs{resumed} -> {run_dir}")

    def skipped(self, index, name, status, run_dir):
        self.write(f"[{index}/{self.total}] {name}: {status} in an earlier run ({run_dir}), "
                   "not retrained")

    def on_epoch_begin(self, epoch, logs=None):
        if self._last is None:
            self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        (self._steady if self._epoch_in_process else self._first).append((seconds, self.cost))
        self._epoch_in_process += 1
        logs = logs or {}
        eta = self.eta(self.epochs - (epoch + 1))
        self.write(f"[{self.index}/{self.total}] {self.name} epoch {epoch + 1}/{self.epochs}: "
                   f"loss {logs.get('loss', float('nan')):.4f} - train error "
                   f"{100 * (1 - logs.get('accuracy', float('nan'))):.2f}% - test error "
                   f"{100 * (1 - logs.get('val_accuracy', float('nan'))):.2f}% - "
                   f"{fmt_seconds(seconds)} - {self.what} ETA "
                   + ("--" if eta is None else fmt_seconds(eta)))

    def job_done(self, epochs, seconds, cost):
        """A run trained ``epochs`` epochs in ``seconds`` elsewhere (its own process)."""
        if epochs > 0:
            first = seconds / epochs
            self._first.append((first, cost))
            self._steady.extend([(first, cost)] * (epochs - 1))

    def finished(self, status, message=""):
        """A run ended early (diverged, failed): its epochs left no longer count."""
        if status != "finished":
            self.write(f"[{self.index}/{self.total}] {self.name}: {status}"
                       + (f" ({message})" if message else ""))

    def eta(self, left_in_current=0):
        """Seconds left for the sweep, or None before anything was measured."""
        if self._steady:
            rate = sum(s for s, _ in self._steady) / sum(c for _, c in self._steady)
            overheads = [max(0.0, s - rate * c) for s, c in self._first]
            overhead = sum(overheads) / len(overheads) if overheads else 0.0
        elif self._first and left_in_current == 0 and all(e <= 1 for e, _ in self.pending):
            # Only first epochs are left: they cost what first epochs cost.
            rate = sum(s for s, _ in self._first) / sum(c for _, c in self._first)
            overhead = 0.0
        else:   # a first epoch includes building and compiling: wait for a steady one
            return None
        total = left_in_current * self.cost * rate
        for epochs, cost in self.pending:
            total += epochs * cost * rate + overhead
        return total

    def pace(self):
        """Measured seconds per epoch of cost 1, first epochs included (None: none yet)."""
        every = self._first + self._steady
        return sum(s for s, _ in every) / sum(c for _, c in every) if every else None
