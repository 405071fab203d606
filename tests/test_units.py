"""The five unit orderings of He et al. 2016 ("Identity Mappings", Fig. 4) against NumPy.

Each ordering is written out below as its own formula, independently of the
table the layers read (architecture.UNIT_ORDERINGS), and a tiny block with random kernels and random
BatchNorm parameters and statistics must compute exactly that function, in
inference mode (moving statistics) and in training mode (batch statistics).
"""

import zlib

import keras
import numpy as np
import pytest

from keras_resnet import layers as kl
from keras_resnet import specs

pytestmark = pytest.mark.multibackend

EPS = kl.BN_EPSILON


def conv(x, kernel, stride):
    """NHWC convolution, zero padding of kernel_size // 2 on every side, as the blocks pad."""
    k = kernel.shape[0]
    pad = k // 2
    x = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    n, h, w, _ = x.shape
    out_h, out_w = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.zeros((n, out_h, out_w, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            patch = x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
            out += patch @ kernel[i, j]
    return out


def batch_norm(x, params, training):
    gamma, beta, mean, variance = params
    if training:  # batch statistics over N, H, W (biased variance), as Keras computes them
        mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    return gamma * (x - mean) / np.sqrt(variance + EPS) + beta


def relu(x):
    return np.maximum(x, 0.0)


def shortcut(block, x, params, training, normalize, preactivated=None):
    """Identity, subsampling, option A (subsample + zero channels) or projection.

    Pre-activation units project their pre-activated input (He et al. 2016,
    appendix); the parameter-free shortcuts carry ``x`` itself.
    """
    kind, s = block._shortcut_kind, block.strides
    if kind == "identity":
        return x
    if kind in ("subsample", "pad"):
        x = x[:, ::s, ::s, :]
        extra = block.out_channels - x.shape[-1]
        return np.pad(x, [(0, 0)] * 3 + [(0, extra)])
    y = conv(x if preactivated is None else preactivated, params["shortcut_conv"], s)
    return batch_norm(y, params["shortcut_bn"], training) if normalize else y


def reference(block, params, x, training):
    """The block's function, one formula per ordering (Fig. 4 (a)-(e))."""
    convs, bns, strides = params["convs"], params["bns"], block._conv_strides
    n = len(convs)

    def c(i, h):
        return conv(h, convs[i], strides[i])

    def b(i, h):
        return batch_norm(h, bns[i], training)

    o = block.ordering
    h = x
    if o == "post":  # (a) original: conv-BN-ReLU ... conv-BN, add, ReLU
        for i in range(n - 1):
            h = relu(b(i, c(i, h)))
        return relu(shortcut(block, x, params, training, True) + b(n - 1, c(n - 1, h)))
    if o == "bn_after_add":  # (b) conv-BN-ReLU ... conv, add, BN, ReLU
        for i in range(n - 1):
            h = relu(b(i, c(i, h)))
        return relu(b(n - 1, shortcut(block, x, params, training, True) + c(n - 1, h)))
    if o == "relu_before_add":  # (c) conv-BN-ReLU ... conv-BN-ReLU, add
        for i in range(n):
            h = relu(b(i, c(i, h)))
        return shortcut(block, x, params, training, True) + h
    if o == "relu_preact":  # (d) ReLU-conv-BN ... ReLU-conv-BN, add; projection on ReLU(x)
        for i in range(n):
            h = b(i, c(i, relu(h)))
        return shortcut(block, x, params, training, False, preactivated=relu(x)) + h
    assert o == "full_preact"  # (e) BN-ReLU-conv ..., add; projection on ReLU(BN(x))
    for i in range(n):
        h = c(i, relu(b(i, h)))
    return shortcut(block, x, params, training, False, preactivated=relu(b(0, x))) + h


def randomize(block, rng):
    """Random kernels, BN gamma/beta and moving statistics; returns them as NumPy arrays."""
    def bn_params(bn):
        shape = tuple(bn.gamma.shape)
        values = [rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.3, shape),
                  rng.normal(0, 0.3, shape), rng.uniform(0.5, 2.0, shape)]
        bn.set_weights([v.astype("float32") for v in values])
        return values

    def kernel(layer):
        value = rng.normal(0, 0.5, tuple(layer.kernel.shape))
        layer.set_weights([value.astype("float32")])
        return value

    params = {"convs": [kernel(c) for c in block.convs], "bns": [bn_params(b) for b in block.bns]}
    if block.shortcut_conv is not None:
        params["shortcut_conv"] = kernel(block.shortcut_conv)
        if block.shortcut_bn is not None:
            params["shortcut_bn"] = bn_params(block.shortcut_bn)
    return params


CASES = [  # (block kind, filters, in channels, strides, shortcut)
    ("basic", 4, 4, 1, "B"),     # identity shortcut
    ("basic", 4, 2, 2, "A"),     # option A: subsample + zero channels
    ("basic", 4, 2, 2, "B"),     # projection
    ("basic", 4, 4, 1, "C"),     # projection everywhere
    ("bottleneck", 2, 8, 1, "B"),
    ("bottleneck", 2, 4, 2, "B"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("ordering", specs.ORDERINGS)
def test_ordering_matches_its_formula(ordering, case):
    """One block, its formula in inference mode (moving statistics), then in training mode
    (batch statistics; a training call updates the moving statistics, so it comes last)."""
    kind, filters, channels, strides, option = case
    block = kl.BLOCK_CLASSES[kind](filters, strides, ordering=ordering, shortcut=option,
                                   name="unit")
    rng = np.random.default_rng(zlib.crc32(repr((ordering, case)).encode()))
    x = rng.normal(0, 1, (3, 5, 5, channels)).astype("float32")
    block.build(x.shape)
    params = randomize(block, rng)
    for training in (False, True):
        expected = reference(block, params, x.astype("float64"), training)
        got = keras.ops.convert_to_numpy(block(x, training=training))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4,
                                   err_msg=f"training={training}")


def test_the_reference_tells_orderings_apart():
    """The formulas differ on the same weights, so a swapped ordering cannot pass."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (3, 5, 5, 4))
    outputs = {}
    for ordering in specs.ORDERINGS:
        block = kl.ResidualBlock(4, ordering=ordering, name="unit")
        block.build(x.shape)
        params = randomize(block, np.random.default_rng(1))
        outputs[ordering] = reference(block, params, x, False)
    for a in specs.ORDERINGS:
        for b in specs.ORDERINGS:
            if a < b:
                assert np.abs(outputs[a] - outputs[b]).max() > 1e-2, (a, b)


def test_the_ordering_table():
    """One entry per ordering; every convolution's BatchNorm is used exactly once."""
    from keras_resnet.architecture import PREACT_ORDERINGS, UNIT_ORDERINGS

    assert tuple(UNIT_ORDERINGS) == specs.ORDERINGS
    for name, unit in UNIT_ORDERINGS.items():
        steps = unit.before_conv + unit.after_conv + unit.after_last_conv + unit.after_add
        assert set(steps) <= {"bn", "relu"}, name
        assert unit.before_conv.count("bn") + unit.after_conv.count("bn") == 1, name
        assert (unit.before_conv.count("bn") + unit.after_last_conv.count("bn")
                + unit.after_add.count("bn")) == 1, name
    assert PREACT_ORDERINGS == ("relu_preact", "full_preact")
