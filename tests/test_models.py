"""The builders against the papers: every zoo model, every option, every bad input.

Runs under TensorFlow and (the tests marked `multibackend`) again under JAX.
"""

import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import architecture
from keras_resnet import layers as kl
from keras_resnet import models, specs, zoo
from tests.conftest import trainable_count

pytestmark = pytest.mark.multibackend

# Exact trainable parameters and multiply-adds (one example) of every zoo model.
# Published parameter counts: ResNet-20 269,722; -56 853,018; -110
# 1,727,962; pre-act ResNet-164 1,703,258; WRN-28-10 36,479,194; ResNet-18
# 11,689,512; -50 25,557,032; -152 60,192,808. The others agree with the papers'
# rounded values (ZOO.paper_params) and with torchvision's counts (ResNet-34
# 21,797,672, -101 44,549,160).
PINNED = {
    "resnet20_cifar": (269_722, 40_551_040),
    "resnet32_cifar": (464_154, 68_862_592),
    "resnet44_cifar": (658_586, 97_174_144),
    "resnet56_cifar": (853_018, 125_485_696),
    "resnet110_cifar": (1_727_962, 252_887_680),
    "resnet1202_cifar": (19_421_274, 2_829_238_912),
    "resnet164_cifar": (1_704_154, 244_500_992),
    "resnet1001_cifar": (10_328_602, 1_487_849_984),
    "preact_resnet110_cifar": (1_727_962, 252_887_680),
    "preact_resnet164_cifar": (1_703_258, 244_500_992),
    "preact_resnet1001_cifar": (10_327_706, 1_487_849_984),
    "wrn_28_10": (36_479_194, 5_243_328_768),
    "wrn_40_4": (8_949_210, 1_298_582_016),
    "resnet18": (11_689_512, 1_814_073_344),
    "resnet34": (21_797_672, 3_663_761_408),
    "resnet50": (25_557_032, 3_857_973_248),
    "resnet101": (44_549_160, 7_570_194_432),
    "resnet152": (60_192_808, 11_282_415_616),
    "preact_resnet200": (64_666_152, 14_776_270_848),
}
BIG = {"resnet1202_cifar", "resnet1001_cifar", "preact_resnet1001_cifar", "preact_resnet200",
       "resnet152", "resnet101"}
# The two 1,000-layer nets of docs/scale.md: test_thousand_layer_networks builds each
# once and checks it as test_zoo_model checks the others.
DEEP = ("preact_resnet1001_cifar", "resnet1202_cifar")
# Zoo models that other tests read too (none changes them): built once per process.
SHARED = ("resnet50", "resnet110_cifar", "preact_resnet110_cifar")
_shared = {}


def build_zoo(name, **extra):
    entry = specs.ZOO[name]
    return getattr(models, entry.builder)(**entry.kwargs, **extra)


def shared(**kwargs):
    """``ResNet(**kwargs)`` for tests that only read the model: built once per process."""
    key = tuple(sorted(kwargs.items()))
    if key not in _shared:
        _shared[key] = keras_resnet.ResNet(**kwargs)
    return _shared[key]


def zoo_model(name):
    """The zoo's model ``name``; those in SHARED are built once and then only read."""
    if name in SHARED:
        assert specs.ZOO[name].builder == "ResNet"
        return shared(**specs.ZOO[name].kwargs)
    return build_zoo(name)


def test_every_zoo_model_is_pinned():
    assert set(PINNED) == set(specs.ZOO)
    assert {f"resnet{d}" for d in specs.PAPER_GMACS} <= set(specs.ZOO)  # checked below
    assert set(DEEP) <= BIG and set(DEEP) <= set(specs.ZOO) and set(SHARED) <= set(specs.ZOO)


def _paper_value(text):
    return float(text.rstrip("M")) * 1e6


@pytest.mark.parametrize("name", sorted(set(specs.ZOO) - set(DEEP)))
def test_zoo_model(name):
    """Builds, right output shape, exact parameters and MACs, close to the paper's count.

    The two models in DEEP are built and checked by test_thousand_layer_networks."""
    check_zoo_model(name, zoo_model(name))


