"""Pretrained weights: finding, opening and loading them into a model.

This module loads weights into a model it is given and never builds one with
the builder: ``ResNet(depth, weights=...)`` calls :func:`load` with ``"imagenet"``
(the official keras.applications file, downloaded by Keras with its hash check)
or a path (an official-format ``.h5`` file, one of our own ``.weights.h5``
files, or a torchvision/timm state dict in ``.pth``/``.safetensors``, read by
:mod:`keras_resnet.weights_torch`); every failure names ``weights``. It also
says how each weight set expects its input (:data:`PREPROCESSING`,
:func:`declared_preprocessing`).

Converting keras.applications weights (the bias folding, the epsilon, the V2
layout) is :mod:`keras_resnet.weights_keras`; its :class:`Flavor`,
:func:`detect_flavor` and :func:`transfer` are re-exported here.
:func:`keras_resnet.convert.from_keras_applications` builds the model a
keras.applications one converts into, then calls :func:`transfer`. What
``weights="imagenet"`` requires of the architecture is checked before building,
in :mod:`keras_resnet.architecture`.
"""

from __future__ import annotations

import os

import keras

from keras_resnet import weights_torch
from keras_resnet.architecture import IMAGENET_CLASSES
from keras_resnet.weights_keras import Flavor, detect_flavor, transfer  # noqa: F401

# Three-channel weights read other input channels through an adapted stem kernel.
adapt_input_channels = weights_torch.adapt_input_channels

WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"


# -- recognising keras.applications files ------------------------------------------------

def _h5_layer_groups(path):
    """(group of layer weights, layer names) of a legacy Keras ``.h5`` file, or None."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError:
        return None
    group = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in group.attrs:
        f.close()
        return None
    names = [n.decode("utf8") if isinstance(n, bytes) else str(n)
             for n in group.attrs["layer_names"]]
    return f, group, names


def _file_head(group):
    """Classes of the file's classifier, or None when it has none."""
    if "predictions" not in group:
        return None
    shapes = []
    group["predictions"].visititems(
        lambda name, obj: shapes.append(obj.shape) if hasattr(obj, "shape") else None)
    kernel = next((s for s in shapes if len(s) == 2), None)
    return None if kernel is None else int(kernel[-1])


def keras_applications_model(flavor, *, weights=None, include_top=False, classes=IMAGENET_CLASSES,
                             input_shape=None, **kwargs):
    """Build the keras.applications model of ``flavor`` (and load its weights).

    ``weights="imagenet"`` downloads the official file once into
    ``~/.keras/models`` and checks its hash (both done by Keras).
    """
    constructor = getattr(keras.applications, flavor.application)
    return constructor(weights=weights, include_top=include_top, classes=classes,
                       input_shape=input_shape, **kwargs)


# -- loading (called by models.ResNet) -------------------------------------------------

