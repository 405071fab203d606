"""torchvision and timm ResNet state dicts (``.pth`` / ``.safetensors``) loaded into our models.

torchvision's ``resnet18/34/50/101/152`` and ``wide_resnet50_2/101_2``, and the
timm ResNets that share their layout (see :data:`TIMM_EXPRESSIBLE`), are the
networks ``ResNet(depth, stride_at="3x3")`` builds (``width=2`` for the wide
ones): post-activation units, a 7x7/2 stem with BatchNorm and a 3x3/2 max-pool,
projection shortcuts (conv 1x1 + BatchNorm) where a block changes shape, and
(torchvision's "v1.5") the stride of a bottleneck on its 3x3 convolution. The
state dict names each tensor (``conv1.weight``, ``layer2.0.downsample.0.weight``,
``fc.bias`` ...); this module maps those names onto our layers
(``stem_conv``, ``stage2_block1_shortcut_conv``, ``predictions`` ...), transposes
the kernels into Keras's layout and moves any epsilon difference into the moving
variance. The weights are read with the ``safetensors`` NumPy API (no PyTorch
needed) or, for ``.pth`` files, with ``torch.load(weights_only=True)``.

This module imports neither Keras nor PyTorch at import time:
:mod:`keras_resnet.architecture` asks it what layout a file needs
(:func:`torch_layout`) before anything is built. Recognising a file's format and
reading a state dict into arrays is :mod:`keras_resnet.weights_files`
(:func:`sniff_format`, :func:`is_torch_weights`, :func:`read_state_dict`,
re-exported here).
"""

from __future__ import annotations

import os
import re

import numpy as np

from keras_resnet import specs
# Recognising and reading the files, re-exported: callers find them here.
from keras_resnet.weights_files import (  # noqa: F401
    FORMATS, is_torch_weights, read_state_dict, sniff_format)

# What the timm names below build, in our builder's words (docs/weights.md).
TIMM_EXPRESSIBLE = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet200",
                    "wide_resnet50_2", "wide_resnet101_2")
TORCH_EPSILON = 1e-5  # nn.BatchNorm2d's default, used by torchvision and timm ResNets


# -- the layout a file needs ----------------------------------------------------------------

def torch_layout(depth, extras, family=None, block=None):
    """The extras of ``ResNet`` that a torchvision/timm state dict needs.

    The file cannot tell where a bottleneck's stride sits (the kernels have the
    same shapes either way), so this fills in torchvision's ``stride_at="3x3"``
    for bottleneck depths and refuses ``"1x1"``, naming the argument.
    """
    if family not in (None, "imagenet"):
        raise ValueError(f"Invalid value for argument `family` with torchvision/timm weights: "
                         f"received {family!r}; those ResNets are ImageNet networks "
                         "(leave it unset or pass 'imagenet').")
    result = dict(extras)
    block = block or specs.IMAGENET_DEPTHS.get(depth, (None,))[0]
    if block == "bottleneck":
        given = result.get("stride_at")
        if given is None:
            result["stride_at"] = "3x3"
        elif given != "3x3":
            raise ValueError(f"Invalid value for argument `stride_at` with torchvision/timm "
                             f"weights: received {given!r}; their bottlenecks stride on the "
                             "3x3 convolution (v1.5): leave it unset or pass '3x3'.")
    return result


# -- what the state dict holds ------------------------------------------------------------

_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")


def describe(state):
    """The network a torchvision/timm ResNet state dict holds.

    Returns:
        A dict with ``depth``, ``block``, ``stage_blocks``, ``width``, ``classes``
        (None without ``fc``), ``in_channels`` and ``name`` (torchvision's name).

    Raises:
        ValueError: naming ``weights`` for state dicts of other layouts (deep
            stems, average-pool shortcuts, squeeze-excitation, grouped convolutions).
    """
    if "conv1.weight" not in state:
        stem = "deep stem (conv1.0/conv1.3/conv1.6)" if "conv1.0.weight" in state else \
            "no conv1.weight"
        raise ValueError(f"Invalid value for argument `weights`: not a torchvision-layout ResNet "
                         f"state dict ({stem}); our builder expresses "
                         f"{', '.join(TIMM_EXPRESSIBLE)}.")
    if "bn1.running_var" not in state:
        raise ValueError("Invalid value for argument `weights`: the state dict's bn1 has no "
                         "running statistics (GroupNorm or another normalisation); our "
                         "builder's networks use BatchNorm.")
    counts = {}
    for name in state:
        match = _BLOCK_KEY.match(name)
        if match:
            stage, index = int(match.group(1)), int(match.group(2))
            counts[stage] = max(counts.get(stage, -1), index + 1)
    stage_blocks = tuple(counts.get(s, 0) for s in (1, 2, 3, 4))
    block = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    depth = next((d for d, (b, table) in specs.IMAGENET_DEPTHS.items()
                  if b == block and table == stage_blocks), None)
    unsupported = sorted({_pattern(n) for n in state if _unsupported(n)})
    grouped = [n for n in state if re.match(r"^layer\d\.\d+\.conv2\.weight$", n)
               and state[n].shape[1] != state[n].shape[0]]
    if depth is None or unsupported or grouped:
        what = (f"parts our builder has no option for: {', '.join(unsupported[:4])}" if unsupported
                else "grouped 3x3 convolutions (ResNeXt)" if grouped
                else f"{block} blocks per stage {stage_blocks}")
        raise ValueError(f"Invalid value for argument `weights`: the state dict holds a ResNet "
                         f"with {what}; our builder expresses torchvision's and timm's "
                         f"{', '.join(TIMM_EXPRESSIBLE)}.")
    inner = state["layer1.0.conv1.weight"].shape[0]
    width = inner / specs.STAGE_FILTERS["imagenet"][0]
    width = int(width) if float(width).is_integer() else width
    classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else None
    name = f"resnet{depth}" if width == 1 else f"wide_resnet{depth}_{width}"
    return {"depth": depth, "block": block, "stage_blocks": stage_blocks, "width": width,
            "classes": classes, "in_channels": int(state["conv1.weight"].shape[1]),
            "name": name}