def check_zoo_model(name, model):
    entry = specs.ZOO[name]
    classes = specs.DEFAULT_CLASSES[entry.family]
    assert model.output_shape == (None, classes)
    assert model.input_shape == (None,) + specs.DEFAULT_INPUT_SHAPE[entry.family]
    params, macs = PINNED[name]
    assert trainable_count(model) == params
    assert keras_resnet.flops(model) == macs
    assert zoo.count(name) == (params, macs)  # counted without building: the same
    # The paper rounds to 0.01M / 0.1M: agree to within 2%.
    assert abs(params - _paper_value(entry.paper_params)) / params < 0.02
    # He et al. 2015, Table 1: 1.8 / 3.6 / 3.8 / 7.6 / 11.3 GMACs ("FLOPs"), within 3%.
    depth = entry.kwargs["depth"]
    if entry.family == "imagenet" and depth in specs.PAPER_GMACS and name.startswith("resnet"):
        paper = specs.PAPER_GMACS[depth]
        assert abs(keras_resnet.flops(model) / 1e9 - paper) / paper < 0.03
    if name not in BIG:  # one forward pass (the deep ones have their own test)
        x = np.random.RandomState(0).rand(2, *model.input_shape[1:]).astype("float32")
        y = keras.ops.convert_to_numpy(model(x, training=False))
        assert y.shape == (2, classes)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_flops_of_v15_and_wide_bottleneck():
    """Stride on the 3x3 (v1.5) costs more; WRN-50-2 widens only the inner layers."""
    v15 = shared(depth=50, stride_at="3x3")
    assert trainable_count(v15) == 25_557_032
    assert keras_resnet.flops(v15) == 4_089_184_256  # torchvision's 4.09 GMACs
    wide = keras_resnet.ResNet(50, width=2)
    assert trainable_count(wide) == 68_883_240        # torchvision wide_resnet50_2
    assert wide.get_layer("stage1_block1").output.shape[-1] == 256


def test_shortcut_options_resnet34():
    """Table 3 of He et al. 2015: A is parameter-free, B projects on the 3 stage changes,
    C projects everywhere."""
    counts = {s: trainable_count(keras_resnet.ResNet(34, shortcut=s)) for s in "ABC"}
    assert counts["B"] == 21_797_672
    # B adds three 1x1 projections + BN: 64->128, 128->256, 256->512.
    proj = sum(i * o + 2 * o for i, o in [(64, 128), (128, 256), (256, 512)])
    assert counts["B"] - counts["A"] == proj
    assert counts["B"] == 21_797_672   # torchvision's resnet34 (option B), an independent count
    # C also projects the 3+3+5+2 blocks whose shapes match (1x1 conv c*c + BN 2c each).
    same = sum(k * (c * c + 2 * c) for k, c in [(3, 64), (3, 128), (5, 256), (2, 512)])
    assert counts["C"] - counts["B"] == same


def test_plain_twin_has_same_layers_minus_shortcuts():
    res = keras_resnet.ResNet(56, shortcut="B")
    plain = keras_resnet.ResNet(56, shortcut="B", residual=False)
    assert plain.name == "plain56"
    # ResNet-56 by hand: 3x3 stem (3->16) + BN, 3 stages of 18 3x3 convs + BNs, dense 64->10.
    convs = 27 * 16 + 18 * 9 * 16 * 16 + (16 + 17 * 32) * 9 * 32 + (32 + 17 * 64) * 9 * 64
    bns = 2 * (16 + 18 * (16 + 32 + 64))
    option_a = convs + bns + 64 * 10 + 10
    assert trainable_count(plain) == option_a == 853_018   # the paper's 0.85M
    # Option B adds two 1x1 projections + BN where the width doubles.
    assert trainable_count(res) == option_a + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    names = lambda m: {w.path for w in m.weights if "shortcut" not in w.path}  # noqa: E731
    assert names(res) == names(plain)
    assert not any("shortcut" in w.path for w in plain.weights)


# -- family / depth resolution ------------------------------------------------------

