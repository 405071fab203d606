"""Building fast: the building scope, NumPy-drawn initializers and layer settings.

What every layer of the package shares when it is constructed and built: the
``data_format`` default, :func:`building_scope` (variables created uninitialized
and initialized together on exit), :class:`NumpyVarianceScaling` and the per-layer
initializer :func:`kernel_initializer_for`, and the mixin that makes a reloaded
``.keras`` model build inside the same scope. Uses only ``keras`` and NumPy.
"""

from __future__ import annotations

import contextlib
import math
import random
import zlib

import keras
import numpy as np
from keras import ops

from keras_resnet.validation import check_choice, check_int

# The package of every registered serializable name ("keras_resnet>ResidualBlock").
PACKAGE = "keras_resnet"


def resolve_data_format(data_format):
    """``data_format``, or Keras's configured ``image_data_format()`` when None."""
    data_format = data_format or keras.config.image_data_format()
    return check_choice("data_format", data_format, ("channels_last", "channels_first"))


def conv_padding(strides):
    """The ``padding`` of a convolution with ``strides``, and how the package pads.

    Stride-1 convolutions pad with the convolution itself ("same" is symmetric there,
    k // 2 on each side, and saves a padded copy of the input per convolution: CIFAR
    ResNet-56 trained 1.2-1.3x faster on 2 CPU cores, docs/performance.md); strided ones pad
    explicitly and symmetrically (:func:`pad_spatial`) before a "valid" convolution
    (TensorFlow's "same" would pad only after, which differs from torchvision,
    keras.applications' V2 models and converted weights). The stem's max-pool pads
    explicitly too.
    """
    return "same" if strides == 1 else "valid"


def pad_spatial(x, amount, data_format):
    """Zero-pad the two spatial axes of the 4-D ``x`` by ``amount`` on each side."""
    if not amount:
        return x
    spatial = [[amount, amount], [amount, amount]]
    pads = ([[0, 0]] + spatial + [[0, 0]] if data_format == "channels_last"
            else [[0, 0], [0, 0]] + spatial)
    return ops.pad(x, pads)


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
        self.seed = check_int("seed", seed, minimum=0)

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


class DeferredBuild:
    """Mixin: layers loaded from a ``.keras`` file build inside :func:`building_scope`."""

    def build_from_config(self, config):
        """Build from a saved build config (``.keras`` loading), variables deferred.

        The same :func:`building_scope` as the builders': a saved 1,000-layer
        network reloads without one eager kernel compilation per variable.
        """
        with building_scope():
            super().build_from_config(config)
