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

import contextlib
import math
import random
import zlib

import keras
import numpy as np
from keras import ops

from keras_resnet import specs
# The argument checks and the shortcut decision live with the architecture
# (no Keras there); the layers use the same ones.
from keras_resnet.architecture import (  # noqa: F401 - BN_*, shortcut_kind: public here too
    BN_EPSILON, BN_MOMENTUM, PREACT_ORDERINGS, UNIT_ORDERINGS, check_choice, shortcut_kind)
from keras_resnet.architecture import check_int as _as_int
from keras_resnet.architecture import check_rate as _as_rate

PACKAGE = "keras_resnet"


def resolve_data_format(data_format):
    """``data_format``, or Keras's configured ``image_data_format()`` when None."""
    data_format = data_format or keras.config.image_data_format()
    return check_choice("data_format", data_format, ("channels_last", "channels_first"))


# -- building fast ------------------------------------------------------------------
#
# A 1,000-layer ResNet has ~3,000 Keras layers and ~6,000 variables; two costs
# dominated its build time and both are handled here.
#
# 1. Variable creation under TensorFlow. A Keras variable is a ``tf.Variable``
#    created inside the TF name scope of its layer, and TF passes that full
#    scoped name ("stage3_block200/stage3_block200_conv1/kernel") as the
#    ``debug_name`` attribute of the ``VarHandleOp`` that creates the resource.
#    Eager TF caches one kernel per distinct set of op attributes, so every
#    variable of the network missed the cache and instantiated a fresh kernel
#    (~0.7 ms each, ~4 s for ResNet-1202; the cache also grows by one entry per
#    variable). ``building_scope`` creates the variables inside a
#    ``keras.StatelessScope``: Keras then records them (paths, shapes,
#    initializers) and initializes them all when the scope exits, outside the
#    layers' name scopes, where the handle ops share a handful of cached kernels.
#    Variable paths, names, values and order are unchanged.
#
# 2. Random kernels. Keras draws each kernel with a backend op: under TF a
#    truncated normal costs ~1 ms per 3x3x64x64 kernel, and under JAX every new
#    kernel shape compiles a program (~0.4 s each, ~14 s for ResNet-1001).
#    ``NumpyVarianceScaling`` draws the same distribution with NumPy.


@contextlib.contextmanager
def building_scope():
    """Create the variables of the layers built inside, and initialize them on exit.

    Layers called inside the scope create their variables uninitialized; they
    are initialized (same values, same order) when the scope exits. Read no
    variable values inside it. Nested inside another ``keras.StatelessScope``,
    the outer scope initializes them. The builders use it; it is public for
    users who assemble very deep networks from these blocks themselves.

    Example:

    >>> import keras, keras_resnet
    >>> with keras_resnet.layers.building_scope():
    ...     x = keras.Input((8, 8, 16))
    ...     block = keras_resnet.layers.ResidualBlock(16, name="b")
    ...     y = block(x)
    >>> tuple(block.convs[0].kernel.shape)
    (3, 3, 16, 16)
    """
    with keras.StatelessScope():
        yield


def _fans(shape):
    """(fan_in, fan_out) of a kernel shape, as Keras's VarianceScaling computes them."""
    shape = tuple(int(d) for d in shape)
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


