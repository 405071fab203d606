"""The NumPy input of the JAX backend: no TensorFlow, the same augmentation semantics.

The bit-identity with the tf.data batches is tested in test_data.py (it needs
TensorFlow); these tests run under every backend.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_resnet import data, preprocessing
from keras_resnet.data import plans

pytestmark = pytest.mark.multibackend
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_digits_and_synthetic_load_and_iterate_without_tensorflow():
    code = """
import sys
from keras_resnet import data
for name, kw in [("digits", {}), ("synthetic", {}), ("synthetic", {"image_size": 64})]:
    d = data.load(name, synthetic_examples=64, **kw)
    stream = d.numpy_train_epochs(16, 1, 2, end_epoch=3)
    shapes = [(x.shape, x.dtype.name, y.dtype.name) for x, y in stream]
    assert len(shapes) == 4 and shapes[0][1:] == ("float32", "int32"), shapes
    assert shapes[0][0] == (16,) + d.input_shape(), shapes
    test = list(d.numpy_test_batches(10))
    assert sum(len(y) for _, y in test) == d.test_size
    raw, labels = d.raw_test_images(3)
    assert raw.shape == (3,) + d.input_shape() and raw.dtype.name == "uint8"
print("tensorflow" in sys.modules)
"""
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def test_epochs_are_deterministic_and_resume_exactly(digits):
    stream = list(digits.numpy_train_epochs(128, 1, 11, end_epoch=4))
    assert len(stream) == 33
    again = list(digits.numpy_train_epochs(128, 1, 11, end_epoch=4, workers=1))
    resumed = list(digits.numpy_train_epochs(128, 3, 11, end_epoch=4))
    for (x, y), (xa, ya) in zip(stream, again):
        np.testing.assert_array_equal(x, xa)
        np.testing.assert_array_equal(y, ya)
    for (x, y), (xr, yr) in zip(stream[22:], resumed):
        np.testing.assert_array_equal(x, xr)
        np.testing.assert_array_equal(y, yr)
    assert not np.array_equal(stream[0][1], stream[11][1])      # epochs differ
    # each epoch visits distinct examples: 11 * 128 of the 1437
    (x_train, y_train), _ = data.load_digits()
    epoch = np.concatenate([y for _, y in stream[:11]])
    assert np.all(np.bincount(epoch, minlength=10) <= np.bincount(y_train))


def test_digits_are_small_translations_without_flips(digits):
    (x_train, _), _ = data.load_digits()
    spec = digits.preprocessing
    x, _ = next(iter(digits.numpy_train_epochs(64, 0, 1, end_epoch=1)))
    raw = np.round(x * np.array(spec["std"]) / spec["scale"]
                   + np.array(spec["mean"]) / spec["scale"]).astype(int)
    padded = np.pad(x_train.astype(int), [(0, 0), (1, 1), (1, 1), (0, 0)])
    seen = set()
    for image in raw:
        hits = [(dy, dx) for dy in range(3) for dx in range(3)
                if np.any(np.all(padded[:, dy:dy + 8, dx:dx + 8] == image, axis=(1, 2, 3)))]
        assert hits
        seen.update(hits)
    assert len(seen) > 1


def test_random_resized_crops_follow_the_plan():
    """Synthetic ImageNet-size data: each example is its planned crop, resized and maybe flipped."""
    d = data.load("synthetic", image_size=64, synthetic_examples=24, num_classes=5, seed=2)
    spec, images = d.preprocessing, d.train_split.images
    (x, y), = list(d.numpy_train_epochs(24, 5, 1, end_epoch=6))
    index = plans.order(2, 5, 24)
    u = plans.uniforms(2, 5, 0, 24)
    boxes, flips = plans.rrc_boxes(64, 64, u), plans.flips(u)
    assert 0 < flips.sum() < 24 and len({tuple(b) for b in boxes}) == 24
    for k in range(24):
        top, left, h, w = boxes[k]
        crop = preprocessing.resize_bilinear(images[index[k], top:top + h, left:left + w], 64, 64)
        want = (crop[:, ::-1] if flips[k] else crop) * np.float32(spec["scale"])
        want = (want - np.float32(spec["mean"])) / np.float32(spec["std"])
        np.testing.assert_array_equal(x[k], want)
        assert y[k] == d.train_split.labels[index[k]]


def test_test_batches_are_the_preprocessing(digits):
    got = list(digits.numpy_test_batches(100))
    assert [len(y) for _, y in got] == [100, 100, 100, 60]
    _, (xt, yt) = data.load_digits()
    spec = digits.preprocessing
    assert tuple(spec["input_size"]) == xt.shape[1:3]   # 8x8: no resize, only normalised
    # Normalised by hand, in float32 and in the serving graph's order (scale, then the
    # mean and std): bit-identical, as the tf.data test batches are (test_data.py).
    want = (xt.astype(np.float32) * np.float32(spec["scale"])
            - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), want)
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), yt)


def test_pipeline_throughput_of_a_numpy_stream(digits):
    speed = data.pipeline_throughput(digits.numpy_train_epochs(64, 0, 22, end_epoch=1), batches=5)
    assert speed["images"] == 320 and speed["images_per_sec"] > 0


def test_crops_on_device_match_the_host_crops():
    """uint8 sources + windows + flips, resized by keras.ops, give the host's batch."""
    from keras import ops

    from keras_resnet.data import device

    d = data.load("synthetic", image_size=64, synthetic_examples=32, seed=4)
    host = list(d.numpy_train_epochs(16, 3, 2, end_epoch=4))
    raw = list(d.numpy_train_epochs(16, 3, 2, end_epoch=4, crops_on_device=True))
    for (x, y), (images, labels, boxes, flips) in zip(host, raw):
        assert images.dtype == np.uint8 and images.shape == (16, 64, 64, 3)
        assert boxes.dtype == np.int32 and boxes.shape == (16, 4) and flips.dtype == bool
        np.testing.assert_array_equal(labels, y)
        got = ops.convert_to_numpy(device.resized_crops(images, boxes, flips, d.preprocessing))
        np.testing.assert_allclose(got, x, atol=1e-4, rtol=0)
    with pytest.raises(data.DataError, match="`crops_on_device`: received True for 'digits'"):
        data.load("digits").numpy_train_epochs(16, 0, 1, crops_on_device=True)
