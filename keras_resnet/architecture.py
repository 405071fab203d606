"""Builder arguments resolved into an :class:`Architecture`, without Keras.

``ResNet(...)`` and ``WideResNet(...)`` first resolve their arguments here, against
the tables of :mod:`keras_resnet.specs`, into one frozen :class:`Architecture`;
:mod:`keras_resnet.models` then turns it into a graph and
:mod:`keras_resnet.counting` counts its parameters and multiply-adds. Every
argument check that does not need Keras is made while resolving, once, before
anything is built: with the checks of :mod:`keras_resnet.validation` and, for
``weights="imagenet"``, :mod:`keras_resnet.pretrained` (the official weights fix
the layout). The unit orderings are a table of :mod:`keras_resnet.specs`. This
module imports neither Keras nor a backend, so resolving and counting cost
milliseconds.
"""

from __future__ import annotations

import dataclasses

from keras_resnet import specs
from keras_resnet.specs import PREACT_ORDERINGS, UNIT_ORDERINGS, UnitOrdering  # noqa: F401
# Each argument's check lives in keras_resnet.validation, and what the official weights
# require in keras_resnet.pretrained; both are part of resolving, so importable from here.
from keras_resnet.pretrained import (  # noqa: F401
    FIXED_FIELDS, IMAGENET_CLASSES, IMAGENET_WEIGHT_DEPTHS, LAYOUTS, check_weights_argument,
    imagenet_layout)
from keras_resnet.validation import (  # noqa: F401
    check_bool, check_choice, check_depth_type, check_extras, check_head, check_input_shape,
    check_int, check_number, check_rate, check_seed, check_width, spatial_size)

# BatchNorm defaults bound once (torchvision/flax conventions: momentum 0.9 in
# Keras terms, epsilon 1e-5).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# Extras accepted by ResNet / WideResNet beyond the builder's named arguments.
EXTRAS = ("stride_at", "downsample_at", "ordering", "skip", "gate_bias", "zero_init",
          "dropout_rate", "stem_bias", "kernel_regularizer", "bn_momentum", "bn_epsilon",
          "seed")
# WideResNet also takes these ResNet arguments as extras.
WIDE_EXTRAS = ("drop_path_rate", "residual", "shortcut")


def resolve_ordering(preact, ordering):
    """The unit ordering of ``preact`` and ``ordering`` (None: from ``preact``), checked."""
    if ordering is None:
        return "full_preact" if preact else "post"
    check_choice("ordering", ordering, specs.ORDERINGS)
    if preact and ordering != "full_preact":
        raise ValueError(f"Invalid value for argument `ordering`: received {ordering!r}, "
                         f"which conflicts with `preact=True` (`ordering={ordering!r}` "
                         "needs preact=False); preact=True means ordering='full_preact'.")
    return ordering


def shortcut_kind(shortcut, in_channels, out_channels, strides, residual=True):
    """Decide the shortcut of one block: the only place this is decided.

    Returns ``None`` (no shortcut: the plain twin), ``"identity"``,
    ``"subsample"`` (strided identity, parameter-free), ``"pad"`` (option A:
    subsample and zero-pad the new channels) or ``"projection"`` (1x1 conv).

    Option B projects where the channel count changes; where only the
    resolution changes (the stride placed in a stage's last block, as in
    keras.applications' V2 models) it subsamples.
    """
    if not residual:
        return None
    if shortcut == "C":
        return "projection"
    if in_channels != out_channels:
        return "pad" if shortcut == "A" else "projection"
    return "subsample" if strides > 1 else "identity"


# -- input shapes ------------------------------------------------------------------------

def default_input_shape(arch, input_shape, data_format):
    """``input_shape`` (as a tuple), or the family's default when None; not checked."""
    if input_shape is None:
        h, w, c = specs.DEFAULT_INPUT_SHAPE[arch.family]
        return (h, w, c) if data_format == "channels_last" else (c, h, w)
    return tuple(input_shape)


def network_input_shape(arch, input_shape, data_format):
    """The input shape the network is built for: checked, defaulted per family.

    The one check of ``input_shape`` (its form, and the family's minimum size).
    """
    input_shape = default_input_shape(arch, check_input_shape(input_shape, data_format),
                                      data_format)
    size = spatial_size(input_shape, data_format)
    minimum = specs.MIN_INPUT_SIZE[arch.family]
    if size is not None and size < minimum:
        raise ValueError(f"Invalid value for argument `input_shape`: {arch.family} "
                         f"networks need inputs of at least {minimum}x{minimum}; "
                         f"received {input_shape}.")
    return input_shape


