"""_ResidualUnit.merge_terms / after_merge: the block's two terms add up to its output."""

import numpy as np
import pytest

import keras
from keras_resnet import layers as kl
from keras_resnet import specs

pytestmark = pytest.mark.multibackend


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _randomize_bn(block, seed=1):
    """Non-trivial BatchNorm statistics and affine parameters, so every term matters."""
    rng = np.random.default_rng(seed)
    for layer in block._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            for v in (layer.gamma, layer.beta, layer.moving_mean):
                v.assign(rng.normal(size=v.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=layer.moving_variance.shape)
                                         .astype("float32"))


@pytest.mark.parametrize("ordering", specs.ORDERINGS)
@pytest.mark.parametrize("skip", specs.SKIPS)
@pytest.mark.parametrize("training", [False, True])
def test_terms_add_up_to_the_output_for_every_ordering_and_skip(ordering, skip, training):
    if training and skip == "dropout":
        pytest.skip("the dropout skip draws a random mask in training")
    block = kl.ResidualBlock(6, strides=2, ordering=ordering, skip=skip, shortcut="B",
                             gate_bias=0.5, name="b")
    x = _x((3, 6, 6, 4))
    block(x)
    _randomize_bn(block)
    short, residual = block.merge_terms(x, training=training)
    expected = block(x, training=training)
    got = block.after_merge(short + residual, training=training)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got),
                               keras.ops.convert_to_numpy(expected), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("make", [
    lambda: kl.ResidualBlock(8, strides=2, shortcut="A", name="b"),
    lambda: kl.ResidualBlock(8, shortcut="C", name="b"),
    lambda: kl.BottleneckBlock(4, strides=2, stride_at="3x3", name="b"),
    lambda: kl.BottleneckBlock(4, preact=True, name="b"),
    lambda: kl.ResidualBlock(8, residual=False, name="b"),
    lambda: kl.BottleneckBlock(4, strides=2, residual=False, name="b"),
], ids=["option_a", "option_c", "bottleneck_v1_5", "bottleneck_preact", "plain", "plain_bottleneck"])
def test_terms_for_every_shortcut_kind_and_the_plain_twin(make):
    x = _x((2, 8, 8, 8))
    block = make()
    block(x)
    _randomize_bn(block)
    short, residual = block.merge_terms(x)
    assert (short is None) == (not block.residual)
    merged = residual if short is None else short + residual
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block.after_merge(merged)),
                               keras.ops.convert_to_numpy(block(x)), atol=1e-5, rtol=1e-5)


def test_the_shortcut_term_is_the_skip_function_applied_to_the_shortcut():
    x = np.abs(_x((2, 5, 5, 4)))
    identity = kl.ResidualBlock(4, name="i")
    short, _ = identity.merge_terms(x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(short), x)
    scaled = kl.ResidualBlock(4, skip="scaling", name="s")
    short, _ = scaled.merge_terms(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(short), 0.5 * x, rtol=1e-6)
    # Option A: subsample by 2 and zero-pad the new channels.
    padded = kl.ResidualBlock(8, strides=2, shortcut="A", name="a")
    short, _ = padded.merge_terms(x)
    short = keras.ops.convert_to_numpy(short)
    np.testing.assert_array_equal(short[..., :4], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(short[..., 4:], 0.0)
    # zero_init: the residual term is exactly zero at initialisation.
    zero = kl.ResidualBlock(4, zero_init=True, name="z")
    _, residual = zero.merge_terms(x)
    assert not np.any(keras.ops.convert_to_numpy(residual))
