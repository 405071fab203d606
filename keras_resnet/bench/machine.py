"""What a benchmark ran on: the machine, the versions, the peak memory."""

from __future__ import annotations

import os
import platform


def cpu_name():
    """The CPU model from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine():
    """Platform, CPUs, Python, Keras and backend versions, accelerators."""
    import keras

    info = {"platform": platform.platform(), "processor": platform.processor(),
            "cpu": cpu_name(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "keras": keras.__version__, "backend": keras.backend.backend()}
    if keras.backend.backend() == "jax":
        import jax

        info["jax"] = jax.__version__
        info["devices"] = [str(d.device_kind) for d in jax.devices()]
    else:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["gpus"] = len(tf.config.list_physical_devices("GPU"))
    return info


def peak_memory():
    """Peak bytes: the accelerator's (JAX GPU) or the process's resident set."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            stats = device.memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                return {"peak_bytes": int(stats["peak_bytes_in_use"]), "memory": device.platform}
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux
    return {"peak_bytes": int(rss), "memory": "process RSS"}
