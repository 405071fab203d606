"""Every argument of ResNet and WideResNet refuses a bad value by name, before building.

Each error is a ValueError or TypeError whose message names the argument in
backticks, shows the value received and says what is allowed, including for the
arguments Keras would otherwise check with its own words (``classifier_activation``,
``kernel_regularizer``, ``name``).
"""

import inspect

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import architecture, counting, models

pytestmark = pytest.mark.multibackend

# (argument, bad value, words of what is allowed, other arguments)
RESNET_CASES = [
    ("depth", 21, ["6n+2", "9n+2", "18, 34, 50"], {}),
    ("depth", "50", ["an int"], {}),
    ("depth", True, ["an int"], {}),
    ("preact", 1, ["True or False"], {}),
    ("family", "mnist", ["'cifar'", "'imagenet'"], {}),
    ("block", "wide", ["'basic'", "'bottleneck'"], {}),
    ("width", 0, ["positive number"], {}),
    ("width", "2", ["positive number"], {}),
    ("width", float("nan"), ["positive number"], {}),
    ("shortcut", "D", ["'A', 'B', 'C'"], {}),
    ("shortcut", ["A"], ["'A', 'B', 'C'"], {}),
    ("residual", "no", ["True or False"], {}),
    ("drop_path_rate", 1.5, ["[0, 1)"], {}),
    ("drop_path_rate", "0.1", ["[0, 1)"], {}),
    ("include_top", "yes", ["True or False"], {}),
    ("weights", "foo.h5", ["None, 'imagenet' or the path of a weights file"], {}),
    ("weights", 3, ["None, 'imagenet' or the path of a weights file"], {}),
    ("input_tensor", np.zeros((1, 32, 32, 3)), ["keras.Input"], {}),
    ("input_tensor", "x", ["keras.Input"], {}),
    ("input_shape", (2, 2, 3), ["at least 4x4"], {}),
    ("input_shape", (32, 32), ["3 positive ints"], {}),
    ("input_shape", "32x32", ["3 positive ints"], {}),
    ("pooling", "min", ["None, 'avg', 'max'"], dict(include_top=False)),
    ("classes", 0, ["positive int"], {}),
    ("classes", "10", ["positive int"], {}),
    ("classifier_activation", "softmaxx", ["'softmax'", "callable"], {}),
    ("classifier_activation", 3, ["'softmax'", "callable"], {}),
    ("name", "", ["non-empty str"], {}),
    ("name", "my/model", ["without '/'"], {}),
    ("name", 7, ["non-empty str"], {}),
    ("data_format", "NHWC", ["'channels_last'", "'channels_first'"], {}),
    ("dtype", "float24", ["'mixed_float16'", "keras.DTypePolicy"], {}),
    ("dtype", 16, ["'mixed_float16'", "keras.DTypePolicy"], {}),
    ("outputs", "maps", ["None, 'features'"], dict(include_top=False)),
    ("outputs", "features", ["include_top=False"], {}),
    ("stride_at", "5x5", ["'1x1', '3x3'"], dict(depth=50)),
    ("stride_at", "3x3", ["bottleneck blocks only"], {}),
    ("downsample_at", "middle", ["'first', 'last'"], {}),
    ("ordering", "sideways", ["'post'", "'full_preact'"], {}),
    ("ordering", "post", ["preact=True", "'full_preact'"], dict(preact=True)),
    ("skip", "teleport", ["'identity'", "'exclusive_gating'"], {}),
    ("gate_bias", "-6", ["finite number"], {}),
    ("gate_bias", float("inf"), ["finite number"], {}),
    ("zero_init", "yes", ["True or False"], {}),
    ("dropout_rate", -0.1, ["[0, 1)"], {}),
    ("stem_bias", 1, ["True or False"], {}),
    ("kernel_regularizer", "l3", ["'l2'", "callable"], {}),
    ("kernel_regularizer", 5, ["'l2'", "callable"], {}),
    ("bn_momentum", 1.5, ["[0, 1]"], {}),
    ("bn_momentum", "0.9", ["[0, 1]"], {}),
    ("bn_epsilon", 0.0, ["positive float"], {}),
    ("bn_epsilon", -1e-3, ["positive float"], {}),
    ("seed", "1", ["an int or None"], {}),
    ("seed", 1.5, ["an int or None"], {}),
]

