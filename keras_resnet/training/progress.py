"""One progress display for a run: a live line per epoch and an ETA for the whole run.

Keras's ``Progbar`` shows one epoch and that epoch's ETA; a run wants the time
left to its end (epochs, evaluation and resumed runs included) and one line
per epoch in logs that are not terminals, so this small class does that.
On a terminal the current epoch's line is redrawn in place every time the
trainer reads its metrics (every ``--log-every`` steps); elsewhere (a file, CI)
only the final line of each epoch is printed.
"""

from __future__ import annotations

import sys
import time


def fmt_seconds(s):
    """``"1h02m03s"``, ``"2m03s"`` or ``"3s"``."""
    s = int(round(max(0.0, s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


class Progress:
    """The display of one run.

    Args:
        epochs: int, the run's last epoch.
        total_steps: int, the run's total training steps.
        enabled: bool, False prints nothing.
        stream: where to write (default ``sys.stdout``).
        interactive: bool or None (None: ``stream.isatty()``).
    """

    def __init__(self, epochs, total_steps, *, enabled=True, stream=None, interactive=None):
        self.epochs, self.total_steps = epochs, total_steps
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._step_seconds = None      # measured seconds per step (steady state)
        self._eval_seconds = 0.0
        self._width = 0

    def seconds_per_step(self, value):
        self._step_seconds = value

    def eval_seconds(self, value):
        self._eval_seconds = value

    def eta(self, steps_left, epochs_left):
        if self._step_seconds is None:
            return None
        return steps_left * self._step_seconds + epochs_left * self._eval_seconds

    def _eta_text(self, steps_left, epochs_left):
        eta = self.eta(steps_left, epochs_left)
        return "run ETA --" if eta is None else f"run ETA {fmt_seconds(eta)}"

    def update(self, epoch, step, steps, values, steps_left, epochs_left):
        """Redraw the live line (terminals only)."""
        if not (self.enabled and self.interactive):
            return
        filled = int(20 * step / max(steps, 1))
        bar = "=" * filled + (">" if filled < 20 else "") + "." * max(0, 19 - filled)
        text = (f"epoch {epoch}/{self.epochs} [{bar}] {step}/{steps} - "
                + " - ".join(f"{k} {v}" for k, v in values.items())
                + f" - {self._eta_text(steps_left, epochs_left)}")
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def end_epoch(self, epoch, values, steps_left, epochs_left):
        """The epoch's final line (always printed when enabled)."""
        if not self.enabled:
            return
        text = (f"epoch {epoch}/{self.epochs}: "
                + " - ".join(f"{k} {v}" for k, v in values.items())
                + f" - {self._eta_text(steps_left, epochs_left)}")
        if self.interactive:
            text = "\r" + text + " " * max(0, self._width - len(text) + 1)
        self.stream.write(text + "\n")
        self.stream.flush()
        self._width = 0


class Counter:
    """Progress through ``total`` units of work (an analysis's evaluations, batches, layers).

    On a terminal one line is redrawn in place; elsewhere (a file, CI) plain
    lines without control characters are printed, at most one every
    ``every`` seconds, and the last one when the work is done. Keras's
    ``Progbar`` writes its bar (with ANSI colours) on every update in both
    cases, which fills log files.

    Args:
        total: int, units of work.
        unit: str, their name (plural), e.g. ``"layers"``.
        enabled: bool, False prints nothing.
        stream: where to write (default ``sys.stdout``).
        interactive: bool or None (None: ``stream.isatty()``).
        every: float, seconds between two lines when not interactive.
        clock: callable returning seconds (tests pass a fake clock).
    """

    def __init__(self, total, unit, *, enabled=True, stream=None, interactive=None, every=30.0,
                 clock=time.perf_counter):
        self.total, self.unit, self.enabled = max(int(total), 1), unit, enabled
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.every, self.clock = every, clock
        self.start = clock()
        self._last_line = None
        self._width = 0
        self._finished = False

    def _text(self, done):
        elapsed = self.clock() - self.start
        text = f"{done}/{self.total} {self.unit} ({100 * done / self.total:.0f}%)"
        if done >= self.total:
            return f"{text} in {fmt_seconds(elapsed)}"
        eta = elapsed / done * (self.total - done) if done else None
        return f"{text} - ETA {'--' if eta is None else fmt_seconds(eta)}"

    def update(self, done):
        """Report that ``done`` units of the ``total`` are finished."""
        if not self.enabled:
            return
        done = min(int(done), self.total)
        finished = done >= self.total
        if self._finished:
            return
        self._finished = finished
        if self.interactive:
            filled = int(20 * done / self.total)
            bar = "=" * filled + (">" if filled < 20 else "") + "." * max(0, 19 - filled)
            text = f"[{bar}] {self._text(done)}"
            self.stream.write("\r" + text + " " * max(0, self._width - len(text))
                              + ("\n" if finished else ""))
            self._width = len(text)
        else:
            now = self.clock()
            if not finished and self._last_line is not None and now - self._last_line < self.every:
                return
            self._last_line = now
            self.stream.write(self._text(done) + "\n")
        self.stream.flush()


class Timer:
    """Wall-clock seconds since creation (``time.perf_counter``)."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.start
