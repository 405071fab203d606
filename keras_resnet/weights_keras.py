"""keras.applications ResNet weights converted into this package's layout.

keras.applications ships ImageNet weights for ResNet50/101/152 (post-activation,
"v1") and ResNet50V2/101V2/152V2 (pre-activation). Both are the networks
``ResNet(depth)`` and ``ResNet(depth, preact=True)`` build, up to three details
:func:`transfer` absorbs exactly:

* Their convolutions carry a bias; ours have none. A bias ``b`` followed by a
  BatchNorm is the same function as no bias and a moving mean lowered by ``b``.
  In the V2 nets the biases of the shortcut projection and of each block's last
  convolution flow into the residual stream; every reader of that stream is a
  BatchNorm, an identity or a subsampling shortcut, so the bias accumulated
  since the last projection folds into the moving mean of each BatchNorm that
  reads the stream. Only the V2 stem bias cannot fold (zero padding comes before
  the max-pool), so pre-activation nets keep it (``stem_bias=True``).
* Their BatchNorm epsilon is 1.001e-5, ours 1e-5: the difference moves into the
  moving variance.
* V2 downsamples in the last block of a stage, on the 3x3 convolution, with a
  subsampling shortcut: ``downsample_at="last", stride_at="3x3"``.

:func:`detect_flavor` recognises which of the six a model or weights file is by
its layer names; :func:`transfer` copies a built keras.applications model into a
built keras_resnet model, checking that the two compute the same function.
Finding, downloading and opening weight files is :mod:`keras_resnet.weights`.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from keras_resnet import layers, specs
from keras_resnet.architecture import IMAGENET_WEIGHT_DEPTHS
from keras_resnet.weights_torch import adapt_input_channels


@dataclasses.dataclass(frozen=True)
class Flavor:
    """A keras.applications ResNet: its depth and whether it is a V2 (pre-activation) net."""

    depth: int
    preact: bool

    @property
    def application(self):
        """The keras.applications constructor name, e.g. ``"ResNet50V2"``."""
        return f"ResNet{self.depth}" + ("V2" if self.preact else "")

    def file_name(self, include_top):
        """The official weights file name of this flavour."""
        top = "" if include_top else "_notop"
        return f"{self.application.lower()}_weights_tf_dim_ordering_tf_kernels{top}.h5"


# -- recognising keras.applications models and files ----------------------------------

_BLOCK_NAME = re.compile(r"^conv([2-5])_block(\d+)_1_conv$")


def detect_flavor(layer_names, argument="model"):
    """Recognise a keras.applications ResNet from its layer names.

    Args:
        layer_names: iterable of str, the layer names of a model or weights file.
        argument: str, the argument to name in errors.

    Returns:
        A :class:`Flavor`.

    Example:

    >>> blocks = [f"conv{s}_block{b}_1_conv" for s, n in zip((2, 3, 4, 5), (3, 4, 6, 3))
    ...           for b in range(1, n + 1)]
    >>> detect_flavor(["conv1_conv", "post_bn"] + blocks)
    Flavor(depth=50, preact=True)
    """
    names = set(layer_names)
    counts = {}
    for name in names:
        match = _BLOCK_NAME.match(name)
        if match:
            stage, index = int(match.group(1)), int(match.group(2))
            counts[stage] = max(counts.get(stage, 0), index)
    stage_blocks = tuple(counts.get(s, 0) for s in (2, 3, 4, 5))
    depth = next((d for d, (block, table) in specs.IMAGENET_DEPTHS.items()
                  if block == "bottleneck" and table == stage_blocks), None)
    if "conv1_conv" not in names or depth not in IMAGENET_WEIGHT_DEPTHS:
        raise ValueError(
            f"Invalid value for argument `{argument}`: expected a keras.applications "
            "ResNet50/101/152 or ResNet50V2/101V2/152V2 (layers conv1_conv, "
            f"conv{{2..5}}_block{{b}}_{{0..3}}_conv, ...); found blocks per stage "
            f"{stage_blocks} in {len(names)} layers.")
    return Flavor(depth, "post_bn" in names)


# -- conversion ------------------------------------------------------------------------

def transfer(source, target):
    """Copy a keras.applications ResNet's weights into a keras_resnet model, folding biases.

    Args:
        source: a keras.applications ResNet model (see :func:`detect_flavor`).
        target: a keras_resnet ``ResNet`` model of the same depth and layout
            (post-activation for ResNet*, ``preact=True`` with keras.applications'
            V2 layout for ResNet*V2).

    Raises:
        ValueError: when ``target`` does not compute the same function
            (different depth, ordering, stride placement, shortcut, head...).
    """
    flavor = detect_flavor((layer.name for layer in source.layers), "source")
    src = {layer.name: layer for layer in source.layers}
    blocks = _target_blocks(target, flavor)
    stem = _get(target, "stem")
    if flavor.preact:
        _transfer_v2(src, stem, blocks, target)
    else:
        _transfer_v1(src, stem, blocks)
    _transfer_head(src, target)


def _get(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        raise ValueError(f"the model {model.name!r} has no layer {name!r}; it is not a "
                         "keras_resnet ImageNet bottleneck ResNet") from None


def _target_blocks(target, flavor):
    """{(stage, index): block layer} of ``target``, checked against ``flavor``'s table."""
    blocks = {}
    for layer in target.layers:
        match = re.match(r"^stage(\d)_block(\d+)$", layer.name)
        if match and isinstance(layer, layers.BottleneckBlock):
            blocks[int(match.group(1)), int(match.group(2))] = layer
    table = specs.IMAGENET_DEPTHS[flavor.depth][1]
    found = tuple(sum(1 for s, _ in blocks if s == stage) for stage in range(1, 5))
    if found != table:
        raise ValueError(f"the model {target.name!r} has bottleneck blocks per stage {found}; "
                         f"keras.applications' {flavor.application} has {table}")
    ordering = "full_preact" if flavor.preact else "post"
    for (s, b), block in blocks.items():
        wrong = [f"{k}={getattr(block, k)!r}" for k, v in
                 (("ordering", ordering), ("skip", "identity"), ("residual", True))
                 if getattr(block, k) != v]
        if wrong:
            raise ValueError(f"block {block.name!r} has {', '.join(wrong)}; keras.applications' "
                             f"{flavor.application} needs ordering={ordering!r}, "
                             "skip='identity', residual=True")
    return blocks


