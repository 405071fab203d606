"""The timing harness: measured cases, run interleaved, medians over repetitions.

The machines the benchmarks run on are shared and noisy (and sometimes
throttled for a process's whole life), so every compared case is measured in
the same process, interleaved: each repetition runs every case ``calls`` times
in turn, after untimed warm-up calls (tracing, compilation, allocation), and
the result is the median over all timed calls. The clock is a parameter so
that the harness itself is tested on a fake clock.
"""

from __future__ import annotations

import statistics
import time


class Case:
    """One measured configuration: ``run(calls)`` calls ``step`` and records seconds per call.

    ``step()`` may return the seconds it measured itself (a ``model.fit`` call
    timed from its first batch to ``on_train_end`` by a callback); the call's
    total is then kept as a second figure (``call_seconds``).

    Args:
        label (str): the row's name.
        setup (dict): what was measured (backend, batch size, ...), copied into the result.
        step (callable): one timed call.
        images_per_call (int): images one call processes.
        clock (callable): seconds, monotonic (default ``time.perf_counter``).
    """

    def __init__(self, label, setup, step, images_per_call, clock=time.perf_counter):
        self.label, self.setup, self.step = label, setup, step
        self.images_per_call = images_per_call
        self.clock = clock
        self.seconds = []
        self.call_seconds = []

    def run(self, calls):
        for _ in range(calls):
            t0 = self.clock()
            measured = self.step()
            total = self.clock() - t0
            self.call_seconds.append(total)
            self.seconds.append(total if measured is None else measured)

    def reset(self):
        self.seconds.clear()
        self.call_seconds.clear()

    def images_per_sec(self):
        return self.images_per_call / statistics.median(self.seconds)

    def result(self):
        median = statistics.median(self.seconds)
        out = {"label": self.label, "images_per_sec": self.images_per_call / median,
               "seconds_per_call_median": median, "seconds_per_call_min": min(self.seconds),
               "calls": len(self.seconds), **self.setup}
        if self.call_seconds != self.seconds:
            call = statistics.median(self.call_seconds)
            out.update({"call_seconds_median": call,
                        "images_per_sec_whole_call": self.images_per_call / call})
        return out


def interleave(cases, *, repeats, calls, warmup, log=None):
    """Warm every case up, then ``repeats`` rounds of ``calls`` calls of each case in turn.

    Returns one result dict per case (see :meth:`Case.result`).
    """
    for name, value in (("repeats", repeats), ("calls", calls)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Invalid value for argument `{name}`: received {value!r}; "
                             "expected a positive integer.")
    for case in cases:                    # warm-up: tracing, compilation, allocation
        case.run(warmup)
        case.reset()
    for r in range(repeats):              # interleaved: a busy neighbour slows all alike
        for case in cases:
            case.run(calls)
        if log:
            log(f"repeat {r + 1}/{repeats}: " + ", ".join(
                f"{c.label} {c.images_per_sec():.1f} img/s" for c in cases))
    return [c.result() for c in cases]
