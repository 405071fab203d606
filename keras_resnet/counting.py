"""Parameters and multiply-adds: counted from the architecture, or measured on a model.

From an :class:`~keras_resnet.architecture.Architecture`, without building
anything (no Keras, no weights; a zoo model costs well under a millisecond):
:func:`params` and :func:`macs`, and :func:`count` / :func:`count_wide`, which
take the builders' own arguments and resolve them exactly as ``ResNet`` /
``WideResNet`` do. A KerasTuner hypermodel can reject an over-budget candidate
before any weight is allocated.

From a built model: :func:`flops` (the multiply-adds of its convolutions and
dense layers, the quantity He et al. 2015, Table 1, call "FLOPs") and
:func:`trainable_params`. The two ways agree exactly (``tests/test_counting.py``
checks every zoo model and every option that changes a count).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from keras_resnet import architecture as A
from keras_resnet import specs


class Counts(NamedTuple):
    """Trainable parameters, and multiply-adds for one example (None: variable input size)."""

    params: int
    macs: int | None


# -- from the architecture -----------------------------------------------------------------

def params(arch, *, include_top=True, classes=None, input_shape=None,
           data_format="channels_last"):
    """Trainable parameters of the network ``arch`` describes, counted without building it.

    Args:
        arch: a resolved :class:`~keras_resnet.architecture.Architecture`.
        include_top: bool, with the classifier (as the builder's argument).
        classes: int or None (the family's default).
        input_shape: tuple or None; only its channel count matters here.
        data_format: ``"channels_last"`` or ``"channels_first"``, how to read
            ``input_shape``.

    Returns:
        int, equal to ``zoo.trainable_params(models.build(arch, ...))``.

    Example:

    >>> from keras_resnet import architecture, counting
    >>> counting.params(architecture.resolve_architecture(56))
    853018
    """
    return _count_checked(arch, input_shape, include_top, classes, data_format).params


def macs(arch, input_shape=None, *, include_top=True, classes=None,
         data_format="channels_last"):
    """Multiply-adds for one example of the network ``arch`` describes, without building it.

    Args:
        arch: a resolved :class:`~keras_resnet.architecture.Architecture`.
        input_shape: tuple (height, width, channels) with known sizes, or None
            (the family's default input).
        include_top, classes, data_format: as for :func:`params`.

    Returns:
        int, equal to ``flops(models.build(arch, input_shape=input_shape, ...))``.

    Raises:
        ValueError: naming ``input_shape`` when its height or width is None.

    Example:

    >>> from keras_resnet import architecture, counting
    >>> counting.macs(architecture.resolve_architecture(50))
    3857973248
    """
    result = _count_checked(arch, input_shape, include_top, classes, data_format).macs
    if result is None:
        raise ValueError(f"Invalid value for argument `input_shape`: received {input_shape!r}; "
                         "counting multiply-adds needs a known height and width.")
    return result


def count(depth, *, preact=False, family=None, block=None, width=1, shortcut=None,
          residual=True, drop_path_rate=0.0, include_top=True, weights=None,
          input_tensor=None, input_shape=None, pooling=None, classes=None,
          classifier_activation="softmax", name=None, data_format=None, dtype=None,
          outputs=None, **extras):
    """Trainable parameters and multiply-adds of ``ResNet(...)`` with these arguments.

    Takes exactly the arguments of :func:`keras_resnet.ResNet` and resolves them
    the same way (the family from the depth tables, ``weights="imagenet"``'s
    layout, every argument check that needs no Keras), then counts from the
    architecture: nothing is built. ``pooling``, ``classifier_activation``,
    ``name``, ``outputs``, ``dtype`` (not checked here: that needs Keras) and a
    weights file do not change the counts. ``data_format=None``
    means Keras's configured ``image_data_format()``, looked up (importing Keras)
    only when an input shape or tensor is given.

    Returns:
        :class:`Counts`: ``params`` and ``macs`` (None when the input's height or
        width is variable).

    Example:

    >>> from keras_resnet import counting
    >>> counting.count(depth=56, preact=True, width=2)
    Counts(params=3396698, macs=495895808)
    """
    A.check_head(include_top, pooling, classes, name, outputs)
    shape = input_shape if input_tensor is None else tuple(input_tensor.shape[1:])
    data_format = _data_format(data_format, shape is not None)
    arch = A.resolve_resnet(depth, preact=preact, family=family, block=block, width=width,
                            shortcut=shortcut, residual=residual, drop_path_rate=drop_path_rate,
                            weights=weights, include_top=include_top, classes=classes,
                            input_shape=shape, data_format=data_format, **extras)
    return _count(arch, shape, include_top, classes, data_format)


def count_wide(depth=28, width=10, dropout_rate=0.0, *, include_top=True, weights=None,
               input_tensor=None, input_shape=None, pooling=None, classes=None,
               classifier_activation="softmax", name=None, data_format=None, dtype=None,
               outputs=None, **extras):
    """Trainable parameters and multiply-adds of ``WideResNet(...)`` with these arguments.

    As :func:`count`, for :func:`keras_resnet.WideResNet`'s arguments.

    Example:

    >>> from keras_resnet import counting
    >>> counting.count_wide(depth=28, width=10)
    Counts(params=36479194, macs=5243328768)
    """
    A.check_head(include_top, pooling, classes, name, outputs)
    shape = input_shape if input_tensor is None else tuple(input_tensor.shape[1:])
    data_format = _data_format(data_format, shape is not None)
    arch = A.resolve_wide_resnet(depth, width, dropout_rate, weights=weights, input_shape=shape,
                                 data_format=data_format, **extras)
    return _count(arch, shape, include_top, classes, data_format)


def _data_format(data_format, needed):
    if data_format is None:
        if not needed:  # the family's default input: the layout does not change a count
            return "channels_last"
        import keras

        data_format = keras.config.image_data_format()
    return A.check_choice("data_format", data_format, ("channels_last", "channels_first"))


def _out(size, kernel, stride):
    """Output size of a convolution or pooling padded with kernel // 2 on each side."""
    return None if size is None else (size + 2 * (kernel // 2) - kernel) // stride + 1


def _count_checked(arch, input_shape, include_top, classes, data_format):
    """:func:`_count` after checking the arguments that come with a resolved ``arch``."""
    A.check_head(include_top, None, classes)
    A.network_input_shape(arch, input_shape, data_format)
    return _count(arch, input_shape, include_top, classes, data_format)


def _count(arch, input_shape, include_top, classes, data_format):
    """Walk the network as :func:`keras_resnet.models.build` lays it out, layer by layer.

    The arguments are checked already (by the resolution, or :func:`_count_checked`).
    """
    input_shape = A.default_input_shape(arch, input_shape, data_format)
    if data_format == "channels_last":
        h, w, channels = input_shape
    else:
        channels, h, w = input_shape
    classes = specs.DEFAULT_CLASSES[arch.family] if classes is None else classes
    unit = A.UNIT_ORDERINGS[arch.ordering]
    total = {"params": 0, "macs": 0}

    def conv(h, w, kernel, stride, c_in, c_out, bias=False):
        """A convolution's weights and multiply-adds; returns its output size."""
        h, w = _out(h, kernel, stride), _out(w, kernel, stride)
        weights = kernel * kernel * c_in * c_out
        total["params"] += weights + (c_out if bias else 0)
        if h is None or w is None or total["macs"] is None:
            total["macs"] = None
        else:
            total["macs"] += h * w * weights
        return h, w

    def batch_norm(c):
        total["params"] += 2 * c  # gamma and beta (the moving statistics are not trainable)

    # Stem: 3x3 (CIFAR) or 7x7/2 and a 3x3/2 max-pool (ImageNet).
    kernel, stride = (3, 1) if arch.family == "cifar" else (7, 2)
    h, w = conv(h, w, kernel, stride, channels, arch.stem_filters, bias=arch.stem_bias)
    if not unit.bn_before_conv:
        batch_norm(arch.stem_filters)
    if arch.family == "imagenet":
        h, w = _out(h, 3, 2), _out(w, 3, 2)
    channels = arch.stem_filters

    for s, _, strides in A.stage_plan(arch):
        filters = arch.stage_filters[s]
        if arch.block == "basic":
            branch = [(3, filters, strides), (3, filters, 1)]
        else:
            out = (arch.out_filters[s] if arch.out_filters is not None
                   else specs.BOTTLENECK_EXPANSION * filters)
            s1, s3 = (strides, 1) if arch.stride_at == "1x1" else (1, strides)
            branch = [(1, filters, s1), (3, filters, s3), (1, out, 1)]
        out_channels = branch[-1][1]
        kind = A.shortcut_kind(arch.shortcut, channels, out_channels, strides, arch.residual)
        if kind == "projection":
            conv(h, w, 1, strides, channels, out_channels)
            if not unit.preactivation:
                batch_norm(out_channels)
        if arch.residual and arch.skip in ("exclusive_gating", "shortcut_gating"):
            conv(h, w, 1, strides, channels, out_channels, bias=True)
        c_in = channels
        for k, c_out, conv_stride in branch:
            batch_norm(c_in if unit.bn_before_conv else c_out)  # BN i belongs to conv i
            h, w = conv(h, w, k, conv_stride, c_in, c_out)
            c_in = c_out
        channels = out_channels

    if unit.bn_before_conv:
        batch_norm(channels)  # post_bn
    if include_top:
        total["params"] += channels * classes + classes
        if total["macs"] is not None:
            total["macs"] += channels * classes
    return Counts(total["params"], total["macs"])


# -- on a built model --------------------------------------------------------------------------

def trainable_params(model):
    """Trainable parameters of a built model (``count_params()`` also counts BN statistics)."""
    return int(sum(math.prod(int(d) for d in w.shape) for w in model.trainable_weights))


def _layer_input_shape(layer):
    shapes = getattr(layer, "_build_shapes_dict", None) or {}
    if len(shapes) == 1:
        return tuple(next(iter(shapes.values())))
    try:
        return tuple(layer.input.shape)
    except (AttributeError, ValueError):
        raise ValueError(f"Cannot tell the input shape of layer {layer.name!r}: "
                         "build the model first.") from None


def _walk(layer):
    yield layer
    for sub in getattr(layer, "_layers", []):
        yield from _walk(sub)


def layer_macs(layer):
    """Multiply-adds of one Conv2D/DepthwiseConv2D/Dense layer for one example."""
    import keras

    if isinstance(layer, keras.layers.Conv2D):
        shape = _layer_input_shape(layer)
        out = layer.compute_output_shape(shape)
        kh, kw, cin_per_group, cout = layer.kernel.shape
        spatial = out[1:3] if layer.data_format == "channels_last" else out[2:4]
        if any(d is None for d in spatial):
            raise ValueError(f"Layer {layer.name!r} has a variable input size; "
                             "build the model with a fixed input_shape to count FLOPs.")
        return math.prod(spatial) * kh * kw * cin_per_group * cout
    if isinstance(layer, keras.layers.Dense):
        return math.prod(layer.kernel.shape)
    return 0


def flops(model):
    """Multiply-adds of convolutions and dense layers for one example.

    This is the quantity He et al. 2015 (Table 1) call "FLOPs": ResNet-50 is
    3.8e9 with the paper's stride placement.

    Example:

    >>> import keras_resnet
    >>> keras_resnet.flops(keras_resnet.ResNet(depth=20))
    40551040
    """
    import keras

    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"Argument `model` must be a keras.Model or layer; received "
                        f"{type(model).__name__}.")
    if not model.built:
        raise ValueError("Argument `model` must be built before counting FLOPs.")
    return sum(layer_macs(layer) for layer in _walk(model))
