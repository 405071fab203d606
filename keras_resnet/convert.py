"""keras.applications ResNets and torchvision/timm state dicts in, keras_resnet models out.

This module sits above both the builder (:mod:`keras_resnet.models`) and the
weight conversions (:mod:`keras_resnet.weights_keras`,
:mod:`keras_resnet.weights_torch`): it recognises a keras.applications model,
builds the keras_resnet network of the same layout and transfers the weights
into it (biases and epsilon folded, see :mod:`keras_resnet.weights_keras`).
"""

from __future__ import annotations

import keras

from keras_resnet import models, weights_keras, weights_torch
from keras_resnet.architecture import LAYOUTS


def from_keras_applications(model, *, name=None):
    """Convert a keras.applications ResNet into the equivalent keras_resnet model.

    Accepts ResNet50/101/152 and ResNet50V2/101V2/152V2 built with any
    ``include_top``, ``pooling``, ``classes``, ``classifier_activation`` and input
    shape. The result computes the same function in inference mode (up to float
    rounding): conv biases are folded into the BatchNorm statistics, the V2
    stride placement is reproduced.

    Args:
        model: a ``keras.Model`` built by ``keras.applications.ResNet*``.
        name: str or None, the name of the new model (default: ours).

    Returns:
        A ``keras.Model`` built by ``keras_resnet.ResNet``.

    Example:

    >>> import keras
    >>> source = keras.applications.ResNet50(weights=None, include_top=False,
    ...                                      input_shape=(32, 32, 3), pooling="avg")
    >>> model = from_keras_applications(source)
    >>> model.name, model.output_shape
    ('resnet50', (None, 2048))
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Argument `model` must be a keras.Model built by keras.applications; "
                        f"received {type(model).__name__}.")
    flavor = weights_keras.detect_flavor((layer.name for layer in model.layers), "model")
    names = {layer.name for layer in model.layers}
    include_top = "predictions" in names
    pooling = None if include_top else ("avg" if "avg_pool" in names else
                                        "max" if "max_pool" in names else None)
    kwargs = {}
    if include_top:
        head = model.get_layer("predictions")
        kwargs["classes"] = head.units
        kwargs["classifier_activation"] = keras.activations.serialize(head.activation)
    stem = model.get_layer("conv1_conv")
    target = models.ResNet(flavor.depth, preact=flavor.preact, family="imagenet",
                           include_top=include_top, pooling=pooling,
                           input_shape=tuple(model.input_shape[1:]),
                           data_format=stem.data_format, name=name,
                           **LAYOUTS[flavor.preact], **kwargs)
    weights_keras.transfer(model, target)
    return target


def from_torch(path, *, include_top=None, input_shape=None, name=None, **kwargs):
    """Build the keras_resnet model of a torchvision/timm ResNet state dict file.

    Reads ``path`` (``.pth`` with PyTorch, ``.safetensors`` with NumPy only),
    recognises the network (resnet18/34/50/101/152/200, wide_resnet50_2/101_2),
    builds ``ResNet(depth, width=..., stride_at="3x3")`` and loads the weights.

    Args:
        path: str or path-like, the state dict file.
        include_top: bool or None: None keeps the file's classifier when it has one.
        input_shape: tuple or None (default 224x224x3; other channel counts adapt the stem).
        name: str or None, the model's name (default: ours).
        **kwargs: other arguments of ``ResNet`` (``pooling``, ``classifier_activation``...).

    Returns:
        A ``keras.Model`` computing what the PyTorch model computes in eval mode.
    """
    state = weights_torch.read_state_dict(path)
    info = weights_torch.describe(state)
    if include_top is None:
        include_top = info["classes"] is not None
    if include_top:
        kwargs.setdefault("classes", info["classes"])
    model = models.ResNet(info["depth"], width=info["width"], family="imagenet",
                          stride_at="3x3" if info["block"] == "bottleneck" else None,
                          include_top=include_top, input_shape=input_shape, name=name, **kwargs)
    weights_torch.transfer_state_dict(state, model, what=repr(str(path)))
    return model
