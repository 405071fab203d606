"""Backbones for detection and segmentation: multi-scale features, and freezing.

:func:`features` turns a network built by :func:`keras_resnet.ResNet` or
:func:`keras_resnet.WideResNet` (built here, loaded from a ``.keras`` file or
carrying pretrained weights) into a model that returns its stage outputs as a
dict keyed by pyramid level, keras-hub's ``pyramid_outputs`` convention: level
``"P{l}"`` has stride ``2 ** l`` relative to the input. ImageNet networks give
``"P2"`` .. ``"P5"`` (strides 4 to 32); CIFAR networks, whose stem keeps the
resolution, give ``"P0"``, ``"P1"``, ``"P2"`` (strides 1, 2, 4: their three
stages). ``ResNet(..., include_top=False, outputs="features")`` builds the same
model in one call. The features model shares its layers (and weights) with the
network.

:func:`freeze` makes the stem and the first stages non-trainable, their
BatchNorms in inference mode (moving statistics used and left unchanged), the
usual setting of detection backbones.
"""

from __future__ import annotations

import math
import re

import keras

from keras_resnet.blocks import _ResidualUnit
from keras_resnet.stem import Stem

_BLOCK_NAME = re.compile(r"^stage(\d+)_block(\d+)$")
# What follows the last block of a pre-activation network (its final BN-ReLU).
_POST = ("post_bn", "post_relu")


def _stem_and_blocks(model):
    """The model's stem and its blocks in graph order; a ValueError naming ``model`` else."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"Argument `model` must be a keras.Model built by keras_resnet.ResNet "
                        f"or WideResNet; received {type(model).__name__}.")
    stems = [layer for layer in model.layers if isinstance(layer, Stem)]
    blocks = [layer for layer in model.layers
              if isinstance(layer, _ResidualUnit) and _BLOCK_NAME.match(layer.name)]
    if len(stems) != 1 or not blocks:
        raise ValueError(f"Invalid value for argument `model`: {model.name!r} has no `stem` and "
                         "`stage{s}_block{b}` layers; expected a network built by "
                         "keras_resnet.ResNet or WideResNet (or loaded from its .keras file).")
    return stems[0], blocks


def pyramid_levels(model):
    """``{"P{l}": layer name}``: the last layer at each stride ``2 ** l`` of ``model``'s body.

    The stride is counted from the layers' own strides (the stem's convolution
    and max-pool, each block's ``strides``), so any stride placement works
    (``downsample_at="last"`` moves a level's map to the block before a stage's
    last one). The deepest level is the body's output (after ``post_bn`` /
    ``post_relu`` in pre-activation networks).

    Example:

    >>> import keras_resnet
    >>> pyramid_levels(keras_resnet.ResNet(8, input_shape=(8, 8, 3)))
    {'P0': 'stage1_block1', 'P1': 'stage2_block1', 'P2': 'stage3_block1'}
    """
    stem, blocks = _stem_and_blocks(model)
    stride = stem._stride * (2 if stem.pool is not None else 1)
    levels = {}
    for block in blocks:
        stride *= block.strides
        levels[f"P{int(math.log2(stride))}"] = block.name
    post = [layer.name for layer in model.layers if layer.name in _POST]
    if post:
        levels[f"P{int(math.log2(stride))}"] = post[-1]
    return levels


def features(model, levels=None):
    """A ``keras.Model`` returning ``model``'s multi-scale features as a dict by pyramid level.

    Args:
        model: a network built by :func:`keras_resnet.ResNet` or
            :func:`keras_resnet.WideResNet` (any head; the head is left out).
        levels: None (every level) or a list of level names (``["P3", "P4"]``).

    Returns:
        A ``keras.Model`` with ``model``'s inputs whose output is a dict
        ``{"P2": ..., "P3": ..., ...}``; it shares ``model``'s layers and weights.

    Example:

    >>> import keras_resnet
    >>> net = keras_resnet.ResNet(18, include_top=False, input_shape=(64, 64, 3))
    >>> {k: tuple(v.shape) for k, v in features(net).output.items()}
    {'P2': (None, 16, 16, 64), 'P3': (None, 8, 8, 128), 'P4': (None, 4, 4, 256), 'P5': (None, 2, 2, 512)}
    """
    available = pyramid_levels(model)
    if levels is None:
        levels = list(available)
    elif (not isinstance(levels, (list, tuple)) or not levels
          or any(level not in available for level in levels)):
        raise ValueError(f"Invalid value for argument `levels`: received {levels!r}; expected "
                         f"None or a list of {', '.join(map(repr, available))}.")
    outputs = {level: model.get_layer(available[level]).output for level in levels}
    # model.input keeps the network's input structure (one tensor, not a list of one).
    return keras.Model(model.input, outputs, name=f"{model.name}_features")


def freeze(model, up_to="stage1", *, batchnorm_inference=True):
    """Freeze the stem and the stages up to ``up_to``; return the names of the frozen layers.

    Frozen layers are non-trainable: no weight of theirs changes in training,
    and their BatchNorms run in inference mode (Keras's rule for a
    non-trainable BatchNormalization), so their moving statistics stay as
    they are. ``batchnorm_inference`` (default True) also puts every other
    BatchNorm of ``model`` in inference mode, gamma and beta frozen, the usual
    setting for detection backbones trained with small batches; False lets
    those keep adapting.

    Args:
        model: a network built by the package, or its :func:`features` model.
        up_to: ``"stem"``, ``"stage1"`` ... ``"stage{N}"`` (the stem and the
            first N stages), or None (nothing but, with ``batchnorm_inference``,
            the BatchNorms).
        batchnorm_inference: bool.

    Example:

    >>> import keras_resnet
    >>> net = keras_resnet.ResNet(8, input_shape=(8, 8, 3))
    >>> freeze(net, "stage1")
    ['stem', 'stage1_block1']
    >>> net.get_layer("stage2_block1").bn1.trainable
    False
    """
    stem, blocks = _stem_and_blocks(model)
    stages = sorted({int(_BLOCK_NAME.match(b.name).group(1)) for b in blocks})
    allowed = [None, "stem"] + [f"stage{s}" for s in stages]
    if up_to not in allowed:
        raise ValueError(f"Invalid value for argument `up_to`: received {up_to!r}; expected "
                         f"one of {', '.join(map(repr, allowed))}.")
    if not isinstance(batchnorm_inference, bool):
        raise TypeError("Argument `batchnorm_inference` must be a bool (True or False); "
                        f"received {batchnorm_inference!r}.")
    last = 0 if up_to in (None, "stem") else int(up_to[len("stage"):])
    frozen = [stem] if up_to is not None else []
    frozen += [b for b in blocks if int(_BLOCK_NAME.match(b.name).group(1)) <= last]
    for layer in frozen:
        layer.trainable = False
    if batchnorm_inference:
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return [layer.name for layer in frozen]


__all__ = ["features", "freeze", "pyramid_levels"]
