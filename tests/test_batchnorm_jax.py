"""The JAX BatchNorm kernels (keras_resnet.normalization_jax) against two references.

Values and gradients of ``batch_norm``, ``batch_norm_relu`` and
``batch_norm_add_relu`` against Keras's own ``BatchNormalization`` (autodiff
through Keras's ops) and against a NumPy rewrite of the textbook formulas
(Ioffe and Szegedy 2015: forward and the closed-form backward pass); the layer
switch against Keras's layer, moving statistics included. JAX only.
"""

import numpy as np
import pytest

import keras

pytestmark = [
    pytest.mark.multibackend,
    pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX kernels"),
]

EPS = 1e-3


def _data(shape=(4, 5, 5, 6), seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=shape) * 2.0 + 0.5).astype("float32")
    gamma = rng.uniform(0.5, 1.5, size=shape[-1]).astype("float32")
    beta = rng.normal(size=shape[-1]).astype("float32")
    dy = rng.normal(size=shape).astype("float32")
    residual = rng.normal(size=shape).astype("float32")
    return x, gamma, beta, dy, residual


def _numpy_reference(x, gamma, beta, dy, residual=None, relu=False):
    """Forward and backward of BN(+add)(+ReLU) in float64 NumPy, written from the formulas."""
    x, dy = x.astype("float64"), dy.astype("float64")
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    mean = x.mean(axes)
    var = ((x - mean) ** 2).mean(axes)
    x_hat = (x - mean) / np.sqrt(var + EPS)
    z = gamma * x_hat + beta
    if residual is not None:
        z = z + residual
    y = np.maximum(z, 0) if relu else z
    dz = dy * (z > 0) if relu else dy
    dgamma = (dz * x_hat).sum(axes)
    dbeta = dz.sum(axes)
    dx_hat = dz * gamma
    dx = (n * dx_hat - dx_hat.sum(axes) - x_hat * (dx_hat * x_hat).sum(axes)) / (
        n * np.sqrt(var + EPS))
    return y, mean, var, dx, dgamma, dbeta, dz


def _keras_reference(x, gamma, beta, dy, residual=None, relu=False):
    """The same through keras.layers.BatchNormalization and autodiff."""
    import jax

    layer = keras.layers.BatchNormalization(epsilon=EPS, momentum=0.9)
    layer.build(x.shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    moving = [v.value for v in layer.non_trainable_variables]

    def f(x, gamma, beta, residual):
        (y, new) = layer.stateless_call([gamma, beta], moving, x, training=True)
        if residual is not None:
            y = y + residual
        if relu:
            y = jax.nn.relu(y)
        return jax.numpy.sum(y * dy), (y, new)

    grads, (y, new) = jax.grad(f, argnums=(0, 1, 2, 3), has_aux=True)(x, gamma, beta, residual)
    return y, grads, [np.asarray(v) for v in new]


@pytest.mark.parametrize("kind", ["bn", "bn_relu", "bn_add_relu"])
def test_kernels_match_numpy_and_keras(kind):
    import jax

    from keras_resnet import normalization_jax as nj

    x, gamma, beta, dy, residual = _data()
    relu = kind != "bn"
    r = residual if kind == "bn_add_relu" else None
    if kind == "bn":
        def f(x, gamma, beta, r):
            return nj.batch_norm(x, gamma, beta, EPS)
    elif kind == "bn_relu":
        def f(x, gamma, beta, r):
            return nj.batch_norm_relu(x, gamma, beta, EPS)
    else:
        def f(x, gamma, beta, r):
            return nj.batch_norm_add_relu(x, r, gamma, beta, EPS)

    def loss(x, gamma, beta, r):
        y, _, _ = f(x, gamma, beta, r)
        return jax.numpy.sum(y * dy), y

    (gx, gg, gb, gr), y = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(
        x, gamma, beta, residual)
    _, mean, var = jax.jit(f)(x, gamma, beta, residual)

    ny, nmean, nvar, ndx, ndgamma, ndbeta, ndz = _numpy_reference(x, gamma, beta, dy, r, relu)
    tol = dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(y), ny, **tol)
    np.testing.assert_allclose(np.asarray(mean), nmean, **tol)
    np.testing.assert_allclose(np.asarray(var), nvar, **tol)
    np.testing.assert_allclose(np.asarray(gx), ndx, **tol)
    np.testing.assert_allclose(np.asarray(gg), ndgamma, **tol)
    np.testing.assert_allclose(np.asarray(gb), ndbeta, **tol)
    if kind == "bn_add_relu":
        np.testing.assert_allclose(np.asarray(gr), ndz, **tol)
    if relu:   # the ReLU's mask is exercised: some outputs are cut
        assert 0 < float(np.mean(ny == 0)) < 1

    ky, (kx, kg, kb, kr), _ = _keras_reference(x, gamma, beta, dy, r, relu)
    np.testing.assert_allclose(np.asarray(y), np.asarray(ky), **tol)
    for ours, theirs in ((gx, kx), (gg, kg), (gb, kb)):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), **tol)
    if kind == "bn_add_relu":
        np.testing.assert_allclose(np.asarray(gr), np.asarray(kr), **tol)


def test_layer_switch_keeps_keras_results_and_moving_statistics():
    """A BatchNorm with the JAX kernel: output, gradients and moving statistics of
    keras.layers.BatchNormalization with the same weights; inference as well."""
    import jax

    from keras_resnet.normalization import BatchNorm

    x, gamma, beta, dy, _ = _data(seed=1)
    ours = BatchNorm(epsilon=EPS, momentum=0.9)
    ours.build(x.shape)
    ours.gamma.assign(gamma)
    ours.beta.assign(beta)
    ours.jax_kernel = True
    moving = [v.value for v in ours.non_trainable_variables]

    def f(x, gamma, beta):
        y, new = ours.stateless_call([gamma, beta], moving, x, training=True)
        return jax.numpy.sum(y * dy), (y, new)

    (gx, gg, gb), (y, new) = jax.jit(jax.grad(f, argnums=(0, 1, 2), has_aux=True))(
        x, gamma, beta)
    ky, (kx, kg, kb, _), knew = _keras_reference(x, gamma, beta, dy)
    tol = dict(rtol=1e-4, atol=1e-4)
    for a, b in ((y, ky), (gx, kx), (gg, kg), (gb, kb)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)
    for a, b in zip(new, knew):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-6)
    # Inference reads the moving statistics, as Keras's layer does.
    theirs = keras.layers.BatchNormalization(epsilon=EPS)
    theirs.build(x.shape)
    for v in (ours, theirs):
        v.set_weights([gamma, beta, knew[0], knew[1]])
    np.testing.assert_allclose(np.asarray(ours(x, training=False)),
                               np.asarray(theirs(x, training=False)), rtol=1e-5, atol=1e-5)


def test_use_jax_kernel_switches_every_batchnorm_and_refuses_a_non_bool():
    import keras_resnet
    from keras_resnet import normalization_jax as nj

    model = keras_resnet.ResNet(8, input_shape=(8, 8, 3), classes=10)
    assert nj.use_jax_kernel(model) == 7    # stem, 3 blocks x 2
    with pytest.raises(TypeError, match="enabled"):
        nj.use_jax_kernel(model, "yes")
