"""Stochastic depth and dropout draw their own masks on every tf.distribute replica.

Two logical CPU devices must be configured before TensorFlow initialises, so the
MirroredStrategy test runs in a fresh interpreter.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import layers as kl
from tests.conftest import requires_tensorflow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MIRRORED = r"""
import json, os, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
import keras_resnet

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    # Stochastic depth on every block, dropout inside every block (WRN).
    model = keras_resnet.WideResNet(10, 1, dropout_rate=0.5, drop_path_rate=0.9, seed=5,
                                    input_shape=(8, 8, 3), classes=2)
block = model.get_layer("stage3_block1")   # drop-path rate 0.9: most examples dropped
seeds = [v for v in model.variables if "seed_generator_state" in v.path]
x = np.random.RandomState(0).rand(64, 8, 8, 3).astype("float32")  # the same on both replicas
inner = keras.Model(model.input, block.output)


@tf.function
def step(x):
    return strategy.run(lambda x: inner(x, training=True), args=(x,))


def replicas(result):
    return [r.numpy() for r in strategy.experimental_local_results(result)]


first = replicas(step(tf.constant(x)))
saved = [keras.ops.convert_to_numpy(v).tolist() for v in seeds]
second = replicas(step(tf.constant(x)))
for v, value in zip(seeds, saved):  # back to the state after step 1: the stream resumes
    v.assign(np.array(value, dtype=v.dtype))
again = replicas(step(tf.constant(x)))
json.dump({
    "replicas": strategy.num_replicas_in_sync,
    "mirrored_seeds": sorted({type(v.value).__name__ for v in seeds}),
    "seed_paths": sorted(v.path for v in seeds),
    "first_differs": bool(np.abs(first[0] - first[1]).max() > 1e-3),
    "second_differs": bool(np.abs(second[0] - second[1]).max() > 1e-3),
    "steps_differ": bool(np.abs(first[0] - second[0]).max() > 1e-3),
    "resumed_equal": all(np.array_equal(a, b) for a, b in zip(second, again)),
    "states": [keras.ops.convert_to_numpy(v).tolist() for v in seeds],
}, open(sys.argv[1], "w"))
"""


@requires_tensorflow
def test_mirrored_replicas_draw_their_own_masks(tmp_path):
    out = tmp_path / "out.json"
    env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["replicas"] == 2
    assert result["mirrored_seeds"] == ["MirroredVariable"]  # ordinary (mirrored) variables
    # Three blocks' drop-path generators and three blocks' dropout generators.
    assert len(result["seed_paths"]) == 6
    # Identical inputs on both replicas, different masks: the outputs differ.
    assert result["first_differs"] and result["second_differs"] and result["steps_differ"]
    # Restoring the seed states replays the same masks on each replica.
    assert result["resumed_equal"]
    # Each step advanced every generator once: step 1, then step 2 replayed from step 1.
    assert all(state[1] == 2 for state in result["states"])


@pytest.mark.multibackend
def test_single_device_masks_are_keras_own_draws():
    """Without a strategy (or with one replica) the masks are Keras's own draws from
    the block's seed generator, as they were before replica ids were folded in."""
    x = np.random.RandomState(3).randn(32, 4, 4, 8).astype("float32")
    block = kl.ResidualBlock(8, preact=True, drop_path_rate=0.5, seed=11, name="b")
    reference = kl.ResidualBlock(8, preact=True, name="r")
    block.build(x.shape)
    reference.build(x.shape)
    for src, dst in zip([w for w in block.weights if "seed" not in w.path], reference.weights):
        dst.assign(src)
    residual = keras.ops.convert_to_numpy(reference(x, training=True)) - x
    generator = keras.random.SeedGenerator(11)
    for _ in range(2):
        keep = keras.ops.convert_to_numpy(
            keras.random.uniform((32, 1, 1, 1), seed=generator) >= 0.5).astype("float32")
        got = keras.ops.convert_to_numpy(block(x, training=True))
        np.testing.assert_allclose(got, x + residual * keep / 0.5, rtol=1e-5, atol=1e-5)
    assert 0 < keep.sum() < 32
    # Dropout inside a Wide ResNet block: Keras's dropout with the layer's own generator.
    model = keras_resnet.WideResNet(10, 1, dropout_rate=0.5, seed=4, input_shape=(8, 8, 3))
    dropout = model.get_layer("stage1_block1").dropout
    assert isinstance(dropout, keras.layers.Dropout) and dropout.name == "stage1_block1_dropout"
    ones = np.ones((4, 8, 8, 16), "float32")
    expected = keras.random.dropout(ones, 0.5, seed=keras.random.SeedGenerator(5))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dropout(ones, training=True)),
                                  keras.ops.convert_to_numpy(expected))
