"""ResNet and Wide ResNet builders: the functional graph, built in one place.

``ResNet`` and ``WideResNet`` resolve their arguments against the tables in
:mod:`keras_resnet.specs` into an :class:`Architecture`, and :func:`build` turns
any architecture into a plain ``keras.Model`` whose top-level graph has one node
per block (stem, blocks, head).
"""

from __future__ import annotations

import dataclasses
import math

import keras

from keras_resnet import layers as blocks
from keras_resnet import specs
from keras_resnet.layers import check_choice

# Extras accepted by ResNet / WideResNet beyond the DESIGN.md contract.
EXTRAS = ("stride_at", "downsample_at", "ordering", "skip", "gate_bias", "zero_init",
          "dropout_rate", "stem_bias", "kernel_regularizer", "bn_momentum", "bn_epsilon",
          "seed")


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
    bn_momentum: float = blocks.BN_MOMENTUM
    bn_epsilon: float = blocks.BN_EPSILON
    kernel_regularizer: object = None
    seed: int | None = None

    @property
    def num_blocks(self):
        return sum(self.stage_blocks)

    @property
    def depth(self):
        """Weighted layers: stem + branch convolutions + classifier (projections not counted)."""
        return 2 + specs.LAYERS_PER_BLOCK[self.block] * self.num_blocks


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"Argument `{name}` must be a bool; received {value!r}.")
    return value


def _check_depth_type(depth):
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"Argument `depth` must be an int; received {depth!r} "
                        f"of type {type(depth).__name__}.")


def _spatial_size(input_shape, data_format):
    if input_shape is None:
        return None
    hw = input_shape[:2] if data_format == "channels_last" else input_shape[1:]
    sizes = [d for d in hw if d is not None]
    return min(sizes) if sizes else None


def _check_input_shape(input_shape, data_format):
    if input_shape is None:
        return None
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3 or any(
            d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1)
            for d in input_shape):
        raise ValueError("Argument `input_shape` must be a tuple of 3 positive ints "
                         "(height, width, channels) or None entries for variable "
                         f"sizes; received {input_shape!r}.")
    channels = input_shape[-1] if data_format == "channels_last" else input_shape[0]
    if channels is None:
        raise ValueError(f"Argument `input_shape` needs a known channel count; "
                         f"received {input_shape!r}.")
    return tuple(input_shape)


def resolve_family(depth, family, input_shape, data_format="channels_last"):
    """Pick the family of ``depth``: by ``family``, else input size, else ImageNet."""
    _check_depth_type(depth)
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
    if in_imagenet and in_cifar:
        size = _spatial_size(input_shape, data_format)
        if size is not None and size <= specs.CIFAR_MAX_INPUT_SIZE:
            return "cifar"
        return "imagenet"
    return "imagenet" if in_imagenet else "cifar"


def _scale(filters, width):
    return max(1, int(round(filters * width)))


def _check_width(width):
    if isinstance(width, bool) or not isinstance(width, (int, float)):
        raise TypeError(f"Argument `width` must be a positive number; received {width!r}.")
    if not math.isfinite(width) or width <= 0:
        raise ValueError(f"Argument `width` must be a positive number (the widening "
                         f"factor k); received {width!r}.")
    return width