# -- the record ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Architecture:
    """Everything that determines a network, after defaults are resolved."""

    family: str
    block: str
    stage_blocks: tuple
    stage_filters: tuple
    stem_filters: int
    out_filters: tuple | None = None      # bottleneck outputs (None: expansion x filters)
    ordering: str = "post"
    shortcut: str = "B"
    skip: str = "identity"
    residual: bool = True
    drop_path_rate: float = 0.0
    dropout_rate: float = 0.0
    zero_init: bool = False
    stride_at: str = "1x1"
    downsample_at: str = "first"
    stem_bias: bool = False
    gate_bias: float = -6.0
    bn_momentum: float = BN_MOMENTUM
    bn_epsilon: float = BN_EPSILON
    kernel_regularizer: object = None
    seed: int | None = None

    @property
    def num_blocks(self):
        return sum(self.stage_blocks)

    @property
    def depth(self):
        """Weighted layers: stem + branch convolutions + classifier (projections not counted)."""
        return 2 + specs.LAYERS_PER_BLOCK[self.block] * self.num_blocks


def resolve_family(depth, family=None):
    """The family of ``depth``: ``family`` when given (checked), else from the depth tables.

    A depth of the ImageNet table (18, 34, 50, 101, 152, 200) means the ImageNet
    network, whatever the input size: 50, 101, 152 and 200 are also CIFAR depths
    (6n+2 or 9n+2), and their CIFAR nets need ``family="cifar"``. Every other
    valid depth is a CIFAR depth.
    """
    check_depth_type(depth)
    if family is not None:
        check_choice("family", family, specs.FAMILIES)
    in_imagenet = depth in specs.IMAGENET_DEPTHS
    in_cifar = bool(specs.cifar_blocks_for(depth))
    if family == "imagenet" and not in_imagenet:
        raise ValueError(f"Invalid value for argument `depth` with family='imagenet': "
                         f"received {depth}; expected one of {specs.allowed_imagenet_depths_text()}.")
    if family == "cifar" and not in_cifar:
        raise ValueError(f"Invalid value for argument `depth` with family='cifar': "
                         f"received {depth}; expected {specs.allowed_cifar_depths_text()}.")
    if family is not None:
        return family
    if not (in_imagenet or in_cifar):
        raise ValueError(
            f"Invalid value for argument `depth`: received {depth}; expected an ImageNet "
            f"depth ({specs.allowed_imagenet_depths_text()}) or a CIFAR depth "
            f"({specs.allowed_cifar_depths_text()}).")
    return "imagenet" if in_imagenet else "cifar"


def scale(filters, width):
    return max(1, int(round(filters * width)))