@pytest.mark.parametrize("kwargs, family, block", [
    (dict(depth=50), "imagenet", "bottleneck"),
    (dict(depth=50, input_shape=(32, 32, 3)), "imagenet", "bottleneck"),  # not the input size
    (dict(depth=50, family="cifar"), "cifar", "basic"),
    (dict(depth=56), "cifar", "basic"),                                # also 9*6 + 2
    (dict(depth=56, block="bottleneck"), "cifar", "bottleneck"),
    (dict(depth=164), "cifar", "bottleneck"),
    (dict(depth=101, input_shape=(224, 224, 3)), "imagenet", "bottleneck"),
    (dict(depth=101, input_shape=(64, 64, 3)), "imagenet", "bottleneck"),
    (dict(depth=101, family="cifar"), "cifar", "bottleneck"),           # 101 = 9*11 + 2
    (dict(depth=200, family="cifar"), "cifar", "basic"),
    (dict(depth=11), "cifar", "bottleneck"),                           # smallest 9n+2
    (dict(depth=8), "cifar", "basic"),                                 # smallest 6n+2
])
def test_family_resolution(kwargs, family, block):
    depth = kwargs.pop("depth")
    arch = architecture.resolve_resnet(depth, **kwargs)
    assert (arch.family, arch.block) == (family, block)
    assert arch.depth == depth


def test_an_imagenet_depth_builds_the_imagenet_net_at_any_input_size():
    """Issue 18.11: depth=50 at 64x64 was silently the CIFAR 6n+2 net (n = 8)."""
    model = keras_resnet.ResNet(depth=50, input_shape=(64, 64, 3), include_top=False)
    assert model.output_shape == (None, 2, 2, 2048)          # stride 32, 2048 channels
    # The published ResNet-50 count minus its 1000-way classifier (2048 x 1000 + 1000).
    assert trainable_count(model) == 25_557_032 - 2048 * 1000 - 1000
    assert model.get_layer("stem").family == "imagenet"
    cifar = keras_resnet.ResNet(depth=50, input_shape=(64, 64, 3), include_top=False,
                                family="cifar")
    assert cifar.output_shape == (None, 16, 16, 64)
    assert len([b for b in cifar.layers if b.name.startswith("stage1_")]) == 8    # n = 8
    assert cifar.name == "resnet50_cifar" and model.name == "resnet50"


def test_cifar_depth_generation():
    for n in range(1, 40):
        assert specs.cifar_blocks_per_stage(6 * n + 2, "basic") == n
        assert specs.cifar_blocks_per_stage(9 * n + 2, "bottleneck") == n
    assert specs.cifar_blocks_for(21) == ()


def test_imagenet_any_input_size_headless():
    model = keras_resnet.ResNet(18, include_top=False, input_shape=(64, 96, 3), pooling="avg")
    assert model.output_shape == (None, 512)
    model = keras_resnet.ResNet(50, include_top=False, input_shape=(None, None, 3))
    assert model.output_shape == (None, None, None, 2048)
    y = model(np.zeros((1, 65, 33, 3), "float32"))
    assert tuple(y.shape) == (1, 3, 2, 2048)  # ceil-style sizes with symmetric padding


def test_input_tensor_and_classes():
    inp = keras.Input((40, 40, 3))
    model = keras_resnet.ResNet(20, input_tensor=inp, classes=7, classifier_activation=None)
    assert model.inputs[0] is inp and model.output_shape == (None, 7)
    assert model.get_layer("predictions").activation is keras.activations.linear


def test_layer_names_are_stable_and_hierarchical():
    model = zoo_model("resnet50")   # ResNet(depth=50, family="imagenet")
    top = [layer.name for layer in model.layers]
    assert top[:2] == ["input", "stem"] and top[-2:] == ["avg_pool", "predictions"]
    assert top[2:-2] == [f"stage{s}_block{b}" for s, n in enumerate((3, 4, 6, 3), 1)
                         for b in range(1, n + 1)]
    block = model.get_layer("stage2_block1")
    assert [layer.name for layer in block._layers if isinstance(layer, keras.layers.Conv2D)] == [
        "stage2_block1_conv1", "stage2_block1_conv2", "stage2_block1_conv3",
        "stage2_block1_shortcut_conv"]
    assert model.get_layer("stem").conv.name == "stem_conv"


def test_one_graph_node_per_block():
    model = zoo_model("resnet110_cifar")   # ResNet(depth=110, family="cifar")
    assert len(model.layers) == 1 + 1 + 54 + 2  # input, stem, blocks, pool, dense


# -- options of the blocks ---------------------------------------------------------

