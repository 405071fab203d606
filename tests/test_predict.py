"""recipes/export.py and recipes/predict.py: export a .keras, classify image files.

A ResNet-8 is trained on the digits for a few epochs and exported once per
module; the recipes then run as separate processes (the exporter exits before
the predictor loads the files) and the in-process library is checked against
the Keras model on the same images.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import requires_tensorflow

# One xdist worker runs the whole module, so the module fixtures (training, export) run once.
pytestmark = [requires_tensorflow, pytest.mark.xdist_group("predict")]

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")
Image = pytest.importorskip("PIL.Image")

from keras_resnet import ResNet, data  # noqa: E402
from keras_resnet import preprocessing as prep  # noqa: E402
from keras_resnet import serving as ex  # noqa: E402
from keras_resnet.cli import serve as cli  # noqa: E402
from keras_resnet.serving import predict as pr  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = [str(i) for i in range(10)]


def run_recipe(name, *args, timeout=400):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, os.path.join(ROOT, "recipes", name), *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A ResNet-8 trained on the digits, exported without quantized variants."""
    (x_train, y_train), (x_test, y_test) = data.load_digits()
    scaled = x_train.reshape(-1, 3) / 255.0
    spec = prep.make_spec((8, 8), scaled.mean(0), scaled.std(0))
    keras.utils.set_random_seed(0)
    model = ResNet(depth=8, input_shape=(8, 8, 3), name="digits_resnet8")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy())
    model.fit(prep.preprocess_numpy(x_train, spec), y_train, batch_size=64, epochs=5, verbose=0)
    root = tmp_path_factory.mktemp("predict")
    directory = ex.export_model(model, root / "trained", preprocessing=spec, class_names=CLASSES,
                                metadata={"dataset": "digits", "metrics": {"test_accuracy": 0.9},
                                          "builder": {"name": "ResNet", "kwargs": {"depth": 8}}})
    return {"model": model, "spec": spec, "dir": directory, "root": root,
            "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="module")
def images(trained):
    """Image files: six digits at 8x8, a 24x24 grayscale, an RGBA one, and broken files."""
    folder = trained["root"] / "images"
    folder.mkdir()
    good = []
    for i in range(6):
        path = folder / f"digit{i}_label{trained['y_test'][i]}.png"
        Image.fromarray(trained["x_test"][i]).save(path)
        good.append(str(path))
    big = np.kron(trained["x_test"][6][..., 0], np.ones((3, 3), np.uint8))
    Image.fromarray(big, mode="L").save(folder / "gray24.png")   # grayscale, 24x24
    rgba = np.concatenate([trained["x_test"][7], np.full((8, 8, 1), 255, np.uint8)], -1)
    Image.fromarray(rgba, mode="RGBA").save(folder / "rgba.png")
    (folder / "text.jpg").write_text("this is not a JPEG")
    png = (folder / "digit0_label" f"{trained['y_test'][0]}.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[:len(png) // 2])
    return {"good": good, "gray": str(folder / "gray24.png"), "rgba": str(folder / "rgba.png"),
            "bad": [str(folder / "text.jpg"), str(folder / "truncated.png"),
                    str(folder / "missing.png")], "folder": folder}


def keras_probs(trained, raw):
    x = prep.preprocess_numpy(np.asarray(raw)[None], trained["spec"])
    return trained["model"].predict(x, verbose=0)[0]


def test_recipes_export_then_predict_in_new_processes(trained, images):
    out = trained["root"] / "quantized"
    proc = run_recipe("export.py", os.path.join(trained["dir"], "model.keras"), "--out", out,
                      "--quantize", "dynamic", "--quantize", "int8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"recipes/predict.py {out}" in proc.stdout
    assert sorted(os.listdir(out)) == ["metadata.json", "model.keras", "model.tflite",
                                       "model_dynamic.tflite", "model_int8.tflite", "saved_model"]
    meta = json.load(open(out / "metadata.json"))
    assert meta["dataset"] == "digits" and meta["class_names"] == CLASSES
    assert meta["metrics"] == {"test_accuracy": 0.9}
    assert meta["architecture"]["builder"] == {"name": "ResNet", "kwargs": {"depth": 8}}
    assert meta["calibration_images"] == 200   # the digits' test images, from data.load
    assert meta["source"] == os.path.join(trained["dir"], "model.keras")

    files = images["good"] + [images["bad"][0]]
    proc = run_recipe("predict.py", out, *files, "--json")
    assert proc.returncode == 1, proc.stderr[-3000:]     # one file could not be read
    results = json.loads(proc.stdout)["results"]
    assert [r["file"] for r in results] == files
    for r, raw in zip(results[:-1], trained["x_test"]):
        probs = keras_probs(trained, raw)
        assert len(r["predictions"]) == 5
        assert [p["index"] for p in r["predictions"]] == list(np.argsort(-probs)[:5])
        for p in r["predictions"]:
            assert abs(p["probability"] - probs[p["index"]]) <= 1e-5
            assert p["class"] == CLASSES[p["index"]]
    assert results[-1] == {"file": files[-1], "error": "not a recognised image file"}
    assert f"error: {files[-1]}: not a recognised image file" in proc.stderr

    # The int8 file written by the other process: same top-1 as the Keras model.
    int8 = pr.Predictor.load(str(out / "model_int8.tflite"))
    agree = [int8.top_k(raw, 1)[0]["index"] == keras_probs(trained, raw).argmax()
             for raw in trained["x_test"][:100]]
    assert np.mean(agree) >= 0.98


@pytest.mark.parametrize("which", ["export_dir", "saved_model", "keras", "tflite"])
def test_every_model_kind_classifies_like_keras(trained, images, which):
    path = {"export_dir": trained["dir"], "saved_model": os.path.join(trained["dir"], "saved_model"),
            "keras": os.path.join(trained["dir"], "model.keras"),
            "tflite": os.path.join(trained["dir"], "model.tflite")}[which]
    predictor = pr.Predictor.load(path)
    assert predictor.kind == {"export_dir": "saved_model"}.get(which, which)
    assert predictor.class_names == CLASSES
    for raw in trained["x_test"][:6]:
        np.testing.assert_allclose(predictor.probabilities(raw), keras_probs(trained, raw),
                                   atol=1e-5, rtol=0)
    # A 24x24 grayscale file: converted to RGB and resized as the metadata says.
    gray = pr.read_image(images["gray"])
    assert gray.shape == (24, 24, 3) and (gray[..., 0] == gray[..., 2]).all()
    # Reference: TensorFlow's own bilinear resize (half-pixel centres, no antialiasing)
    # and the spec's normalisation by hand, not the predictor's preprocessing.
    import tensorflow as tf

    spec = trained["spec"]
    assert spec["resize"] == "stretch"
    pixels = tf.image.resize(gray[None].astype(np.float32), spec["input_size"],
                             method="bilinear", antialias=False).numpy()
    resized = (pixels * np.float32(spec["scale"]) - np.asarray(spec["mean"], np.float32)) \
        / np.asarray(spec["std"], np.float32)
    ref = trained["model"].predict(resized, verbose=0)[0]
    tol = 1e-2 if which == "tflite" else 1e-5   # TFLite gets the resized pixels as uint8
    np.testing.assert_allclose(predictor.probabilities(gray), ref, atol=tol, rtol=0)
    rgba = pr.read_image(images["rgba"])
    np.testing.assert_array_equal(rgba, trained["x_test"][7])


def test_predict_main_text_output_and_exit_codes(trained, images, capsys):
    assert cli.predict_main([trained["dir"], *images["good"][:2], images["gray"],
                             images["rgba"]]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{images['good'][0]}:" and len(out) == 4 * 6
    probs = keras_probs(trained, trained["x_test"][0])
    top = int(probs.argmax())
    assert out[1].split()[:2] == ["1.", CLASSES[top]]
    assert abs(float(out[1].split()[-1]) - probs[top]) <= 1e-4

    # Every bad file gets its own message; the good one is still classified.
    assert cli.predict_main([trained["dir"], *images["bad"], images["good"][0], "--top", "3"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == f"{images['bad'][0]}: error: not a recognised image file"
    assert lines[1].startswith(f"{images['bad'][1]}: error: cannot decode image")
    assert lines[2] == f"{images['bad'][2]}: error: no such file"
    assert lines[3] == f"{images['good'][0]}:" and len(lines) == 3 + 1 + 3
    assert captured.err.count("error: ") == 3

    for argv in ([str(trained["root"] / "nope"), images["good"][0]],
                 [images["good"][0], images["good"][0]],
                 [trained["dir"], images["good"][0], "--top", "0"]):
        assert cli.predict_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err


def test_model_without_metadata_is_refused(trained, tmp_path):
    shutil.copy(os.path.join(trained["dir"], "model.keras"), tmp_path / "model.keras")
    with pytest.raises(ValueError, match="`path`.*no metadata.json"):
        pr.Predictor.load(str(tmp_path / "model.keras"))
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(ValueError, match="`path`.*is not a .keras file"):
        pr.Predictor.load(str(tmp_path / "model.txt"))
    with pytest.raises(ValueError, match="`path`.*does not exist"):
        pr.Predictor.load(str(tmp_path / "nope.tflite"))


def test_export_recipe_errors_write_nothing(trained, tmp_path, capsys):
    model = os.path.join(trained["dir"], "model.keras")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(model, bare / "model.keras")
    folder = tmp_path / "folder_model"
    folder.mkdir()
    shutil.copy(model, folder / "model.keras")
    meta = json.load(open(os.path.join(trained["dir"], "metadata.json")))
    json.dump(dict(meta, dataset="folder"), open(folder / "metadata.json", "w"))
    cases = [
        ([str(tmp_path / "missing.keras"), "--out", str(tmp_path / "o")], "`model`"),
        ([str(bare / "model.keras"), "--out", str(tmp_path / "o")], "no metadata.json"),
        ([model, "--out", trained["dir"]], "`out`.*already exists"),
        ([str(folder / "model.keras"), "--out", str(tmp_path / "o"), "--quantize", "int8"],
         "`calibration_dir`"),
        ([model, "--out", str(tmp_path / "o"), "--quantize", "int8", "--calibration-dir",
          str(tmp_path / "nope")], "`calibration_dir`.*not a directory"),
    ]
    for argv, message in cases:
        assert cli.export_main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
        assert re.search(message, err), (message, err)
    with pytest.raises(SystemExit) as info:
        cli.export_main([model, "--out", str(tmp_path / "o"), "--quantize", "int4"])
    assert info.value.code == 2
    assert sorted(os.listdir(tmp_path)) == ["bare", "folder_model"]


def test_export_recipe_takes_what_predict_takes_and_writes_onnx(trained, images, capsys):
    """export.py on an export directory (not only its model.keras); predict.py runs model.onnx."""
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    from keras_resnet.serving.directory import source_model

    keras_file = os.path.join(trained["dir"], "model.keras")
    for path in (trained["dir"], os.path.join(trained["dir"], "saved_model"),
                 os.path.join(trained["dir"], "model.tflite"), keras_file):
        assert pr.Predictor.load(path).kind in pr.KINDS   # predict.py accepts it...
        assert source_model(path) == keras_file           # ...and so does export.py
    out = trained["root"] / "onnx_export"
    assert cli.export_main([str(trained["dir"]), "--out", str(out), "--formats", "onnx"]) == 0
    assert sorted(os.listdir(out)) == ["metadata.json", "model.keras", "model.onnx"]
    meta = json.load(open(out / "metadata.json"))
    assert meta["source"] == keras_file and meta["class_names"] == CLASSES
    capsys.readouterr()
    for path in (out, out / "model.onnx"):
        assert cli.predict_main([str(path), *images["good"], "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["kind"] == "onnx" and printed["model"] == str(out / "model.onnx")
        for r, raw in zip(printed["results"], trained["x_test"]):
            probs = keras_probs(trained, raw)
            assert [p["index"] for p in r["predictions"]] == list(np.argsort(-probs)[:5])
            for p in r["predictions"]:
                assert abs(p["probability"] - probs[p["index"]]) <= 1e-5
    assert cli.export_main([str(trained["dir"]), "--out", str(out / "x"), "--formats",
                            "onnx,caffe"]) == 2
    assert "`formats` (--formats): received 'onnx,caffe'" in capsys.readouterr().err


def test_int8_export_of_a_folder_model_calibrates_on_its_run_folder(trained, images, tmp_path):
    """No --calibration-dir needed: the run directory's config.json names the image folder."""
    data_dir = tmp_path / "data"
    for split, files in (("val", images["good"][:4]), ("train", images["good"][4:])):
        (data_dir / split / "a").mkdir(parents=True)
        for i, path in enumerate(files):
            shutil.copy(path, data_dir / split / "a" / f"{i}.png")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    json.dump({"flags": {"data_dir": str(data_dir)}}, open(run_dir / "config.json", "w"))
    model_dir = tmp_path / "folder_model"
    model_dir.mkdir()
    shutil.copy(os.path.join(trained["dir"], "model.keras"), model_dir / "model.keras")
    meta = json.load(open(os.path.join(trained["dir"], "metadata.json")))
    json.dump(dict(meta, dataset="folder", run_dir=str(run_dir)),
              open(model_dir / "metadata.json", "w"))
    out = ex.export_file(str(model_dir), str(tmp_path / "out"), quantize=("int8",),
                         formats=("keras", "tflite"))
    written = json.load(open(os.path.join(out, "metadata.json")))
    assert written["calibration_images"] == 4    # the run folder's val/ images
    assert sorted(os.listdir(out)) == ["metadata.json", "model.keras", "model.tflite",
                                       "model_int8.tflite"]
    int8 = pr.Predictor.load(os.path.join(out, "model_int8.tflite"))
    agree = [int8.top_k(raw, 1)[0]["index"] == keras_probs(trained, raw).argmax()
             for raw in trained["x_test"][:50]]
    assert np.mean(agree) >= 0.9


def test_calibration_reads_the_folder_recorded_in_the_metadata(trained, images, tmp_path):
    from keras_resnet.serving.calibration import calibration_for

    data_dir = tmp_path / "data"
    shutil.copytree(images["folder"], data_dir / "train" / "a")
    meta = {"preprocessing": trained["spec"], "dataset": "folder",
            "data": {"name": "folder", "data_dir": str(data_dir)}}
    np.testing.assert_array_equal(calibration_for(meta),   # no val/: train/ (8 readable files)
                                  ex.calibration_from_dir(str(images["folder"]), trained["spec"]))
    with pytest.raises(ValueError, match="`calibration_dir` is needed.*image folder"):
        calibration_for(dict(meta, data={"data_dir": str(tmp_path / "moved")}))


def test_calibration_from_dir(trained, images, tmp_path):
    calib = ex.calibration_from_dir(str(images["folder"]), trained["spec"])
    # 8 readable files (6 digits, gray, rgba), broken ones skipped, all at 8x8 uint8.
    assert calib.shape == (8, 8, 8, 3) and calib.dtype == np.uint8
    np.testing.assert_array_equal(calib[0], trained["x_test"][0])
    with pytest.raises(ValueError, match="`calibration_dir`.*no readable image"):
        shutil.copy(images["bad"][0], tmp_path / "text.jpg")
        ex.calibration_from_dir(str(tmp_path), trained["spec"])
