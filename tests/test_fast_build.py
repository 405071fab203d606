"""What keeps 1,000-layer networks fast to build: deferred variables and NumPy kernels.

The build-time limit itself is pinned by tests/test_models.py::test_thousand_layer_networks;
these tests pin the pieces (values, seeds, serialization, paths), fast and under both backends.
"""

import os

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import layers as kl

pytestmark = pytest.mark.multibackend

TRUNCATED_STD = 0.87962566103423978  # standard deviation of a unit normal cut at +-2


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("distribution, mode, shape", [
    ("truncated_normal", "fan_in", (3, 3, 64, 128)),
    ("untruncated_normal", "fan_out", (1, 1, 256, 64)),
    ("uniform", "fan_avg", (512, 100)),
])
def test_numpy_variance_scaling_distribution(distribution, mode, shape):
    init = kl.NumpyVarianceScaling(2.0, mode, distribution, seed=11)
    w = _np(init(shape))
    assert w.shape == shape and w.dtype == np.float32
    fan_in, fan_out = kl._fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    std = np.sqrt(2.0 / fan)
    # The variance is the requested one (within sampling error) for every distribution.
    assert abs(w.std() / std - 1) < 0.03, (w.std(), std)
    assert abs(w.mean()) < 0.03 * std
    if distribution == "truncated_normal":
        limit = 2 * std / TRUNCATED_STD
        assert np.abs(w).max() <= limit * (1 + 1e-6)
        assert np.abs(w).max() > 0.95 * limit
    if distribution == "uniform":
        assert np.abs(w).max() <= np.sqrt(3) * std * (1 + 1e-6)


def test_numpy_variance_scaling_seeds_and_config():
    a = kl.NumpyVarianceScaling(2.0, seed=5)
    np.testing.assert_array_equal(_np(a((3, 3, 8, 8))), _np(a((3, 3, 8, 8))))
    b = kl.NumpyVarianceScaling(2.0, seed=6)
    assert not np.array_equal(_np(a((3, 3, 8, 8))), _np(b((3, 3, 8, 8))))
    # Round trip through Keras's registry.
    c = keras.initializers.deserialize(keras.initializers.serialize(a))
    assert type(c) is kl.NumpyVarianceScaling and c.get_config() == a.get_config()
    np.testing.assert_array_equal(_np(c((4, 5))), _np(a((4, 5))))
    # Unseeded: a seed drawn from Python's random, so set_random_seed reproduces it.
    keras.utils.set_random_seed(3)
    s1 = kl.NumpyVarianceScaling().seed
    keras.utils.set_random_seed(3)
    assert kl.NumpyVarianceScaling().seed == s1


@pytest.mark.parametrize("kwargs, words", [
    (dict(scale=0.0), ["`scale`", "0.0"]),
    (dict(mode="fan"), ["`mode`", "'fan'", "'fan_in'"]),
    (dict(distribution="cauchy"), ["`distribution`", "'cauchy'", "'uniform'"]),
    (dict(seed=1.5), ["`seed`", "1.5"]),
])
def test_numpy_variance_scaling_bad_input(kwargs, words):
    with pytest.raises((ValueError, TypeError)) as info:
        kl.NumpyVarianceScaling(**kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_kernel_initializer_for():
    he = keras.initializers.HeNormal()
    a, b = kl.kernel_initializer_for(he, "x_conv1"), kl.kernel_initializer_for(he, "x_conv2")
    assert type(a) is kl.NumpyVarianceScaling and a.seed != b.seed
    assert (a.scale, a.mode, a.distribution) == (2.0, "fan_in", "truncated_normal")
    glorot = kl.kernel_initializer_for(keras.initializers.GlorotUniform(seed=4), "x_conv1")
    assert (glorot.scale, glorot.mode, glorot.distribution) == (1.0, "fan_avg", "uniform")
    # An int seed derives one seed per layer name, deterministically.
    assert glorot.seed == kl.kernel_initializer_for(
        keras.initializers.GlorotUniform(seed=4), "x_conv1").seed
    assert glorot.seed != kl.kernel_initializer_for(
        keras.initializers.GlorotUniform(seed=4), "x_conv2").seed
    # Other Keras initializers are copied (a fresh object of the same config).
    normal = keras.initializers.RandomNormal(stddev=0.1, seed=2)
    copy = kl.kernel_initializer_for(normal, "x_conv1")
    assert type(copy) is keras.initializers.RandomNormal and copy is not normal
    assert copy.get_config() == normal.get_config()
    # Plain callables are used as they are.
    fn = keras.ops.ones
    assert kl.kernel_initializer_for(fn, "x_conv1") is fn


def test_equal_shaped_convolutions_start_different():
    model = keras_resnet.ResNet(20)
    kernels = [_np(w) for w in model.weights
               if w.path.endswith("kernel") and tuple(w.shape) == (3, 3, 16, 16)]
    assert len(kernels) == 6
    for i in range(len(kernels)):
        for j in range(i):
            assert not np.array_equal(kernels[i], kernels[j]), (i, j)
    # He et al. 2015: std sqrt(2 / fan_in) over all six kernels.
    np.testing.assert_allclose(np.std(kernels), np.sqrt(2 / (9 * 16)), rtol=0.05)


def test_builds_are_reproducible_under_set_random_seed():
    keras.utils.set_random_seed(7)
    a = keras_resnet.ResNet(8, input_shape=(8, 8, 3), block="basic", preact=True)
    keras.utils.set_random_seed(7)
    b = keras_resnet.ResNet(8, input_shape=(8, 8, 3), block="basic", preact=True)
    assert [w.path for w in a.weights] == [w.path for w in b.weights]
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(_np(wa), _np(wb), err_msg=wa.path)


def test_building_scope_initializes_on_exit_with_unchanged_paths():
    with kl.building_scope():
        x = keras.Input((8, 8, 16))
        block = kl.BottleneckBlock(4, name="s1_b1")
        y = block(x)
    assert tuple(y.shape) == (None, 8, 8, 16)
    paths = [w.path for w in block.weights]
    assert paths[:5] == ["s1_b1/s1_b1_conv1/kernel", "s1_b1/s1_b1_conv2/kernel",
                         "s1_b1/s1_b1_conv3/kernel", "s1_b1/s1_b1_bn1/gamma",
                         "s1_b1/s1_b1_bn1/beta"]
    values = [_np(w) for w in block.weights]  # initialized: readable, finite
    assert all(np.isfinite(v).all() for v in values)
    np.testing.assert_array_equal(_np(block.bns[0].moving_variance), np.ones(4, "float32"))
    # The block is usable right away, with the same output as outside the scope.
    out = _np(block(np.ones((1, 8, 8, 16), "float32")))
    assert out.shape == (1, 8, 8, 16) and np.isfinite(out).all()


def test_keras_reload_builds_blocks_from_config(tmp_path):
    model = keras_resnet.ResNet(20, preact=True)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    for a, b in zip(model.weights, loaded.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(_np(a), _np(b), err_msg=a.path)


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="the eager kernel cache is TensorFlow's")
def test_tensorflow_variables_are_created_outside_the_layer_name_scopes():
    """The cause of slow builds under TF: a VarHandleOp named after its scoped
    variable misses TF's eager kernel cache. Built by the builder, the handles
    are created at the top level (TF name "kernel:0"); the Keras path is unchanged."""
    model = keras_resnet.ResNet(20)
    w = model.get_layer("stage2_block1").convs[0].kernel
    assert w.path == "stage2_block1/stage2_block1_conv1/kernel"
    assert w.value.name == "kernel:0"
