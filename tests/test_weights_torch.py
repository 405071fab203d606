"""torchvision state dicts (.pth and .safetensors) loaded into keras_resnet models, offline.

Each torchvision model is built with random kernels *and* random BatchNorm
statistics (calibrated on a random batch, then perturbed, so every statistic
shows in the outputs), put in eval mode and saved; PyTorch's own outputs on the
same images are the reference. torchvision cannot be imported in a process that
has loaded TensorFlow, so tests/torchvision_reference.py makes the files and the
reference outputs in a process of its own (about 15 s for the three models).
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import keras_resnet  # noqa: E402
from keras_resnet import weights as W  # noqa: E402
from keras_resnet import weights_torch as WT  # noqa: E402
from keras_resnet.convert import from_torch  # noqa: E402

RTOL = 1e-4
pytestmark = pytest.mark.xdist_group("torchvision")  # one worker makes the reference once
MODELS = {"resnet18": 0, "resnet50": 2, "wide_resnet50_2": 3}
REFERENCE = os.path.join(os.path.dirname(__file__), "torchvision_reference.py")


def images(size, channels=3, batch=2, seed=1):
    return np.random.default_rng(seed).normal(size=(batch, size, size, channels)).astype("float32")


def folded_to_rgb(x):
    """What an adapted stem computes on ``x``, as RGB images for the original stem: a grey
    image copied into R, G and B; for C > 3 channels, the sum of channels c, c+3, ...
    times 3/C into colour c (the convolution is linear in its input)."""
    channels = x.shape[-1]
    if channels == 1:
        return np.repeat(x, 3, axis=-1)
    return (np.stack([x[..., c::3].sum(axis=-1) for c in range(3)], axis=-1)
            * (3 / channels)).astype("float32")


INPUTS = {"x64": images(64), "x67": images(67), "gray": images(64, 1), "five": images(64, 5)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """{name: (pth path, safetensors path, outputs)} from torchvision, in its own process."""
    folder = tmp_path_factory.mktemp("torchvision")
    rgb = {k: (v if v.shape[-1] == 3 else folded_to_rgb(v)) for k, v in INPUTS.items()}
    np.savez(folder / "inputs.npz", **rgb)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, REFERENCE, str(folder)]
                          + [f"{name}:{seed}" for name, seed in MODELS.items()],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {name: (folder / f"{name}.pth", folder / f"{name}.safetensors",
                   dict(np.load(folder / f"{name}_outputs.npz"))) for name in MODELS}


def keras_outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def relative_error(expected, got):
    expected, got = np.asarray(expected, np.float64), np.asarray(got, np.float64)
    return float(np.max(np.abs(expected - got)) / np.max(np.abs(expected)))


# -- parity ------------------------------------------------------------------------------

@pytest.mark.multibackend
def test_resnet18_pth_and_safetensors_match_pytorch(reference):
    pth, st, outputs = reference["resnet18"]
    expected = outputs["x64_logits"]
    for path in (pth, st):
        ours = keras_resnet.ResNet(depth=18, weights=str(path), input_shape=(64, 64, 3),
                                   classifier_activation=None)
        assert ours.output_shape == (None, 1000)
        assert relative_error(expected, keras_outputs(ours, INPUTS["x64"])) <= RTOL
    assert np.std(expected) > 0.3  # logits of O(1) spread: the comparison sees the head


def test_resnet50_v15_features_match_and_stride_placement_matters(reference):
    pth, st, outputs = reference["resnet50"]
    # Odd size: padding and subsampling parity. Depth 50 at 67x67 alone would resolve
    # to the CIFAR net; the file implies ImageNet and torchvision's stride_at="3x3".
    ours = keras_resnet.ResNet(depth=50, weights=str(st), include_top=False, pooling="avg",
                               input_shape=(67, 67, 3))
    assert ours.get_layer("stage2_block1").stride_at == "3x3"
    assert relative_error(outputs["x67_features"], keras_outputs(ours, INPUTS["x67"])) <= RTOL
    # The kernels fit a v1 network (stride on the 1x1) too; the loader refuses it.
    v1 = keras_resnet.ResNet(depth=50, family="imagenet", include_top=False, pooling="avg",
                             input_shape=(67, 67, 3))
    with pytest.raises(ValueError, match=r"argument `weights`.*stride_at='1x1'"):
        W.load(v1, str(pth))
    with pytest.raises(ValueError, match=r"argument `stride_at`.*'3x3'"):
        keras_resnet.ResNet(depth=50, weights=str(pth), stride_at="1x1")


def test_wide_resnet50_2_from_torch(reference):
    _, st, outputs = reference["wide_resnet50_2"]
    ours = from_torch(st, input_shape=(64, 64, 3), classifier_activation=None)
    assert ours.get_layer("stage1_block1").convs[0].filters == 128  # inner layers widened
    assert ours.get_layer("stage1_block1").convs[2].filters == 256
    assert relative_error(outputs["x64_logits"], keras_outputs(ours, INPUTS["x64"])) <= RTOL


def test_reading_safetensors_needs_no_torch(reference, monkeypatch):
    pth, st, _ = reference["resnet18"]
    with_torch = WT.read_state_dict(pth)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    state = WT.read_state_dict(st)
    assert state.keys() == with_torch.keys()
    np.testing.assert_array_equal(state["layer2.0.downsample.0.weight"],
                                  with_torch["layer2.0.downsample.0.weight"])
    with pytest.raises(ImportError, match=r"needs PyTorch.*safetensors"):
        WT.read_state_dict(pth)


def test_wrapped_checkpoint_with_module_prefix(reference, tmp_path):
    pth, _, outputs = reference["resnet18"]
    state = torch.load(pth, weights_only=True)
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    ours = from_torch(path, include_top=False, pooling="avg", input_shape=(64, 64, 3))
    assert relative_error(outputs["x64_features"], keras_outputs(ours, INPUTS["x64"])) <= RTOL


# -- other input channels --------------------------------------------------------------------

@pytest.mark.parametrize("key, channels", [("gray", 1), ("five", 5)])
def test_other_channel_counts_equal_the_rgb_net_on_folded_images(reference, key, channels):
    """The adapted 1- or 5-channel net on ``x`` gives PyTorch's RGB net's output on
    ``folded_to_rgb(x)`` (a NumPy rewrite of what the adapted stem computes)."""
    pth, _, outputs = reference["resnet18"]
    ours = keras_resnet.ResNet(depth=18, weights=str(pth), input_shape=(64, 64, channels),
                               classifier_activation=None)
    assert ours.get_layer("stem").conv.kernel.shape[2] == channels
    assert relative_error(outputs[f"{key}_logits"], keras_outputs(ours, INPUTS[key])) <= RTOL


def test_adapt_input_channels_against_numpy():
    kernel = np.random.default_rng(0).normal(size=(7, 7, 3, 4))
    np.testing.assert_allclose(W.adapt_input_channels(kernel, 1)[:, :, 0],
                               kernel[:, :, 0] + kernel[:, :, 1] + kernel[:, :, 2])
    four = W.adapt_input_channels(kernel, 4)
    for c, source in enumerate((0, 1, 2, 0)):
        np.testing.assert_allclose(four[:, :, c], kernel[:, :, source] * 0.75)
    with pytest.raises(ValueError, match="argument `input_shape`"):
        W.adapt_input_channels(kernel[:, :, :2], 3)


# -- what is refused ----------------------------------------------------------------------------

def test_unknown_file_and_whole_model_pickles_are_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    with pytest.raises(ValueError, match=r"argument `weights`.*none of the formats") as info:
        keras_resnet.ResNet(depth=18, weights=str(text))
    assert "\n" not in str(info.value)
    whole = tmp_path / "whole.pth"
    torch.save(torch.nn.Conv2d(3, 4, 3), whole)
    with pytest.raises(ValueError, match=r"argument `weights`.*state_dict\(\), not the model"):
        keras_resnet.ResNet(depth=18, weights=str(whole))


def test_mismatches_name_what_differs(reference):
    pth, _, _ = reference["resnet18"]
    with pytest.raises(ValueError, match=r"argument `weights`.*\(2, 2, 2, 2\).*depth=18"):
        keras_resnet.ResNet(depth=34, weights=str(pth))
    with pytest.raises(ValueError, match=r"argument `weights`.*fc has 1000.*classes=1000"):
        keras_resnet.ResNet(depth=18, weights=str(pth), classes=10)
    with pytest.raises(ValueError, match=r"argument `family`"):
        keras_resnet.ResNet(depth=18, weights=str(pth), family="cifar")


def test_layouts_our_builder_cannot_express_are_named(reference):
    state = WT.read_state_dict(reference["resnet50"][1])
    assert WT.describe(state) == {"depth": 50, "block": "bottleneck", "stage_blocks": (3, 4, 6, 3),
                                  "width": 1, "classes": 1000, "in_channels": 3,
                                  "name": "resnet50"}
    se = dict(state, **{"layer1.0.se.fc1.weight": np.zeros((16, 256, 1, 1), "float32")})
    with pytest.raises(ValueError, match=r"layer1.N.se.fc1.weight"):
        WT.describe(se)
    grouped = dict(state, **{"layer1.0.conv2.weight": np.zeros((64, 2, 3, 3), "float32")})
    with pytest.raises(ValueError, match="grouped 3x3"):
        WT.describe(grouped)
    deep = {k: v for k, v in state.items() if k != "conv1.weight"}
    deep["conv1.0.weight"] = np.zeros((32, 3, 3, 3), "float32")
    with pytest.raises(ValueError, match="deep stem"):
        WT.describe(deep)
