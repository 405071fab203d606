"""What every served format computes: the checks on the model and the serving function.

Every exported artifact (SavedModel, TFLite, ONNX) is the function
:func:`serving_function` returns, traced once per format: raw uint8 RGB pixels
(with a preprocessing spec) or the model's own input -> float32 class
probabilities. The model is always called with ``training=False``:
augmentation layers (``keras.layers.RandomFlip``, ...) are the identity at
inference and dropout/drop-path are off, so they add no op to the exported
graph.
"""

from __future__ import annotations

import dataclasses
import os

QUANTIZATIONS = (None, "float16", "dynamic", "int8")
SIGNATURE = "serving_default"
INPUT_KEY = "images"
OUTPUT_KEY = "probabilities"


@dataclasses.dataclass(frozen=True)
class ExportRequest:
    """What a format writer needs besides the model (see :mod:`keras_resnet.serving.directory`).

    Attributes:
        preprocessing (dict): the preprocessing spec the serving models apply inside.
        quantize (tuple[str, ...]): quantized TFLite variants to add.
        representative_images (list | None): calibration images for ``"int8"``
            (single-image arrays, as :func:`keras_resnet.serving.calibration.representative`
            returns them).
        formats (tuple[str, ...]): every format of this export.
    """

    preprocessing: dict
    quantize: tuple = ()
    representative_images: list | None = None
    formats: tuple = ()


def register_layers():
    """Register the package's custom layers with Keras (``keras.saving.load_model`` needs them).

    Through the public builder: importing it imports every custom layer,
    wherever the core keeps them.
    """
    import keras_resnet

    return keras_resnet.ResNet


def check_model(model):
    """``model`` as a keras.Model with one image input (N, H, W, C) and one output."""
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"Argument `model` must be a keras.Model; received "
                        f"{type(model).__name__}.")
    if len(model.inputs or []) != 1 or len(model.outputs or []) != 1:
        raise ValueError(f"Argument `model`: model {model.name!r} must have exactly one image "
                         f"input and one output to be exported; it has "
                         f"{len(model.inputs or [])} input(s) and {len(model.outputs or [])} "
                         "output(s).")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise ValueError(f"Argument `model`: model {model.name!r} must take a batch of images "
                         f"(N, H, W, C); its input shape is {shape}.")
    return model


def input_hw(model, preprocessing=None):
    """(height, width) of the network input, from the model or the preprocessing spec."""
    shape = tuple(model.inputs[0].shape)
    h, w = shape[1], shape[2]
    if preprocessing is not None:
        ph, pw = preprocessing["input_size"]
        if (h is not None and h != ph) or (w is not None and w != pw):
            raise ValueError(f"Argument `preprocessing`: input_size {[ph, pw]} does not match "
                             f"the input shape {shape} of model {model.name!r}.")
        return int(ph), int(pw)
    if h is None or w is None:
        raise ValueError(f"Argument `model`: model {model.name!r} has an input of unknown "
                         f"size {shape}; pass `preprocessing` (its input_size fixes the size).")
    return int(h), int(w)


def check_quantize(quantize):
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"Invalid value for argument `quantize`: received {quantize!r}; "
                         f"expected one of {QUANTIZATIONS}.")
    return quantize


def check_preprocessing(preprocessing):
    from keras_resnet import preprocessing as prep

    if preprocessing is None:
        return None
    if not isinstance(preprocessing, dict):
        raise TypeError("Argument `preprocessing` must be a preprocessing spec dict "
                        f"(keras_resnet.preprocessing.make_spec); received "
                        f"{type(preprocessing).__name__}.")
    try:
        return prep.check_spec(preprocessing)
    except ValueError as e:
        raise ValueError(f"Invalid value for argument `preprocessing`: {e}") from None


def check_output_path(path, name):
    """A path whose parent exists and that is not a non-empty directory."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"Invalid value for argument `{name}`: expected a file path; "
                         f"received {path!r}.")
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"Invalid value for argument `{name}`: the parent directory "
                         f"{parent!r} does not exist.")
    if os.path.isdir(path) and os.listdir(path):
        raise ValueError(f"Invalid value for argument `{name}`: {path!r} already exists and "
                         "is not empty.")
    return path


def ends_in_logits(model):
    """True when the last layer is a linear Dense/Activation (the model outputs logits)."""
    import keras

    layer = model.layers[-1]
    while isinstance(layer, keras.Model) and layer.layers:   # nested models
        layer = layer.layers[-1]
    act = getattr(layer, "activation", None)
    return act is not None and getattr(act, "__name__", "") == "linear"


def first_line(error):
    """The informative line of a converter error (the unsupported ops when it names them)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("Custom ops:", "Flex ops:")):
            return f"ops not in the TFLite builtin op set: {ln.split(':', 1)[1].strip()}"
    for ln in lines:
        if "error: " in ln:
            return ln.rsplit("error: ", 1)[1][:300]
    return (lines or [type(error).__name__])[0][:300]


def serving_function(model, preprocessing=None, *, resize=True):
    """The function the exports serve: images -> float32 class probabilities.

    With ``preprocessing`` it takes raw uint8 RGB pixels and applies
    :func:`keras_resnet.serving.preprocessing.preprocess` (``resize=True``: any
    image size, resized as the spec says) or only the normalisation
    (``resize=False``: images already at ``input_size``). The model is called
    with ``training=False``; a softmax is added when the model ends in logits;
    the output is cast to float32 (mixed-precision models).

    Args:
        model (keras.Model): the model.
        preprocessing (dict | None): a :mod:`keras_resnet.preprocessing` spec.
        resize (bool): resize inside (SavedModel) or expect ``input_size`` (TFLite, ONNX).

    Returns:
        callable: ``fn(images) -> probabilities``.
    """
    from keras import ops

    from keras_resnet.serving import preprocessing as serving_prep

    softmax = ends_in_logits(model)

    def serve(images):
        if preprocessing is not None:
            x = serving_prep.preprocess(images, preprocessing) if resize else \
                serving_prep.normalize(images, preprocessing)
        else:
            x = images
        y = model(x, training=False)
        y = ops.cast(y, "float32")
        if softmax:
            y = ops.softmax(y, axis=-1)
        return y

    return serve