@keras.saving.register_keras_serializable(package=PACKAGE)
class NumpyVarianceScaling(keras.initializers.Initializer):
    """``keras.initializers.VarianceScaling`` drawn with NumPy's PCG64 generator.

    The same distributions (``"truncated_normal"``, cut at two standard
    deviations, ``"untruncated_normal"`` and ``"uniform"``) and fan modes as
    Keras's, without a backend op per kernel: no per-shape compilation under
    JAX, about 3x faster under TensorFlow. An integer ``seed`` gives the same
    values on every call and every backend; ``None`` draws one from Python's
    ``random`` when created (so ``keras.utils.set_random_seed`` makes it
    reproducible), as Keras's unseeded initializers do.

    Args:
        scale: float > 0, the variance scale (2.0 for He, 1.0 for Glorot/LeCun).
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
        distribution: ``"truncated_normal"``, ``"untruncated_normal"`` or
            ``"uniform"`` (``"normal"`` means truncated, as in Keras).
        seed: int or None.

    Example:

    >>> import numpy as np, keras_resnet
    >>> init = keras_resnet.layers.NumpyVarianceScaling(2.0, seed=7)
    >>> w = np.asarray(init((3, 3, 64, 64)))
    >>> float(np.abs(w).max()) <= 2 * (2.0 / (9 * 64)) ** 0.5 / 0.87962566103423978
    True
    """

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"Argument `scale` must be a positive float; received {scale!r}.")
        self.scale = float(scale)
        self.mode = check_choice("mode", mode, ("fan_in", "fan_out", "fan_avg"))
        distribution = "truncated_normal" if distribution == "normal" else distribution
        self.distribution = check_choice(
            "distribution", distribution, ("truncated_normal", "untruncated_normal", "uniform"))
        if seed is None:
            seed = random.randint(1, 10**9)
        self.seed = _as_int("seed", seed, minimum=0)

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, fan)
        rng = np.random.default_rng(self.seed)
        shape = tuple(int(d) for d in shape)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            values = rng.uniform(-limit, limit, shape).astype("float32")
        else:
            values = rng.standard_normal(shape, dtype="float32")
            if self.distribution == "truncated_normal":
                # Redraw what falls outside two standard deviations (4.6%).
                flat = values.reshape(-1)
                outside = np.flatnonzero(np.abs(flat) > 2.0)
                while outside.size:
                    flat[outside] = rng.standard_normal(outside.size, dtype="float32")
                    outside = outside[np.abs(flat[outside]) > 2.0]
                # The standard deviation of a unit normal cut at +-2.
                values *= np.float32(math.sqrt(variance) / 0.87962566103423978)
            else:
                values *= np.float32(math.sqrt(variance))
        return ops.convert_to_tensor(values, dtype=dtype or keras.config.floatx())

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}


def kernel_initializer_for(initializer, layer_name):
    """The initializer of one convolution, given the block's ``kernel_initializer``.

    Every convolution gets its own initializer: Keras initializers seeded with
    an int (unseeded ones draw an int when created) return the same values on
    every call, so one instance shared by a block's equally shaped
    convolutions would give them identical kernels. Keras's ``VarianceScaling``
    family (``"he_normal"``, the default, ``"glorot_uniform"``, ...) becomes a
    :class:`NumpyVarianceScaling` of the same distribution, seeded from Python's
    ``random`` (unseeded) or from the int seed and ``layer_name``; other Keras
    initializers are copied through their config; anything else is used as is.
    """
    if not isinstance(initializer, keras.initializers.Initializer):
        return initializer
    config = initializer.get_config()
    seed = config.get("seed")
    if (isinstance(initializer, keras.initializers.VarianceScaling)
            and type(initializer).__call__ is keras.initializers.VarianceScaling.__call__
            and config.get("input_axes") is None and config.get("output_axes") is None
            and (seed is None or (isinstance(seed, int) and not isinstance(seed, bool)))):
        if seed is not None:
            seed = int(np.random.SeedSequence([seed, zlib.crc32(layer_name.encode())])
                       .generate_state(1)[0])
        return NumpyVarianceScaling(initializer.scale, initializer.mode,
                                    initializer.distribution, seed=seed)
    return type(initializer).from_config(config)


# -- random masks under tf.distribute ---------------------------------------------------
#
# Under a tf.distribute strategy every replica runs the same step with the same
# (mirrored) seed-generator state, so Keras's random ops would draw the same mask on
# every replica: with identical inputs, replicas would drop the same examples. The
# replica id is folded into the seed (TensorFlow's own stateless_fold_in) so that each
# replica draws its own mask. With one replica, and on other backends (JAX with
# keras.distribution draws one mask over the global batch), masks are drawn exactly as
# before. The seed generators stay ordinary variables, so a resumed run continues
# the same streams.


def replica_seed(seed_generator):
    """The next seed of ``seed_generator`` with the replica id folded in, or None.

    None where nothing needs folding (not TensorFlow, or one replica in sync): the
    caller then draws with ``seed=seed_generator`` as usual. Otherwise a (2,) int32
    seed for TensorFlow's stateless random ops, distinct per replica.
    """
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    seed = tf.random.experimental.stateless_fold_in(
        tf.cast(seed_generator.next(), "int64"), context.replica_id_in_sync_group)
    # int32, as Keras casts its seeds (XLA's stateless ops take int32 seeds).
    return tf.cast(tf.math.floormod(seed, tf.int32.max - 1), "int32")