def _values(layer):
    return [np.asarray(w, dtype=np.float64) for w in layer.get_weights()]


def _set(layer, values, what):
    current = layer.get_weights()
    shapes = [tuple(v.shape) for v in values]
    if [tuple(w.shape) for w in current] != shapes:
        raise ValueError(f"layer {layer.name!r} holds weights of shapes "
                         f"{[tuple(w.shape) for w in current]}; {what} has {shapes}")
    layer.set_weights([np.asarray(v, dtype=w.dtype) for v, w in zip(values, current)])


def _copy_conv(conv, source, adapt_channels=False):
    """Copy the kernel of ``source`` into ``conv``; return the source bias (zeros if none).

    ``adapt_channels`` (the stem): a three-channel kernel is adapted to the
    input channels of ``conv`` (:func:`adapt_input_channels`).
    """
    values = _values(source)
    if adapt_channels:
        values[0] = adapt_input_channels(values[0], conv.kernel.shape[2])
    if tuple(conv.strides) != tuple(source.strides):
        raise ValueError(f"convolution {conv.name!r} has strides {tuple(conv.strides)}; "
                         f"{source.name!r} has {tuple(source.strides)} (stride placement "
                         "differs: check stride_at and downsample_at)")
    bias = values[1] if source.use_bias else np.zeros(values[0].shape[-1])
    if conv.use_bias:
        _set(conv, [values[0], bias], source.name)
        return np.zeros_like(bias)
    _set(conv, [values[0]], source.name)
    return bias


