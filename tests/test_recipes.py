"""recipes/cifar10.py and recipes/imagenet.py: flags, bad input, run directories, the demo."""

import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import requires_tensorflow

pytestmark = requires_tensorflow

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from keras_resnet.cli import train as train_cli  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISSUE_FLAGS = ("--depth", "--preact", "--width", "--shortcut", "--plain", "--drop-path-rate",
               "--epochs", "--steps", "--batch-size", "--lr", "--weight-decay", "--gpus",
               "--precision", "--xla", "--seed", "--run-dir", "--export", "--dataset",
               "--data-dir", "--backend", "--sync-bn", "--steps-per-execution", "--log-every",
               "--deterministic", "--nondeterministic", "--remat", "--ordering", "--skip",
               "--gate-bias", "--block")


def _env(**extra):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


@pytest.mark.parametrize("recipe", ["cifar10", "imagenet"])
def test_help_explains_every_flag_with_its_default(recipe):
    parser = train_cli.build_parser(recipe)
    text = parser.format_help()
    for flag in ISSUE_FLAGS:
        assert flag in text, flag
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in formatter._get_help_string(action), action.dest
    ref = "128" if recipe == "cifar10" else "256"
    assert f"learning rate at batch {ref}" in text
    assert "weight_decay/2 x sum(w^2)" in text


@pytest.mark.parametrize("recipe", ["cifar10", "imagenet"])
def test_help_and_bad_flags_answer_without_importing_keras(recipe):
    """--help and flag errors are answered before keras/TensorFlow/JAX are imported."""
    script = (f"import sys; sys.argv = ['recipes/{recipe}.py'] + sys.argv[1:]\n"
              "from keras_resnet.cli.train import main\n"
              "try:\n    code = main('" + recipe + "')\nexcept SystemExit as e:\n"
              "    code = e.code\n"
              "heavy = sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules)\n"
              "print('HEAVY', heavy, 'CODE', code)")
    for args, code in ((["--help"], 0), (["--dataset", "nope"], 2), (["--lr", "-1"], 2)):
        proc = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=_env(),
                              capture_output=True, text=True, timeout=60)
        assert proc.stdout.strip().splitlines()[-1] == f"HEAVY [] CODE {code}", proc.stderr


