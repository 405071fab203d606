"""keras_resnet.layers stays the public path of the layers, and files saved before the split load.

`tests/data/v0_1_0_blocks.keras` was saved by version 0.1.0 (when every layer lived
in `keras_resnet/layers.py`): a functional model of an ImageNet `Stem`, a
`ResidualBlock` with the exclusive gate, dropout and stochastic depth, a
pre-activation `BottleneckBlock` with the dropout skip, a `BatchNorm` and a dense
head, with random BatchNorm statistics. `v0_1_0_blocks_out.npy` is what that
version computed for it (inference, on the input below).
"""

import os

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import blocks, building, layers, normalization, replicas, stem

pytestmark = pytest.mark.multibackend

DATA = os.path.join(os.path.dirname(__file__), "data")


def test_a_file_saved_by_version_0_1_0_loads_and_computes_the_same():
    model = keras.saving.load_model(os.path.join(DATA, "v0_1_0_blocks.keras"), safe_mode=True)
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    expected = np.load(os.path.join(DATA, "v0_1_0_blocks_out.npy"))
    np.testing.assert_allclose(np.asarray(model(x, training=False)), expected, atol=1e-5)
    kinds = {layer.name: type(layer) for layer in model.layers}
    assert kinds["stem"] is layers.Stem and kinds["post_bn"] is layers.BatchNorm
    assert kinds["stage1_block1"] is layers.ResidualBlock
    assert kinds["stage2_block1"] is layers.BottleneckBlock
    assert type(model.get_layer("stage1_block1").dropout).__name__ == "_ReplicaDropout"


def test_registered_names_do_not_depend_on_the_module():
    expected = {
        "keras_resnet>ResidualBlock": (blocks.ResidualBlock, layers.ResidualBlock),
        "keras_resnet>BottleneckBlock": (blocks.BottleneckBlock, layers.BottleneckBlock),
        "keras_resnet>Stem": (stem.Stem, layers.Stem),
        "keras_resnet>BatchNorm": (normalization.BatchNorm, layers.BatchNorm),
        "keras_resnet>ReplicaDropout": (replicas._ReplicaDropout, layers._ReplicaDropout),
        "keras_resnet>NumpyVarianceScaling": (building.NumpyVarianceScaling,
                                               layers.NumpyVarianceScaling),
    }
    for name, (cls, public) in expected.items():
        assert cls is public
        assert keras.saving.get_registered_name(cls) == name
        assert keras.saving.get_registered_object(name) is cls


def test_a_block_round_trips_through_keras_files(tmp_path):
    inputs = keras.Input((8, 8, 4))
    block = keras_resnet.layers.ResidualBlock(4, skip="shortcut_gating", drop_path_rate=0.2,
                                              seed=3, name="b")
    model = keras.Model(inputs, block(inputs))
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert again.get_layer("b").get_config() == block.get_config()
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
    np.testing.assert_allclose(again(x), model(x), atol=1e-6)