_KNOWN = re.compile(r"^(conv1\.weight|bn1\.[a-z_]+|fc\.(weight|bias)|"
                    r"layer[1-4]\.\d+\.(conv[1-3]\.weight|bn[1-3]\.[a-z_]+|"
                    r"downsample\.0\.weight|downsample\.1\.[a-z_]+))$")


def _unsupported(name):
    """Keys outside torchvision's layout: SE modules, avg-pool shortcuts (``downsample.2``)..."""
    return not _KNOWN.match(name)


def _pattern(name):
    return re.sub(r"\.\d+\.", ".N.", name)


# -- the stem for other than three input channels ------------------------------------------

def adapt_input_channels(kernel, channels, axis=2):
    """A three-channel stem kernel made to read ``channels`` input channels.

    One channel: the kernel summed over its colour channels, so a grey image gives
    what the original network gives for that image copied into R, G and B.
    More (or two): the colour kernels repeated in turn over the new channels
    (R, G, B, R, G, ...) and scaled by ``3 / channels``, so the response to an
    input whose channels are all equal keeps its size.

    Args:
        kernel: array, the stem kernel (``axis`` is its input-channel axis:
            2 for Keras's HWIO layout, 1 for PyTorch's OIHW).
        channels: int, the input channels wanted.
        axis: int, the input-channel axis of ``kernel``.

    Example:

    >>> k = np.ones((7, 7, 3, 64))
    >>> adapt_input_channels(k, 1).shape, float(adapt_input_channels(k, 1)[0, 0, 0, 0])
    ((7, 7, 1, 64), 3.0)
    >>> adapt_input_channels(k, 6).shape, float(adapt_input_channels(k, 6)[0, 0, 5, 0])
    ((7, 7, 6, 64), 0.5)
    """
    kernel = np.asarray(kernel)
    have = kernel.shape[axis]
    if channels == have:
        return kernel
    if have != 3:
        raise ValueError(f"Invalid value for argument `input_shape`: the weights' stem reads "
                         f"{have} channels; only three-channel weights adapt to {channels}.")
    if channels == 1:
        return kernel.sum(axis=axis, keepdims=True)
    index = [c % have for c in range(channels)]
    return np.take(kernel, index, axis=axis) * (have / channels)


# -- transfer ----------------------------------------------------------------------------

def transfer_state_dict(state, model, what="the state dict"):
    """Copy a torchvision/timm ResNet state dict into a keras_resnet model.

    Args:
        state: ``{name: array}`` (see :func:`read_state_dict`).
        model: a model built by ``ResNet(depth, stride_at="3x3")`` (any input
            channels, ``include_top`` either way).
        what: str, how errors name the source.

    Raises:
        ValueError: when ``model`` does not compute the same function as the
            state dict's network (depth, width, stride placement, shortcut, head).
    """
    info = describe(state)
    blocks = _blocks(model)
    found = tuple(sum(1 for s, _ in blocks if s == stage) for stage in (1, 2, 3, 4))
    if found != info["stage_blocks"]:
        raise ValueError(f"{what} holds {info['name']} ({info['stage_blocks']} blocks per "
                         f"stage); the model {model.name!r} has {found}: build it with "
                         f"depth={info['depth']}")
    stem = model.get_layer("stem")
    if stem.bn is None or stem.conv.use_bias or stem.pool is None:
        raise ValueError(f"the model {model.name!r} has a stem without BatchNorm, with a bias "
                         f"or without max-pool; {info['name']}'s is conv-BN-ReLU-maxpool")
    kernel = _conv_kernel(state["conv1.weight"])
    kernel = adapt_input_channels(kernel, stem.conv.kernel.shape[2])
    _assign(stem.conv, [kernel], "conv1", info)
    _assign_bn(stem.bn, state, "bn1", info)
    for (s, b), block in sorted(blocks.items()):
        prefix = f"layer{s}.{b - 1}"
        _check_block(block, prefix, state, info)
        for i, (conv, bn) in enumerate(zip(block.convs, block.bns), start=1):
            _assign(conv, [_conv_kernel(state[f"{prefix}.conv{i}.weight"])], f"{prefix}.conv{i}",
                    info)
            _assign_bn(bn, state, f"{prefix}.bn{i}", info)
        if block.shortcut_conv is not None:
            _assign(block.shortcut_conv, [_conv_kernel(state[f"{prefix}.downsample.0.weight"])],
                    f"{prefix}.downsample.0", info)
            _assign_bn(block.shortcut_bn, state, f"{prefix}.downsample.1", info)
    _transfer_head(state, model, info)


