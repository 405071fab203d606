"""Pretrained weights: keras.applications ResNets converted into this package's layout."""

from __future__ import annotations

import os

from keras_resnet import specs

# ImageNet depths with official keras.applications weights.
IMAGENET_WEIGHT_DEPTHS = (50, 101, 152)


def check_weights_argument(weights, allow_imagenet=True):
    allowed = "None, 'imagenet' or the path of a weights file" if allow_imagenet else \
        "None or the path of a weights file"
    if weights is None:
        return
    if weights == "imagenet" and allow_imagenet:
        return
    if not isinstance(weights, (str, os.PathLike)) or weights == "imagenet":
        raise ValueError(f"Invalid value for argument `weights`: received {weights!r}; "
                         f"expected {allowed}.")
    if not os.path.exists(weights):
        raise ValueError(f"Invalid value for argument `weights`: no file at {os.fspath(weights)!r}; "
                         f"expected {allowed}.")


def imagenet_layout(depth, preact, extras):
    return dict(extras)


def check_imagenet_compatible(depth, arch, include_top, classes):
    if depth not in IMAGENET_WEIGHT_DEPTHS or arch.family != "imagenet":
        raise ValueError(f"weights='imagenet' exists for ImageNet depths {IMAGENET_WEIGHT_DEPTHS}; "
                         f"received depth={depth}.")


def load(model, weights, depth=None, preact=False):
    model.load_weights(os.fspath(weights))
