"""The model and optimizer of a run: builder arguments, precision, SGD, the L2 penalty."""

from __future__ import annotations

import keras

from keras_resnet.training.config import PRECISIONS, ConfigError
from keras_resnet.training.schedules import make_schedule


def builder_kwargs(config, plan, input_shape, num_classes):
    """The ``keras_resnet.ResNet`` arguments of a run (also recorded in exports).

    Example:

    >>> from keras_resnet.training.config import TrainConfig, resolve_config
    >>> from keras_resnet.training.plan import make_plan
    >>> c = resolve_config(TrainConfig(dataset="digits", depth=8, plain=True))
    >>> kw = builder_kwargs(c, make_plan(c, 1437, 1), (8, 8, 3), 10)
    >>> kw["depth"], kw["residual"], kw["family"], kw["input_shape"]
    (8, False, 'cifar', (8, 8, 3))
    """
    kwargs = {"depth": config.depth, "preact": config.preact, "width": config.width,
              "shortcut": config.shortcut, "residual": not config.plain,
              "drop_path_rate": config.drop_path_rate, "input_shape": tuple(input_shape),
              "classes": num_classes,
              "family": "cifar" if config.recipe == "cifar10" else "imagenet",
              "seed": config.seed}
    kwargs.update(config.model_extras)
    if plan.zero_init:
        kwargs["zero_init"] = True
    return kwargs


def check_builder_kwargs(kwargs):
    """Resolve the builder's arguments without building anything; a bad one is a ConfigError."""
    from keras_resnet import architecture

    try:  # every check of the builder's arguments that needs no Keras
        architecture.resolve_resnet(**{k: v for k, v in kwargs.items() if k != "name"})
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None


def build_model(kwargs, precision="float32", sync_bn=False, remat=False):
    """Build ``keras_resnet.ResNet(**kwargs, dtype=precision)``.

    Under ``mixed_float16`` / ``mixed_bfloat16`` the body computes in 16 bits with
    float32 variables, while the classifier (``avg_pool`` and ``predictions``)
    computes in float32, so logits, softmax and loss stay float32. The model has
    the same layers, names and weights as ``ResNet(**kwargs)``. ``sync_bn``
    makes every BatchNormalization compute its batch statistics over all
    replicas (TensorFlow; under JAX's data parallelism the statistics are over
    the global batch already). ``remat`` recomputes every block's activations
    in the backward pass (JAX; see :mod:`keras_resnet.training.remat`).

    Example:

    >>> m = build_model({"depth": 8, "input_shape": (8, 8, 3), "classes": 10},
    ...                 "mixed_bfloat16")
    >>> m.get_layer("stem").compute_dtype, m.get_layer("predictions").compute_dtype
    ('bfloat16', 'float32')
    >>> m.output.dtype
    'float32'
    """
    import keras_resnet

    if precision not in PRECISIONS:
        raise ValueError(f"Invalid value for argument `precision`: received {precision!r}; "
                         f"expected one of {PRECISIONS}.")
    # The builder passes the policy to every layer and keeps the classifier float32
    # under mixed policies; Keras's global policy is left alone.
    model = keras_resnet.ResNet(**kwargs, dtype=precision)
    if sync_bn and keras.backend.backend() == "tensorflow":
        # The blocks own their BatchNorms; Keras's BatchNormalization reads
        # `synchronized` at call time (ops.moments(..., synchronized=...)).
        for layer in _walk(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
    if remat:
        from keras_resnet.training.remat import rematerialize_blocks

        rematerialize_blocks(model)
    return model


def _walk(layer):
    yield layer
    for sub in getattr(layer, "_layers", []):
        yield from _walk(sub)


def make_optimizer(plan, momentum):
    """SGD with momentum on the plan's schedule; loss scaling under mixed_float16."""
    # Fixed names: optimizer variable paths ("sgd/stem_stem_conv_kernel_momentum") key
    # the checkpoints, and Keras would otherwise number a process's optimizers
    # ("sgd_1", "sgd_2", ...).
    optimizer = keras.optimizers.SGD(make_schedule(plan.schedule), momentum=momentum, name="sgd")
    if plan.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name="loss_scale")
    return optimizer


def decay_variables(model):
    """The variables the L2 penalty covers: convolution and dense kernels.

    Weight decay is the papers' L2 penalty, ``weight_decay / 2 * sum(w ** 2)``
    over these variables (not BatchNorm parameters, not biases), added to the
    loss so that its gradient ``weight_decay * w`` enters the SGD momentum
    update as Caffe's ``weight_decay`` did for He et al. (2015). Keras's
    ``SGD(weight_decay=...)`` is the decoupled variant, a different update.
    """
    return [v for v in model.trainable_variables if v.name in ("kernel", "depthwise_kernel")]
