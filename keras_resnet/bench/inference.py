"""Inference benchmark: batch-1 latency and file size of every export format, side by side.

For each network (ResNet-20 at 32x32, ResNet-50 at 224x224, random weights)
:func:`inference_benchmark` writes ``model.keras``, a SavedModel and the TFLite
float32/float16/dynamic/int8 files (all with the preprocessing inside, as
:func:`keras_resnet.serving.export_model` writes them), then times one-image
calls of each in ONE process, interleaved: every repetition runs every format
once (``calls`` back-to-back calls, averaged), and the table reports the median
over repetitions, so that a noisy neighbour slows all formats alike.

The classifier of the random network is rescaled so that its logits have a
standard deviation of 2 (a random ResNet-50 otherwise outputs one-hot
probabilities and every format "agrees" trivially); the last column then shows
how far each format's probabilities are from the Keras model's.

The formats timed:

* ``keras``: the Keras model called through a ``tf.function`` (graph mode,
  what a Python server would do), uint8 input normalised inside;
* ``keras predict_on_batch``: ``model.predict_on_batch`` (Keras's own
  one-batch inference entry point, with its per-call overhead);
* ``saved_model``: the ``serving_default`` signature of the loaded SavedModel;
* ``tflite <q>``: the LiteRT interpreter (XNNPACK delegate, ``threads`` threads).
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import tempfile
import time

import numpy as np

from keras_resnet.bench.machine import cpu_name

MODELS = {"resnet20": {"depth": 20, "size": 32}, "resnet50": {"depth": 50, "size": 224}}
FORMATS = ("keras", "keras predict_on_batch", "saved_model", "tflite float32", "tflite float16",
           "tflite dynamic", "tflite int8")


def _spec(size):
    from keras_resnet import preprocessing as prep

    if size >= 128:
        return prep.make_spec((size, size), prep.IMAGENET_MEAN, prep.IMAGENET_STD)
    return prep.make_spec((size, size), prep.CIFAR10_MEAN, prep.CIFAR10_STD)


def _build(name, seed, images):
    """The random-weight model; its classifier is rescaled so the logits have std 2 on
    ``images``: a random ResNet-50 saturates its softmax (one-hot outputs), which would make
    the probability differences between formats meaningless."""
    import keras

    from keras_resnet import ResNet
    from keras_resnet import preprocessing as prep

    cfg = MODELS[name]
    keras.utils.set_random_seed(seed)
    model = ResNet(depth=cfg["depth"], input_shape=(cfg["size"], cfg["size"], 3))
    features = keras.Model(model.inputs, model.get_layer("avg_pool").output)
    dense = model.get_layer("predictions")
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in dense.weights)
    f = features.predict(prep.preprocess_numpy(images, _spec(cfg["size"])), verbose=0)
    logits = f @ kernel + bias
    scale = 2.0 / max(float(logits.std()), 1e-12)
    dense.set_weights([kernel * scale, bias * scale])
    return model, cfg["size"]


def _runners(model, spec, workdir, threads, calibration, log):
    """Write every format; return {format: (bytes, callable(image) -> probabilities)}."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from keras_resnet import preprocessing as prep
    from keras_resnet.serving import metadata, savedmodel, signature, tflite

    runners = {}
    keras_path = os.path.join(workdir, "model.keras")
    model.save(keras_path)
    serve = tf.function(signature.serving_function(model, spec, resize=False))
    runners["keras"] = (os.path.getsize(keras_path), lambda x: serve(tf.constant(x)).numpy())

    def predict_on_batch(x):
        return np.asarray(model.predict_on_batch(prep.preprocess_numpy(x, spec)))

    runners["keras predict_on_batch"] = (os.path.getsize(keras_path), predict_on_batch)
    log("  writing the SavedModel")
    sm_path = savedmodel.export_saved_model(model, os.path.join(workdir, "saved_model"),
                                    preprocessing=spec)
    fn = tf.saved_model.load(sm_path).signatures[signature.SIGNATURE]
    runners["saved_model"] = (metadata.size(sm_path), lambda x: fn(images=tf.constant(x))[
        signature.OUTPUT_KEY].numpy())
    tfl_sm = tflite.tflite_saved_model(model, os.path.join(workdir, "tflite_sm"),
                                       preprocessing=spec)
    for q in (None, "float16", "dynamic", "int8"):
        log(f"  converting to TFLite {q or 'float32'}")
        content = tflite.tflite_bytes(model, q, calibration if q == "int8" else None,
                                  preprocessing=spec, saved_model_dir=tfl_sm)
        interp = Interpreter(model_content=content, num_threads=threads)
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

        def run(x, interp=interp, inp=inp, out=out):
            interp.set_tensor(inp["index"], x)
            interp.invoke()
            y = interp.get_tensor(out["index"])
            if out["dtype"] != np.float32:
                scale, zero = out["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            return y

        runners[f"tflite {q or 'float32'}"] = (len(content), run)
    return runners


def inference_benchmark(models=("resnet20", "resnet50"), *, repeats=15, calls=5, warmup=3,
                        threads=None, calibration_images=16, seed=0, log=None):
    """Batch-1 latency and size of every export format; returns a JSON-able dict.

    Args:
        models (tuple[str, ...]): keys of :data:`MODELS`.
        repeats (int): interleaved repetitions (the median is reported).
        calls (int): back-to-back calls per format per repetition (averaged).
        warmup (int): untimed calls per format first.
        threads (int | None): TFLite interpreter threads (default: all CPU cores).
        calibration_images (int): random images for the int8 calibration.
        seed (int): weights and images.
        log (callable | None): progress messages (e.g. ``print``).

    Returns:
        dict: ``{"machine", "versions", "settings", "rows": [{"model", "format",
        "bytes", "median_ms", "min_ms", "max_abs_diff"}, ...]}``.
    """
    import keras

    from keras_resnet.serving.metadata import package_versions

    for name in models:
        if name not in MODELS:
            raise ValueError(f"Invalid value for argument `models`: received {name!r}; "
                             f"expected names from {tuple(MODELS)}.")
    for arg, value in (("repeats", repeats), ("calls", calls)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"Invalid value for argument `{arg}`: expected a positive int; "
                             f"received {value!r}.")
    threads = threads or os.cpu_count()
    log = log or (lambda message: None)
    rng = np.random.default_rng(seed)
    rows = []
    for name in models:
        size = MODELS[name]["size"]
        spec = _spec(size)
        calibration = rng.integers(0, 256, (calibration_images, size, size, 3), dtype=np.uint8)
        model, _ = _build(name, seed, calibration)
        image = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
        workdir = tempfile.mkdtemp(prefix=f"keras_resnet_bench_{name}_")
        try:
            log(f"{name}: {size}x{size}, {model.count_params():,} parameters")
            runners = _runners(model, spec, workdir, threads, calibration, log)
            reference = runners["keras"][1](image)
            times = {f: [] for f in runners}
            diffs = {f: float(np.abs(run(image) - reference).max())
                     for f, (_, run) in runners.items()}
            for f, (_, run) in runners.items():
                for _ in range(warmup):
                    run(image)
            log(f"  timing {len(runners)} formats x {repeats} repetitions x {calls} calls")
            for _ in range(repeats):
                for f, (_, run) in runners.items():
                    start = time.perf_counter()
                    for _ in range(calls):
                        run(image)
                    times[f].append((time.perf_counter() - start) / calls * 1e3)
            for f, (nbytes, _) in runners.items():
                rows.append({"model": name, "input": f"{size}x{size}", "format": f,
                             "bytes": int(nbytes), "median_ms": statistics.median(times[f]),
                             "min_ms": min(times[f]), "max_abs_diff": diffs[f]})
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            del model
            keras.backend.clear_session()
    return {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "processor": cpu_name()},
            "versions": package_versions(),
            "settings": {"repeats": repeats, "calls": calls, "warmup": warmup,
                         "tflite_threads": threads, "batch": 1, "seed": seed,
                         "calibration_images": calibration_images},
            "rows": rows}


def format_table(result):
    """A markdown table of :func:`inference_benchmark`'s rows."""
    lines = ["| model | format | size (MB) | batch-1 latency, median (ms) | min (ms) | "
             "vs keras | max abs diff of probabilities vs keras |",
             "|---|---|---:|---:|---:|---:|---|"]
    base = {r["model"]: r["median_ms"] for r in result["rows"] if r["format"] == "keras"}
    for r in result["rows"]:
        speed = base[r["model"]] / r["median_ms"] if r["model"] in base else float("nan")
        lines.append(f"| {r['model']} ({r['input']}) | {r['format']} | {r['bytes'] / 1e6:.2f} | "
                     f"{r['median_ms']:.2f} | {r['min_ms']:.2f} | {speed:.2f}x | "
                     f"{r['max_abs_diff']:.1e} |")
    return "\n".join(lines)