@keras.saving.register_keras_serializable(package=PACKAGE, name="ReplicaDropout")
class _ReplicaDropout(keras.layers.Dropout):
    """``keras.layers.Dropout`` that draws its own mask on every tf.distribute replica.

    Same name, variables and config as the Keras layer; see :func:`replica_seed`.
    """

    def call(self, inputs, training=False):
        seed = replica_seed(self.seed_generator) if training and self.rate > 0 else None
        if seed is None:
            return super().call(inputs, training=training)
        import tensorflow as tf

        return tf.nn.experimental.stateless_dropout(inputs, rate=self.rate, seed=seed,
                                                    noise_shape=self.noise_shape)


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` on TensorFlow's fused kernel where it applies.

    The same arguments, variables, defaults and results (to float rounding) as
    Keras's layer; under TensorFlow, 4-D channels-last inputs without a mask,
    renormalisation or cross-replica synchronisation go through the fused
    ``FusedBatchNormV3`` op (forward and gradient), everything else through
    Keras's own ``call``. Why: Keras 3's BatchNormalization computes the moments
    and the normalisation as separate ops on TensorFlow; on the 2-core
    development machine (oneDNN on) its forward and backward pass over a
    128 x 32 x 32 x 16 batch took 10.6 ms against 3.6 ms fused, while the 3x3
    convolution next to it took 13.6 ms, so it was most of a basic block's time.

    The moving statistics are updated as Keras does: with the *biased* batch
    variance (the fused kernel's variance output is Bessel-corrected, which is
    undone here), ``moving = moving * momentum + batch * (1 - momentum)``.

    Example:

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(8, 4, 4, 3)).astype("float32")
    >>> ours, theirs = BatchNorm(), keras.layers.BatchNormalization()
    >>> a, b = ours(x, training=True), theirs(x, training=True)
    >>> bool(np.allclose(a, b, atol=1e-5)), bool(np.allclose(ours.moving_variance,
    ...                                                      theirs.moving_variance))
    (True, True)
    """

    def _fusable(self, inputs, mask):
        return (keras.backend.backend() == "tensorflow" and mask is None
                and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and self.center and self.scale and not self.renorm
                and not self.synchronized)

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.convert_to_tensor(inputs)
        if x.dtype not in (tf.float16, tf.bfloat16, tf.float32):
            x = tf.cast(x, tf.float32)
        gamma = tf.cast(self.gamma.value, tf.float32)
        beta = tf.cast(self.beta.value, tf.float32)
        if training and self.trainable:
            empty = tf.constant([], tf.float32)
            y, mean, variance = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=empty, variance=empty,
                epsilon=self.epsilon, data_format="NHWC", is_training=True)[:3]
            count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
            variance = variance * tf.maximum(count - 1.0, 0.0) / tf.maximum(count, 1.0)
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        else:
            y = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta,
                mean=tf.cast(self.moving_mean.value, tf.float32),
                variance=tf.cast(self.moving_variance.value, tf.float32),
                epsilon=self.epsilon, data_format="NHWC", is_training=False)[0]
        return tf.cast(y, self.compute_dtype)


def _padding(strides):
    """Stride-1 convolutions pad with the convolution itself ("same" is symmetric there,
    k // 2 on each side, and saves a padded copy of the input per convolution: CIFAR
    ResNet-56 trained 1.2-1.3x faster on 2 CPU cores, docs/performance.md); strided ones pad
    explicitly and symmetrically before a "valid" convolution (TensorFlow's "same" would
    pad only after, which differs from torchvision, keras.applications' V2 models and
    converted weights)."""
    return "same" if strides == 1 else "valid"


class _DeferredBuild:
    """Mixin: layers loaded from a ``.keras`` file build inside :func:`building_scope`."""

    def build_from_config(self, config):
        """Build from a saved build config (``.keras`` loading), variables deferred.

        The same :func:`building_scope` as the builders': a saved 1,000-layer
        network reloads without one eager kernel compilation per variable.
        """
        with building_scope():
            super().build_from_config(config)


class _ResidualUnit(_DeferredBuild, keras.layers.Layer):
    """The shared body of both block kinds; see the module docstring."""

    def __init__(self, filters, strides=1, *, preact=False, ordering=None,
                 shortcut="B", skip="identity", residual=True, drop_path_rate=0.0,
                 dropout_rate=0.0, zero_init=False, gate_bias=-6.0,
                 data_format=None, bn_momentum=BN_MOMENTUM, bn_epsilon=BN_EPSILON,
                 kernel_initializer="he_normal", kernel_regularizer=None,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = _as_int("filters", filters)
        self.strides = _as_int("strides", strides)
        if ordering is None:
            ordering = "full_preact" if preact else "post"
        elif preact and ordering != "full_preact":
            raise ValueError(f"Argument `preact=True` conflicts with `ordering={ordering!r}`; "
                             "preact=True means ordering='full_preact'.")
        self.ordering = check_choice("ordering", ordering, specs.ORDERINGS)
        self.preact = self.ordering == "full_preact"
        self._unit = UNIT_ORDERINGS[self.ordering]
        self.shortcut = check_choice("shortcut", shortcut, specs.SHORTCUTS)
        self.skip = check_choice("skip", skip, specs.SKIPS)
        self.residual = bool(residual)
        self.drop_path_rate = _as_rate("drop_path_rate", drop_path_rate)
        self.dropout_rate = _as_rate("dropout_rate", dropout_rate)
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
            setattr(self, f"bn{i + 1}", self._bn(f"bn{i + 1}", zero=(self.zero_init and i == n - 1)))
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
            filters, kernel, strides=strides, padding=_padding(strides), use_bias=use_bias,
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
    def _pad(self, x, amount):
        if not amount:
            return x
        pads = [[0, 0], [amount, amount], [amount, amount]]
        pads = [[0, 0]] + pads[1:] + [[0, 0]] if self.data_format == "channels_last" \
            else [[0, 0], [0, 0]] + pads[1:]
        return ops.pad(x, pads)

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
            x = conv(x if conv.padding == "same" else self._pad(x, self._kernels[i] // 2))
            x = self._norm_act(unit.after_last_conv if last else unit.after_conv, x, bn, training)
        return x, preactivated

    def _keep_mask(self, x, rate):
        """Per-example Bernoulli(1 - rate) mask, broadcastable to ``x``; one per replica."""
        shape = (ops.shape(x)[0], 1, 1, 1)
        seed = replica_seed(self._rng)
        if seed is None:
            keep = keras.random.uniform(shape, seed=self._rng) >= rate
        else:
            import tensorflow as tf

            keep = tf.random.stateless_uniform(shape, seed=seed) >= rate
        return ops.cast(keep, x.dtype)

    def call(self, inputs, training=None):
        residual, preactivated = self._branch(inputs, training)
        if training and self.drop_path_rate:
            residual = residual * self._keep_mask(residual, self.drop_path_rate) / (
                1.0 - self.drop_path_rate)
        if self._shortcut_kind is None:
            out = residual
        else:
            short = self._shortcut(inputs, preactivated, training)
            if self.skip == "identity":
                out = short + residual
            elif self.skip == "scaling":
                out = 0.5 * short + 0.5 * residual
            elif self.skip == "dropout":
                if training:
                    short = short * self._keep_mask(short, 0.5) / 0.5
                out = short + residual
            else:
                gate = ops.sigmoid(self.gate_conv(inputs))
                if self.skip == "exclusive_gating":
                    out = (1.0 - gate) * short + gate * residual
                else:
                    out = (1.0 - gate) * short + residual
        return self._norm_act(self._unit.after_add, out, self.bns[-1], training)

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
            residual = residual * self._keep_mask(residual, self.drop_path_rate) / (
                1.0 - self.drop_path_rate)
        if self._shortcut_kind is None:
            return None, residual
        short = self._shortcut(inputs, preactivated, training)
        if self.skip == "scaling":
            return 0.5 * short, 0.5 * residual
        if self.skip == "dropout" and training:
            short = short * self._keep_mask(short, 0.5) / 0.5
        if self.skip in ("exclusive_gating", "shortcut_gating"):
            gate = ops.sigmoid(self.gate_conv(inputs))
            return (1.0 - gate) * short, (gate * residual if self.skip == "exclusive_gating"
                                          else residual)
        return short, residual

    def after_merge(self, merged, training=None):
        """What the block applies after the addition: the last BatchNorm for
        ``ordering="bn_after_add"``, the ReLU for ``"post"`` and ``"bn_after_add"``,
        nothing for the pre-activation orderings. See :meth:`merge_terms`."""
        if self.ordering == "bn_after_add":
            merged = self.bns[-1](merged, training=training)
        if self.ordering in ("post", "bn_after_add"):
            merged = ops.relu(merged)
        return merged


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
        self.expansion = _as_int("expansion", expansion)
        self.out_filters = None if out_filters is None else _as_int("out_filters", out_filters)
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


@keras.saving.register_keras_serializable(package=PACKAGE)
class Stem(_DeferredBuild, keras.layers.Layer):
    """The network's first convolution, with BN/ReLU and max-pool per family.

    CIFAR: a 3x3 convolution. ImageNet: a 7x7/2 convolution followed by a 3x3/2
    max-pool (zero padding of 1, as keras.applications does). ``norm`` adds the
    BatchNorm and ``activation`` the ReLU after the convolution (both off for
    full pre-activation nets, whose first block normalises its input).
    """

    def __init__(self, filters, family="cifar", *, norm=True, activation=True,
                 use_bias=False, data_format=None, bn_momentum=BN_MOMENTUM,
                 bn_epsilon=BN_EPSILON, kernel_initializer="he_normal",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = _as_int("filters", filters)
        self.family = check_choice("family", family, specs.FAMILIES)
        self.norm, self.activation, self.use_bias = bool(norm), bool(activation), bool(use_bias)
        self.data_format = resolve_data_format(data_format)
        self.bn_momentum, self.bn_epsilon = float(bn_momentum), float(bn_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self._channel_axis = -1 if self.data_format == "channels_last" else 1
        self._kernel, self._stride = (3, 1) if family == "cifar" else (7, 2)
        self.conv = keras.layers.Conv2D(
            filters, self._kernel, strides=self._stride, padding=_padding(self._stride),
            use_bias=self.use_bias,
            data_format=self.data_format,
            kernel_initializer=kernel_initializer_for(self.kernel_initializer,
                                                      f"{self.name}_conv"),
            kernel_regularizer=self.kernel_regularizer, name=f"{self.name}_conv",
            dtype=self.dtype_policy)
        self.bn = (BatchNorm(
            axis=self._channel_axis, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
            name=f"{self.name}_bn", dtype=self.dtype_policy) if self.norm else None)
        self.pool = (keras.layers.MaxPooling2D(3, 2, data_format=self.data_format,
                                               name=f"{self.name}_pool", dtype=self.dtype_policy)
                     if family == "imagenet" else None)

    def _pad(self, x, amount):
        sp = [[amount, amount], [amount, amount]]
        pads = [[0, 0]] + sp + [[0, 0]] if self.data_format == "channels_last" else [[0, 0], [0, 0]] + sp
        return ops.pad(x, pads)

    def _hw(self, shape):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis in self._hw(shape):
            d = shape[axis]
            if d is not None:
                d = (d + 2 * (self._kernel // 2) - self._kernel) // self._stride + 1
                if self.pool is not None:
                    d = (d + 2 - 3) // 2 + 1
            shape[axis] = d
        shape[self._channel_axis] = self.filters
        return tuple(shape)

    def build(self, input_shape):
        shape = list(input_shape)
        pad = 0 if self.conv.padding == "same" else self._kernel // 2
        for axis in self._hw(shape):
            shape[axis] = None if shape[axis] is None else shape[axis] + 2 * pad
        self.conv.build(tuple(shape))
        out = self.conv.compute_output_shape(tuple(shape))
        if self.bn is not None:
            self.bn.build(out)
        if self.pool is not None:
            self.pool.build(out)
        self.built = True

    def call(self, inputs, training=None):
        same = self.conv.padding == "same"
        x = self.conv(inputs if same else self._pad(inputs, self._kernel // 2))
        if self.bn is not None:
            x = self.bn(x, training=training)
        if self.activation:
            x = ops.relu(x)
        if self.pool is not None:
            x = self.pool(self._pad(x, 1))
        return x

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "family": self.family, "norm": self.norm,
            "activation": self.activation, "use_bias": self.use_bias,
            "data_format": self.data_format, "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer is not None else None,
        })
        return config


BLOCK_CLASSES = {"basic": ResidualBlock, "bottleneck": BottleneckBlock}