def _blocks(model):
    blocks = {}
    for layer in model.layers:
        match = re.match(r"^stage(\d)_block(\d+)$", layer.name)
        if match and hasattr(layer, "convs"):
            blocks[int(match.group(1)), int(match.group(2))] = layer
    return blocks


def _check_block(block, prefix, state, info):
    wrong = [f"{k}={getattr(block, k)!r}" for k, v in
             (("ordering", "post"), ("skip", "identity"), ("residual", True))
             if getattr(block, k) != v]
    if info["block"] == "bottleneck" and getattr(block, "stride_at", None) != "3x3":
        wrong.append(f"stride_at={getattr(block, 'stride_at', None)!r}")
    if wrong:
        raise ValueError(f"block {block.name!r} has {', '.join(wrong)}; {info['name']} needs "
                         "ordering='post', skip='identity', residual=True"
                         + (", stride_at='3x3'" if info["block"] == "bottleneck" else ""))
    has_projection = f"{prefix}.downsample.0.weight" in state
    if has_projection != (block._shortcut_kind == "projection"):
        raise ValueError(f"block {block.name!r} has a {block._shortcut_kind!r} shortcut where "
                         f"{info['name']}'s {prefix} has "
                         f"{'a projection' if has_projection else 'none'} (check `shortcut`)")


def _conv_kernel(weight):
    """PyTorch's (out, in, kh, kw) kernel in Keras's (kh, kw, in, out) layout."""
    return np.transpose(weight, (2, 3, 1, 0))


def _assign(layer, values, source, info):
    current = layer.get_weights()
    shapes = [tuple(w.shape) for w in current]
    if shapes != [tuple(v.shape) for v in values]:
        raise ValueError(f"layer {layer.name!r} holds weights of shapes {shapes}; "
                         f"{source} of {info['name']} has {[tuple(v.shape) for v in values]}"
                         + (f" (build with width={info['width']})" if info["width"] != 1 else ""))
    layer.set_weights([np.asarray(v, dtype=w.dtype) for v, w in zip(values, current)])


def _assign_bn(bn, state, prefix, info):
    variance = state[f"{prefix}.running_var"] + TORCH_EPSILON - bn.epsilon
    if np.any(variance < 0):
        raise ValueError(f"BatchNorm {bn.name!r} has epsilon {bn.epsilon}, larger than "
                         f"{prefix}'s {TORCH_EPSILON} plus its running variance; use a "
                         "smaller bn_epsilon")
    _assign(bn, [state[f"{prefix}.weight"], state[f"{prefix}.bias"],
                 state[f"{prefix}.running_mean"], variance], prefix, info)


def _transfer_head(state, model, info):
    if "predictions" not in {layer.name for layer in model.layers}:
        return
    if info["classes"] is None:
        raise ValueError(f"the model has a classifier (include_top=True); {info['name']}'s "
                         "state dict has no fc layer (build with include_top=False)")
    head = model.get_layer("predictions")
    if head.units != info["classes"]:
        raise ValueError(f"the model's classifier has {head.units} classes; the state dict's "
                         f"fc has {info['classes']} (pass classes={info['classes']}, or "
                         "include_top=False for a new head)")
    _assign(head, [state["fc.weight"].T, state["fc.bias"]], "fc", info)


def load_into(model, path):
    """Read ``path`` (``.pth`` or ``.safetensors``) and copy it into ``model``.

    Errors are one ``ValueError`` naming ``weights``, the file and what differs.
    """
    path = os.fspath(path)
    state = read_state_dict(path)
    try:
        transfer_state_dict(state, model, what=repr(path))
    except ValueError as error:
        message = str(error)
        if message.startswith("Invalid value for argument"):
            raise
        raise ValueError(f"Invalid value for argument `weights`: {path!r} does not fit the "
                         f"model {model.name!r}: {message}.") from None
