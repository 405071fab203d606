"""Training benchmark: images/second, step time and peak memory of the training loop.

``python recipes/benchmark.py --train`` measures the package's own training
step (the engine the recipes use: ``keras_resnet.training.engine_tf`` or
``engine_jax``) on one synthetic batch kept in memory (on the device under
JAX), so the number is the step's, not the input pipeline's. Warm-up calls
(tracing, XLA compilation) are excluded; the step time is the median over
repeated calls of ``steps_per_execution`` steps each.

Side-by-side comparisons (``--compare``), measured in the same process and
interleaved with the package's own measurement, since the machines these run
on are shared and noisy:

* ``keras-applications``: ``keras.applications.ResNet50`` through the same
  engine (same optimizer, loss, precision);
* ``fit``: the same ``keras_resnet`` model through a plain ``model.compile`` /
  ``model.fit`` (Keras's own trainer);
* ``fit-keras-applications``: ``keras.applications.ResNet50`` through ``model.fit``;
* ``torch``: a PyTorch eager CIFAR ResNet of the same depth (channels_last),
  if PyTorch is installed;
* ``unfused-bn``: the same model with Keras's own (unfused) BatchNormalization
  call in every BatchNorm layer, to measure what the fused kernel brings;
* ``explicit-pad``: the same model with every stride-1 convolution padded by an
  explicit pad op before a "valid" convolution (what version 0.1 did).

``--depths`` runs one fresh process per depth (so that the peak memory of each
is its own) and prints how build time, step time and peak memory grow with
depth; ``--remat`` rematerialises every residual block in the backward pass
(``keras_resnet.training.remat``, JAX), trading compute for memory.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

COMPARE = ("keras-applications", "fit", "fit-keras-applications", "torch", "unfused-bn",
           "explicit-pad")


def _peak_memory():
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


def _config(**kw):
    from keras_resnet.training.config import TrainConfig

    return TrainConfig(**kw)


def _model_kwargs(name, size, classes):
    """Builder arguments for a zoo name (``resnet56_cifar``, ``resnet50``...) or ``depth:N``."""
    from keras_resnet import specs

    if name.startswith("depth:"):
        depth = int(name.split(":", 1)[1])
        return {"depth": depth, "family": "cifar", "input_shape": (size, size, 3),
                "classes": classes}
    if name not in specs.ZOO:
        raise ValueError(f"Invalid value for argument `model`: received {name!r}; expected a "
                         f"zoo name ({', '.join(specs.ZOO)}) or 'depth:N' (CIFAR).")
    entry = specs.ZOO[name]
    return {**entry.kwargs, "input_shape": (size, size, 3), "classes": classes}


class _Stack:
    """An engine iterator that returns the same (device) batch stack every time."""

    def __init__(self, engine, images, labels):
        self.engine, self.images, self.labels = engine, images, labels
        self._cache = {}

    def next_stack(self, n):
        import numpy as np

        if n not in self._cache:
            xs = np.repeat(self.images[None], n, axis=0)
            ys = np.repeat(self.labels[None], n, axis=0)
            self._cache[n] = self.engine._put(xs, ys)
        return self._cache[n]


def _engine_setup(model_fn, *, batch_size, precision, xla, steps_per_execution, seed=0):
    import keras
    import numpy as np

    from keras_resnet.training.model import decay_variables
    from keras_resnet.training.trainer import make_engine

    config = _config(precision=precision, xla=xla, steps_per_execution=steps_per_execution,
                     deterministic=False, seed=seed, gpus=None)
    engine = make_engine(config)
    engine.set_global_state(seed)
    t0 = time.perf_counter()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        with engine.scope():
            model = model_fn()
            optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
            if precision == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(model.trainable_variables)
    finally:
        keras.config.set_dtype_policy(previous)
    build_seconds = time.perf_counter() - t0
    classes = model.output_shape[-1]
    engine.compile(model, optimizer, decay_variables(model), classes=classes,
                   weight_decay=1e-4, label_smoothing=0.0, global_batch=batch_size, xla=xla)
    rng = np.random.default_rng(seed)
    shape = (batch_size,) + tuple(model.input_shape[1:])
    images = rng.standard_normal(shape, dtype=np.float32)
    labels = rng.integers(0, classes, size=batch_size).astype(np.int32)
    return engine, model, images, labels, build_seconds


def _iterator(engine, images, labels):
    if engine.backend == "jax":
        return _Stack(engine, images, labels)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensors((images, labels)).repeat()
    return iter(engine._distribute(ds))


class _Timed:
    """One measured configuration: call ``run(calls)`` repeatedly; seconds per call."""

    def __init__(self, label, setup, step, images_per_call):
        self.label, self.setup, self.step = label, setup, step
        self.images_per_call = images_per_call
        self.seconds = []

    def run(self, calls):
        for _ in range(calls):
            t0 = time.perf_counter()
            self.step()
            self.seconds.append(time.perf_counter() - t0)

    def result(self):
        median = statistics.median(self.seconds)
        return {"label": self.label, "images_per_sec": self.images_per_call / median,
                "seconds_per_call_median": median, "seconds_per_call_min": min(self.seconds),
                "calls": len(self.seconds), **self.setup}


def engine_case(label, model_fn, *, batch_size, precision, xla, steps_per_execution):
    engine, model, images, labels, build_s = _engine_setup(
        model_fn, batch_size=batch_size, precision=precision, xla=xla,
        steps_per_execution=steps_per_execution)
    iterator = _iterator(engine, images, labels)
    k = engine.steps_per_execution

    def step():
        sums = engine.run_steps(iterator, k)
        engine.to_host(sums)        # wait for the device: time whole steps

    setup = {"backend": engine.backend, "device": engine.name, "batch_size": batch_size,
             "precision": precision, "xla": bool(xla) or engine.backend == "jax",
             "steps_per_execution": k, "build_seconds": build_s, "model": model.name,
             "parameters": int(sum(math.prod(v.shape) for v in model.trainable_variables))}
    return _Timed(label, setup, step, batch_size * k)


def fit_case(label, model_fn, *, batch_size, precision, steps):
    import keras
    import numpy as np

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        model = model_fn()
    finally:
        keras.config.set_dtype_policy(previous)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy",
                  jit_compile=False)
    classes = model.output_shape[-1]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size * steps,) + tuple(model.input_shape[1:]), dtype=np.float32)
    y = rng.integers(0, classes, size=batch_size * steps).astype(np.int32)

    def step():
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)

    setup = {"backend": keras.backend.backend(), "batch_size": batch_size,
             "precision": precision, "model": model.name, "path": "model.fit",
             "steps_per_call": steps}
    return _Timed(label, setup, step, batch_size * steps)


def torch_case(label, depth, *, batch_size, size=32, classes=10, channels_last=True, steps=2):
    """A straightforward PyTorch eager CIFAR ResNet (option A shortcuts), for comparison."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.stride, self.pad = stride, cout - cin

        def forward(self, x):
            out = F.relu(self.b1(self.c1(x)))
            out = self.b2(self.c2(out))
            short = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
            if self.pad:
                short = F.pad(short, (0, 0, 0, 0, 0, self.pad))
            return F.relu(out + short)

    n = (depth - 2) // 6
    layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for s, f in enumerate((16, 32, 64)):
        for b in range(n):
            layers.append(Block(cin, f, 2 if (s > 0 and b == 0) else 1))
            cin = f
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch_size, 3, size, size).to(memory_format=fmt)
    y = torch.randint(0, classes, (batch_size,))

    def step():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()

    setup = {"backend": f"torch {torch.__version__}", "batch_size": batch_size,
             "precision": "float32", "model": f"torch resnet{depth}",
             "path": "eager " + ("channels_last" if channels_last else "NCHW"),
             "threads": torch.get_num_threads()}
    return _Timed(label, setup, step, batch_size * steps)