def _main(recipe, args, capsys):
    code = train_cli.main(recipe, args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("recipe, args, message", [
    ("cifar10", ["--dataset", "mnist"], "--dataset 'mnist' is unknown to recipes/cifar10.py"),
    ("imagenet", ["--dataset", "digits"], "--dataset 'digits' is unknown to recipes/imagenet.py"),
    ("imagenet", ["--data-dir", "{tmp}/missing"], "missing"),
    ("imagenet", ["--data-dir", "{tmp}/empty"], "empty"),
    ("cifar10", ["--dataset", "digits", "--gpus", "64"], "--gpus 64 asks for more GPUs than"),
    ("cifar10", ["--dataset", "digits", "--epochs", "2", "--steps", "10"],
     "argument --steps: not allowed with argument --epochs"),
    ("cifar10", ["--dataset", "digits", "--batch-size", "4096"], "larger than the 1437"),
    ("cifar10", ["--dataset", "digits", "--precision", "fp8"], "--precision: invalid choice"),
    ("cifar10", ["--dataset", "digits", "--export", "{tmp}/e", "--no-export"], "conflict"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(recipe, args, message, tmp_path, capsys):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    run_dir = tmp_path / "run"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args] + ["--run-dir", str(run_dir)]
    code, out, err = _main(recipe, args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"recipes/{recipe}.py: error: ")
    assert message.lower() in lines[0].lower()
    assert not run_dir.exists()
    assert not (tmp_path / "e").exists()


def test_recipe_script_exit_code_2_for_bad_input(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "recipes", "cifar10.py"),
                           "--dataset", "nope", "--run-dir", str(run_dir)], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("recipes/")]
    assert errors == ["recipes/cifar10.py: error: --dataset 'nope' is unknown to "
                      "recipes/cifar10.py; expected one of cifar10, cifar100, digits, synthetic "
                      "(or --data-dir DIR)."]
    assert not run_dir.exists() and proc.stdout == ""


def test_one_epoch_of_the_digits_recipe_writes_the_run_dir_and_exports(tmp_path, capsys,
                                                                       monkeypatch):
    """The `make demo` code path, one epoch of a small net, exported to saved_models/."""
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "runs" / "demo1"
    args = ["--dataset", "digits", "--depth", "8", "--epochs", "1", "--nondeterministic",
            "--run-dir", str(run_dir)]
    code, out, err = _main("cifar10", args, capsys)
    assert code == 0, err
    export_dir = os.path.join("saved_models", "demo1")
    assert f"Wrote {os.path.abspath(export_dir)} (" in out and "model.keras" in out
    assert f"Wrote {run_dir} (" in out and "checkpoints/" in out
    assert "keras.saving.load_model" in out
    assert f"Run directory: {run_dir}" in out and "run ETA" in out
    config = json.loads((run_dir / "config.json").read_text())
    assert config["flags"]["depth"] == 8 and config["plan"]["epochs"] == 1
    assert config["plan"]["global_batch"] == 64 and config["plan"]["steps_per_epoch"] == 22
    with open(run_dir / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1"] and rows[0]["steps"] == "22"
    assert os.listdir(run_dir / "checkpoints") == ["epoch-0001.npz"]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir / "tensorboard"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_accuracy", "epochs_completed", "replicas", "strategy",
                "train_images_per_sec", "skipped_files", "backend"):
        assert key in metrics, key
    assert metrics["epochs_completed"] == 1 and metrics["replicas"] == 1
    assert metrics["skipped_files"] == 0 and metrics["train_images_per_sec"] > 0
    assert metrics["test_accuracy"] == pytest.approx(float(rows[0]["test_accuracy"]), abs=1e-6)
    # The exported Keras model reproduces the run's test accuracy.
    from keras_resnet import data as data_lib

    data = data_lib.load("digits")
    model = keras.saving.load_model(os.path.join(export_dir, "model.keras"))
    correct = total = 0
    for images, labels in data.test_dataset(128):
        pred = np.argmax(model.predict(images, verbose=0), -1)
        correct += int(np.sum(pred == labels.numpy()))
        total += len(pred)
    assert correct / total == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    meta = json.loads(open(os.path.join(export_dir, "metadata.json")).read())
    assert meta["architecture"]["builder"]["kwargs"]["depth"] == 8 and meta["dataset"] == "digits"
    # The printed predict command works straight away on the saved example digits.
    examples = sorted((run_dir / "examples").glob("*.png"))
    assert len(examples) == 5
    printed = out.split("Classify images with it", 1)[1].splitlines()[1].strip()
    assert printed.startswith(sys.executable + " ") and "predict.py" in printed
    # Pasted into a plain shell elsewhere, without the virtual environment on PATH.
    shell_env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
                 "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(printed + " --json", shell=True, cwd="/", env=shell_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert sorted(os.path.basename(r["file"]) for r in result["results"]) == \
        [p.name for p in examples]
    images, labels = data.raw_test_images(5, across_classes=True)   # as the run saved them
    for r, image, path in zip(result["results"], images, examples):
        probs = [p["probability"] for p in r["predictions"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True)
        stored = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(path).convert("RGB"))
        np.testing.assert_array_equal(stored, image)  # the PNGs are the raw test images
    # Same flags again: the finished run is restored, not retrained.
    code, out, err = _main("cifar10", args, capsys)
    assert code == 0, err
    assert "Resuming" in out and json.loads((run_dir / "metrics.json").read_text())[
        "test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    # Other flags in the same run directory: refused, nothing changed.
    before = (run_dir / "config.json").read_text()
    code, out, err = _main("cifar10", [*args[:-2], "--lr", "0.2", "--run-dir", str(run_dir)],
                           capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f"recipes/cifar10.py: error: --run-dir {run_dir} holds a run with other settings "
        "(--lr 0.1 -> 0.2); rerun with the same flags to resume it (--gpus, --xla and the "
        "output flags may change), or choose another --run-dir."]
    assert (run_dir / "config.json").read_text() == before


@pytest.mark.slow
def test_make_demo_reaches_97_percent_on_the_digits(tmp_path):
    """`make demo`: ResNet-20 on the digits, default flags, >= 97% test accuracy."""
    start = time.time()
    proc = subprocess.run([sys.executable, os.path.join(REPO, "recipes", "cifar10.py"),
                           "--dataset", "digits", "--quiet"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=900)
    seconds = time.time() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = os.listdir(tmp_path / "runs")
    assert len(runs) == 1 and runs[0].startswith("digits_resnet20_")
    metrics = json.loads((tmp_path / "runs" / runs[0] / "metrics.json").read_text())
    print(f"demo: {seconds:.0f} s, test accuracy {metrics['test_accuracy']:.4f}")
    assert metrics["test_accuracy"] >= 0.97
    assert metrics["model"] == "resnet20" and metrics["epochs_completed"] == 20
    assert os.path.exists(tmp_path / "saved_models" / runs[0] / "model.tflite")


def test_imagenet_recipe_runs_on_synthetic_images(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["--dataset", "synthetic", "--image-size", "32", "--depth", "18", "--batch-size", "32",
            "--steps", "2", "--nondeterministic", "--no-export", "--quiet",
            "--run-dir", str(run_dir)]
    code, out, err = _main("imagenet", args, capsys)
    assert code == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "resnet18" and metrics["steps_completed"] == 2
    config = json.loads((run_dir / "config.json").read_text())
    # lr 0.1 x 32/256; the ImageNet family (7x7 stem, max-pool) at 32x32, 1000 classes.
    assert config["plan"]["lr"] == pytest.approx(0.0125)
    assert config["builder"]["family"] == "imagenet" and config["builder"]["classes"] == 1000


def test_a_smoke_run_writes_kilobytes_and_says_what_it_wrote(tmp_path, capsys, monkeypatch):
    """Shorter than one epoch: no checkpoint, no export unless --export; sizes printed."""
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    args = ["--dataset", "synthetic", "--image-size", "32", "--depth", "18", "--batch-size", "32",
            "--steps", "3", "--nondeterministic", "--run-dir", str(run_dir)]
    code, out, err = _main("imagenet", args, capsys)
    assert code == 0, err
    assert "Not exported: a run of 3 steps, shorter than one epoch (32 steps)" in out
    assert not (tmp_path / "saved_models").exists() and not (run_dir / "checkpoints").exists()
    total = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file())
    assert total < 200_000, total
    line = next(ln for ln in out.splitlines() if ln.startswith(f"Wrote {run_dir} ("))
    assert "config.json" in line and "log.csv" in line and "metrics.json" in line