def resolve_architecture(depth, *, preact=False, family=None, block=None, width=1,
                         shortcut=None, residual=True, drop_path_rate=0.0,
                         input_shape=None, data_format="channels_last", **extras):
    """Resolve the user's arguments against the tables into an :class:`Architecture`."""
    unknown = sorted(set(extras) - set(EXTRAS))
    if unknown:
        raise TypeError(f"ResNet() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                        f"the extras it accepts are {', '.join(EXTRAS)}.")
    _check_bool("preact", preact)
    _check_bool("residual", residual)
    _check_width(width)
    blocks._as_rate("drop_path_rate", drop_path_rate)
    family = resolve_family(depth, family, input_shape, data_format)
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
    if ordering is None:
        ordering = "full_preact" if preact else "post"
    else:
        check_choice("ordering", ordering, specs.ORDERINGS)
        if preact and ordering != "full_preact":
            raise ValueError(f"Argument `preact=True` conflicts with `ordering={ordering!r}`; "
                             "preact=True means ordering='full_preact'.")
    if stride_at is not None:
        check_choice("stride_at", stride_at, specs.STRIDE_AT)
        if block != "bottleneck":
            raise ValueError("Argument `stride_at` applies to bottleneck blocks only; "
                             f"this network uses {block!r} blocks.")
    if downsample_at is not None:
        check_choice("downsample_at", downsample_at, specs.DOWNSAMPLE_AT)
    if options.get("skip") is not None:
        check_choice("skip", options["skip"], specs.SKIPS)
    if "dropout_rate" in options:
        blocks._as_rate("dropout_rate", options["dropout_rate"])
    base = specs.STAGE_FILTERS[family]
    filters = tuple(_scale(f, width) for f in base)
    # Wide bottlenecks widen the inner layers only (Zagoruyko & Komodakis 2016):
    # their outputs keep expansion x the unwidened filters.
    out = None
    if block == "bottleneck" and width != 1:
        out = tuple(f * specs.BOTTLENECK_EXPANSION for f in base)
    return Architecture(
        family=family, block=block, stage_blocks=tuple(stage_blocks),
        stage_filters=filters, stem_filters=specs.STEM_FILTERS[family], out_filters=out,
        ordering=ordering, stride_at=stride_at or "1x1", downsample_at=downsample_at or "first",
        **{k: v for k, v in options.items() if v is not None})


def _stage_plan(arch):
    """Yield (stage, index, strides) for every block, stride placement resolved."""
    n_stages = len(arch.stage_blocks)
    for s, count in enumerate(arch.stage_blocks):
        for b in range(count):
            if arch.downsample_at == "first":
                strides = 2 if (s > 0 and b == 0) else 1
            else:
                strides = 2 if (b == count - 1 and s < n_stages - 1) else 1
            yield s, b, strides


def build(arch, **kwargs):
    """Build the functional ``keras.Model`` of an :class:`Architecture`.

    Keyword arguments as :func:`ResNet`'s (``include_top``, ``input_tensor``,
    ``input_shape``, ``pooling``, ``classes``, ``classifier_activation``,
    ``name``, ``data_format``). The variables are created inside
    :func:`keras_resnet.layers.building_scope`, which keeps 1,000-layer
    networks fast to build under TensorFlow.
    """
    with blocks.building_scope():
        return _build(arch, **kwargs)


def _build(arch, *, include_top=True, input_tensor=None, input_shape=None, pooling=None,
           classes=None, classifier_activation="softmax", name=None, data_format=None):
    data_format = blocks.resolve_data_format(data_format)
    check_choice("pooling", pooling, specs.POOLINGS)
    if classes is None:
        classes = specs.DEFAULT_CLASSES[arch.family]
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"Argument `classes` must be a positive int; received {classes!r}.")
    if input_tensor is not None:
        if not keras.utils.is_keras_tensor(input_tensor):
            raise TypeError("Argument `input_tensor` must be a Keras tensor (keras.Input); "
                            f"received {type(input_tensor).__name__}.")
        input_shape = tuple(input_tensor.shape[1:])
    input_shape = _check_input_shape(input_shape, data_format)
    if input_shape is None:
        h, w, c = specs.DEFAULT_INPUT_SHAPE[arch.family]
        input_shape = (h, w, c) if data_format == "channels_last" else (c, h, w)
    size = _spatial_size(input_shape, data_format)
    minimum = specs.MIN_INPUT_SIZE[arch.family]
    if size is not None and size < minimum:
        raise ValueError(f"Invalid value for argument `input_shape`: {arch.family} "
                         f"networks need inputs of at least {minimum}x{minimum}; "
                         f"received {input_shape}.")
    inputs = input_tensor if input_tensor is not None else keras.Input(input_shape, name="input")

    common = dict(data_format=data_format, bn_momentum=arch.bn_momentum,
                  bn_epsilon=arch.bn_epsilon, kernel_regularizer=arch.kernel_regularizer)
    preact = arch.ordering in blocks.PREACT_ORDERINGS
    x = blocks.Stem(arch.stem_filters, arch.family, norm=arch.ordering != "full_preact",
                    activation=not preact, use_bias=arch.stem_bias, name="stem",
                    **common)(inputs)
    block_cls = blocks.BLOCK_CLASSES[arch.block]
    total = arch.num_blocks
    for position, (s, b, strides) in enumerate(_stage_plan(arch), start=1):
        kwargs = dict(ordering=arch.ordering, shortcut=arch.shortcut, skip=arch.skip,
                      residual=arch.residual,
                      drop_path_rate=arch.drop_path_rate * position / total,
                      dropout_rate=arch.dropout_rate, zero_init=arch.zero_init,
                      gate_bias=arch.gate_bias,
                      seed=None if arch.seed is None else arch.seed + position, **common)
        if arch.block == "bottleneck":
            kwargs["stride_at"] = arch.stride_at
            if arch.out_filters is not None:
                kwargs["out_filters"] = arch.out_filters[s]
        x = block_cls(arch.stage_filters[s], strides, name=f"stage{s + 1}_block{b + 1}",
                      **kwargs)(x)
    channel_axis = -1 if data_format == "channels_last" else 1
    if arch.ordering == "full_preact":
        x = keras.layers.BatchNormalization(axis=channel_axis, momentum=arch.bn_momentum,
                                            epsilon=arch.bn_epsilon, name="post_bn")(x)
    if preact:
        x = keras.layers.Activation("relu", name="post_relu")(x)
    if include_top:
        # Under a mixed precision policy the classifier (pooling and dense) computes
        # in float32, so logits and probabilities (and the loss on them) stay float32.
        head_dtype = "float32" if keras.config.dtype_policy().name.startswith("mixed") else None
        x = keras.layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool",
                                                dtype=head_dtype)(x)
        x = keras.layers.Dense(classes, activation=classifier_activation,
                               kernel_regularizer=arch.kernel_regularizer,
                               name="predictions", dtype=head_dtype)(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(data_format=data_format, name="max_pool")(x)
    if input_tensor is not None:
        model_inputs = keras.utils.get_source_inputs(input_tensor)
    else:
        model_inputs = inputs
    return keras.Model(model_inputs, x, name=name)


def default_name(depth, arch):
    if not arch.residual:
        prefix = "plain"
    elif arch.ordering == "full_preact":
        prefix = "preact_resnet"
    else:
        prefix = "resnet"
    return f"{prefix}{depth}" + ("_cifar" if arch.family == "cifar" and depth in specs.IMAGENET_DEPTHS else "")


def ResNet(depth, *, preact=False, family=None, block=None, width=1, shortcut=None,
           residual=True, drop_path_rate=0.0, include_top=True, weights=None,
           input_tensor=None, input_shape=None, pooling=None, classes=None,
           classifier_activation="softmax", name=None, data_format=None, **extras):
    """Build a ResNet of the literature as a plain ``keras.Model``.

    Args:
        depth: int. CIFAR: 6n+2 with basic blocks (20, 32, 44, 56, 110, 1202, ...)
            or 9n+2 with bottlenecks (164, 1001, ...). ImageNet: 18, 34, 50, 101,
            152 or 200. A depth valid in both families resolves by ``family``,
            else by input size (<= 64 px: CIFAR), else to ImageNet.
        preact: bool, full pre-activation units (He et al. 2016).
        family: ``"cifar"``, ``"imagenet"`` or None (inferred).
        block: ``"basic"``, ``"bottleneck"`` or None (from the depth table).
        width: positive number, widening factor k of every stage (bottlenecks
            widen their inner layers, as WRN-50-2 does).
        shortcut: ``"A"``, ``"B"``, ``"C"`` or None: A for CIFAR basic nets, B else.
        residual: bool, False builds the plain twin (no shortcuts).
        drop_path_rate: float in [0, 1), stochastic depth: block l of L is
            dropped with probability ``l / L * drop_path_rate`` in training.
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name: as in ``keras.applications``. ``weights``
            is None, ``"imagenet"`` (ImageNet depths 50, 101, 152, plain or
            preact) or the path of a weights file (ours, or keras.applications').
        data_format: ``"channels_last"``, ``"channels_first"`` or None (Keras config).
        **extras: ``stride_at`` (bottleneck stride on the ``"1x1"`` (v1, default)
            or ``"3x3"`` (v1.5) convolution), ``downsample_at`` (``"first"``
            block of a stage (default) or ``"last"`` block of the previous
            stage, as keras.applications' V2 models), ``ordering`` (unit
            ordering, ``specs.ORDERINGS``), ``skip`` (shortcut function,
            ``specs.SKIPS``), ``gate_bias``, ``zero_init`` (zero the last
            BatchNorm gamma of each block), ``dropout_rate``, ``stem_bias``,
            ``kernel_regularizer``, ``bn_momentum``, ``bn_epsilon``, ``seed``.

    Returns:
        A ``keras.Model``.

    Example:

    >>> import keras_resnet
    >>> model = keras_resnet.ResNet(depth=20)
    >>> model.name, model.output_shape
    ('resnet20', (None, 10))
    """
    data_format = blocks.resolve_data_format(data_format)
    shape_for_family = input_shape
    if input_tensor is not None and keras.utils.is_keras_tensor(input_tensor):
        shape_for_family = tuple(input_tensor.shape[1:])
    from keras_resnet import weights as weights_lib

    weights_lib.check_weights_argument(weights)
    if weights == "imagenet":
        # ImageNet weights mean an ImageNet network, whatever the input size.
        family = "imagenet" if family is None else family
        extras = weights_lib.imagenet_layout(depth, preact, extras, family=family)
    arch = resolve_architecture(depth, preact=preact, family=family, block=block, width=width,
                                shortcut=shortcut, residual=residual,
                                drop_path_rate=drop_path_rate, input_shape=shape_for_family,
                                data_format=data_format, **extras)
    if weights == "imagenet":
        weights_lib.check_imagenet_compatible(depth, arch, include_top, classes)
    model = build(arch, include_top=include_top, input_tensor=input_tensor,
                  input_shape=input_shape, pooling=pooling, classes=classes,
                  classifier_activation=classifier_activation,
                  name=name or default_name(depth, arch), data_format=data_format)
    if weights is not None:
        weights_lib.load(model, weights, depth=depth, preact=preact)
    return model


def WideResNet(depth=28, width=10, dropout_rate=0.0, *, include_top=True, weights=None,
               input_tensor=None, input_shape=None, pooling=None, classes=None,
               classifier_activation="softmax", name=None, data_format=None, **extras):
    """Build WRN-d-k (Zagoruyko & Komodakis 2016) as a plain ``keras.Model``.

    Pre-activation basic blocks, ``n = (depth - 4) / 6`` blocks per stage,
    16k, 32k, 64k filters, projection shortcuts where the width changes and
    dropout between the two convolutions of each block.

    Example:

    >>> import keras_resnet
    >>> model = keras_resnet.WideResNet(depth=16, width=2)
    >>> model.name
    'wrn_16_2'
    """
    _check_depth_type(depth)
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"Invalid value for argument `depth`: Wide ResNets have depth "
                         f"6n+4 (10, 16, 22, 28, 40, ...); received {depth}.")
    _check_width(width)
    unknown = sorted(set(extras) - set(EXTRAS) - {"drop_path_rate", "residual", "shortcut"})
    if unknown:
        raise TypeError(f"WideResNet() got unexpected keyword argument(s) "
                        f"{', '.join(map(repr, unknown))}; the extras it accepts are "
                        f"{', '.join(EXTRAS)}, drop_path_rate, residual, shortcut.")
    shortcut = extras.pop("shortcut", "B")
    check_choice("shortcut", shortcut, specs.SHORTCUTS)
    residual = _check_bool("residual", extras.pop("residual", True))
    drop_path_rate = blocks._as_rate("drop_path_rate", extras.pop("drop_path_rate", 0.0))
    n = (depth - 4) // 6
    arch = _architecture("cifar", "basic", (n, n, n), width, preact=True, shortcut=shortcut,
                         residual=residual, drop_path_rate=drop_path_rate,
                         dropout_rate=blocks._as_rate("dropout_rate", dropout_rate), **extras)
    from keras_resnet import weights as weights_lib

    weights_lib.check_weights_argument(weights, allow_imagenet=False)
    k = int(width) if float(width).is_integer() else width
    model = build(arch, include_top=include_top, input_tensor=input_tensor,
                  input_shape=input_shape, pooling=pooling, classes=classes,
                  classifier_activation=classifier_activation,
                  name=name or f"wrn_{depth}_{k}", data_format=data_format)
    if weights is not None:
        weights_lib.load(model, weights)
    return model
