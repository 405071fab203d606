"""keras_resnet.layers.BatchNorm: Keras's BatchNormalization, on TensorFlow's fused kernel."""

import keras
import numpy as np
import pytest

from keras_resnet.layers import BatchNorm


def _pair(dtype=None, **kw):
    ours = BatchNorm(momentum=0.9, epsilon=1e-5, dtype=dtype, **kw)
    theirs = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype=dtype, **kw)
    rng = np.random.default_rng(0)
    for layer in (ours, theirs):
        layer.build((None, 6, 5, 4))
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.normal(size=4)
    for layer in (ours, theirs):
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    return ours, theirs


def _grads(layer, x):
    """d/d(x, gamma, beta) of sum(y * w) for a fixed random w (backend-agnostic)."""
    w = np.random.default_rng(1).normal(size=x.shape).astype("float32")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            s = tf.reduce_sum(tf.cast(y, tf.float32) * w)
        g = tape.gradient(s, [x, layer.gamma.value, layer.beta.value])
        return [np.asarray(v) for v in g]
    import jax

    tv = [v.value for v in layer.trainable_variables]
    ntv = [v.value for v in layer.non_trainable_variables]

    def f(x, tv):
        y, _ = layer.stateless_call(tv, ntv, x, training=True)
        return (y.astype("float32") * w).sum()

    gx, gtv = jax.grad(f, argnums=(0, 1))(x, tv)
    return [np.asarray(gx)] + [np.asarray(v) for v in gtv]


@pytest.mark.multibackend
def test_training_inference_gradients_and_moving_statistics_equal_keras():
    ours, theirs = _pair()
    rng = np.random.default_rng(2)
    for _ in range(3):   # three updates of the moving statistics
        x = rng.normal(2.0, 3.0, size=(8, 6, 5, 4)).astype("float32")
        np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True),
                                   rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.moving_mean, theirs.moving_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.moving_variance, theirs.moving_variance, rtol=1e-6)
    x = rng.normal(size=(3, 6, 5, 4)).astype("float32")
    np.testing.assert_allclose(ours(x, training=False), theirs(x, training=False),
                               rtol=1e-5, atol=1e-5)
    for a, b in zip(_grads(ours, x), _grads(theirs, x)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.multibackend
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_matches_keras(policy):
    ours, theirs = _pair(dtype=policy)
    x = np.random.default_rng(3).normal(size=(8, 6, 5, 4)).astype("float32")
    a, b = ours(x, training=True), theirs(x, training=True)
    assert a.dtype == b.dtype
    tol = 2e-2 if policy == "mixed_bfloat16" else 2e-3
    np.testing.assert_allclose(np.asarray(a, "float32"), np.asarray(b, "float32"),
                               atol=tol, rtol=tol)
    np.testing.assert_allclose(ours.moving_variance, theirs.moving_variance, rtol=1e-3)


def test_frozen_layer_uses_moving_statistics_in_training_mode():
    ours, theirs = _pair()
    ours.trainable = theirs.trainable = False
    x = np.random.default_rng(4).normal(size=(4, 6, 5, 4)).astype("float32")
    np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), atol=1e-5)
    np.testing.assert_array_equal(ours.moving_mean, np.zeros(4))


def test_the_fused_kernel_is_what_runs_under_tensorflow():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the fused kernel is TensorFlow's")
    import tensorflow as tf

    layer = BatchNorm()
    layer.build((None, 4, 4, 2))
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(
        tf.TensorSpec((2, 4, 4, 2))).graph
    assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}
    # Three-dimensional inputs go through Keras's own call.
    flat = BatchNorm()
    flat.build((None, 4, 2))
    keras_path = tf.function(lambda x: flat(x, training=True)).get_concrete_function(
        tf.TensorSpec((2, 4, 2))).graph
    assert "FusedBatchNormV3" not in {op.type for op in keras_path.get_operations()}


def test_serialization_round_trip():
    layer = BatchNorm(momentum=0.8, epsilon=1e-3, name="bn")
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(again) is BatchNorm and again.get_config() == layer.get_config()


def test_fused_false_runs_keras_own_call_with_the_same_results():
    """`fused=False` (or `set_fused(model, False)`) leaves the fused kernel out, results equal."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the fused kernel is TensorFlow's")
    import tensorflow as tf

    import keras_resnet
    from keras_resnet.layers import set_fused

    def op_types(layer, shape):
        graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(
            tf.TensorSpec(shape)).graph
        return {op.type for op in graph.get_operations()}

    plain = BatchNorm(fused=False)
    plain.build((None, 4, 4, 2))
    assert "FusedBatchNormV3" not in op_types(plain, (2, 4, 4, 2))
    assert BatchNorm.from_config(plain.get_config()).fused is False

    model = keras_resnet.ResNet(8, input_shape=(8, 8, 3))
    x = np.random.default_rng(5).normal(size=(4, 8, 8, 3)).astype("float32")
    fused_out = np.asarray(model(x, training=False))
    assert "FusedBatchNormV3" in op_types(model, (4, 8, 8, 3))
    # Stem BN + 2 per block x 3 blocks (option A shortcuts have no BatchNorm).
    assert set_fused(model, False) == 7
    assert "FusedBatchNormV3" not in op_types(model, (4, 8, 8, 3))
    np.testing.assert_allclose(np.asarray(model(x, training=False)), fused_out, atol=1e-5)
    with pytest.raises(TypeError, match="`fused`"):
        BatchNorm(fused="no")