def resolve_architecture(depth, *, preact=False, family=None, block=None, width=1,
                         shortcut=None, residual=True, drop_path_rate=0.0, **extras):
    """Resolve the user's arguments against the tables into an :class:`Architecture`.

    The network's own arguments only; :func:`resolve_resnet` also checks the
    ones that concern its input and weights.
    """
    unknown = sorted(set(extras) - set(EXTRAS))
    if unknown:
        raise TypeError(f"ResNet() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                        f"the extras it accepts are {', '.join(EXTRAS)}.")
    check_bool("preact", preact)
    check_bool("residual", residual)
    check_width(width)
    check_rate("drop_path_rate", drop_path_rate)
    family = resolve_family(depth, family)
    if block is not None:
        check_choice("block", block, specs.BLOCKS)
    if shortcut is not None:
        check_choice("shortcut", shortcut, specs.SHORTCUTS)

    if family == "imagenet":
        table_block, stage_blocks = specs.IMAGENET_DEPTHS[depth]
        if block is not None and block != table_block:
            raise ValueError(f"Invalid value for argument `block`: ImageNet ResNet-{depth} "
                             f"uses {table_block!r} blocks; received {block!r}.")
        block = table_block
    else:
        fits = specs.cifar_blocks_for(depth)
        if block is None:
            block = fits[0]
        elif block not in fits:
            rule = "6n+2" if block == "basic" else "9n+2"
            raise ValueError(f"Invalid value for argument `depth`: CIFAR nets with "
                             f"{block!r} blocks have depth {rule}; received {depth}.")
        stage_blocks = (specs.cifar_blocks_per_stage(depth, block),) * 3
    if shortcut is None:
        # The papers' defaults: option A for CIFAR basic nets (He et al. 2015,
        # section 4.2), projections elsewhere (B; Identity Mappings for bottlenecks).
        shortcut = "A" if (family == "cifar" and block == "basic") else "B"
    return _architecture(family, block, stage_blocks, width, preact=preact,
                         shortcut=shortcut, residual=residual,
                         drop_path_rate=float(drop_path_rate), **extras)


def _architecture(family, block, stage_blocks, width, *, preact, ordering=None,
                  stride_at=None, downsample_at=None, **options):
    ordering = resolve_ordering(preact, ordering)
    if stride_at is not None:
        check_choice("stride_at", stride_at, specs.STRIDE_AT)
        if block != "bottleneck":
            raise ValueError(f"Invalid value for argument `stride_at`: received {stride_at!r}; "
                             "stride placement applies to bottleneck blocks only and this "
                             f"network uses {block!r} blocks (leave it unset).")
    if downsample_at is not None:
        check_choice("downsample_at", downsample_at, specs.DOWNSAMPLE_AT)
    check_extras(options)
    base = specs.STAGE_FILTERS[family]
    filters = tuple(scale(f, width) for f in base)
    # Wide bottlenecks widen the inner layers only (Zagoruyko & Komodakis 2016):
    # their outputs keep expansion x the unwidened filters.
    out = None
    if block == "bottleneck" and width != 1:
        out = tuple(f * specs.BOTTLENECK_EXPANSION for f in base)
    _check_option_a(family, block, filters, out, width, options)
    return Architecture(
        family=family, block=block, stage_blocks=tuple(stage_blocks),
        stage_filters=filters, stem_filters=specs.STEM_FILTERS[family], out_filters=out,
        ordering=ordering, stride_at=stride_at or "1x1", downsample_at=downsample_at or "first",
        **{k: v for k, v in options.items() if v is not None})


class OptionAWidthError(ValueError):
    """A width that narrows a stage below its input under option A shortcuts."""


def _check_option_a(family, block, filters, out, width, options):
    """Option A zero-pads new channels: it cannot reduce a channel count, which a
    width below 1 does where the stem (never widened) feeds the first stage."""
    if options.get("shortcut") != "A" or options.get("residual") is False:
        return
    channels = specs.STEM_FILTERS[family]
    expansion = specs.BOTTLENECK_EXPANSION if block == "bottleneck" else 1
    for s, f in enumerate(filters):
        stage_out = out[s] if out else f * expansion
        if stage_out < channels:
            raise OptionAWidthError(
                f"Invalid combination of arguments `width` and `shortcut`: width={width!r} "
                f"gives stage {s + 1} {stage_out} channels, fewer than the {channels} of its "
                "input, and option A shortcuts (zero-padding) cannot reduce channels; pass "
                "shortcut='B' (projections) or a width of at least "
                f"{channels / (f * expansion / width):g}.")
        channels = stage_out


def stage_plan(arch):
    """Yield (stage, index, strides) for every block, stride placement resolved."""
    n_stages = len(arch.stage_blocks)
    for s, count in enumerate(arch.stage_blocks):
        for b in range(count):
            if arch.downsample_at == "first":
                strides = 2 if (s > 0 and b == 0) else 1
            else:
                strides = 2 if (b == count - 1 and s < n_stages - 1) else 1
            yield s, b, strides


def default_name(depth, arch):
    """``resnet56``, ``preact_resnet164``, ``plain20``, ``resnet50_cifar``, ..."""
    if not arch.residual:
        prefix = "plain"
    elif arch.ordering == "full_preact":
        prefix = "preact_resnet"
    else:
        prefix = "resnet"
    return f"{prefix}{depth}" + ("_cifar" if arch.family == "cifar" and depth in specs.IMAGENET_DEPTHS else "")


def wide_name(depth, width):
    """``wrn_28_10``; a fractional width keeps its decimals (``wrn_16_1.5``)."""
    k = int(width) if float(width).is_integer() else width
    return f"wrn_{depth}_{k}"


# -- the two builders' resolution ---------------------------------------------------------

def resolve_resnet(depth, *, preact=False, family=None, block=None, width=1, shortcut=None,
                   residual=True, drop_path_rate=0.0, weights=None, include_top=True,
                   classes=None, input_shape=None, data_format="channels_last", **extras):
    """The :class:`Architecture` that ``ResNet(...)`` builds for these arguments.

    Every check of ``ResNet``'s arguments that needs no Keras, each made once:
    the network's (:func:`resolve_architecture`), ``weights`` and what it
    requires of the network, and ``input_shape`` (an ``input_tensor``'s shape
    without the batch axis, when the builder got one) against the family.
    """
    check_weights_argument(weights)
    if weights == "imagenet":
        # ImageNet weights mean an ImageNet network, whatever the input size.
        family = "imagenet" if family is None else family
        extras = imagenet_layout(depth, preact, extras, family=family)
    elif _is_torch_weights(weights):
        # torchvision/timm state dicts: ImageNet nets, bottlenecks strided on the 3x3.
        from keras_resnet.weights_torch import torch_layout

        family = "imagenet" if family is None else family
        extras = torch_layout(depth, extras, family=family, block=block)
    arch = resolve_architecture(depth, preact=preact, family=family, block=block, width=width,
                                shortcut=shortcut, residual=residual,
                                drop_path_rate=drop_path_rate, **extras)
    if weights == "imagenet":
        check_imagenet_compatible(depth, arch, include_top, classes)
    network_input_shape(arch, input_shape, data_format)
    return arch


def _is_torch_weights(weights):
    from keras_resnet.weights_torch import is_torch_weights

    return is_torch_weights(weights)


def resolve_wide_resnet(depth=28, width=10, dropout_rate=0.0, *, weights=None, input_shape=None,
                        data_format="channels_last", **extras):
    """The :class:`Architecture` that ``WideResNet(...)`` builds: WRN-d-k, n = (d - 4) / 6.

    As :func:`resolve_resnet`, every check that needs no Keras, once.
    """
    check_depth_type(depth)
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"Invalid value for argument `depth`: Wide ResNets have depth "
                         f"6n+4 (10, 16, 22, 28, 40, ...); received {depth}.")
    check_width(width)
    unknown = sorted(set(extras) - set(EXTRAS) - set(WIDE_EXTRAS))
    if unknown:
        raise TypeError(f"WideResNet() got unexpected keyword argument(s) "
                        f"{', '.join(map(repr, unknown))}; the extras it accepts are "
                        f"{', '.join(EXTRAS + WIDE_EXTRAS)}.")
    extras = dict(extras)
    ordering = extras.get("ordering")
    if ordering is not None and ordering != "full_preact":
        check_choice("ordering", ordering, specs.ORDERINGS)
        raise ValueError(f"Invalid value for argument `ordering`: received {ordering!r}; "
                         "Wide ResNets use full pre-activation units, 'full_preact' "
                         "(leave it unset, or build with ResNet).")
    shortcut = check_choice("shortcut", extras.pop("shortcut", "B"), specs.SHORTCUTS)
    residual = check_bool("residual", extras.pop("residual", True))
    drop_path_rate = check_rate("drop_path_rate", extras.pop("drop_path_rate", 0.0))
    n = (depth - 4) // 6
    arch = _architecture("cifar", "basic", (n, n, n), width, preact=True, shortcut=shortcut,
                         residual=residual, drop_path_rate=drop_path_rate,
                         dropout_rate=check_rate("dropout_rate", dropout_rate), **extras)
    check_weights_argument(weights, allow_imagenet=False)
    network_input_shape(arch, input_shape, data_format)
    return arch