def _fold_bn(bn, source, bias):
    """Copy BatchNorm ``source`` into ``bn``, ``bias`` added to its input folded in."""
    gamma, beta, mean, variance = _values(source)
    variance = variance + source.epsilon - bn.epsilon
    if np.any(variance < 0):
        raise ValueError(f"BatchNorm {bn.name!r} has epsilon {bn.epsilon}, larger than "
                         f"{source.name!r}'s {source.epsilon} plus its moving variance; "
                         "use a smaller bn_epsilon")
    _set(bn, [gamma, beta, mean - bias, variance], source.name)


def _check_shortcut(block, has_projection, source_name):
    kind = block._shortcut_kind
    if has_projection != (kind == "projection"):
        raise ValueError(f"block {block.name!r} has a {kind!r} shortcut where "
                         f"keras.applications' {source_name} has "
                         f"{'a projection' if has_projection else 'none'} (check `shortcut`)")


def _transfer_v1(src, stem, blocks):
    """ResNet50/101/152: conv + BN pairs, each bias folded into its own BN."""
    if stem.bn is None:
        raise ValueError("the stem has no BatchNorm; keras.applications' ResNet (v1) has one")
    _fold_bn(stem.bn, src["conv1_bn"], _copy_conv(stem.conv, src["conv1_conv"], True))
    for (s, b), block in blocks.items():
        prefix = f"conv{s + 1}_block{b}"
        has_projection = f"{prefix}_0_conv" in src
        _check_shortcut(block, has_projection, prefix)
        for i, (conv, bn) in enumerate(zip(block.convs, block.bns), start=1):
            _fold_bn(bn, src[f"{prefix}_{i}_bn"], _copy_conv(conv, src[f"{prefix}_{i}_conv"]))
        if has_projection:
            _fold_bn(block.shortcut_bn, src[f"{prefix}_0_bn"],
                     _copy_conv(block.shortcut_conv, src[f"{prefix}_0_conv"]))


def _transfer_v2(src, stem, blocks, target):
    """ResNet50V2/101V2/152V2: the stream's accumulated bias folds into its readers' BNs."""
    if not stem.conv.use_bias:
        raise ValueError("the stem convolution has no bias; keras.applications' ResNetV2 "
                         "stem bias cannot be folded (build with stem_bias=True)")
    _copy_conv(stem.conv, src["conv1_conv"], True)
    stream = 0.0  # bias carried by the residual stream, relative to ours
    for (s, b), block in sorted(blocks.items()):
        prefix = f"conv{s + 1}_block{b}"
        has_projection = f"{prefix}_0_conv" in src
        _check_shortcut(block, has_projection, prefix)
        _fold_bn(block.bns[0], src[f"{prefix}_preact_bn"], stream)
        biases = [_copy_conv(conv, src[f"{prefix}_{i}_conv"])
                  for i, conv in enumerate(block.convs, start=1)]
        # The inner convolutions of V2 blocks have no bias; fold anyway for generality.
        _fold_bn(block.bns[1], src[f"{prefix}_1_bn"], biases[0])
        _fold_bn(block.bns[2], src[f"{prefix}_2_bn"], biases[1])
        if has_projection:
            stream = _copy_conv(block.shortcut_conv, src[f"{prefix}_0_conv"]) + biases[2]
        else:
            stream = stream + biases[2]
    _fold_bn(_get(target, "post_bn"), src["post_bn"], stream)


def _transfer_head(src, target):
    names = {layer.name for layer in target.layers}
    if "predictions" not in names:
        return
    if "predictions" not in src:
        raise ValueError("the model has a classifier (include_top=True); the source has none "
                         "(build with include_top=False)")
    _set(target.get_layer("predictions"), _values(src["predictions"]), "predictions")
