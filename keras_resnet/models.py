"""ResNet and Wide ResNet builders: the functional graph, built in one place.

``ResNet`` and ``WideResNet`` resolve their arguments against the tables in
:mod:`keras_resnet.specs` into an :class:`~keras_resnet.architecture.Architecture`
(:mod:`keras_resnet.architecture`), :func:`build` turns any architecture into a
plain ``keras.Model`` whose top-level graph has one node per block (stem, blocks,
head), and ``weights=`` is loaded by :mod:`keras_resnet.weights`.
"""

from __future__ import annotations

import keras

from keras_resnet import architecture as A
from keras_resnet import backbone
from keras_resnet import layers as blocks
from keras_resnet import specs
from keras_resnet import weights as weights_lib
# The record and its resolution live in keras_resnet.architecture (no Keras there);
# these names stay importable from here.
from keras_resnet.architecture import (  # noqa: F401
    EXTRAS, Architecture, default_name, resolve_architecture, resolve_family)


def build(arch, *, include_top=True, input_tensor=None, input_shape=None, pooling=None,
          classes=None, classifier_activation="softmax", name=None, data_format=None,
          dtype=None):
    """Build the functional ``keras.Model`` of an :class:`Architecture`.

    Keyword arguments as :func:`ResNet`'s (``include_top``, ``input_tensor``,
    ``input_shape``, ``pooling``, ``classes``, ``classifier_activation``,
    ``name``, ``data_format``, ``dtype``), checked here: ``arch`` is already
    resolved. The variables are created inside
    :func:`keras_resnet.layers.building_scope`, which keeps 1,000-layer
    networks fast to build under TensorFlow.
    """
    data_format, policy = check_keras_arguments(include_top, pooling, classes, name,
                                                classifier_activation, input_tensor,
                                                data_format, dtype)
    A.network_input_shape(arch, _shape_of(input_shape, input_tensor), data_format)
    check_regularizer(arch.kernel_regularizer)
    return _build(arch, include_top=include_top, input_tensor=input_tensor,
                  input_shape=input_shape, pooling=pooling, classes=classes,
                  classifier_activation=classifier_activation, name=name,
                  data_format=data_format, policy=policy)


def _shape_of(input_shape, input_tensor):
    """The input shape without the batch axis: ``input_tensor``'s when given."""
    return input_shape if input_tensor is None else tuple(input_tensor.shape[1:])


def _build(arch, *, include_top, input_tensor, input_shape, pooling, classes,
           classifier_activation, name, data_format, policy):
    """The graph of ``arch`` for arguments already checked (nothing is checked here)."""
    with blocks.building_scope():
        return _graph(arch, include_top=include_top, input_tensor=input_tensor,
                      input_shape=input_shape, pooling=pooling, classes=classes,
                      classifier_activation=classifier_activation, name=name,
                      data_format=data_format, policy=policy)


