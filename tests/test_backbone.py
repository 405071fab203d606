"""Backbones: multi-scale features by pyramid level, and freezing the first stages.

The strides are checked against the input size (a map at level l is the input
divided by 2 ** l), the channel counts against the stage tables, and a tiny
two-level head is trained on the features to check that what `freeze` froze did
not move (weights and BatchNorm moving statistics) while the rest did.
"""

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import backbone as F

pytestmark = pytest.mark.multibackend


def _shapes(model):
    return {level: tuple(t.shape) for level, t in model.output.items()}


def test_imagenet_levels_p2_to_p5_with_their_strides():
    net = keras_resnet.ResNet(18, include_top=False, input_shape=(64, 96, 3),
                              outputs="features")
    assert _shapes(net) == {f"P{l}": (None, 64 // 2 ** l, 96 // 2 ** l, c)
                            for l, c in zip(range(2, 6), (64, 128, 256, 512))}
    assert list(net.output) == ["P2", "P3", "P4", "P5"]
    # Bottlenecks: 4x the stage filters.
    net50 = keras_resnet.ResNet(50, include_top=False, input_shape=(64, 64, 3),
                                outputs="features")
    assert [s[-1] for s in _shapes(net50).values()] == [256, 512, 1024, 2048]


def test_cifar_levels_are_the_three_stages():
    net = keras_resnet.ResNet(20, include_top=False, input_shape=(32, 32, 3),
                              outputs="features")
    assert _shapes(net) == {"P0": (None, 32, 32, 16), "P1": (None, 16, 16, 32),
                            "P2": (None, 8, 8, 64)}
    assert F.pyramid_levels(net) == {"P0": "stage1_block3", "P1": "stage2_block3",
                                     "P2": "stage3_block3"}


def test_levels_follow_the_stride_placement_and_preactivation():
    # V2 layout: the stride sits in each stage's last block, so the stride-4 map is the
    # output of the block before it; pre-activation nets end with post_bn / post_relu.
    net = keras_resnet.ResNet(50, preact=True, downsample_at="last", stride_at="3x3",
                              include_top=False, input_shape=(64, 64, 3))
    assert F.pyramid_levels(net) == {"P2": "stage1_block2", "P3": "stage2_block3",
                                     "P4": "stage3_block5", "P5": "post_relu"}
    shapes = _shapes(F.features(net))
    assert [s[1] for s in shapes.values()] == [16, 8, 4, 2]
    assert _shapes(F.features(net, levels=["P3", "P5"])) == {
        "P3": shapes["P3"], "P5": shapes["P5"]}


def test_features_share_the_weights_of_the_network(tmp_path):
    """A network with weights (here a saved file: weights load by layer name) gives
    features computed with those weights."""
    net = keras_resnet.ResNet(18, width=0.25, include_top=False, input_shape=(32, 32, 3), seed=1)
    path = str(tmp_path / "r18.weights.h5")
    net.save_weights(path)
    loaded = keras_resnet.ResNet(18, width=0.25, include_top=False, input_shape=(32, 32, 3),
                                 weights=path, outputs="features")
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)["P5"]),
                               keras.ops.convert_to_numpy(net(x)), atol=1e-5)
    assert F.features(net).get_layer("stage2_block1") is net.get_layer("stage2_block1")


def _snapshot(model):
    return {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in model.weights}


@pytest.mark.parametrize("batchnorm_inference", [False, True])
def test_frozen_stages_do_not_move_while_the_rest_trains(batchnorm_inference):
    backbone = keras_resnet.ResNet(18, width=0.25, include_top=False, input_shape=(32, 32, 3),
                                   outputs="features", seed=0)
    frozen = F.freeze(backbone, up_to="stage2", batchnorm_inference=batchnorm_inference)
    assert frozen == ["stem", "stage1_block1", "stage1_block2", "stage2_block1",
                      "stage2_block2"]
    # A two-level head: P5 upsampled onto P4, one score map at stride 16.
    feats = backbone.output
    p5 = keras.layers.Conv2D(8, 1, name="lat5")(feats["P5"])
    p4 = keras.layers.Conv2D(8, 1, name="lat4")(feats["P4"])
    merged = keras.layers.Add()([p4, keras.layers.UpSampling2D(2)(p5)])
    model = keras.Model(backbone.inputs, keras.layers.Conv2D(1, 3, padding="same",
                                                             name="score")(merged))
    assert model.output_shape == (None, 2, 2, 1)
    before = _snapshot(model)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 32, 32, 3)).astype("float32")
    y = rng.normal(size=(16, 2, 2, 1)).astype("float32")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    after = _snapshot(model)

    def moved(prefix, kind):
        paths = [p for p in before if p.startswith(prefix) and p.endswith(kind)]
        assert paths, (prefix, kind)
        return [p for p in paths if not np.array_equal(before[p], after[p])]

    for prefix in ("stem/", "stage1_block1/", "stage1_block2/", "stage2_block1/",
                   "stage2_block2/"):
        for kind in ("kernel", "gamma", "beta", "moving_mean", "moving_variance"):
            assert moved(prefix, kind) == [], (prefix, kind)
    for prefix in ("stage3_block1/", "stage4_block2/"):
        assert moved(prefix, "kernel"), prefix
        statistics = moved(prefix, "moving_mean") + moved(prefix, "moving_variance")
        gammas = moved(prefix, "gamma")
        if batchnorm_inference:   # every BatchNorm in inference mode, gamma and beta frozen
            assert statistics == [] and gammas == [], prefix
        else:
            assert statistics and gammas, prefix
    for name in ("lat4", "lat5", "score"):
        assert moved(f"{name}/", "kernel"), name


def test_bad_arguments_name_themselves():
    net = keras_resnet.ResNet(20, input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match=r"`up_to`.*'stage3'"):
        F.freeze(net, up_to="stage4")
    with pytest.raises(ValueError, match=r"`levels`.*'P0', 'P1', 'P2'"):
        F.features(net, levels=["P5"])
    with pytest.raises(ValueError, match="`model`"):
        F.features(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    with pytest.raises(ValueError, match=r"`outputs`.*include_top=False"):
        keras_resnet.ResNet(20, outputs="features")
    with pytest.raises(ValueError, match=r"`outputs`.*'features'"):
        keras_resnet.ResNet(20, include_top=False, outputs="maps")
    with pytest.raises(ValueError, match=r"`outputs`.*pooling"):
        keras_resnet.ResNet(20, include_top=False, pooling="avg", outputs="features")