def test_bottleneck_stride_placement():
    v1 = zoo_model("resnet50").get_layer("stage2_block1")
    v15 = shared(depth=50, stride_at="3x3").get_layer("stage2_block1")
    assert (v1.convs[0].strides, v1.convs[1].strides) == ((2, 2), (1, 1))
    assert (v15.convs[0].strides, v15.convs[1].strides) == ((1, 1), (2, 2))


def test_downsample_at_last_block():
    model = keras_resnet.ResNet(50, preact=True, downsample_at="last", stride_at="3x3")
    assert model.get_layer("stage1_block3").strides == 2
    assert model.get_layer("stage2_block1").strides == 1
    assert model.get_layer("stage4_block3").strides == 1
    assert model.get_layer("stage1_block3")._shortcut_kind == "subsample"
    assert model.output_shape == (None, 1000)


def test_preact_structure():
    model = zoo_model("preact_resnet110_cifar")   # ResNet(110, family="cifar", preact=True)
    assert model.name == "preact_resnet110"
    assert model.get_layer("stem").bn is None
    assert [layer.name for layer in model.layers[-4:]] == [
        "post_bn", "post_relu", "avg_pool", "predictions"]


@pytest.mark.parametrize("ordering", specs.ORDERINGS)
def test_unit_orderings_build_and_run(ordering):
    """He et al. 2016 Fig. 4: all five orderings have ResNet-20's 269,722 parameters.

    Full pre-activation drops the stem BN (-32), adds post_bn (+128) and its
    stage-transition blocks normalise their narrower input (-2 * (16 + 32)).
    """
    model = keras_resnet.ResNet(20, ordering=ordering)
    assert trainable_count(model) == 269_722
    y = model(np.random.rand(2, 32, 32, 3).astype("float32"), training=True)
    assert np.isfinite(keras.ops.convert_to_numpy(y)).all()


def _block_io(block, x, training=False):
    return keras.ops.convert_to_numpy(block(x, training=training))


def test_option_a_shortcut_is_subsample_and_zero_pad():
    """With the residual branch zeroed, a pre-activation option-A block outputs the
    stride-2 subsampled input with zero channels appended."""
    block = kl.ResidualBlock(8, strides=2, preact=True, shortcut="A", zero_init=True, name="b")
    x = np.random.RandomState(1).randn(2, 6, 6, 4).astype("float32")
    y = _block_io(block, x)
    np.testing.assert_allclose(y[..., :4], x[:, ::2, ::2, :], atol=1e-6)
    np.testing.assert_array_equal(y[..., 4:], 0.0)
    assert trainable_count(block) == 3 * 3 * 4 * 8 + 3 * 3 * 8 * 8 + 2 * 4 + 2 * 8


def test_zero_init_makes_post_block_relu_of_input():
    block = kl.BottleneckBlock(4, zero_init=True, shortcut="B", name="b")
    x = np.random.RandomState(2).randn(2, 5, 5, 16).astype("float32")
    np.testing.assert_allclose(_block_io(block, x), np.maximum(x, 0), atol=1e-6)
    assert np.all(keras.ops.convert_to_numpy(block.bns[-1].gamma) == 0)


def test_drop_path_identity_at_inference_and_drops_in_training():
    x = np.random.RandomState(3).randn(64, 4, 4, 8).astype("float32")
    plain = kl.ResidualBlock(8, preact=True, name="a")
    dropped = kl.ResidualBlock(8, preact=True, drop_path_rate=0.5, seed=7, name="b")
    plain.build(x.shape)
    dropped.build(x.shape)
    for src, dst in zip(plain.weights, [w for w in dropped.weights if "seed" not in w.path]):
        dst.assign(src)
    np.testing.assert_allclose(_block_io(dropped, x), _block_io(plain, x), atol=1e-5)
    # Training: each example keeps its residual (scaled by 2) or is exactly the identity.
    train_out = _block_io(dropped, x, training=True)
    residual = _block_io(plain, x, training=True) - x
    is_identity = np.all(np.isclose(train_out, x, atol=1e-5), axis=(1, 2, 3))
    is_kept = np.all(np.isclose(train_out, x + 2 * residual, atol=1e-4), axis=(1, 2, 3))
    assert np.all(is_identity | is_kept)
    assert 10 < is_identity.sum() < 54