def compare(model="resnet56_cifar", *, batch_size=128, precision="float32", xla=False,
            steps_per_execution=None, size=None, comparisons=(), repeats=5, calls=2,
            warmup=2, remat=False, fit_steps=10, log=print):
    """Measure the package's training step and the ``comparisons``, interleaved.

    Returns a dict with the machine, the settings and one result per case
    (images/second at the median call, seconds per call, ...). ``model.fit`` cases
    train ``fit_steps`` steps per call (an epoch's per-call set-up amortised as in
    real use).
    """
    import keras

    from keras_resnet import specs

    if isinstance(fit_steps, bool) or not isinstance(fit_steps, int) or fit_steps < 1:
        raise ValueError(f"Invalid value for argument `fit_steps`: received {fit_steps!r}; "
                         "expected a positive integer (steps per model.fit call).")
    unknown = [c for c in comparisons if c not in COMPARE]
    if unknown:
        raise ValueError(f"Invalid value for argument `compare`: received {unknown[0]!r}; "
                         f"expected some of {', '.join(COMPARE)}.")
    family = "imagenet" if (model in specs.ZOO and specs.ZOO[model].family == "imagenet") else "cifar"
    size = size or (224 if family == "imagenet" else 32)
    classes = 1000 if family == "imagenet" else 10
    kwargs = _model_kwargs(model, size, classes)

    def ours():
        import keras_resnet

        model = keras_resnet.ResNet(**kwargs)
        if remat:
            from keras_resnet.training.remat import rematerialize_blocks

            rematerialize_blocks(model)
        return model

    def applications():
        return keras.applications.ResNet50(weights=None, input_shape=(size, size, 3),
                                           classes=classes)

    cases = []
    log(f"building {model} ({keras.backend.backend()}, batch {batch_size}, {precision})")
    cases.append(engine_case("keras_resnet (package loop)", ours, batch_size=batch_size,
                             precision=precision, xla=xla, steps_per_execution=steps_per_execution))
    for name in comparisons:
        if name == "keras-applications":
            cases.append(engine_case("keras.applications.ResNet50 (package loop)", applications,
                                     batch_size=batch_size, precision=precision, xla=xla,
                                     steps_per_execution=steps_per_execution))
        elif name == "fit":
            cases.append(fit_case("keras_resnet (model.fit)", ours, batch_size=batch_size,
                                  precision=precision, steps=fit_steps))
        elif name == "fit-keras-applications":
            cases.append(fit_case("keras.applications.ResNet50 (model.fit)", applications,
                                  batch_size=batch_size, precision=precision, steps=fit_steps))
        elif name == "unfused-bn":
            def unfused():
                from keras_resnet.layers import BatchNorm

                model = ours()
                for layer in _walk(model):
                    if isinstance(layer, BatchNorm):
                        layer._fusable = lambda inputs, mask: False
                return model

            cases.append(engine_case("keras_resnet, Keras's unfused BatchNorm", unfused,
                                     batch_size=batch_size, precision=precision, xla=xla,
                                     steps_per_execution=steps_per_execution))
        elif name == "explicit-pad":
            def explicit():
                model = ours()
                for layer in _walk(model):
                    if isinstance(layer, keras.layers.Conv2D) and layer.padding == "same":
                        layer.padding = "valid"
                return model

            cases.append(engine_case("keras_resnet, explicit pad ops", explicit,
                                     batch_size=batch_size, precision=precision, xla=xla,
                                     steps_per_execution=steps_per_execution))
        elif name == "torch":
            depth = kwargs["depth"]
            cases.append(torch_case("PyTorch eager channels_last", depth, batch_size=batch_size,
                                    size=size, classes=classes))
    for case in cases:                    # warm-up: tracing, compilation, allocation
        case.run(warmup)
        case.seconds.clear()
    for r in range(repeats):              # interleaved: a busy neighbour slows all alike
        for case in cases:
            case.run(calls)
        log(f"repeat {r + 1}/{repeats}: " + ", ".join(
            f"{c.label} {c.images_per_call / statistics.median(c.seconds):.1f} img/s"
            for c in cases))
    results = [c.result() for c in cases]
    base = results[0]["images_per_sec"]
    for r in results:
        r["ratio_to_keras_resnet"] = r["images_per_sec"] / base
    return {"machine": machine(), "model": model, "input_size": size, "remat": remat,
            "results": results, **_peak_memory()}


