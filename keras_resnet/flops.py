"""Multiply-add counting (the ResNet papers' "FLOPs")."""

from __future__ import annotations

import math

import keras


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
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"Argument `model` must be a keras.Model or layer; received "
                        f"{type(model).__name__}.")
    if not model.built:
        raise ValueError("Argument `model` must be built before counting FLOPs.")
    return sum(layer_macs(layer) for layer in _walk(model))