def test_drop_path_linear_decay():
    model = keras_resnet.ResNet(20, drop_path_rate=0.5)
    rates = [model.get_layer(f"stage{s}_block{b}").drop_path_rate
             for s in (1, 2, 3) for b in (1, 2, 3)]
    np.testing.assert_allclose(rates, [0.5 * i / 9 for i in range(1, 10)])


@pytest.mark.parametrize("skip", specs.SKIPS)
def test_skip_functions(skip):
    """He et al. 2016 Table 1, in inference mode, each against its formula.

    Exclusive gating with b_g = -6 starts close to the shortcut."""
    block = kl.ResidualBlock(8, skip=skip, gate_bias=-6.0, name="b")
    x = np.abs(np.random.RandomState(4).randn(2, 4, 4, 8)).astype("float32")
    y = _block_io(block, x)
    residual = keras.ops.convert_to_numpy(block._branch(x, False)[0])
    assert np.abs(residual).max() > 0.1  # so the formulas below tell the skips apart
    if skip in ("identity", "dropout"):  # the shortcut dropout is off at inference
        np.testing.assert_allclose(y, np.maximum(x + residual, 0), rtol=1e-5, atol=1e-5)
    if skip == "scaling":
        np.testing.assert_allclose(y, np.maximum(0.5 * x + 0.5 * residual, 0),
                                   rtol=1e-5, atol=1e-5)
        zero = kl.ResidualBlock(8, skip="scaling", zero_init=True, name="z")
        np.testing.assert_allclose(_block_io(zero, x), 0.5 * x, atol=1e-6)
    if skip in ("exclusive_gating", "shortcut_gating"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(block.gate_conv.bias), -6.0)
        # With the gate's kernel zeroed, g = sigmoid(b_g) everywhere: check the formula.
        block.gate_conv.kernel.assign(np.zeros(block.gate_conv.kernel.shape, "float32"))
        g = 1.0 / (1.0 + np.exp(6.0))
        mixed = (1 - g) * x + (g * residual if skip == "exclusive_gating" else residual)
        np.testing.assert_allclose(_block_io(block, x), np.maximum(mixed, 0), rtol=1e-5, atol=1e-5)
    if skip == "dropout":  # in training, each example keeps 2 x its shortcut or drops it
        train = _block_io(block, x, training=True)
        branch = keras.ops.convert_to_numpy(block._branch(x, True)[0])
        kept = np.all(np.isclose(train, np.maximum(2 * x + branch, 0), atol=1e-4), axis=(1, 2, 3))
        dropped = np.all(np.isclose(train, np.maximum(branch, 0), atol=1e-4), axis=(1, 2, 3))
        assert np.all(kept | dropped)


def test_width_and_wide_resnet():
    model = keras_resnet.WideResNet(depth=16, width=2, dropout_rate=0.3)
    assert model.name == "wrn_16_2"
    assert model.get_layer("stage1_block1").dropout.rate == 0.3
    assert model.get_layer("stage3_block2").output.shape[-1] == 128
    # ResNet-20 x2 by hand: the stem keeps 16 filters, option A pads the channels up.
    expected, c_in = 3 * 3 * 3 * 16 + 2 * 16, 16
    for c in (32, 64, 128):
        for _ in range(3):
            expected += 9 * c_in * c + 9 * c * c + 4 * c
            c_in = c
    expected += 128 * 10 + 10
    assert trainable_count(keras_resnet.ResNet(20, width=2)) == expected == 1_068_890


# -- precision -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["mixed_float16", keras.DTypePolicy("mixed_bfloat16")])
def test_dtype_is_explicit_and_the_head_stays_float32(dtype):
    """`dtype=` reaches every layer (blocks' own included), the classifier computes in
    float32, and Keras's global policy is neither read nor changed."""
    assert keras.config.dtype_policy().name == "float32"
    model = keras_resnet.ResNet(8, input_shape=(8, 8, 3), skip="exclusive_gating",
                                dropout_rate=0.1, dtype=dtype)
    assert keras.config.dtype_policy().name == "float32"
    compute = "float16" if dtype == "mixed_float16" else "bfloat16"
    head = {"avg_pool", "predictions"}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.name in head or isinstance(layer, keras.layers.InputLayer):
            continue
        assert (layer.name, layer.compute_dtype, layer.variable_dtype) == (
            layer.name, compute, "float32")
    for name in head:
        assert model.get_layer(name).compute_dtype == "float32"
    block = model.get_layer("stage2_block1")
    assert {block.conv1.compute_dtype, block.bn2.compute_dtype,
            block.gate_conv.compute_dtype} == {compute}
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    assert keras.ops.convert_to_numpy(model(x)).dtype == np.float32
    assert keras.backend.standardize_dtype(model.get_layer("stage3_block1").output.dtype) == compute
    # A user's global policy is the default, as for any Keras layer; the head stays float32.
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        default = keras_resnet.ResNet(8, input_shape=(8, 8, 3))
    finally:
        keras.config.set_dtype_policy("float32")
    assert default.get_layer("stem").compute_dtype == "bfloat16"
    assert default.get_layer("predictions").compute_dtype == "float32"
    plain = keras_resnet.ResNet(8, input_shape=(8, 8, 3), include_top=False, pooling="avg",
                                dtype="bfloat16")
    assert plain.get_layer("avg_pool").compute_dtype == "bfloat16"