def load(model, weights, depth=None, preact=False):
    """Load ``weights`` into a model built by ``ResNet`` or ``WideResNet``.

    Args:
        model: the ``keras.Model`` to fill.
        weights: ``"imagenet"`` (the official keras.applications file of
            ``depth``/``preact``, downloaded by Keras with its hash check), the
            path of an official-format ``.h5`` file (legacy Keras weights, as
            keras.applications loads them), of one of our ``.weights.h5`` files,
            or of a torchvision/timm ResNet state dict (``.pth``, ``.safetensors``).
            Three-channel ImageNet weights fill a stem of other input channels
            through :func:`adapt_input_channels`.
        depth: int, the depth the model was built with.
        preact: bool, whether the model is pre-activation.

    Raises:
        ValueError: naming ``weights`` when the weights do not fit the model.
        OSError: when the official file cannot be downloaded.
    """
    include_top = "predictions" in {layer.name for layer in model.layers}
    if isinstance(weights, str) and weights == "imagenet":
        flavor = Flavor(depth, bool(preact))
        try:
            source = keras_applications_model(flavor, weights="imagenet", include_top=include_top)
        except Exception as error:
            url = WEIGHTS_URL + flavor.file_name(include_top)
            raise OSError(
                f"Could not get the ImageNet weights of keras.applications' "
                f"{flavor.application}: {error}. Keras downloads {url} once into "
                "~/.keras/models and checks its published hash; without network access, "
                "fetch that file elsewhere and pass weights=<its path>.") from error
        _transfer_or_fail(source, model, "'imagenet'")
        return
    path = os.fspath(weights)
    fmt = weights_torch.sniff_format(path)
    if weights_torch.is_torch_weights(path):
        weights_torch.load_into(model, path)
        return
    if fmt is None and not path.endswith((".h5", ".keras")):
        raise ValueError(f"Invalid value for argument `weights`: {path!r} is none of the formats "
                         "read here (a .weights.h5 or .keras file of ours, a keras.applications "
                         ".h5 file, a torchvision/timm state dict in .pth or .safetensors).")
    official = _h5_layer_groups(path) if fmt == "hdf5" else None
    if official is None:
        try:
            model.load_weights(path)
        except Exception as error:
            raise ValueError(f"Invalid value for argument `weights`: the file {path!r} does not "
                             f"fit the model {model.name!r} (a file saved by "
                             f"model.save_weights() from the same architecture, or a "
                             f"keras.applications ResNet .h5 file is expected): {error}") from error
        return
    f, group, names = official
    try:
        try:
            flavor = detect_flavor(names, "weights")
        except ValueError as error:
            raise ValueError(f"{error} (file {path!r})") from None
        classes = _file_head(group)
    finally:
        f.close()
    if include_top and classes is None:
        raise ValueError(f"Invalid value for argument `weights`: the file {path!r} has no "
                         "classifier; build the model with include_top=False.")
    source = keras_applications_model(flavor, include_top=classes is not None,
                                      classes=classes or IMAGENET_CLASSES)
    source.load_weights(path)
    _transfer_or_fail(source, model, repr(path))


def _transfer_or_fail(source, model, what):
    flavor = detect_flavor(layer.name for layer in source.layers)
    try:
        transfer(source, model)
    except ValueError as error:
        raise ValueError(
            f"Invalid value for argument `weights`: {what} holds keras.applications' "
            f"{flavor.application}, which does not fit the model {model.name!r}: "
            f"{error}.") from error


# -- what each weight set expects of its input -------------------------------------------

# How each public weight set was trained to see its input, as the fields of a
# keras_resnet.preprocessing spec (x = (pixels * scale - mean) / std per channel)
# plus the channel order. "caffe": keras.applications' ResNet50/101/152 (BGR, the
# ImageNet means subtracted, no scaling); "tf": keras.applications' V2 nets (RGB to
# [-1, 1]); "torch": torchvision's and timm's (RGB, ImageNet mean and std on [0, 1]).
PREPROCESSING = {
    "caffe": {"color": "BGR", "scale": 1.0, "mean": (123.68, 116.779, 103.939),
              "std": (1.0, 1.0, 1.0)},
    "tf": {"color": "RGB", "scale": 1 / 255, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    "torch": {"color": "RGB", "scale": 1 / 255, "mean": (0.485, 0.456, 0.406),
              "std": (0.229, 0.224, 0.225)},
}


def declared_preprocessing(weights, preact=False):
    """The :data:`PREPROCESSING` mode a weight set was trained with, or None when unknown.

    ``"imagenet"``: ``"caffe"`` (keras.applications' ResNet*) or ``"tf"`` (ResNet*V2);
    a keras.applications ``.h5`` file: the same, by its layers; a torchvision/timm
    state dict: ``"torch"``; one of our own files: None (whatever it was trained with).
    (RGB in the ``"caffe"`` mean order: R 123.68, G 116.779, B 103.939.)

    >>> declared_preprocessing("imagenet"), declared_preprocessing("imagenet", preact=True)
    ('caffe', 'tf')
    """
    if isinstance(weights, str) and weights == "imagenet":
        return "tf" if preact else "caffe"
    path = os.fspath(weights)
    if weights_torch.is_torch_weights(path):
        return "torch"
    official = _h5_layer_groups(path) if weights_torch.sniff_format(path) == "hdf5" else None
    if official is None:
        return None
    f, _, names = official
    f.close()
    try:
        return "tf" if detect_flavor(names, "weights").preact else "caffe"
    except ValueError:
        return None
