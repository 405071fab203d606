"""The child side of :func:`keras_resnet.runs.isolated` (``python -m keras_resnet.runs._child``).

Arguments: the parent's process id, the pickled call ``(fn, args, kwargs)`` and
the path to write the pickled reply to: ``{"ok": True, "value": ...}`` or
``{"ok": False, "type": ..., "summary": ..., "traceback": ...}``.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
import traceback


def _exit_with_parent(parent, poll_seconds=1.0):
    # The kernel already kills this process with its parent on Linux
    # (PR_SET_PDEATHSIG, set before exec); this covers a parent that died before
    # that was set, and platforms without it.
    if os.getppid() != parent:
        os._exit(3)

    def watch():
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _write(path, reply):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(reply, f)
    os.replace(tmp, path)


def main(argv=None):
    parent, call, result = (sys.argv[1:] if argv is None else argv)
    _exit_with_parent(int(parent))
    try:
        with open(call, "rb") as f:
            fn, args, kwargs = pickle.load(f)
        value = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - every failure goes back to the parent
        from keras_resnet.runs.isolation import error_summary

        _write(result, {"ok": False, "type": type(e).__name__, "summary": error_summary(e),
                        "traceback": traceback.format_exc()})
        return 1
    sys.stdout.flush()
    _write(result, {"ok": True, "value": value})
    return 0


if __name__ == "__main__":
    sys.exit(main())