# -- serialization -----------------------------------------------------------------

def _roundtrip_config(model):
    config = json.loads(json.dumps(model.get_config()))
    return keras.Model.from_config(config)


@pytest.mark.parametrize("kwargs", [
    dict(depth=20),
    dict(depth=20, ordering="relu_before_add", skip="exclusive_gating", gate_bias=-2.0),
    dict(depth=11, preact=True, drop_path_rate=0.2, zero_init=True, width=0.5),
    dict(depth=20, width=0.5, shortcut="B"),   # narrower than the stem: projections
    dict(depth=18, input_shape=(64, 64, 3)),
    dict(depth=50, family="imagenet", preact=True, downsample_at="last", stride_at="3x3", stem_bias=True,
         input_shape=(64, 64, 3), include_top=False, pooling="max"),
])
def test_config_and_keras_file_roundtrip(kwargs, tmp_path):
    model = keras_resnet.ResNet(**kwargs)
    for layer in model.layers:  # every block's config is exactly its constructor arguments
        if isinstance(layer, (kl.ResidualBlock, kl.BottleneckBlock, kl.Stem)):
            clone = layer.__class__.from_config(layer.get_config())
            assert clone.get_config() == layer.get_config()
    rebuilt = _roundtrip_config(model)
    assert trainable_count(rebuilt) == trainable_count(model)
    x = np.random.RandomState(5).rand(2, *model.input_shape[1:]).astype("float32")
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)),
                               keras.ops.convert_to_numpy(model(x, training=False)),
                               rtol=1e-5, atol=1e-6)
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]


def test_weights_file_roundtrip(tmp_path):
    model = keras_resnet.ResNet(20)
    path = str(tmp_path / "r20.weights.h5")
    model.save_weights(path)
    loaded = keras_resnet.ResNet(20, weights=path)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_blocks_in_user_functional_models(tmp_path):
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    x = kl.ResidualBlock(8, name="res")(x)
    x = kl.BottleneckBlock(4, strides=2, stride_at="3x3", name="bott")(x)
    out = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, out)
    assert model.output_shape == (None, 16)
    model.save(tmp_path / "u.keras")
    loaded = keras.saving.load_model(tmp_path / "u.keras", safe_mode=True)
    x = np.random.rand(1, 16, 16, 3).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6)


def test_trains_one_step_and_every_weight_gets_a_gradient():
    model = keras_resnet.ResNet(14, preact=True, input_shape=(8, 8, 3), classes=3,
                                skip="shortcut_gating")
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    x = np.random.rand(8, 8, 8, 3).astype("float32")
    model.train_on_batch(x, np.arange(8) % 3)
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    unchanged = [w.path for w, a, b in zip(model.trainable_weights, after, before)
                 if np.array_equal(a, b)]
    assert unchanged == []


