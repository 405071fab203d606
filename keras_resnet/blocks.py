"""Residual units as Keras layers.

One body serves both block kinds: a :class:`ResidualBlock` (two 3x3 convolutions)
and a :class:`BottleneckBlock` (1x1 - 3x3 - 1x1) differ only in the list of
convolutions on their residual branch. Every variant of the literature is a flag
of that body:

* ``ordering``: where BatchNorm and ReLU sit relative to the addition (He et al.
  2016, "Identity Mappings", Fig. 4): ``"post"`` (the original), ``"bn_after_add"``,
  ``"relu_before_add"``, ``"relu_preact"`` and ``"full_preact"``, read from one
  table (:data:`keras_resnet.architecture.UNIT_ORDERINGS`);
* ``shortcut``: option ``"A"`` (parameter-free: subsampling plus zero-padded
  channels), ``"B"`` (projection where the channel count changes) or ``"C"``
  (projection on every block), He et al. 2015, section 3.3;
* ``skip``: the function that merges shortcut and residual (Identity Mappings,
  Fig. 2): ``"identity"``, ``"scaling"`` (0.5/0.5), ``"exclusive_gating"``,
  ``"shortcut_gating"``, ``"dropout"`` (on the shortcut);
* ``residual=False``: the plain twin, the same layers without the shortcut;
* ``drop_path_rate``: stochastic depth (Huang et al. 2016), inverted scaling so
  that inference is the identity;
* ``zero_init``: the last BatchNorm gamma of the branch starts at zero (Goyal
  et al. 2017), so every block starts as the identity.

Each block is a single node of the functional graph, which keeps 1,000-layer
networks fast to build and well inside Python's recursion limit. Sub-layers are
named ``{block}_conv1``, ``{block}_bn1``, ..., ``{block}_shortcut_conv``,
``{block}_shortcut_bn`` and ``{block}_gate_conv``.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_resnet import specs
from keras_resnet.architecture import BN_EPSILON, BN_MOMENTUM, resolve_ordering, shortcut_kind
from keras_resnet.specs import UNIT_ORDERINGS
from keras_resnet.validation import check_choice, check_int, check_rate
from keras_resnet.building import (PACKAGE, DeferredBuild, conv_padding, kernel_initializer_for,
                                   pad_spatial, resolve_data_format)
from keras_resnet.normalization import BatchNorm
from keras_resnet.replicas import _ReplicaDropout, keep_mask


class _ResidualUnit(DeferredBuild, keras.layers.Layer):
    """The shared body of both block kinds; see the module docstring."""

    def __init__(self, filters, strides=1, *, preact=False, ordering=None,
                 shortcut="B", skip="identity", residual=True, drop_path_rate=0.0,
                 dropout_rate=0.0, zero_init=False, gate_bias=-6.0,
                 data_format=None, bn_momentum=BN_MOMENTUM, bn_epsilon=BN_EPSILON,
                 kernel_initializer="he_normal", kernel_regularizer=None,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_int("filters", filters)
        self.strides = check_int("strides", strides)
        self.ordering = resolve_ordering(preact, ordering)
        self.preact = self.ordering == "full_preact"
        self._unit = UNIT_ORDERINGS[self.ordering]
        self.shortcut = check_choice("shortcut", shortcut, specs.SHORTCUTS)
        self.skip = check_choice("skip", skip, specs.SKIPS)
        self.residual = bool(residual)
        self.drop_path_rate = check_rate("drop_path_rate", drop_path_rate)
        self.dropout_rate = check_rate("dropout_rate", dropout_rate)
        self.zero_init = bool(zero_init)
        self.gate_bias = float(gate_bias)
        self.data_format = resolve_data_format(data_format)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.seed = seed
        self._channel_axis = -1 if self.data_format == "channels_last" else 1

        convs = self.branch_convs()
        n = len(convs)
        self._kernels = [k for k, _, _ in convs]
        self._conv_strides = [s for _, _, s in convs]
        # Branch layers are plain attributes (conv1, bn1, conv2, ...), not lists:
        # TensorFlow's checkpoint tracking (tf.train.Checkpoint) follows
        # attributes but not Keras's tracked lists. `convs` and `bns` are views.
        self._branch_length = n
        for i, (k, f, s) in enumerate(convs):
            setattr(self, f"conv{i + 1}", self._conv(f, k, s, f"conv{i + 1}"))
        # BN i belongs to conv i: it normalises its input or its output, or (the
        # last BN of "bn_after_add") the sum; see UNIT_ORDERINGS.
        for i in range(n):
            setattr(self, f"bn{i + 1}",
                    self._bn(f"bn{i + 1}", zero=(self.zero_init and i == n - 1)))
        self.out_channels = convs[-1][1]
        self.dropout = (_ReplicaDropout(self.dropout_rate, seed=seed,
                                             name=f"{self.name}_dropout", dtype=self.dtype_policy)
                        if self.dropout_rate else None)
        self.shortcut_conv = self.shortcut_bn = self.gate_conv = None
        self._shortcut_kind = None
        if self.drop_path_rate or self.skip == "dropout":
            self._rng = keras.random.SeedGenerator(seed, name=f"{self.name}_seed_generator")
            # Seen by tf.train.Checkpoint, so a resumed run draws the same masks.
            self._rng_state = self._rng.state

    @property
    def convs(self):
        """The branch convolutions, in order (``conv1``, ``conv2``, ...)."""
        return [getattr(self, f"conv{i + 1}") for i in range(self._branch_length)]

    @property
    def bns(self):
        """The branch BatchNorms, in order (``bn1``, ``bn2``, ...)."""
        return [getattr(self, f"bn{i + 1}") for i in range(self._branch_length)]

    # -- the part that differs between block kinds -------------------------------
    def branch_convs(self):
        """A list of (kernel size, filters, stride) for the residual branch."""
        raise NotImplementedError

    # -- construction helpers ------------------------------------------------------
    def _conv(self, filters, kernel, strides, part, use_bias=False):
        name = f"{self.name}_{part}"
        return keras.layers.Conv2D(
            filters, kernel, strides=strides, padding=conv_padding(strides), use_bias=use_bias,
            data_format=self.data_format,
            kernel_initializer=kernel_initializer_for(self.kernel_initializer, name),
            kernel_regularizer=self.kernel_regularizer,
            name=name, dtype=self.dtype_policy)

    def _bn(self, part, zero=False):
        return BatchNorm(
            axis=self._channel_axis, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
            gamma_initializer="zeros" if zero else "ones",
            name=f"{self.name}_{part}", dtype=self.dtype_policy)

    # -- shapes ---------------------------------------------------------------------
    def _spatial(self, shape):
        return (shape[1], shape[2]) if self.data_format == "channels_last" else (shape[2], shape[3])

    def _with(self, shape, hw, channels):
        if self.data_format == "channels_last":
            return (shape[0], hw[0], hw[1], channels)
        return (shape[0], channels, hw[0], hw[1])

    @staticmethod
    def _out_size(size, kernel, stride):
        if size is None:
            return None
        return (size + 2 * (kernel // 2) - kernel) // stride + 1

    def compute_output_shape(self, input_shape):
        hw = self._spatial(input_shape)
        for k, s in zip(self._kernels, self._conv_strides):
            hw = tuple(self._out_size(d, k, s) for d in hw)
        return self._with(input_shape, hw, self.out_channels)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        in_channels = input_shape[self._channel_axis]
        if in_channels is None:
            raise ValueError(f"{self.__class__.__name__} `{self.name}` needs a known "
                             f"channel dimension; received input shape {input_shape}.")
        self._shortcut_kind = shortcut_kind(self.shortcut, in_channels, self.out_channels,
                                            self.strides, self.residual)
        shape = input_shape
        before = self._unit.bn_before_conv
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if before:
                bn.build(shape)
            k = 0 if conv.padding == "same" else self._kernels[i]
            hw = tuple(None if d is None else d + 2 * (k // 2) for d in self._spatial(shape))
            conv.build(self._with(shape, hw, shape[self._channel_axis]))
            shape = conv.compute_output_shape(self._with(shape, hw, shape[self._channel_axis]))
            if not before:
                bn.build(shape)
        if self.dropout is not None:
            self.dropout.build(shape)
        if self._shortcut_kind == "projection":
            self.shortcut_conv = self._conv(self.out_channels, 1, self.strides, "shortcut_conv")
            self.shortcut_conv.build(input_shape)
            if not self._unit.preactivation:
                self.shortcut_bn = self._bn("shortcut_bn")
                self.shortcut_bn.build(self.shortcut_conv.compute_output_shape(input_shape))
        if self.residual and self.skip in ("exclusive_gating", "shortcut_gating"):
            self.gate_conv = self._conv(
                self.out_channels, 1, self.strides, "gate_conv", use_bias=True)
            self.gate_conv.bias_initializer = keras.initializers.Constant(self.gate_bias)
            self.gate_conv.build(input_shape)
        self.built = True

    # -- forward ----------------------------------------------------------------------
    def _subsample(self, x):
        if self.strides == 1:
            return x
        s = self.strides
        return x[:, ::s, ::s, :] if self.data_format == "channels_last" else x[:, :, ::s, ::s]

    def _shortcut(self, x, preactivated, training):
        kind = self._shortcut_kind
        if kind == "identity":
            return x
        if kind == "subsample":
            return self._subsample(x)
        if kind == "pad":
            x = self._subsample(x)
            extra = self.out_channels - x.shape[self._channel_axis]
            if extra < 0:
                raise ValueError("Option A cannot reduce the channel count of block "
                                 f"`{self.name}`; use shortcut='B'.")
            pads = [[0, 0]] * 4
            pads[self._channel_axis] = [0, extra]
            return ops.pad(x, pads)
        # Pre-activation units project their pre-activated input (He et al. 2016, appendix).
        source = preactivated if self._unit.preactivation else x
        y = self.shortcut_conv(source)
        return self.shortcut_bn(y, training=training) if self.shortcut_bn is not None else y

    @staticmethod
    def _norm_act(steps, x, bn, training):
        """Apply ``steps`` (a field of :class:`UnitOrdering`) to ``x`` with BatchNorm ``bn``."""
        for step in steps:
            x = bn(x, training=training) if step == "bn" else ops.relu(x)
        return x

    def _branch(self, x, training):
        """The residual branch, and its pre-activated input (what projections read)."""
        unit, n = self._unit, self._branch_length
        preactivated = x
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            last = i == n - 1
            x = self._norm_act(unit.before_conv, x, bn, training)
            if i == 0:
                preactivated = x
            if last and self.dropout is not None:
                x = self.dropout(x, training=training)
            x = conv(x if conv.padding == "same"
                     else pad_spatial(x, self._kernels[i] // 2, self.data_format))
            x = self._norm_act(unit.after_last_conv if last else unit.after_conv, x, bn, training)
        return x, preactivated

    def call(self, inputs, training=None):
        shortcut, residual = self.merge_terms(inputs, training)
        return self.after_merge(residual if shortcut is None else shortcut + residual,
                                training)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "strides": self.strides,
            "ordering": self.ordering, "shortcut": self.shortcut, "skip": self.skip,
            "residual": self.residual, "drop_path_rate": self.drop_path_rate,
            "dropout_rate": self.dropout_rate, "zero_init": self.zero_init,
            "gate_bias": self.gate_bias, "data_format": self.data_format,
            "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer is not None else None,
            "seed": self.seed,
        })
        return config

    # -- analyses (keras_resnet.analysis) ------------------------------------------------
    def merge_terms(self, inputs, training=None):
        """The shortcut term and the residual term of the block, before they are merged.

        Returns ``(shortcut, residual)`` such that the block's output is
        ``self.after_merge(shortcut + residual)``; ``shortcut`` is None for the
        plain twin (``residual=False``), whose output is ``self.after_merge(residual)``.
        The skip function's factors are inside the terms (``0.5 * shortcut`` and
        ``0.5 * residual`` for ``"scaling"``, the gates for the gating functions),
        so ``after_merge(shortcut)`` is the block with its residual branch removed
        (the lesion of Veit et al. 2016) and stopping the gradient of one term
        leaves the paths through the other.

        Example:

        >>> import numpy as np, keras_resnet
        >>> block = keras_resnet.layers.ResidualBlock(4, name="b")
        >>> x = np.random.default_rng(0).normal(size=(2, 5, 5, 4)).astype("float32")
        >>> short, res = block.merge_terms(x)
        >>> bool(np.allclose(block.after_merge(short + res), block(x), atol=1e-6))
        True
        """
        if not self.built:
            self.build(tuple(inputs.shape))
        residual, preactivated = self._branch(inputs, training)
        if training and self.drop_path_rate:
            residual = residual * keep_mask(residual, self.drop_path_rate, self._rng) / (
                1.0 - self.drop_path_rate)
        if self._shortcut_kind is None:
            return None, residual
        short = self._shortcut(inputs, preactivated, training)
        if self.skip == "scaling":
            return 0.5 * short, 0.5 * residual
        if self.skip == "dropout" and training:
            short = short * keep_mask(short, 0.5, self._rng) / 0.5
        if self.skip in ("exclusive_gating", "shortcut_gating"):
            gate = ops.sigmoid(self.gate_conv(inputs))
            return (1.0 - gate) * short, (gate * residual if self.skip == "exclusive_gating"
                                          else residual)
        return short, residual

    def after_merge(self, merged, training=None):
        """What the block applies after the addition (``UnitOrdering.after_add``): the
        last BatchNorm for ``ordering="bn_after_add"``, the ReLU for ``"post"`` and
        ``"bn_after_add"``, nothing for the others. See :meth:`merge_terms`."""
        return self._norm_act(self._unit.after_add, merged, self.bns[-1], training)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResidualBlock(_ResidualUnit):
    """The basic residual block: two 3x3 convolutions (He et al. 2015, Fig. 2).

    Args:
        filters: int, output channels of both convolutions.
        strides: int, stride of the first convolution (and the shortcut).
        preact: bool, full pre-activation (BN-ReLU-conv, He et al. 2016);
            the same as ``ordering="full_preact"``.
        ordering: str or None, the unit ordering; one of ``specs.ORDERINGS``.
        shortcut: ``"A"``, ``"B"`` or ``"C"`` (He et al. 2015, section 3.3).
        skip: str, how shortcut and residual merge; one of ``specs.SKIPS``.
        residual: bool, False builds the plain twin (no shortcut at all).
        drop_path_rate: float in [0, 1), probability of dropping the residual
            branch of an example during training (stochastic depth).
        dropout_rate: float in [0, 1), dropout before the last convolution
            (Wide ResNets).
        zero_init: bool, initialise the last BatchNorm gamma of the branch to 0.
        gate_bias: float, initial bias b_g of the gating skip functions.
        data_format: ``"channels_last"``, ``"channels_first"`` or None (Keras config).

    Example:

    >>> import keras, keras_resnet
    >>> x = keras.Input((32, 32, 16))
    >>> y = keras_resnet.layers.ResidualBlock(32, strides=2, shortcut="A", name="b")(x)
    >>> tuple(y.shape)
    (None, 16, 16, 32)
    """

    def branch_convs(self):
        return [(3, self.filters, self.strides), (3, self.filters, 1)]


@keras.saving.register_keras_serializable(package=PACKAGE)
class BottleneckBlock(_ResidualUnit):
    """The bottleneck block: 1x1 - 3x3 - 1x1 convolutions (He et al. 2015, Fig. 5).

    Takes the arguments of :class:`ResidualBlock`, plus:

    Args:
        filters: int, channels of the inner (1x1 and 3x3) convolutions.
        expansion: int, the block outputs ``expansion * filters`` channels
            (default 4), unless ``out_filters`` is given.
        out_filters: int or None, output channels (overrides ``expansion``;
            wide bottlenecks widen the inner layers only).
        stride_at: ``"1x1"`` puts the stride on the first 1x1 convolution (the
            paper and keras.applications, "v1"); ``"3x3"`` on the 3x3 one
            (torchvision and NVIDIA, "v1.5").

    Example:

    >>> import keras, keras_resnet
    >>> x = keras.Input((56, 56, 64))
    >>> y = keras_resnet.layers.BottleneckBlock(64, name="b")(x)
    >>> tuple(y.shape)
    (None, 56, 56, 256)
    """

    def __init__(self, filters, strides=1, *, expansion=specs.BOTTLENECK_EXPANSION,
                 out_filters=None, stride_at="1x1", **kwargs):
        self.expansion = check_int("expansion", expansion)
        self.out_filters = None if out_filters is None else check_int("out_filters", out_filters)
        self.stride_at = check_choice("stride_at", stride_at, specs.STRIDE_AT)
        super().__init__(filters, strides, **kwargs)

    def branch_convs(self):
        out = self.out_filters or self.expansion * self.filters
        s1, s3 = (self.strides, 1) if self.stride_at == "1x1" else (1, self.strides)
        return [(1, self.filters, s1), (3, self.filters, s3), (1, out, 1)]

    def get_config(self):
        config = super().get_config()
        config.update({"expansion": self.expansion, "out_filters": self.out_filters,
                       "stride_at": self.stride_at})
        return config


BLOCK_CLASSES = {"basic": ResidualBlock, "bottleneck": BottleneckBlock}
