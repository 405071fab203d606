"""Isolated measurements: one job in a fresh Python process, its result as one JSON line.

``python -m keras_resnet.bench._worker '{"job": "depth", "kwargs": {...}}'``
runs ``JOBS[job](**kwargs)`` and prints the returned dict as the last line of
stdout. Build times and peak memory are only comparable between fresh
processes (nothing imported, compiled or allocated before), so every isolated
benchmark (``--build``, ``--depths``) goes through :func:`run_isolated`.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

JOBS = {"build": "keras_resnet.bench.build:build_once",
        "depth": "keras_resnet.bench.depths:one_depth"}


class WorkerError(RuntimeError):
    """A worker process failed; the message is its last line of stderr."""


def run_isolated(job, **kwargs):
    """Run ``JOBS[job](**kwargs)`` in a fresh process; return its dict.

    Raises:
        WorkerError: the process exited with an error (its last stderr line).
    """
    if job not in JOBS:
        raise ValueError(f"Invalid value for argument `job`: received {job!r}; expected one "
                         f"of {', '.join(JOBS)}.")
    request = json.dumps({"job": job, "kwargs": kwargs})
    proc = subprocess.run([sys.executable, "-m", __name__, request], capture_output=True,
                          text=True, env=dict(os.environ))
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise WorkerError((proc.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(lines[-1])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    request = json.loads(argv[0])
    module, function = JOBS[request["job"]].split(":")
    result = getattr(importlib.import_module(module), function)(**request.get("kwargs", {}))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