def _walk(layer):
    yield layer
    for sub in getattr(layer, "_layers", []):
        yield from _walk(sub)


def machine():
    import keras

    info = {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
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


def depth_table(depths, *, batch_size=16, precision="float32", preact=True, repeats=3,
                remat=False, log=print, extra_args=()):
    """Build time, step time and peak memory per depth, one fresh process each."""
    rows = []
    for depth in depths:
        cmd = [sys.executable, "-m", "keras_resnet.train_benchmark", "--one-depth", str(depth),
               "--batch-size", str(batch_size), "--precision", precision,
               "--repeats", str(repeats), *(["--preact"] if preact else []),
               *(["--remat"] if remat else []), *extra_args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
        if proc.returncode != 0:
            rows.append({"depth": depth, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
            log(f"depth {depth}: failed: {rows[-1]['error']}")
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        log(f"depth {depth}: build {row['build_seconds']:.1f} s, step "
            f"{row['seconds_per_step'] * 1000:.0f} ms, peak {row['peak_bytes'] / 2**30:.2f} GiB "
            f"({row['memory']})")
    return rows


def _one_depth(depth, batch_size, precision, preact, repeats, remat):
    """One depth in this process (``--one-depth``): a JSON line on stdout."""
    import keras

    from keras_resnet import specs

    block = "bottleneck" if (depth - 2) % 9 == 0 and (depth - 2) % 6 else None
    if depth in (164, 1001):
        block = "bottleneck"
    blocks = specs.cifar_blocks_for(depth)
    block = block if block in blocks else blocks[0]

    def model_fn():
        import keras_resnet

        kw = dict(depth=depth, family="cifar", block=block, preact=preact,
                  input_shape=(32, 32, 3), classes=10)
        model = keras_resnet.ResNet(**kw)
        if remat:
            from keras_resnet.training.remat import rematerialize_blocks

            rematerialize_blocks(model)
        return model

    case = engine_case(f"depth {depth}", model_fn, batch_size=batch_size, precision=precision,
                       xla=False, steps_per_execution=1)
    case.run(1)
    case.seconds.clear()
    case.run(repeats)
    r = case.result()
    out = {"depth": depth, "block": block, "preact": preact, "remat": remat,
           "batch_size": batch_size, "precision": precision, "backend": r["backend"],
           "build_seconds": r["build_seconds"], "seconds_per_step": r["seconds_per_call_median"],
           "images_per_sec": r["images_per_sec"], **_peak_memory()}
    print(json.dumps(out))


def main(argv=None):
    """``python -m keras_resnet.train_benchmark`` / ``recipes/benchmark.py --train``."""
    import argparse

    p = argparse.ArgumentParser(prog="recipes/benchmark.py --train",
                                description="Training throughput of the package's loop, with "
                                            "side-by-side comparisons in the same process.")
    p.add_argument("--model", default="resnet56_cifar",
                   help="a zoo name (python -m keras_resnet zoo) or depth:N (default: resnet56_cifar)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="global batch (default: 128 CIFAR, 32 ImageNet)")
    p.add_argument("--precision", default="float32",
                   choices=("float32", "mixed_float16", "mixed_bfloat16"), help="(default: float32)")
    p.add_argument("--xla", action="store_true", help="XLA on TensorFlow (JAX always compiles)")
    p.add_argument("--steps-per-execution", type=int, default=None,
                   help="steps per compiled call (default: the engine's)")
    p.add_argument("--image-size", type=int, default=None, help="(default: 32 CIFAR, 224 ImageNet)")
    p.add_argument("--compare", default="", help=f"comma-separated: {', '.join(COMPARE)}")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repetitions (default: 5)")
    p.add_argument("--calls", type=int, default=2, help="calls per case per repetition (default: 2)")
    p.add_argument("--fit-steps", type=int, default=10,
                   help="steps per model.fit call in the fit comparisons (default: 10)")
    p.add_argument("--remat", action="store_true", help="rematerialise every residual block")
    p.add_argument("--depths", default=None,
                   help="comma-separated CIFAR depths: one fresh process each, the depth table")
    p.add_argument("--no-preact", action="store_true",
                   help="with --depths: post-activation nets (default: pre-activation)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results to FILE")
    p.add_argument("--one-depth", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--preact", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one_depth is not None:
        _one_depth(args.one_depth, args.batch_size or 16, args.precision, args.preact,
                   args.repeats, args.remat)
        return 0
    if args.depths:
        depths = [int(d) for d in args.depths.split(",") if d]
        rows = depth_table(depths, batch_size=args.batch_size or 16, precision=args.precision,
                           preact=not args.no_preact, repeats=args.repeats, remat=args.remat)
        result = {"machine": machine(), "depth_table": rows}
    else:
        comparisons = tuple(c for c in args.compare.split(",") if c)
        try:
            result = compare(args.model, batch_size=args.batch_size or (
                32 if args.model in ("resnet50", "resnet101", "resnet152") else 128),
                precision=args.precision, xla=args.xla,
                steps_per_execution=args.steps_per_execution, size=args.image_size,
                comparisons=comparisons, repeats=args.repeats, calls=args.calls,
                remat=args.remat, fit_steps=args.fit_steps)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"\n{'case':<46} {'img/s':>9} {'ratio':>6} {'s/call':>8}")
        for r in result["results"]:
            print(f"{r['label']:<46} {r['images_per_sec']:>9.1f} "
                  f"{r['ratio_to_keras_resnet']:>6.2f} {r['seconds_per_call_median']:>8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
