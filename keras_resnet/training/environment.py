"""What must be settled before Keras and its backend are imported, and importing them quietly.

* :func:`prepare_environment`: the backend and the environment variables that
  TensorFlow and XLA read once, at import.
* :func:`import_backend`: import the backend and look for its devices with
  the native libraries' start-up chatter (absl's pre-initialisation notice,
  oneDNN and CUDA-stub information lines, ``failed call to cuInit`` on a
  machine without a GPU) kept off the terminal; any other native message
  still shows. Returns the devices in the package's own words, one line.

No Keras, no TensorFlow at the top of this module.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# Native log lines of TensorFlow/XLA's absl logging: "I0000 00:00:17.. 1234 port.cc:153] ...".
_NATIVE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] (.*)$")
_ABSL_NOTICE = ("WARNING: All log messages before absl::InitializeLog() is called are written "
                "to STDERR")
# Errors that only say that this machine has no usable GPU (the device line says so).
_NO_GPU = ("failed call to cuInit", "Could not find cuda drivers")


def prepare_environment(config):
    """Environment variables that must be set before keras/TensorFlow/JAX are imported.

    * ``KERAS_BACKEND`` from ``--backend`` (else the user's, else tensorflow).
    * ``TF_ENABLE_ONEDNN_OPTS=1``: TensorFlow leaves its oneDNN CPU kernels off on
      some x86 CPUs (AMD among them); on, a 3x3 convolution's forward and backward
      pass took half the time on the 2-core development machines. It is read
      once, when TensorFlow is imported, hence here.
    * ``TF_CPP_MIN_LOG_LEVEL=2`` (the user's value wins): no native INFO/WARNING lines.
    * ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` for ``--deterministic`` under JAX.
    """
    if config.backend is not None:
        os.environ["KERAS_BACKEND"] = config.backend   # too late if keras is loaded:
        # make_engine reports the mismatch
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ["KERAS_BACKEND"] == "jax" and config.deterministic:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_gpu_deterministic_ops=true").strip()


def _keep(line, level):
    """Is a native library's stderr line worth showing at TF_CPP_MIN_LOG_LEVEL ``level``?"""
    if line.strip() == _ABSL_NOTICE:
        return False
    match = _NATIVE.match(line)
    if not match:
        return bool(line.strip())
    severity, text = match.groups()
    if severity in "IW":
        return level < {"I": 1, "W": 2}[severity]
    if severity == "E" and any(s in text for s in _NO_GPU):
        return False
    return level < 3 or severity == "F"


@contextlib.contextmanager
def quiet_native_stderr():
    """Hold what native code writes to file descriptor 2; show what :func:`_keep` keeps.

    Python's own ``sys.stderr`` writes go to the same descriptor and are shown
    too (after the block), so an import error's traceback is never lost.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):   # no real stderr (pytest's capture)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), fd)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf8", "replace")
            raw = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "")
            level = int(raw) if raw.isdigit() else 0
            shown, dropped = [], False
            for line in text.splitlines():
                if failed:   # the import failed: show everything, the reason may be there
                    shown.append(line)
                    continue
                if dropped and not _NATIVE.match(line) and line.strip() != _ABSL_NOTICE:
                    continue   # the rest of a dropped multi-line native message
                dropped = not _keep(line, level)
                if not dropped:
                    shown.append(line)
            if shown:
                sys.stderr.write("\n".join(shown) + "\n")
                sys.stderr.flush()


def import_backend():
    """Import Keras's backend and find its devices quietly; return them in one line.

    Example: ``"tensorflow 2.21.0 on the CPU (no GPU found)"`` or
    ``"jax 0.10.1 on 8 GPUs (NVIDIA H100 80GB HBM3)"``.
    """
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    with quiet_native_stderr():
        if backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            names = sorted({d.device_kind for d in gpus})
            version = jax.__version__
        elif backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            names = []
            for gpu in gpus[:1]:
                try:
                    names = [tf.config.experimental.get_device_details(gpu).get("device_name")]
                except Exception:  # noqa: BLE001 - a name is a nicety
                    names = []
            version = tf.__version__
        else:
            import keras  # noqa: F401

            return f"{backend} backend"
        import keras  # noqa: F401  (Keras itself, with the backend loaded quietly)
    if not gpus:
        return f"{backend} {version} on the CPU (no GPU found)"
    label = f" ({', '.join(n for n in names if n)})" if any(names) else ""
    return f"{backend} {version} on {len(gpus)} GPU{'s' if len(gpus) != 1 else ''}{label}"
