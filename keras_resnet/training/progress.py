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


class Timer:
    """Wall-clock seconds since creation (``time.perf_counter``)."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.start
