"""keras.applications ResNets in, the equivalent keras_resnet models out.

This module sits above both the builder (:mod:`keras_resnet.models`) and the
weight loading (:mod:`keras_resnet.weights`): it recognises a keras.applications
model, builds the keras_resnet network of the same layout and transfers the
weights into it (biases and epsilon folded, see :mod:`keras_resnet.weights`).
"""

from __future__ import annotations

import keras

from keras_resnet import models, weights
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
    flavor = weights.detect_flavor((layer.name for layer in model.layers), "model")
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
    weights.transfer(model, target)
    return target
