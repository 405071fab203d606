"""Training throughput of the package's step, side by side with other paths, interleaved.

``python recipes/benchmark.py --train`` measures the package's own training
step (the engine the recipes use: ``keras_resnet.training.engine_tf`` or
``engine_jax``) on one synthetic batch kept on the devices, so the number is
the step's, not the input pipeline's. Warm-up calls (tracing, XLA
compilation) are excluded; the step time is the median over repeated calls of
``steps_per_execution`` steps each.

Side-by-side comparisons (``--compare``), measured in the same process and
interleaved with the package's own measurement (:mod:`keras_resnet.bench.harness`):

* ``keras-applications``: ``keras.applications.ResNet50`` through the same
  engine (same optimizer, loss, precision);
* ``fit``: the same ``keras_resnet`` model through a plain ``model.compile`` /
  ``model.fit`` (Keras's own trainer), timed from the first batch to
  ``on_train_end`` (the whole call is the second figure);
* ``fit-keras-applications``: ``keras.applications.ResNet50`` through ``model.fit``;
* ``torch``: a PyTorch eager CIFAR ResNet of the same depth (channels_last),
  if PyTorch is installed;
* ``unfused-bn``: the same model with Keras's own (unfused) BatchNormalization
  in every BatchNorm layer (``fused=False``), to measure what the fused kernel brings;
* ``explicit-pad``: the same model with every stride-1 convolution padded by an
  explicit pad op before a "valid" convolution (what version 0.1 did).
"""

from __future__ import annotations

from keras_resnet.bench import cases as cs
from keras_resnet.bench.harness import interleave
from keras_resnet.bench.machine import machine, peak_memory

COMPARE = ("keras-applications", "fit", "fit-keras-applications", "torch", "unfused-bn",
           "explicit-pad")


def _sublayers(model):
    # Keras has no public recursive walk over nested layers; _flatten_layers is the one
    # every Keras Model uses for its own bookkeeping.
    return model._flatten_layers(include_self=False, recursive=True)


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
    family = "imagenet" if (model in specs.ZOO and specs.ZOO[model].family == "imagenet") \
        else "cifar"
    size = size or (224 if family == "imagenet" else 32)
    classes = 1000 if family == "imagenet" else 10
    kwargs = cs.model_kwargs(model, size, classes)

    def ours():
        import keras_resnet

        net = keras_resnet.ResNet(**kwargs)
        if remat:
            from keras_resnet.training.remat import rematerialize_blocks

            rematerialize_blocks(net)
        return net

    def applications():
        return keras.applications.ResNet50(weights=None, input_shape=(size, size, 3),
                                           classes=classes)

    def unfused():
        from keras_resnet.normalization import set_fused

        net = ours()
        set_fused(net, False)
        return net

    def explicit():
        net = ours()
        for layer in _sublayers(net):
            if isinstance(layer, keras.layers.Conv2D) and layer.padding == "same":
                layer.padding = "valid"   # the blocks then pad explicitly before it
        return net

    engine = dict(batch_size=batch_size, precision=precision, xla=xla,
                  steps_per_execution=steps_per_execution)
    fit = dict(batch_size=batch_size, precision=precision, steps=fit_steps)
    makers = {
        "keras-applications": lambda: cs.engine_case(
            "keras.applications.ResNet50 (package loop)", applications, **engine),
        "fit": lambda: cs.fit_case("keras_resnet (model.fit)", ours, **fit),
        "fit-keras-applications": lambda: cs.fit_case(
            "keras.applications.ResNet50 (model.fit)", applications, **fit),
        "unfused-bn": lambda: cs.engine_case("keras_resnet, Keras's unfused BatchNorm",
                                             unfused, **engine),
        "explicit-pad": lambda: cs.engine_case("keras_resnet, explicit pad ops", explicit,
                                               **engine),
        "torch": lambda: cs.torch_case("PyTorch eager channels_last", kwargs["depth"],
                                       batch_size=batch_size, size=size, classes=classes),
    }
    log(f"building {model} ({keras.backend.backend()}, batch {batch_size}, {precision})")
    cases = [cs.engine_case("keras_resnet (package loop)", ours, **engine)]
    cases += [makers[name]() for name in comparisons]
    results = interleave(cases, repeats=repeats, calls=calls, warmup=warmup, log=log)
    base = results[0]["images_per_sec"]
    for r in results:
        r["ratio_to_keras_resnet"] = r["images_per_sec"] / base
    return {"machine": machine(), "model": model, "input_size": size, "remat": remat,
            "results": results, **peak_memory()}
