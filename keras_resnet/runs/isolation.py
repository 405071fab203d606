"""The package's one subprocess mechanism: call a function in a fresh Python process.

:func:`isolated` runs ``fn(*args, **kwargs)`` in a new interpreter
(``python -m keras_resnet.runs._child``) and returns its value, or raises
:class:`IsolatedError` with the child's one-line error. The sweeps use it to
train each run in a process of its own, the benchmarks to measure one
configuration in a clean process.

Why a process: TensorFlow keeps every graph a process traced alive after
``keras.backend.clear_session()`` (a long sweep in one process grows by each
run's graphs), and a process returns all of its memory, including what an
out-of-memory error or a crash leaves behind.

The function and its arguments travel pickled (so ``fn`` must be importable:
a module-level function), the value comes back pickled. The child dies with
its parent: on Linux the kernel sends it SIGKILL the moment the parent exits,
however it exits (``PR_SET_PDEATHSIG``); a run left behind would go on writing
a run directory that a rerun of the same sweep resumes in. Elsewhere the child
polls its parent's id.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time


class IsolatedError(RuntimeError):
    """The child process failed; ``str(error)`` is one line.

    Attributes:
        summary: ``"Type: first line of the message"``, or how the process ended.
        error_type: the child's exception class name (None: the process died).
        traceback: the child's traceback text ("" when it died without one).
        returncode: the child's exit code (negative: killed by that signal).
        peak_bytes: the child's peak resident memory, or None.
    """

    def __init__(self, summary, *, error_type=None, traceback="", returncode=None,
                 peak_bytes=None):
        super().__init__(summary)
        self.summary, self.error_type, self.traceback = summary, error_type, traceback
        self.returncode, self.peak_bytes = returncode, peak_bytes


@dataclasses.dataclass
class Finished:
    """What :func:`run_isolated` returns: the value, peak memory and wall seconds."""

    value: object
    peak_bytes: int | None
    seconds: float


def error_summary(error):
    """``"ResourceExhaustedError: OOM when allocating tensor ..."``: the type and first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else repr(error)}"


def _die_with_parent():
    """``preexec_fn``: ask the kernel to SIGKILL this child when its parent dies (Linux).

    Runs between fork and exec, so it calls only the C function looked up
    beforehand (no imports, no allocation-heavy Python). PR_SET_PDEATHSIG fires
    when the thread that forked the child ends; the sweeps fork from the main
    thread, which lives as long as the process.
    """
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL, 0, 0, 0)   # 1 = PR_SET_PDEATHSIG


def _find_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _find_prctl()


def _wait(pid, deadline):
    """``(status, rusage)`` of the child, or None when ``deadline`` passed first."""
    while True:
        if deadline is None:
            _, status, usage = os.wait4(pid, 0)
            return status, usage
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def run_isolated(fn, args=(), kwargs=None, *, timeout=None, output=None, env=None,
                 label="the child process"):
    """Call ``fn(*args, **kwargs)`` in a new process; return a :class:`Finished`.

    Args:
        fn: a module-level function (pickled by reference).
        args, kwargs: its arguments (pickled).
        timeout: seconds, or None: the child is killed when it runs longer.
        output: None (the child writes to this process's terminal) or a file path
            that the child's standard output and error are appended to.
        env: the child's environment (default: this process's).
        label: how a failure names the child (``"the trial's process"``).

    Raises:
        IsolatedError: ``fn`` raised (its summary and traceback), or the process
            was killed, exited early or timed out.
    """
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"Argument `timeout` must be a positive number of seconds or None; "
                         f"received {timeout!r}.")
    workdir = tempfile.mkdtemp(prefix="keras_resnet_isolated_")
    call, result = os.path.join(workdir, "call.pkl"), os.path.join(workdir, "result.pkl")
    start = time.monotonic()
    try:
        with open(call, "wb") as f:
            pickle.dump((fn, tuple(args), dict(kwargs or {})), f)
        if output:
            os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        sink = open(output, "ab") if output else None
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "keras_resnet.runs._child", str(os.getpid()), call,
                 result], stdin=subprocess.DEVNULL, stdout=sink,
                stderr=subprocess.STDOUT if sink else None,
                env=dict(os.environ if env is None else env), preexec_fn=_die_with_parent)
            try:
                # os.wait4 (not Popen.wait) also reports the child's own peak memory.
                waited = _wait(proc.pid, None if timeout is None else start + timeout)
            except BaseException:   # Ctrl-C in the parent: the child goes too
                proc.kill()
                proc.wait()
                raise
            if waited is None:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                raise IsolatedError(f"{label} did not finish within {timeout:g} s and was "
                                    "killed", returncode=proc.returncode,
                                    peak_bytes=usage.ru_maxrss * 1024)
            status, usage = waited
        finally:
            if sink:
                sink.close()
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        peak = usage.ru_maxrss * 1024   # kilobytes on Linux
        reply = None
        if os.path.exists(result):
            with open(result, "rb") as f:
                reply = pickle.load(f)
        if code == 0 and reply is not None and reply.get("ok"):
            return Finished(reply["value"], peak, time.monotonic() - start)
        if reply is not None and not reply.get("ok"):
            raise IsolatedError(reply["summary"], error_type=reply["type"],
                                traceback=reply["traceback"], returncode=code, peak_bytes=peak)
        if code < 0:
            summary = (f"{label} was killed by signal {-code}"
                       + (" (out of memory?)" if code == -signal.SIGKILL else ""))
        else:
            summary = f"{label} exited with code {code}"
        raise IsolatedError(summary, returncode=code, peak_bytes=peak)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def isolated(fn, *args, timeout=None, **kwargs):
    """``fn(*args, **kwargs)`` computed in a fresh process that dies with this one.

    Example::

        from keras_resnet.runs import isolated
        seconds = isolated(measure_depth, 110, timeout=600)

    Raises:
        IsolatedError: see :func:`run_isolated`.
    """
    return run_isolated(fn, args, kwargs, timeout=timeout).value
