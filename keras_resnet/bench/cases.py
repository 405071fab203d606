"""The training cases that :func:`keras_resnet.bench.throughput.compare` measures.

* :func:`engine_case`: a model through the package's own training step (the
  engine the recipes use), on one synthetic batch kept on the devices
  (``Engine.repeat_batch``), so the number is the step's, not the input
  pipeline's;
* :func:`fit_case`: a model through a plain ``model.compile`` / ``model.fit``;
* :func:`torch_case`: a PyTorch eager CIFAR ResNet (channels_last), if installed.
"""

from __future__ import annotations

import math
import time

from keras_resnet.bench.harness import Case


def model_kwargs(name, size, classes):
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


def _build(model_fn, precision):
    import keras

    # A global policy here, not ResNet(dtype=): the comparison cases build
    # keras.applications models, which follow only Keras's global policy.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return model_fn()
    finally:
        keras.config.set_dtype_policy(previous)


def engine_case(label, model_fn, *, batch_size, precision, xla, steps_per_execution, seed=0):
    """The package's training step on one synthetic batch; a call runs steps_per_execution steps."""
    import keras
    import numpy as np

    from keras_resnet.training.config import TrainConfig
    from keras_resnet.training.model import decay_variables
    from keras_resnet.training.trainer import make_engine

    config = TrainConfig(precision=precision, xla=xla, steps_per_execution=steps_per_execution,
                         deterministic=False, seed=seed, gpus=None)
    engine = make_engine(config)
    engine.set_global_state(seed)
    t0 = time.perf_counter()
    with engine.scope():
        model = _build(model_fn, precision)
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        if precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    build_seconds = time.perf_counter() - t0
    classes = model.output_shape[-1]
    engine.compile(model, optimizer, decay_variables(model), classes=classes,
                   weight_decay=1e-4, label_smoothing=0.0, global_batch=batch_size, xla=xla)
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch_size,) + tuple(model.input_shape[1:]), dtype=np.float32)
    labels = rng.integers(0, classes, size=batch_size).astype(np.int32)
    iterator = engine.repeat_batch(images, labels)
    k = engine.steps_per_execution

    def step():
        engine.to_host(engine.run_steps(iterator, k))   # wait for the device: whole steps

    setup = {"backend": engine.backend, "device": engine.name, "batch_size": batch_size,
             "precision": precision, "xla": bool(xla) or engine.backend == "jax",
             "steps_per_execution": k, "build_seconds": build_seconds, "model": model.name,
             "parameters": int(sum(math.prod(v.shape) for v in model.trainable_variables))}
    return Case(label, setup, step, batch_size * k)


def fit_steps_callback(clock=time.perf_counter):
    """A Keras callback timing a ``fit`` call from its first batch's start to ``on_train_end``.

    Why not the call itself: under TensorFlow 2.21 a ``model.fit`` call returns
    about 10.2 s after its input iterator was created whatever the work
    (``on_train_end`` at 5.5 s, the call back at 10.28 s in one measurement), so
    timing short calls whole measures the iterator's teardown, not training.
    ``callback.seconds`` holds the steps' time of the last call.
    """
    import keras

    class StepsTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.start = self.seconds = None

        def on_train_begin(self, logs=None):
            self.start = self.seconds = None

        def on_train_batch_begin(self, batch, logs=None):
            if self.start is None:
                self.start = clock()

        def on_train_end(self, logs=None):
            self.seconds = clock() - self.start

    return StepsTimer()


def fit_case(label, model_fn, *, batch_size, precision, steps, clock=time.perf_counter):
    """``model.fit`` over ``steps`` batches per call, its steps timed by a callback."""
    import keras
    import numpy as np

    model = _build(model_fn, precision)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy",
                  jit_compile=False)
    classes = model.output_shape[-1]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size * steps,) + tuple(model.input_shape[1:]), dtype=np.float32)
    y = rng.integers(0, classes, size=batch_size * steps).astype(np.int32)
    timer = fit_steps_callback(clock)

    def step():
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False,
                  callbacks=[timer])
        return timer.seconds

    setup = {"backend": keras.backend.backend(), "batch_size": batch_size,
             "precision": precision, "model": model.name, "path": "model.fit",
             "steps_per_call": steps,
             "timed": "first batch start to on_train_end (call total: call_seconds_median)"}
    return Case(label, setup, step, batch_size * steps, clock=clock)


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
    return Case(label, setup, step, batch_size * steps)
