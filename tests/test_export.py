"""Exports compute what the Keras model computes: SavedModel, TFLite (+ quantization), ONNX,
export directories.

A ResNet-8 is trained on scikit-learn's digits once per module (about 15 s),
exported once with every quantized variant, and every test compares the files
on disk, run by ``tf.saved_model.load`` and the LiteRT interpreter, against the
Keras model on the same images.
"""

import inspect
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import requires_tensorflow

# One xdist worker runs the whole module, so the module fixtures (training, export) run once.
pytestmark = [requires_tensorflow, pytest.mark.xdist_group("export")]

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from keras_resnet import ResNet, data  # noqa: E402
from keras_resnet import preprocessing as prep  # noqa: E402
from keras_resnet import serving as ex  # noqa: E402
from keras_resnet.serving import directory, metadata  # noqa: E402
from keras_resnet.serving import preprocessing as serving_prep  # noqa: E402

CLASSES = [str(i) for i in range(10)]


def tflite_probs(path, images):
    """Run a .tflite file image by image with LiteRT; dequantized float32 probabilities."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    probs = []
    for image in images:
        interp.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
        interp.invoke()
        probs.append(interp.get_tensor(out["index"])[0])
    probs = np.asarray(probs)
    if out["dtype"] != np.float32:
        scale, zero = out["quantization"]
        probs = (probs.astype(np.float32) - zero) * scale
    return probs


def serve_saved_model(path, images):
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    return fn(images=tf.constant(images))["probabilities"].numpy()


@pytest.fixture(scope="module")
def digits():
    (x_train, y_train), (x_test, y_test) = data.load_digits()
    scaled = x_train.reshape(-1, 3) / 255.0
    spec = prep.make_spec((8, 8), scaled.mean(0), scaled.std(0))
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "spec": spec}


@pytest.fixture(scope="module")
def trained(digits):
    """A ResNet-8 trained on the digits (about 99% test accuracy) and its test probabilities."""
    keras.utils.set_random_seed(0)
    model = ResNet(depth=8, input_shape=(8, 8, 3), name="digits_resnet8")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy()])
    spec = digits["spec"]
    model.fit(prep.preprocess_numpy(digits["x_train"], spec), digits["y_train"], batch_size=64,
              epochs=8, verbose=0)
    probs = model.predict(prep.preprocess_numpy(digits["x_test"], spec), verbose=0)
    accuracy = float((probs.argmax(1) == digits["y_test"]).mean())
    assert accuracy > 0.95, accuracy
    return model, probs, accuracy


@pytest.fixture(scope="module")
def exported(trained, digits, tmp_path_factory):
    model, _, accuracy = trained
    directory = tmp_path_factory.mktemp("exports") / "digits"
    path = ex.export_model(
        model, directory, preprocessing=digits["spec"], class_names=CLASSES,
        metadata={"dataset": "digits", "builder": {"name": "ResNet", "kwargs": {"depth": 8}},
                  "metrics": {"test_accuracy": accuracy}, "run_dir": "runs/x"},
        quantize=("float16", "dynamic", "int8"),
        representative_images=digits["x_train"][:200])
    return path


def test_export_dir_layout_and_metadata(exported, trained):
    assert sorted(os.listdir(exported)) == [
        "metadata.json", "model.keras", "model.tflite", "model_dynamic.tflite",
        "model_float16.tflite", "model_int8.tflite", "saved_model"]
    # Nothing left behind next to the target.
    assert os.listdir(os.path.dirname(exported)) == ["digits"]
    meta = json.load(open(os.path.join(exported, "metadata.json")))
    assert meta["dataset"] == "digits" and meta["class_names"] == CLASSES
    assert meta["input_size"] == [8, 8] and meta["preprocessing"]["input_size"] == [8, 8]
    assert meta["architecture"]["builder"] == {"name": "ResNet", "kwargs": {"depth": 8}}
    assert meta["architecture"]["parameters"] == trained[0].count_params()
    assert meta["architecture"]["keras_config"]["name"] == "digits_resnet8"
    assert meta["metrics"] == {"test_accuracy": trained[2]} and meta["run_dir"] == "runs/x"
    assert meta["versions"]["tensorflow"] == tf.__version__
    assert meta["versions"]["keras"] == keras.__version__
    for name, info in meta["files"].items():
        assert info["bytes"] == metadata.size(os.path.join(exported, name)) > 0
    assert "metadata.json" not in meta["files"]
    int8 = meta["serving"]["model_int8.tflite"]
    assert int8["input"]["dtype"] == "uint8" and int8["input"]["shape"] == [1, 8, 8, 3]
    assert int8["output"]["dtype"] == "uint8" and int8["output"]["quantization"]["scale"] > 0
    assert meta["serving"]["model.tflite"]["output"]["dtype"] == "float32"
    # Quantized files are smaller than the float32 one.
    sizes = {n: meta["files"][n]["bytes"] for n in meta["files"] if n.endswith(".tflite")}
    assert sizes["model_float16.tflite"] < 0.6 * sizes["model.tflite"]
    assert sizes["model_dynamic.tflite"] < 0.35 * sizes["model.tflite"]
    assert sizes["model_int8.tflite"] < 0.35 * sizes["model.tflite"]


def test_saved_model_parity_any_batch(exported, trained, digits):
    _, probs, _ = trained
    x = digits["x_test"]
    fn = tf.saved_model.load(os.path.join(exported, "saved_model")).signatures["serving_default"]
    for batch in (x[:1], x[:7], x):
        out = fn(images=tf.constant(batch))["probabilities"].numpy()
        assert out.shape == (len(batch), 10)
        np.testing.assert_allclose(out, probs[:len(batch)], atol=1e-5, rtol=0)
    assert np.abs(fn(images=tf.constant(x))["probabilities"].numpy() - probs).max() <= 1e-5


def test_saved_model_loads_as_tfsmlayer(exported, trained, digits):
    layer = keras.layers.TFSMLayer(os.path.join(exported, "saved_model"),
                                   call_endpoint="serving_default")
    out = layer(digits["x_test"][:50])["probabilities"]
    assert np.abs(keras.ops.convert_to_numpy(out) - trained[1][:50]).max() <= 1e-5


def test_tflite_float_parity(exported, trained, digits):
    out = tflite_probs(os.path.join(exported, "model.tflite"), digits["x_test"])
    print(f"float32: max |dp| {np.abs(out - trained[1]).max():.2e}, keras accuracy {trained[2]:.4f}")
    assert np.abs(out - trained[1]).max() <= 1e-5


def test_tflite_float16_parity(exported, trained, digits):
    out = tflite_probs(os.path.join(exported, "model_float16.tflite"), digits["x_test"])
    print(f"float16: max |dp| {np.abs(out - trained[1]).max():.2e}")
    assert np.abs(out - trained[1]).max() <= 1e-2


def test_onnx_export_parity_with_preprocessing_inside(trained, digits, tmp_path):
    """model.onnx (formats=[..., "onnx"]) run by onnxruntime on raw uint8 pixels = Keras, 1e-5."""
    pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    model, probs, _ = trained
    path = ex.export_model(model, tmp_path / "onnx", preprocessing=digits["spec"],
                           class_names=CLASSES, formats=("keras", "onnx"))
    assert sorted(os.listdir(path)) == ["metadata.json", "model.keras", "model.onnx"]
    meta = json.load(open(os.path.join(path, "metadata.json")))
    assert meta["serving"]["model.onnx"]["input"] == {"key": "images", "dtype": "uint8",
                                                      "shape": [None, 8, 8, 3]}
    assert meta["serving"]["model.onnx"]["output"]["shape"] == [None, 10]
    assert meta["files"]["model.onnx"]["bytes"] > 100_000
    session = ort.InferenceSession(os.path.join(path, "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    for batch in (digits["x_test"][:1], digits["x_test"]):   # any batch size
        out = session.run(None, {"images": batch})[0]
        assert out.dtype == np.float32 and out.shape == (len(batch), 10)
        np.testing.assert_allclose(out, probs[:len(batch)], atol=1e-5, rtol=0)


def test_unknown_format_and_missing_converter_are_refused(trained, digits, tmp_path, monkeypatch):
    kwargs = dict(preprocessing=digits["spec"], class_names=CLASSES)
    with pytest.raises(ValueError, match="`formats`.*'torchscript'"):
        ex.export_model(trained[0], tmp_path / "e", formats=("keras", "torchscript"), **kwargs)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    with pytest.raises(ValueError, match=r"'onnx' needs tf2onnx.*keras-resnet-zoo\[onnx\]"):
        ex.export_model(trained[0], tmp_path / "e", formats=("keras", "onnx"), **kwargs)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("variant", ["dynamic", "int8"])
def test_tflite_quantized_top1_agreement(exported, trained, digits, variant):
    out = tflite_probs(os.path.join(exported, f"model_{variant}.tflite"), digits["x_test"])
    agreement = (out.argmax(1) == trained[1].argmax(1)).mean()
    print(f"{variant}: top-1 agreement {agreement:.4f}, max |dp| {np.abs(out - trained[1]).max():.2e}")
    assert len(out) == 360 and agreement >= 0.98, agreement
    assert (out.argmax(1) == digits["y_test"]).mean() >= trained[2] - 0.02


def test_metadata_alone_preprocesses_correctly(exported, digits):
    """Only metadata.json (no keras_resnet code) -> numpy preprocessing -> same as the server."""
    meta = json.load(open(os.path.join(exported, "metadata.json")))
    spec = meta["preprocessing"]
    assert spec["resize"] == "stretch"

    def resize_bilinear(image, size):
        # Bilinear, half-pixel centres, no antialiasing (metadata "preprocessing_howto").
        out = image.astype(np.float64)
        for axis, n_out in ((0, size[0]), (1, size[1])):
            n_in = out.shape[axis]
            c = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
            lo = np.floor(c)
            frac = (c - lo).reshape([-1 if a == axis else 1 for a in range(3)])
            lo_i = np.clip(lo, 0, n_in - 1).astype(int)
            hi_i = np.clip(lo + 1, 0, n_in - 1).astype(int)
            out = np.take(out, lo_i, axis) * (1 - frac) + np.take(out, hi_i, axis) * frac
        return out

    def preprocess(raw):
        x = resize_bilinear(raw, meta["input_size"]) * spec["scale"]
        return ((x - np.asarray(spec["mean"])) / np.asarray(spec["std"])).astype(np.float32)

    model = keras.saving.load_model(os.path.join(exported, "model.keras"))
    rng = np.random.default_rng(0)
    raw_8 = digits["x_test"][:4]
    raw_big = np.stack([np.kron(im, np.ones((2, 3, 1), np.uint8))[:13, :19] for im in raw_8])
    raw_big = np.clip(raw_big.astype(int) + rng.integers(-20, 20, raw_big.shape), 0, 255)
    raw_big = raw_big.astype(np.uint8)   # 13x19 images: the resize really happens
    for raw in (raw_8, raw_big):
        served = serve_saved_model(os.path.join(exported, "saved_model"), raw)
        x = np.stack([preprocess(im) for im in raw])
        np.testing.assert_allclose(model.predict(x, verbose=0), served, atol=1e-5, rtol=0)
    # The TFLite model takes the pixels at input_size and normalises inside.
    tfl = tflite_probs(os.path.join(exported, "model.tflite"), raw_8)
    np.testing.assert_allclose(tfl, serve_saved_model(os.path.join(exported, "saved_model"),
                                                      raw_8), atol=1e-5, rtol=0)


def test_files_reload_in_a_new_process(exported, trained, digits, tmp_path):
    """A fresh interpreter (no state shared with the exporter) loads every file."""
    np.save(tmp_path / "x.npy", digits["x_test"][:32])
    script = textwrap.dedent(inspect.getsource(tflite_probs)) + textwrap.dedent(f"""
        import json, os, sys
        import numpy as np
        import tensorflow as tf, keras
        import keras_resnet  # registers the custom layers model.keras needs
        d, x = {str(exported)!r}, np.load({str(tmp_path / "x.npy")!r})
        meta = json.load(open(os.path.join(d, "metadata.json")))
        spec = meta["preprocessing"]
        xf = (x * spec["scale"] - np.array(spec["mean"])) / np.array(spec["std"])
        out = {{"keras": keras.saving.load_model(os.path.join(d, "model.keras")).predict(
                    xf.astype("float32"), verbose=0).tolist(),
               "saved_model": tf.saved_model.load(os.path.join(d, "saved_model")).signatures[
                    "serving_default"](images=tf.constant(x))["probabilities"].numpy().tolist()}}
        for name in ("model.tflite", "model_float16.tflite"):
            out[name] = tflite_probs(os.path.join(d, name), x).tolist()
        json.dump(out, open({str(tmp_path / "out.json")!r}, "w"))
    """)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.load(open(tmp_path / "out.json"))
    ref = trained[1][:32]
    for name, tol in (("keras", 1e-5), ("saved_model", 1e-5), ("model.tflite", 1e-5),
                      ("model_float16.tflite", 1e-2)):
        assert np.abs(np.asarray(out[name]) - ref).max() <= tol, name


def test_augmentation_layers_are_inert_and_logits_become_probabilities(tmp_path):
    """A model with RandomFlip and a logits head: the exports are deterministic probabilities."""
    inner = ResNet(depth=8, input_shape=(8, 8, 3), classes=4, classifier_activation=None)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, inner(keras.layers.RandomFlip("horizontal_and_vertical")(inputs)),
                        name="flip_logits")
    x = np.random.default_rng(1).normal(size=(6, 8, 8, 3)).astype(np.float32)
    ref = keras.ops.convert_to_numpy(keras.ops.softmax(inner(x, training=False)))
    flipped = keras.ops.convert_to_numpy(keras.ops.softmax(inner(x[:, ::-1, ::-1], training=False)))
    assert np.abs(flipped - ref).max() > 1e-3   # a flip would show
    sm = ex.export_saved_model(model, str(tmp_path / "sm"))
    fn = tf.saved_model.load(sm).signatures["serving_default"]
    for _ in range(2):
        np.testing.assert_allclose(fn(images=tf.constant(x))["probabilities"].numpy(), ref,
                                   atol=1e-5, rtol=0)
    path = ex.export_tflite(model, str(tmp_path / "m.tflite"))
    np.testing.assert_allclose(tflite_probs(path, x), ref, atol=1e-5, rtol=0)


def test_unconvertible_model_raises_value_error_naming_it(tmp_path):
    inputs = keras.Input((4, 4, 3))
    y = keras.layers.Lambda(lambda t: tf.math.igamma(tf.abs(t) + 1.0, tf.abs(t) + 1.0))(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(y), name="igamma_net")
    with pytest.raises(ValueError, match=r"igamma_net.*TFLite.*Igamma"):
        ex.export_tflite(model, str(tmp_path / "m.tflite"))
    assert not os.path.exists(tmp_path / "m.tflite")


def test_bad_arguments(tmp_path, exported, trained, digits):
    model = trained[0]
    with pytest.raises(ValueError, match="`quantize`.*'int4'"):
        ex.export_tflite(model, str(tmp_path / "m.tflite"), quantize="int4")
    with pytest.raises(ValueError, match="`representative_images`"):
        ex.export_tflite(model, str(tmp_path / "m.tflite"), quantize="int8")
    with pytest.raises(ValueError, match="`path`.*does not exist"):
        ex.export_tflite(model, str(tmp_path / "nope" / "m.tflite"))
    with pytest.raises(ValueError, match="`path`.*not empty"):
        ex.export_saved_model(model, exported)
    with pytest.raises(TypeError, match="`model`"):
        ex.export_saved_model("model.keras", str(tmp_path / "sm"))
    kwargs = dict(preprocessing=digits["spec"], class_names=CLASSES)
    with pytest.raises(ValueError, match="`directory`.*already exists.*overwrite"):
        ex.export_model(model, exported, **kwargs)
    with pytest.raises(ValueError, match="`quantize`.*'int4'"):
        ex.export_model(model, tmp_path / "e", quantize=("int4",), **kwargs)
    with pytest.raises(ValueError, match="`representative_images`"):
        ex.export_model(model, tmp_path / "e", quantize=("int8",), **kwargs)
    with pytest.raises(ValueError, match="`class_names`.*10 classes.*3 names"):
        ex.export_model(model, tmp_path / "e", preprocessing=digits["spec"],
                        class_names=["a", "b", "c"])
    bad_size = dict(digits["spec"], input_size=[32, 32])
    with pytest.raises(ValueError, match="`preprocessing`.*input_size"):
        ex.export_model(model, tmp_path / "e", preprocessing=bad_size, class_names=CLASSES)
    assert os.listdir(tmp_path) == []   # nothing written by any of them


def test_export_model_is_atomic(tmp_path, trained, digits, monkeypatch):
    """A failure half-way leaves neither a target nor a temporary directory; overwrite swaps."""
    model = trained[0]
    kwargs = dict(preprocessing=digits["spec"], class_names=CLASSES)
    target = tmp_path / "export"
    calls = []

    def fake_write(model, tmp, *args):
        calls.append(tmp)
        open(os.path.join(tmp, "model.keras"), "w").write("half")
        return {}

    def failing_write(model, tmp, *args):
        fake_write(model, tmp)
        raise RuntimeError("disk full")

    monkeypatch.setattr(directory, "write_formats", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        ex.export_model(model, target, **kwargs)
    assert os.listdir(tmp_path) == []
    assert os.path.dirname(calls[0]) == str(tmp_path)   # the temp dir was next to the target

    monkeypatch.setattr(directory, "write_formats", fake_write)
    assert ex.export_model(model, target, **kwargs) == str(target)
    assert open(target / "model.keras").read() == "half"
    assert json.load(open(target / "metadata.json"))["files"]["model.keras"]["bytes"] == 4
    # A failing overwrite keeps the old export intact.
    monkeypatch.setattr(directory, "write_formats", failing_write)
    with pytest.raises(RuntimeError):
        ex.export_model(model, target, overwrite=True, **kwargs)
    assert sorted(os.listdir(tmp_path)) == ["export"]
    assert sorted(os.listdir(target)) == ["metadata.json", "model.keras"]
    # A successful overwrite replaces it (the real writer, for a small model).
    monkeypatch.undo()
    small = ResNet(depth=8, input_shape=(8, 8, 3), classes=10, name="small")
    ex.export_model(small, target, overwrite=True, **kwargs)
    assert sorted(os.listdir(tmp_path)) == ["export"]
    meta = json.load(open(target / "metadata.json"))
    assert meta["model_name"] == "small" and meta["quantize"] == []
    assert sorted(os.listdir(target)) == ["metadata.json", "model.keras", "model.tflite",
                                          "saved_model"]
    assert oct(os.stat(target).st_mode & 0o777) != oct(0o700)


@pytest.mark.slow
def test_resnet50_export_parity(tmp_path):
    """ResNet-50 at 224x224 (random weights): SavedModel and float32 TFLite match Keras."""
    model = ResNet(depth=50)
    spec = prep.make_spec((224, 224), prep.IMAGENET_MEAN, prep.IMAGENET_STD,
                          resize="center_crop")
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    directory = ex.export_model(model, tmp_path / "r50", preprocessing=spec,
                                class_names=[f"c{i}" for i in range(1000)],
                                quantize=("dynamic",))
    # The SavedModel takes any size: a 300x400 image is resized 256-short-side and cropped.
    big = rng.integers(0, 256, (1, 300, 400, 3), dtype=np.uint8)
    ref_big = model.predict(serving_prep.preprocess(big, spec), verbose=0)
    served = serve_saved_model(os.path.join(directory, "saved_model"), big)
    assert np.abs(served - ref_big).max() <= 1e-5
    ref = model.predict(serving_prep.normalize(raw, spec), verbose=0)
    assert np.abs(tflite_probs(os.path.join(directory, "model.tflite"), raw) - ref).max() <= 1e-5
    dyn = tflite_probs(os.path.join(directory, "model_dynamic.tflite"), raw)
    assert dyn.shape == (2, 1000) and np.abs(dyn.sum(1) - 1).max() < 1e-3