# -- what weights="imagenet" requires of the network ---------------------------------------

def check_imagenet_compatible(depth, arch, include_top, classes):
    """Raise a ValueError unless the official weights fit this architecture and head."""
    if depth not in IMAGENET_WEIGHT_DEPTHS or arch.family != "imagenet":
        raise ValueError(f"Invalid value for argument `weights`: 'imagenet' weights exist for "
                         f"ImageNet depths {IMAGENET_WEIGHT_DEPTHS}; received depth={depth}, "
                         f"family={arch.family!r}.")
    if include_top and classes not in (None, IMAGENET_CLASSES):
        raise ValueError(f"Invalid value for argument `classes` with weights='imagenet' and "
                         f"include_top=True: received {classes!r}; the ImageNet classifier "
                         f"has {IMAGENET_CLASSES} classes (or use include_top=False).")
    preact = arch.ordering == "full_preact"
    expected = resolve_architecture(depth, preact=preact, family="imagenet", **LAYOUTS[preact])
    for field, argument in FIXED_FIELDS.items():
        got, want = getattr(arch, field), getattr(expected, field)
        if got != want:
            raise ValueError(f"Invalid value for argument `{argument}` with weights='imagenet': "
                             f"the network has {field}={got!r}; the official weights need "
                             f"{field}={want!r}.")
