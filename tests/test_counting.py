"""Counting from the architecture equals measuring the built model, for every option.

``counting.count`` / ``count_wide`` resolve the builders' arguments and count
without building; each case here also builds the model and compares with
``trainable_params`` and ``flops`` measured on it, exactly.
"""

import keras
import pytest

import keras_resnet
from keras_resnet import counting, models, specs, zoo
from tests.test_models import PINNED

pytestmark = pytest.mark.multibackend


def measured(model):
    return counting.trainable_params(model), counting.flops(model)


@pytest.mark.parametrize("name", sorted(specs.ZOO))
def test_zoo_counts(name):
    """Counted from the architecture, the pinned numbers of every zoo model.

    tests/test_models.py::test_zoo_model builds each one and checks that these counts
    equal what trainable_params and flops measure on it.
    """
    counts = zoo.count(name)
    assert counts == PINNED[name]
    arch = zoo.resolve(name)
    assert counting.params(arch) == counts.params and counting.macs(arch) == counts.macs
    assert arch.family == specs.ZOO[name].family


VARIANTS = [
    *[dict(depth=20, ordering=o) for o in specs.ORDERINGS],
    *[dict(depth=11, ordering=o, shortcut="B") for o in specs.ORDERINGS],      # bottlenecks
    *[dict(depth=14, skip=s) for s in specs.SKIPS],
    *[dict(depth=20, shortcut=s, preact=p) for s in specs.SHORTCUTS for p in (False, True)],
    *[dict(depth=20, shortcut=s, residual=False) for s in specs.SHORTCUTS],    # plain twins
    dict(depth=20, downsample_at="last"),
    dict(depth=20, downsample_at="last", shortcut="B", ordering="relu_preact"),
    dict(depth=50, downsample_at="last", stride_at="3x3", preact=True, stem_bias=True),
    dict(depth=50, stride_at="3x3"),
    dict(depth=50, width=2),                            # WRN-50-2: out_filters stay 4 x 64...
    dict(depth=50, width=1.5, preact=True),
    dict(depth=20, width=2),
    dict(depth=20, width=1.5, shortcut="C"),
    dict(depth=18, include_top=False),
    dict(depth=18, include_top=False, pooling="avg", input_shape=(97, 64, 3)),
    dict(depth=18, input_shape=(32, 48, 1), classes=7),
    dict(depth=18, shortcut="A"),
    dict(depth=34, family="imagenet", input_shape=(64, 64, 3)),
    dict(depth=50, input_shape=(64, 64, 3)),            # ImageNet ResNet-50 at any size
    dict(depth=50, input_shape=(64, 64, 3), family="cifar"),     # the CIFAR 6n+2 net
    dict(depth=20, input_shape=(40, 36, 3), classes=3, stem_bias=True),
    dict(depth=20, input_shape=(33, 33, 3), downsample_at="last"),             # odd sizes
    dict(depth=29, block="bottleneck", input_shape=(17, 17, 5), include_top=False),
    dict(depth=20, skip="exclusive_gating", preact=True, shortcut="B"),
    dict(depth=20, drop_path_rate=0.2, zero_init=True, seed=3),
]


def _id(kwargs):
    return ",".join(f"{k}={v}" for k, v in kwargs.items()).replace(" ", "")


@pytest.mark.parametrize("kwargs", VARIANTS, ids=_id)
def test_resnet_counts_equal_the_built_model(kwargs):
    counts = counting.count(**kwargs)
    assert counts == measured(keras_resnet.ResNet(**kwargs))
    assert isinstance(counts.params, int) and isinstance(counts.macs, int)


@pytest.mark.parametrize("kwargs", [
    dict(depth=16, width=2), dict(depth=10, width=1.5, dropout_rate=0.3),
    dict(depth=16, width=4, shortcut="A"), dict(depth=22, width=2, shortcut="C"),
    dict(depth=16, width=2, residual=False), dict(depth=10, width=1, classes=100),
    dict(depth=16, width=2, include_top=False, input_shape=(24, 40, 3)),
    dict(depth=16, width=2, skip="shortcut_gating"),
], ids=_id)
def test_wide_resnet_counts_equal_the_built_model(kwargs):
    assert counting.count_wide(**kwargs) == measured(keras_resnet.WideResNet(**kwargs))


def test_input_tensor_and_channels_first():
    inputs = keras.Input((3, 40, 40))
    counts = counting.count(20, input_tensor=inputs, data_format="channels_first")
    arch = models.resolve_architecture(20)
    assert counts == (counting.params(arch), counting.macs(arch, (3, 40, 40),
                                                           data_format="channels_first"))
    # channels_first only builds and runs where the backend has NCHW kernels; the
    # layout does not change a count: the same net, channels last.
    assert counts == measured(keras_resnet.ResNet(20, input_shape=(40, 40, 3)))


def test_variable_input_size_counts_parameters_only():
    counts = counting.count(50, include_top=False, input_shape=(None, None, 3))
    model = keras_resnet.ResNet(50, include_top=False, input_shape=(None, None, 3))
    assert counts == (counting.trainable_params(model), None)
    with pytest.raises(ValueError, match=r"`input_shape`.*\(None, None, 3\).*height and width"):
        counting.macs(models.resolve_architecture(50), (None, None, 3))


def test_imagenet_weights_layout_is_resolved_as_the_builder_does():
    """weights="imagenet" implies the ImageNet family and, for V2, a stem bias (+64)."""
    v1 = counting.count(50, weights="imagenet", input_shape=(64, 64, 3))
    v2 = counting.count(50, preact=True, weights="imagenet", input_shape=(64, 64, 3))
    assert v1.params == 25_557_032
    assert v2.params == counting.count(50, preact=True, stem_bias=True, stride_at="3x3",
                                       downsample_at="last").params
    assert v2.params - counting.count(50, preact=True).params == 64
    with pytest.raises(ValueError, match="argument `stride_at`"):
        counting.count(50, weights="imagenet", stride_at="3x3")


def test_counts_follow_the_papers_arithmetic():
    """Independent arithmetic: ResNet-20 by hand (He et al. 2015, section 4.2)."""
    stem = 3 * 3 * 3 * 16 + 2 * 16
    stages = sum(3 * (2 * (9 * c * c + 2 * c)) for c in (16, 32, 64))
    # Option A: the first conv of stages 2 and 3 reads c / 2 channels, not c.
    stages -= 9 * 16 * 32 + 9 * 32 * 64
    head = 64 * 10 + 10
    assert counting.count(20).params == stem + stages + head == 269_722


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match=r"`depth`.*21"):
        counting.count(21)
    with pytest.raises(ValueError, match=r"`pooling`.*'min'"):
        counting.count(20, pooling="min")
    with pytest.raises(ValueError, match=r"`classes`.*0"):
        counting.count(20, classes=0)
    with pytest.raises(ValueError, match=r"`input_shape`.*at least 4x4"):
        counting.count(20, input_shape=(2, 2, 3))
    with pytest.raises(ValueError, match=r"`data_format`.*'nhwc'"):
        counting.count(20, input_shape=(8, 8, 3), data_format="nhwc")
    with pytest.raises(ValueError, match=r"`depth`.*6n\+4"):
        counting.count_wide(27)
