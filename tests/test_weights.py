"""keras.applications ResNets converted into keras_resnet models, tested offline.

Every keras.applications model here is built locally with ``weights=None`` and
then given random weights *and* random BatchNorm statistics, so bias folding,
epsilon folding and stride placement all show in the outputs. The ImageNet
download is replaced by a local file at the network boundary (``urlretrieve``),
so Keras's own cache and hash check run for real.
"""

import hashlib
import shutil
import urllib.error

import h5py
import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import architecture
from keras_resnet import weights as W
from keras_resnet.convert import from_keras_applications

RTOL = 1e-4


def randomize(model, seed=0):
    """Random kernels, conv biases, BN gamma/beta and BN moving statistics.

    The moving statistics start as the batch statistics of a random batch (so
    activations stay O(1) and biases weigh as much as the signal they ride on),
    then each is perturbed at random: mean + N(0, 0.2) std, variance x U(0.5, 1.5).
    """
    rng = np.random.default_rng(seed)
    norms = []
    for layer in model.layers:
        values = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = values[0].shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape).astype("float32"),
                               rng.normal(0.0, 0.2, shape).astype("float32"),
                               values[2], values[3]])
            norms.append(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            kernel = values[0]
            fan_in = int(np.prod(kernel.shape[:3]))
            new = [rng.normal(0.0, np.sqrt(2.0 / fan_in), kernel.shape)]
            new += [rng.normal(0.0, 0.5, v.shape) for v in values[1:]]
            layer.set_weights([v.astype("float32") for v in new])
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.momentum = 0.0
    size = model.input_shape[1] or 64
    model(rng.normal(size=(4, size, size, 3)).astype("float32"), training=True)
    for bn, momentum in zip(norms, momenta):
        bn.momentum = momentum
        gamma, beta, mean, variance = bn.get_weights()
        mean = mean + rng.normal(0.0, 0.2, mean.shape) * np.sqrt(variance)
        variance = variance * rng.uniform(0.5, 1.5, variance.shape)
        bn.set_weights([gamma, beta, mean.astype("float32"), variance.astype("float32")])
    if "predictions" in {layer.name for layer in model.layers}:
        _calibrate_head(model, rng)
    return model


def _calibrate_head(model, rng):
    """Random classifier with O(1) logits, so softmax outputs stay informative."""
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    size = model.input_shape[1] or 64
    scale = float(np.std(features(rng.normal(size=(2, size, size, 3)).astype("float32"))))
    head = model.get_layer("predictions")
    kernel, bias = head.get_weights()
    kernel = rng.normal(0.0, 1.0, kernel.shape) / (scale * np.sqrt(kernel.shape[0]))
    head.set_weights([kernel.astype("float32"), rng.normal(0.0, 0.1, bias.shape).astype("float32")])


def relative_error(expected, got):
    expected, got = np.asarray(expected, np.float64), np.asarray(got, np.float64)
    return float(np.max(np.abs(expected - got)) / np.max(np.abs(expected)))


def inputs(size, batch=2, seed=1):
    return np.random.default_rng(seed).normal(size=(batch, size, size, 3)).astype("float32")


def predict(model, x):
    """Inference-mode outputs (an eager call: no tf.function tracing per model)."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def assert_same_function(source, ours, x):
    expected = predict(source, x)
    got = predict(ours, x)
    assert got.shape == expected.shape
    assert relative_error(expected, got) <= RTOL
    return expected, got


def write_official_h5(model, path):
    """Write ``model``'s weights the way the official keras.applications files are laid out.

    Keras 2 weights-only HDF5: root attributes ``layer_names``, ``backend``,
    ``keras_version``; one group per layer with a ``weight_names`` attribute
    (``conv1_conv/kernel:0``, ...) naming its datasets.
    """
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            variables = layer.trainable_weights + layer.non_trainable_weights
            names = [f"{layer.name}/{v.name}:0" for v in variables]
            group.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for name, variable in zip(names, variables):
                group.create_dataset(name, data=keras.ops.convert_to_numpy(variable))
    return path


def flavor_of(application):
    """``"ResNet101V2"`` -> Flavor(depth=101, preact=True)."""
    return W.Flavor(int(application[len("ResNet"):].removesuffix("V2")),
                    application.endswith("V2"))


def official_source(application, include_top, seed=0, **kwargs):
    constructor = getattr(keras.applications, application)
    return randomize(constructor(weights=None, include_top=include_top,
                                 input_shape=kwargs.pop("input_shape", (64, 64, 3)),
                                 **kwargs), seed)


# -- from_keras_applications ---------------------------------------------------------

def test_resnet50_with_softmax_top_matches():
    source = official_source("ResNet50", include_top=True)
    ours = from_keras_applications(source)
    assert ours.name == "resnet50" and ours.output_shape == (None, 1000)
    expected, _ = assert_same_function(source, ours, inputs(64))
    assert expected.max() < 0.5  # a spread-out softmax, so the comparison is informative
    np.testing.assert_allclose(expected.sum(axis=-1), 1.0, rtol=1e-5)


def test_resnet50v2_logits_match_and_the_stream_bias_fold_matters():
    source = official_source("ResNet50V2", include_top=True, classifier_activation=None)
    ours = from_keras_applications(source)
    assert ours.name == "preact_resnet50"
    assert ours.get_layer("stage1_block3").strides == 2  # V2: stride in a stage's last block
    assert ours.get_layer("stage2_block1").strides == 1
    x = inputs(64)
    expected, _ = assert_same_function(source, ours, x)
    # Un-fold the bias accumulated by the stream since the last projection:
    # the outputs must then differ, so the test above can see a folding mistake.
    post_bn = ours.get_layer("post_bn")
    gamma, beta, _, variance = post_bn.get_weights()
    post_bn.set_weights([gamma, beta, source.get_layer("post_bn").get_weights()[2], variance])
    assert relative_error(expected, predict(ours, x)) > 1e-2


@pytest.mark.parametrize("application, pooling", [("ResNet50", None), ("ResNet50V2", "avg")])
def test_features_match(application, pooling):
    source = official_source(application, include_top=False, pooling=pooling,
                             input_shape=(None, None, 3), seed=1)
    ours = from_keras_applications(source)
    assert ours.input_shape == (None, None, None, 3)
    assert ours.output_shape == source.output_shape
    assert_same_function(source, ours, inputs(67))  # odd size: padding/subsampling parity


def test_from_keras_applications_rejects_other_models():
    x = keras.Input((32, 32, 3))
    other = keras.Model(x, keras.layers.Conv2D(4, 3, name="conv1_conv")(x))
    with pytest.raises(ValueError, match=r"argument `model`.*ResNet50/101/152"):
        from_keras_applications(other)
    with pytest.raises(TypeError, match="`model`"):
        from_keras_applications("resnet50")


@pytest.mark.slow
@pytest.mark.parametrize("application", ["ResNet101", "ResNet152", "ResNet101V2",
                                         "ResNet152V2"])
def test_deeper_models_match(application):
    source = official_source(application, include_top=True, classifier_activation=None)
    ours = from_keras_applications(source)
    flavor = flavor_of(application)
    assert ours.name.endswith(str(flavor.depth))
    assert_same_function(source, ours, inputs(64))
    # ...and its weights do not fit a ResNet-50.
    other = keras_resnet.ResNet(depth=50, preact=flavor.preact, family="imagenet",
                                input_shape=(64, 64, 3), **architecture.LAYOUTS[flavor.preact])
    with pytest.raises(ValueError, match=rf"blocks per stage \(3, 4, 6, 3\).*{application}"):
        W.transfer(source, other)


# -- weights="imagenet", offline ---------------------------------------------------------

@pytest.fixture
def offline_keras(monkeypatch, tmp_path):
    """Keras home in tmp_path; ``urlretrieve`` serves files from ``served`` (else fails)."""
    from keras.src.backend import config
    from keras.src.utils import file_utils

    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setattr(config, "_KERAS_DIR", str(home))
    served, requested = {}, []

    def fake_urlretrieve(url, target, *args):
        requested.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in served:
            raise urllib.error.URLError("network is unreachable (test)")
        shutil.copyfile(served[name], target)

    monkeypatch.setattr(file_utils, "urlretrieve", fake_urlretrieve)
    return served, requested, home


def publish(monkeypatch, served, application, source, path, include_top):
    """Serve ``source``'s weights as the official file of ``application``, hash registered."""
    from keras.src.applications import resnet

    write_official_h5(source, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    key = application.lower()
    hashes = list(resnet.WEIGHTS_HASHES[key])
    hashes[0 if include_top else 1] = digest
    monkeypatch.setitem(resnet.WEIGHTS_HASHES, key, tuple(hashes))
    served[flavor_of(application).file_name(include_top)] = path


def test_imagenet_v1_features_offline(offline_keras, monkeypatch, tmp_path):
    served, requested, home = offline_keras
    source = official_source("ResNet50", include_top=False, pooling="max")
    publish(monkeypatch, served, "ResNet50", source, tmp_path / "r50.h5", include_top=False)
    ours = keras_resnet.ResNet(depth=50, weights="imagenet", include_top=False, pooling="max",
                               family="imagenet", input_shape=(64, 64, 3))
    assert requested == [W.WEIGHTS_URL + "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"]
    assert (home / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").exists()
    assert_same_function(source, ours, inputs(64))


def test_imagenet_v2_with_top_offline(offline_keras, monkeypatch, tmp_path):
    served, requested, home = offline_keras
    source = official_source("ResNet50V2", include_top=True, seed=3)
    publish(monkeypatch, served, "ResNet50V2", source, tmp_path / "r50v2.h5", include_top=True)
    # No family=: ImageNet weights imply the ImageNet family even at 64x64
    # (where depth 50 alone would resolve to the CIFAR 6n+2 net).
    ours = keras_resnet.ResNet(depth=50, preact=True, weights="imagenet",
                               input_shape=(64, 64, 3))
    assert requested == [W.WEIGHTS_URL + "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5"]
    assert ours.get_layer("stem").use_bias
    assert (home / "models" / "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5").exists()
    assert_same_function(source, ours, inputs(64))


def test_imagenet_offline_failure_is_clear(offline_keras):
    with pytest.raises(OSError, match=r"ImageNet weights of keras.applications' ResNet50: "
                                      r".*network is unreachable.*weights=<its path>"):
        keras_resnet.ResNet(depth=50, weights="imagenet", include_top=False)


def test_imagenet_hash_mismatch_is_refused(offline_keras, tmp_path):
    from keras.src.applications import resnet

    served, requested, _ = offline_keras
    tampered = tmp_path / "tampered.h5"
    tampered.write_bytes(b"not the published file")
    served["resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"] = tampered
    # The real published hash stays in place: the served file does not match it.
    with pytest.raises(OSError, match="hash does not match the provided value of "
                                      + resnet.WEIGHTS_HASHES["resnet50"][1]):
        keras_resnet.ResNet(depth=50, weights="imagenet", include_top=False)
    assert len(requested) == 1


@pytest.mark.parametrize("kwargs, argument", [
    (dict(depth=18), "weights"),
    (dict(depth=34), "weights"),
    (dict(depth=200), "weights"),
    (dict(depth=20), "weights"),
    (dict(depth=50, family="cifar"), "weights"),
    (dict(depth=50, classes=10), "classes"),
    (dict(depth=50, stride_at="3x3"), "stride_at"),
    (dict(depth=50, preact=True, downsample_at="first"), "downsample_at"),
    (dict(depth=50, preact=True, stem_bias=False), "stem_bias"),
    (dict(depth=101, width=2), "width"),
    (dict(depth=50, shortcut="C"), "shortcut"),
    (dict(depth=50, residual=False), "residual"),
    (dict(depth=152, ordering="bn_after_add"), "ordering"),
])
def test_imagenet_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"argument `{argument}`"):
        keras_resnet.ResNet(weights="imagenet", **kwargs)


def test_imagenet_layout_fills_in_the_v2_layout():
    assert architecture.imagenet_layout(101, True, {"seed": 1}) == {
        "seed": 1, "stride_at": "3x3", "downsample_at": "last", "stem_bias": True}
    assert architecture.imagenet_layout(50, False, {}) == {}  # our defaults are keras.applications' v1
    with pytest.raises(ValueError, match=r"argument `weights`.*family='cifar'"):
        architecture.imagenet_layout(50, True, {}, family="cifar")
    with pytest.raises(ValueError, match=r"argument `stride_at`.*received '3x3'"):
        architecture.imagenet_layout(50, False, {"stride_at": "3x3"})


# -- weights=<path> ----------------------------------------------------------------------

def test_official_file_path_loads_and_keras_applications_agrees(tmp_path):
    source = official_source("ResNet50V2", include_top=False, seed=5)
    path = write_official_h5(source, tmp_path / "resnet50v2_notop.h5")
    # The file is what keras.applications itself loads:
    reloaded = keras.applications.ResNet50V2(weights=str(path), include_top=False,
                                             input_shape=(64, 64, 3))
    x = inputs(64)
    np.testing.assert_array_equal(predict(reloaded, x), predict(source, x))
    ours = keras_resnet.ResNet(depth=50, preact=True, weights=str(path), include_top=False,
                               family="imagenet", input_shape=(64, 64, 3), **architecture.LAYOUTS[True])
    assert_same_function(source, ours, x)
    # A file holding a different network is refused, naming the argument.
    with pytest.raises(ValueError, match=r"argument `weights`.*strides"):
        keras_resnet.ResNet(depth=50, preact=True, weights=str(path), include_top=False,
                            stem_bias=True)
    with pytest.raises(ValueError, match=r"argument `weights`.*ordering='post'"):
        keras_resnet.ResNet(depth=50, weights=str(path), include_top=False)
    with pytest.raises(ValueError, match=r"argument `weights`.*no classifier"):
        keras_resnet.ResNet(depth=50, preact=True, weights=str(path), **architecture.LAYOUTS[True])


def test_own_weights_file_round_trip_and_mismatch(tmp_path):
    model = keras_resnet.ResNet(depth=20)
    rng = np.random.default_rng(7)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in model.get_weights()])
    path = tmp_path / "resnet20.weights.h5"
    model.save_weights(path)
    again = keras_resnet.ResNet(depth=20, weights=str(path))
    x = np.random.default_rng(2).normal(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(predict(again, x), predict(model, x))
    with pytest.raises(ValueError, match=r"argument `weights`.*does not fit the model 'resnet32'"):
        keras_resnet.ResNet(depth=32, weights=str(path))
    with pytest.raises(ValueError, match="argument `weights`"):
        keras_resnet.ResNet(depth=20, weights=str(tmp_path / "missing.weights.h5"))


def test_grayscale_from_official_file_equals_rgb_net_on_replicated_image(tmp_path):
    """A 1-channel stem adapted from three-channel weights: the grey image through it
    equals keras.applications' RGB net on that image copied into the three channels."""
    source = official_source("ResNet50", include_top=False, pooling="avg", seed=4)
    path = write_official_h5(source, tmp_path / "resnet50_notop.h5")
    gray = inputs(64)[..., :1]
    ours = keras_resnet.ResNet(depth=50, weights=str(path), include_top=False, pooling="avg",
                               family="imagenet", input_shape=(64, 64, 1))
    assert ours.get_layer("stem").conv.kernel.shape[2] == 1
    assert_same_function_on(source, np.repeat(gray, 3, axis=-1), ours, gray)


def assert_same_function_on(source, source_x, ours, ours_x):
    expected, got = predict(source, source_x), predict(ours, ours_x)
    assert got.shape == expected.shape
    assert relative_error(expected, got) <= RTOL
