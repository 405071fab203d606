"""One trial of a search, trained in a process of its own.

``python -m keras_resnet.tuning.trial [SEARCH_PID]`` reads a JSON object from its standard
input: ``config`` (the :class:`~keras_resnet.training.TrainConfig` of the
trial, as ``TrainConfig.flags()``), ``verbose`` and ``error_path``. It runs
:class:`keras_resnet.training.Trainer` on it, which writes the trial's run
directory (``log.csv`` holds the history the search reads back), and exits 0.
On an exception it writes the error's one-line summary and its traceback to
``error_path`` and exits 1.

Why a process per trial: TensorFlow 2.21 keeps every traced graph of a process
alive after ``keras.backend.clear_session()`` (measured here: resident memory
grew by about 10 MB per ResNet-8 trial and 67 MB per ResNet-56 trial, through
the package's trainer or ``model.fit`` alike). A process per trial returns all
of it, as well as what an out-of-memory error or a crash leaves behind.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback


def error_summary(error):
    """``"ResourceExhaustedError: OOM when allocating tensor ..."``: the type and first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else repr(error)}"


def write_error(path, error):
    """Write ``error``'s summary, a blank line and the current traceback to ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(f"{error_summary(error)}\n\n{traceback.format_exc()}")


def exit_with_parent(parent=None, poll_seconds=1.0):
    """End this process when the search that started it (``parent``) is gone.

    A search killed outright (``kill -9``, the out-of-memory killer) cannot stop
    its trial's process; left running, it would go on writing the run directory
    that the resumed search trains the same trial in. On Linux the kernel sends
    this process SIGKILL the moment its parent dies (``PR_SET_PDEATHSIG``; a
    trial of a small net trains several epochs in the second a poll would
    wait); elsewhere a thread polls the parent's id. Checkpoints are written
    atomically, so ending at any moment is safe.
    """
    parent = os.getppid() if parent is None else int(parent)
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:   # the search died before the line above
        os._exit(3)

    def watch():
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    exit_with_parent(argv[0] if argv else None)
    payload = json.load(sys.stdin)
    from keras_resnet.training.environment import prepare_environment
    from keras_resnet.training.config import TrainConfig

    config = TrainConfig(**payload["config"])
    prepare_environment(config)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)   # retracing notes
    try:
        from keras_resnet.training.trainer import Trainer

        Trainer(config, verbose=bool(payload.get("verbose"))).run()
    except Exception as e:  # noqa: BLE001 - every failure is reported to the search
        write_error(payload["error_path"], e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
