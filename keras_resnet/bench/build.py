"""Build time of 1,000-layer ResNets, each build in a fresh process (``--build``)."""

from __future__ import annotations

import os
import statistics
import sys
import time

from keras_resnet.runs.isolation import run_isolated


BUILD_MODELS = {"resnet1001_preact": dict(depth=1001, preact=True), "resnet1202": dict(depth=1202)}


def build_once(**kwargs):
    """In this (fresh) process: the time to import Keras and to build ``ResNet(**kwargs)``."""
    t = time.perf_counter()
    import keras

    import keras_resnet

    imported = time.perf_counter() - t
    t = time.perf_counter()
    model = keras_resnet.ResNet(**kwargs)
    built = time.perf_counter() - t
    return {"import_s": imported, "build_s": built, "top_level_layers": len(model.layers),
            "recursion_limit": sys.getrecursionlimit(), "backend": keras.backend.backend()}


def build_benchmark(models=tuple(BUILD_MODELS), *, repeats=3, log=None):
    """Time ``keras_resnet.ResNet(...)`` for very deep nets, each build in a fresh process.

    The models are interleaved (A, B, A, B, ...) so that machine noise hits both
    alike; the median of ``repeats`` builds is reported.
    """
    unknown = [m for m in models if m not in BUILD_MODELS]
    if unknown:
        raise ValueError(f"Invalid value for argument `models`: received {unknown[0]!r}; "
                         f"expected names from {', '.join(BUILD_MODELS)}.")
    runs = {m: [] for m in models}
    for r in range(repeats):
        for m in models:
            # A fresh process per build: build times compare only from a clean start.
            runs[m].append(run_isolated(build_once, kwargs=BUILD_MODELS[m],
                                        output=os.devnull).value)
            if log:
                log(f"{m} repeat {r + 1}: built in {runs[m][-1]['build_s']:.2f} s")
    return {m: {"build_s_median": statistics.median(x["build_s"] for x in v),
                "build_s": [x["build_s"] for x in v],
                "top_level_layers": v[0]["top_level_layers"],
                "recursion_limit": v[0]["recursion_limit"], "backend": v[0]["backend"]}
            for m, v in runs.items()}