def _graph(arch, *, include_top, input_tensor, input_shape, pooling, classes,
           classifier_activation, name, data_format, policy):
    if classes is None:
        classes = specs.DEFAULT_CLASSES[arch.family]
    input_shape = A.default_input_shape(arch, _shape_of(input_shape, input_tensor), data_format)
    inputs = input_tensor if input_tensor is not None else keras.Input(input_shape, name="input")

    common = dict(data_format=data_format, bn_momentum=arch.bn_momentum,
                  bn_epsilon=arch.bn_epsilon, kernel_regularizer=arch.kernel_regularizer,
                  dtype=policy)
    # Units that normalise (activate) their own input need no BN (ReLU) in the stem,
    # and leave the last sum to normalise (activate) after the last block.
    unit = A.UNIT_ORDERINGS[arch.ordering]
    x = blocks.Stem(arch.stem_filters, arch.family, norm=not unit.bn_before_conv,
                    activation=not unit.preactivation, use_bias=arch.stem_bias, name="stem",
                    **common)(inputs)
    block_cls = blocks.BLOCK_CLASSES[arch.block]
    total = arch.num_blocks
    for position, (s, b, strides) in enumerate(A.stage_plan(arch), start=1):
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
    if unit.bn_before_conv:
        x = blocks.BatchNorm(axis=channel_axis, momentum=arch.bn_momentum,
                             epsilon=arch.bn_epsilon, name="post_bn", dtype=policy)(x)
    if unit.preactivation:
        x = keras.layers.Activation("relu", name="post_relu", dtype=policy)(x)
    if include_top:
        # Under a mixed precision policy the classifier (pooling and dense) computes
        # in float32, so logits and probabilities (and the loss on them) stay float32.
        head = "float32" if _is_mixed(policy) else policy
        x = keras.layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool",
                                                dtype=head)(x)
        x = keras.layers.Dense(classes, activation=classifier_activation,
                               kernel_regularizer=arch.kernel_regularizer,
                               name="predictions", dtype=head)(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool",
                                                dtype=policy)(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(data_format=data_format, name="max_pool",
                                            dtype=policy)(x)
    if input_tensor is not None:
        model_inputs = keras.utils.get_source_inputs(input_tensor)
    else:
        model_inputs = inputs
    return keras.Model(model_inputs, x, name=name)


def check_keras_arguments(include_top=True, pooling=None, classes=None, name=None,
                          classifier_activation="softmax", input_tensor=None, data_format=None,
                          dtype=None, outputs=None):
    """Check the builders' arguments that need Keras (and the head's); each once.

    Returns the resolved ``(data_format, dtype policy)``. The others are checked
    without Keras by :func:`keras_resnet.architecture.resolve_resnet`.
    """
    data_format = blocks.resolve_data_format(data_format)
    check_head(include_top, pooling, classes, name, classifier_activation, input_tensor,
               outputs)
    return data_format, check_dtype(dtype)


def check_head(include_top=True, pooling=None, classes=None, name=None,
               classifier_activation="softmax", input_tensor=None, outputs=None):
    """Check the keras.applications-style head and input arguments, naming each."""
    A.check_head(include_top, pooling, classes, name, outputs)
    if classifier_activation is not None:
        try:
            keras.activations.get(classifier_activation)
        except (ValueError, TypeError):
            raise ValueError(
                f"Invalid value for argument `classifier_activation`: received "
                f"{classifier_activation!r}; expected None, the name of a Keras activation "
                "('softmax', 'sigmoid', 'linear', ...) or a callable.") from None
    if input_tensor is not None:
        if not keras.utils.is_keras_tensor(input_tensor):
            raise TypeError("Argument `input_tensor` must be a Keras tensor (keras.Input) or "
                            f"None; received {_short_repr(input_tensor)} of type "
                            f"{type(input_tensor).__name__}.")
        if len(input_tensor.shape) != 4:
            raise ValueError("Invalid value for argument `input_tensor`: expected a batch of "
                             "images, shape (batch, height, width, channels) or (batch, "
                             f"channels, height, width); received shape {tuple(input_tensor.shape)}.")


def check_dtype(dtype):
    """``dtype`` as a ``keras.DTypePolicy``: None means Keras's global policy (as for any layer).

    A policy name (``"float32"``, ``"mixed_float16"``, ``"mixed_bfloat16"``,
    ``"bfloat16"``, ...) or a ``keras.DTypePolicy``.
    """
    if dtype is None:
        return keras.config.dtype_policy()
    if isinstance(dtype, keras.DTypePolicy):
        return dtype
    try:
        if not isinstance(dtype, str):
            raise TypeError
        return keras.dtype_policies.get(dtype)
    except (ValueError, TypeError):
        raise ValueError(
            f"Invalid value for argument `dtype`: received {_short_repr(dtype)}; expected None "
            "(Keras's global policy), a dtype policy name ('float32', 'mixed_float16', "
            "'mixed_bfloat16', 'bfloat16', ...) or a keras.DTypePolicy.") from None


def _is_mixed(policy):
    """Variables in one dtype, computation in another (``mixed_float16``, ``mixed_bfloat16``)."""
    return policy.compute_dtype != policy.variable_dtype


def check_regularizer(kernel_regularizer):
    """``kernel_regularizer``: None, a Keras regularizer, its name or config, or a callable."""
    if kernel_regularizer is None:
        return None
    try:
        return keras.regularizers.get(kernel_regularizer)
    except (ValueError, TypeError):
        raise ValueError(
            f"Invalid value for argument `kernel_regularizer`: received "
            f"{_short_repr(kernel_regularizer)}; expected None, a keras.regularizers "
            "object ('l2', keras.regularizers.L2(1e-4), ...), its config or a "
            "callable.") from None


def _short_repr(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def ResNet(depth, *, preact=False, family=None, block=None, width=1, shortcut=None,
           residual=True, drop_path_rate=0.0, include_top=True, weights=None,
           input_tensor=None, input_shape=None, pooling=None, classes=None,
           classifier_activation="softmax", name=None, data_format=None, dtype=None,
           outputs=None, **extras):
    """Build a ResNet of the literature as a plain ``keras.Model``.

    Args:
        depth: int. CIFAR: 6n+2 with basic blocks (20, 32, 44, 56, 110, 1202, ...)
            or 9n+2 with bottlenecks (164, 1001, ...). ImageNet: 18, 34, 50, 101,
            152 or 200. A depth of the ImageNet table builds the ImageNet
            network whatever the input size (50, 101, 152 and 200 are also
            CIFAR depths: ask for those with ``family="cifar"``).
        preact: bool, full pre-activation units (He et al. 2016).
        family: ``"cifar"``, ``"imagenet"`` or None (from the depth tables).
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
        dtype: None (Keras's global dtype policy), a policy name
            (``"mixed_float16"``, ``"mixed_bfloat16"``, ``"float32"``, ...) or a
            ``keras.DTypePolicy``, passed to every layer; under a mixed policy
            the classifier (``avg_pool``, ``predictions``) stays float32.
        outputs: None (the network's usual output) or ``"features"``
            (``include_top=False``, no ``pooling``): a model whose output is the
            dict of stage outputs by pyramid level, ``"P2"`` .. ``"P5"`` for
            ImageNet nets, ``"P0"`` .. ``"P2"`` for CIFAR nets (level l has
            stride 2**l); see :mod:`keras_resnet.backbone`.
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
    data_format, policy = check_keras_arguments(include_top, pooling, classes, name,
                                                classifier_activation, input_tensor,
                                                data_format, dtype, outputs)
    arch = A.resolve_resnet(depth, preact=preact, family=family, block=block, width=width,
                            shortcut=shortcut, residual=residual, drop_path_rate=drop_path_rate,
                            weights=weights, include_top=include_top, classes=classes,
                            input_shape=_shape_of(input_shape, input_tensor),
                            data_format=data_format, **extras)
    check_regularizer(arch.kernel_regularizer)
    model = _build(arch, include_top=include_top, input_tensor=input_tensor,
                   input_shape=input_shape, pooling=pooling, classes=classes,
                   classifier_activation=classifier_activation,
                   name=name or A.default_name(depth, arch), data_format=data_format,
                   policy=policy)
    if weights is not None:
        weights_lib.load(model, weights, depth=depth, preact=preact)
    return _outputs(model, outputs)


def WideResNet(depth=28, width=10, dropout_rate=0.0, *, include_top=True, weights=None,
               input_tensor=None, input_shape=None, pooling=None, classes=None,
               classifier_activation="softmax", name=None, data_format=None, dtype=None,
               outputs=None, **extras):
    """Build WRN-d-k (Zagoruyko & Komodakis 2016) as a plain ``keras.Model``.

    Pre-activation basic blocks, ``n = (depth - 4) / 6`` blocks per stage,
    16k, 32k, 64k filters, projection shortcuts where the width changes and
    dropout between the two convolutions of each block. The other arguments
    are :func:`ResNet`'s.

    Example:

    >>> import keras_resnet
    >>> model = keras_resnet.WideResNet(depth=16, width=2)
    >>> model.name
    'wrn_16_2'
    """
    data_format, policy = check_keras_arguments(include_top, pooling, classes, name,
                                                classifier_activation, input_tensor,
                                                data_format, dtype, outputs)
    arch = A.resolve_wide_resnet(depth, width, dropout_rate, weights=weights,
                                 input_shape=_shape_of(input_shape, input_tensor),
                                 data_format=data_format, **extras)
    check_regularizer(arch.kernel_regularizer)
    model = _build(arch, include_top=include_top, input_tensor=input_tensor,
                   input_shape=input_shape, pooling=pooling, classes=classes,
                   classifier_activation=classifier_activation,
                   name=name or A.wide_name(depth, width), data_format=data_format,
                   policy=policy)
    if weights is not None:
        weights_lib.load(model, weights)
    return _outputs(model, outputs)


def _outputs(model, outputs):
    """``model``, or its multi-scale features model for ``outputs="features"``."""
    return backbone.features(model) if outputs == "features" else model