# -- bad input ---------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(depth=21), ValueError, ["`depth`", "21", "6n+2", "9n+2", "18, 34, 50"]),
    (dict(depth="50"), TypeError, ["`depth`", "'50'"]),
    (dict(depth=110, family="imagenet"), ValueError, ["`depth`", "110", "18, 34, 50, 101, 152, 200"]),
    (dict(depth=18, family="cifar"), ValueError, ["`depth`", "18", "6n+2"]),
    (dict(depth=20, family="mnist"), ValueError, ["`family`", "'mnist'", "'cifar'", "'imagenet'"]),
    (dict(depth=20, block="wide"), ValueError, ["`block`", "'wide'", "'basic'", "'bottleneck'"]),
    (dict(depth=32, block="bottleneck"), ValueError, ["`depth`", "9n+2", "32"]),
    (dict(depth=50, block="basic"), ValueError, ["`block`", "'bottleneck'", "'basic'"]),
    (dict(depth=20, width=0), ValueError, ["`width`", "0"]),
    (dict(depth=20, width="2"), TypeError, ["`width`", "'2'"]),
    (dict(depth=20, width=0.5), ValueError, ["`width`", "`shortcut`", "0.5", "8 channels",
                                             "shortcut='B'"]),
    (dict(depth=56, preact=True, width=0.75), ValueError, ["width=0.75", "12 channels", "at least 1"]),
    (dict(depth=20, shortcut="D"), ValueError, ["`shortcut`", "'D'", "'A', 'B', 'C'"]),
    (dict(depth=20, residual="no"), TypeError, ["`residual`"]),
    (dict(depth=20, preact=1), TypeError, ["`preact`"]),
    (dict(depth=20, include_top=False, pooling="min"), ValueError, ["`pooling`", "'min'", "'avg'"]),
    (dict(depth=20, classes=0), ValueError, ["`classes`", "0"]),
    (dict(depth=20, input_shape=(2, 2, 3)), ValueError, ["`input_shape`", "at least 4x4"]),
    (dict(depth=18, input_shape=(16, 16, 3), family="imagenet"), ValueError, ["`input_shape`", "32x32"]),
    (dict(depth=20, input_shape=(32, 32)), ValueError, ["`input_shape`", "(32, 32)"]),
    (dict(depth=20, drop_path_rate=1.5), ValueError, ["`drop_path_rate`", "1.5", "[0, 1)"]),
    (dict(depth=20, weights="foo.h5"), ValueError, ["`weights`", "foo.h5", "'imagenet'"]),
    (dict(depth=20, weights=3), ValueError, ["`weights`", "3"]),
    (dict(depth=20, wibble=1), TypeError, ["'wibble'", "stride_at", "ordering"]),
    (dict(depth=20, stride_at="3x3"), ValueError, ["`stride_at`", "bottleneck", "'basic'"]),
    (dict(depth=50, stride_at="5x5"), ValueError, ["`stride_at`", "'5x5'", "'1x1', '3x3'"]),
    (dict(depth=20, ordering="sideways"), ValueError, ["`ordering`", "'sideways'", "'full_preact'"]),
    (dict(depth=20, preact=True, ordering="post"), ValueError, ["`ordering`", "`preact=True`", "`ordering='post'`"]),
    (dict(depth=20, skip="teleport"), ValueError, ["`skip`", "'teleport'", "'exclusive_gating'"]),
    (dict(depth=20, downsample_at="middle"), ValueError, ["`downsample_at`", "'first', 'last'"]),
    (dict(depth=20, dropout_rate=-0.1), ValueError, ["`dropout_rate`", "-0.1"]),
])
def test_bad_input(kwargs, exc, words):
    with pytest.raises(exc) as info:
        keras_resnet.ResNet(**kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("kwargs, words", [
    (dict(depth=27), ["`depth`", "6n+4", "27"]),
    (dict(depth=28, width=-1), ["`width`", "-1"]),
    (dict(depth=16, width=0.5, shortcut="A"), ["`width`", "`shortcut`", "0.5"]),
    (dict(depth=28, dropout_rate=2.0), ["`dropout_rate`", "2.0"]),
    (dict(depth=28, weights="imagenet"), ["`weights`", "'imagenet'"]),
])
def test_wide_resnet_bad_input(kwargs, words):
    with pytest.raises(ValueError) as info:
        keras_resnet.WideResNet(**kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_block_bad_input():
    with pytest.raises(ValueError, match="`shortcut`.*'E'"):
        kl.ResidualBlock(8, shortcut="E")
    with pytest.raises(TypeError, match="`filters`"):
        kl.BottleneckBlock(8.5)
    with pytest.raises(ValueError, match="`stride_at`"):
        kl.BottleneckBlock(8, stride_at="7x7")


# -- scale ---------------------------------------------------------------------------

# The .keras round trip of each: writing and reading the file is Keras's own Python (the
# configs, the HDF5 weights), the same under either backend, and at this depth costs
# about three builds; each model round-trips under one backend, and `make test` runs
# both. The backend-specific part of loading is checked by
# test_config_and_keras_file_roundtrip under each backend.
ROUND_TRIP = {"tensorflow": "resnet1202_cifar", "jax": "preact_resnet1001_cifar"}


@pytest.mark.parametrize("name", DEEP)
def test_thousand_layer_networks(name, tmp_path):
    """Build without touching the recursion limit, run, round-trip .keras; the zoo's
    pinned counts (what test_zoo_model checks of the others).

    The build time is reported, not asserted (shared, noisy machines): it is
    measured by `recipes/benchmark.py --build` and quoted in the README.
    zero_init keeps the untrained 1,000-layer net's activations finite in
    inference mode (with random BN statistics they grow ~2x per block); it
    changes no count.
    """
    depth, preact = specs.ZOO[name].kwargs["depth"], specs.ZOO[name].kwargs.get("preact", False)
    assert (depth, preact) in {(1001, True), (1202, False)}
    limit = sys.getrecursionlimit()
    start = time.perf_counter()
    model = build_zoo(name, zero_init=True)   # ResNet(depth, family="cifar", preact=...)
    elapsed = time.perf_counter() - start
    assert sys.getrecursionlimit() == limit
    blocks = (depth - 2) // (3 if preact else 2)  # 333 bottlenecks or 600 basic blocks
    head = 4 if preact else 2                      # [post_bn, post_relu,] avg_pool, predictions
    assert len(model.layers) == 2 + blocks + head  # one node per block
    print(f"ResNet-{depth} built in {elapsed:.1f} s")
    check_zoo_model(name, model)
    x = np.random.RandomState(6).rand(2, 32, 32, 3).astype("float32")
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert np.isfinite(y).all() and y.shape == (2, 10)
    if ROUND_TRIP.get(keras.backend.backend(), name) != name:
        return
    path = str(tmp_path / "deep.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x, training=False)), y,
                               rtol=1e-5, atol=1e-6)


# -- backends -------------------------------------------------------------------------

@pytest.mark.skipif(keras.backend.backend() == "jax",
                    reason="the same subprocess as under TensorFlow (it sets KERAS_BACKEND=jax "
                           "itself): run once, in the TensorFlow part of make test")
def test_import_under_jax_does_not_import_tensorflow():
    code = ("import sys, keras_resnet, numpy as np; "
            "m = keras_resnet.ResNet(20); m(np.zeros((1, 32, 32, 3), 'float32')); "
            "keras_resnet.flops(m); "
            "print('tensorflow' in sys.modules)")
    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="TF's CPU kernels are NHWC only")
def test_channels_first_matches_channels_last():
    last = keras_resnet.ResNet(20, data_format="channels_last")
    first = keras_resnet.ResNet(20, data_format="channels_first")
    assert first.input_shape == (None, 3, 32, 32)
    for a, b in zip(last.weights, first.weights):
        b.assign(a)
    x = np.random.rand(2, 32, 32, 3).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(first(x.transpose(0, 3, 1, 2))),
                               keras.ops.convert_to_numpy(last(x)), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.train.Checkpoint")
def test_tf_checkpoint_holds_every_variable(tmp_path):
    """tf.train.Checkpoint(model=...) reaches inside the blocks (BN statistics and
    drop-path RNG state included) and restores them."""
    import tensorflow as tf

    model = keras_resnet.ResNet(20, drop_path_rate=0.1, shortcut="C")
    for v in model.variables:
        v.assign(np.random.RandomState(len(v.path)).randn(*v.shape).astype(v.dtype))
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    stored = [n for n, _ in tf.train.list_variables(path) if n.startswith("model/")]
    # stem conv + BN, 9 blocks x (2 convs + 2 BNs), 9 option-C shortcuts (conv + BN),
    # 9 drop-path RNG states, the classifier's kernel and bias.
    assert len(stored) == len(model.variables) == 5 + 9 * 10 + 9 * 5 + 9 + 2
    other = keras_resnet.ResNet(20, drop_path_rate=0.1, shortcut="C")
    tf.train.Checkpoint(model=other).read(path).assert_consumed()
    for a, b in zip(model.variables, other.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