WIDE_CASES = [
    ("depth", 27, ["6n+4"], {}),
    ("depth", "28", ["an int"], {}),
    ("width", -1, ["positive number"], {}),
    ("dropout_rate", 2.0, ["[0, 1)"], {}),
    ("weights", "imagenet", ["None or the path of a weights file"], {}),
    ("drop_path_rate", -0.5, ["[0, 1)"], {}),
    ("residual", None, ["True or False"], {}),
    ("shortcut", "E", ["'A', 'B', 'C'"], {}),
    ("include_top", 0, ["True or False"], {}),
    ("input_tensor", [1, 2], ["keras.Input"], {}),
    ("input_shape", (3, 3, 3), ["at least 4x4"], {}),
    ("pooling", "sum", ["None, 'avg', 'max'"], {}),
    ("classes", -3, ["positive int"], {}),
    ("classifier_activation", "soft-max", ["'softmax'", "callable"], {}),
    ("name", "a/b", ["without '/'"], {}),
    ("data_format", "channels_middle", ["'channels_last'"], {}),
    ("dtype", "mixed_int4", ["'mixed_bfloat16'"], {}),
    ("outputs", "features", ["pooling=None"], dict(include_top=False, pooling="avg")),
    ("skip", "leap", ["'identity'"], {}),
    ("gate_bias", None, None, {}),   # None means the default: accepted
    ("stem_bias", "no", ["True or False"], {}),
    ("kernel_regularizer", "l7", ["'l2'"], {}),
    ("bn_momentum", -0.1, ["[0, 1]"], {}),
    ("bn_epsilon", "1e-5", ["positive float"], {}),
    ("seed", 2.0, ["an int or None"], {}),
    ("zero_init", 1.0, ["True or False"], {}),
    ("ordering", "post", ["'full_preact'"], {}),
    ("ordering", "diagonal", ["'post'", "'full_preact'"], {}),
    ("stride_at", "3x3", ["bottleneck blocks only"], {}),
    ("downsample_at", "never", ["'first', 'last'"], {}),
]


def _received(value):
    """How the message shows the value: its repr (arrays and long values start it)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:20]


def _check_error(builder, argument, value, allowed, others):
    with pytest.raises((ValueError, TypeError)) as info:
        builder(**{"depth": 20, **others, argument: value} if builder is keras_resnet.ResNet
                else {"depth": 16, "width": 2, **others, argument: value})
    message = str(info.value)
    assert f"`{argument}`" in message, message
    assert _received(value) in message or str(value) in message, message
    for word in allowed:
        assert word in message, (word, message)
    return message


@pytest.mark.parametrize("argument, value, allowed, others", RESNET_CASES,
                         ids=[f"{a}={v!r}"[:40] for a, v, _, _ in RESNET_CASES])
def test_resnet_argument_errors_name_the_argument(argument, value, allowed, others):
    _check_error(keras_resnet.ResNet, argument, value, allowed, others)


@pytest.mark.parametrize("argument, value, allowed, others", WIDE_CASES,
                         ids=[f"{a}={v!r}"[:40] for a, v, _, _ in WIDE_CASES])
def test_wide_resnet_argument_errors_name_the_argument(argument, value, allowed, others):
    if allowed is None:
        assert keras_resnet.WideResNet(10, 1, **{argument: value}).name == "wrn_10_1"
        return
    _check_error(keras_resnet.WideResNet, argument, value, allowed, others)


def _arguments(builder):
    named = [p for p in inspect.signature(builder).parameters.values()
             if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return {p.name for p in named} | set(architecture.EXTRAS)


def test_every_argument_has_a_bad_value_case():
    """Adding an argument to a builder without a case here fails this test."""
    assert _arguments(keras_resnet.ResNet) == {a for a, *_ in RESNET_CASES}
    wide = _arguments(keras_resnet.WideResNet) | set(architecture.WIDE_EXTRAS)
    assert wide == {a for a, *_ in WIDE_CASES}


def test_errors_come_before_anything_is_built(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("built before checking")

    monkeypatch.setattr(models, "_build", refuse)   # what ResNet and WideResNet build with
    for argument, value, allowed, others in RESNET_CASES:
        with pytest.raises((ValueError, TypeError)):
            keras_resnet.ResNet(**{"depth": 20, **others, argument: value})
    for argument, value, allowed, others in WIDE_CASES:
        if allowed is not None:
            with pytest.raises((ValueError, TypeError)):
                keras_resnet.WideResNet(**{"depth": 16, "width": 2, **others, argument: value})


def test_each_argument_is_checked_once(monkeypatch):
    """One check per argument on each builder's path (the resolution, then the Keras ones)."""
    calls = []

    def counted(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for name in ("check_input_shape", "check_head", "check_weights_argument", "check_width",
                 "resolve_family", "resolve_ordering", "check_depth_type"):
        counted(architecture, name)
    for name in ("check_dtype", "check_regularizer", "check_head"):
        counted(models, name)
    keras_resnet.ResNet(20, input_shape=(16, 16, 3), kernel_regularizer="l2")
    assert sorted(calls) == sorted([
        "check_input_shape", "check_head", "check_head", "check_weights_argument",
        "check_width", "resolve_family", "resolve_ordering", "check_depth_type",
        "check_dtype", "check_regularizer"]), calls   # models.check_head calls architecture's
    calls.clear()
    keras_resnet.WideResNet(10, 2, input_shape=(16, 16, 3))
    assert sorted(calls) == sorted([
        "check_input_shape", "check_head", "check_head", "check_weights_argument",
        "check_width", "resolve_ordering", "check_depth_type", "check_dtype",
        "check_regularizer"]), calls


def test_build_checks_what_it_is_given():
    arch = architecture.resolve_resnet(20)
    with pytest.raises(ValueError, match="`pooling`"):
        models.build(arch, include_top=False, pooling="min")
    with pytest.raises(ValueError, match="`input_shape`.*at least 4x4"):
        models.build(arch, input_shape=(2, 2, 3))
    with pytest.raises(ValueError, match="`dtype`"):
        models.build(arch, dtype="float24")
    assert models.build(arch, input_shape=(8, 8, 3)).output_shape == (None, 10)


@pytest.mark.parametrize("argument, value", [
    ("depth", 21), ("width", 0), ("pooling", "min"), ("classes", 0), ("name", ""),
    ("ordering", "sideways"), ("bn_epsilon", 0.0), ("seed", "1"), ("weights", 3),
    ("include_top", "yes")])
def test_counting_refuses_the_same_values(argument, value):
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        counting.count(**{"depth": 20, argument: value})


def test_unknown_arguments_are_listed_with_what_is_accepted():
    with pytest.raises(TypeError, match=r"'wibble'.*stride_at"):
        keras_resnet.ResNet(20, wibble=1)
    with pytest.raises(TypeError, match=r"'preact'.*drop_path_rate"):
        keras_resnet.WideResNet(16, 2, preact=True)


def test_valid_values_of_the_checked_arguments_build():
    model = keras_resnet.ResNet(
        20, classifier_activation=keras.activations.sigmoid, kernel_regularizer="l2",
        bn_momentum=1, bn_epsilon=1e-3, seed=0, gate_bias=-2, skip="exclusive_gating",
        name="mine", input_tensor=keras.Input((16, 16, 3)))
    assert model.name == "mine" and model.output_shape == (None, 10)
    block = model.get_layer("stage1_block1")
    assert (block.bns[0].momentum, block.bns[0].epsilon, block.gate_bias) == (1.0, 1e-3, -2.0)
    assert isinstance(block.kernel_regularizer, keras.regularizers.L2)
