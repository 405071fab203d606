"""recipes/lesion.py, recipes/paths.py, recipes/shattered_gradients.py end to end, and bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
import keras_resnet
from keras_resnet import specs
from keras_resnet.cli import analyze as cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LESION_KEYS = {"baseline_accuracy", "delete_single", "delete_k", "reorder"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Small untrained models as .keras files, and one export directory with its metadata."""
    root = tmp_path_factory.mktemp("models")
    paths = {}

    def save(name, model):
        paths[name] = str(root / f"{name}.keras")
        model.save(paths[name])

    export = root / "export"
    export.mkdir()
    keras_resnet.ResNet(8, input_shape=(8, 8, 3), seed=1).save(str(export / "model.keras"))
    (export / "metadata.json").write_text(json.dumps({"dataset": "digits",
                                                      "training": {"seed": 1}}))
    paths["export"] = str(export)
    save("resnet8", keras_resnet.ResNet(8, input_shape=(8, 8, 3), seed=1))
    save("plain8", keras_resnet.ResNet(8, input_shape=(8, 8, 3), residual=False, seed=1))
    save("cifar_input", keras_resnet.ResNet(8, input_shape=(32, 32, 3)))
    save("classes100", keras_resnet.ResNet(8, input_shape=(8, 8, 3), classes=100))
    save("sequential", keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                                         keras.layers.Dense(10, activation="softmax")]))
    paths["text"] = str(root / "notes.keras")
    with open(paths["text"], "w") as f:
        f.write("not a model\n")
    keras.backend.clear_session()
    return paths


def _main(recipe, args, capsys):
    code = cli.main(recipe, args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_lesion_recipe_writes_json_png_svg(models, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["--model", models["export"], "--out", str(out), "--draws", "1", "--max-delete", "2",
            "--max-swaps", "1", "--limit", "40", "--quiet"]
    code, stdout, err = _main("lesion", args, capsys)
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["lesion.json", "lesion.png", "lesion.svg"]
    umask = os.umask(0)
    os.umask(umask)
    for name in os.listdir(out):       # written atomically, with the usual permissions
        assert os.stat(out / name).st_mode & 0o777 == 0o666 & ~umask, name
    result = json.loads((out / "lesion.json").read_text())
    assert LESION_KEYS <= set(result)
    assert sorted(result["delete_single"]) == ["stage1_block1", "stage2_block1", "stage3_block1"]
    assert result["delete_k"]["k"] == [1, 2] and result["examples"] == 40
    # The dataset and the split's seed come from the export's metadata.json.
    assert (result["inputs"]["dataset"], result["inputs"]["seed"]) == ("digits", 1)
    assert "stage2_block1" in stdout and "Wrote" in stdout
    code, _, err = _main("lesion", args, capsys)
    assert code == 2 and "already holds lesion.json" in err and "--overwrite" in err
    code, _, err = _main("lesion", args + ["--overwrite", "--compare",
                                           str(out / "lesion.json")], capsys)
    assert code == 0, err


def test_paths_and_shattered_recipes(models, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, err = _main("paths", ["--model", models["resnet8"], "--dataset", "digits",
                                        "--out", str(out), "--samples", "2", "--batch-size", "4",
                                        "--limit", "20", "--quiet"], capsys)
    assert code == 0, err
    result = json.loads((out / "paths.json").read_text())
    assert result["path_counts"] == [1, 3, 3, 1] and result["settings"]["samples"] == 2
    assert result["inputs"]["split"] == "train"
    code, stdout, err = _main("shattered_gradients", ["--out", str(out), "--depths", "2,4",
                                                      "--width", "8", "--inits", "2",
                                                      "--points", "32"], capsys)
    assert code == 0, err
    # captured output is no terminal: plain progress lines, no control characters
    assert "\x1b" not in stdout and "\r" not in stdout and "\b" not in stdout
    assert "24/24 layers (100%) in" in stdout
    assert sorted(os.listdir(out)) == ["paths.json", "paths.png", "paths.svg",
                                       "shattered_gradients.json", "shattered_gradients.png",
                                       "shattered_gradients.svg"]
    result = json.loads((out / "shattered_gradients.json").read_text())
    assert result["summary"]["depths"] == [2, 4] and result["grid"]["points"] == 32
    assert "feed-forward" in stdout


@pytest.mark.parametrize("recipe, args, message", [
    ("lesion", ["--model", "{tmp}/missing.keras"], "'{tmp}/missing.keras' does not exist"),
    ("lesion", ["--model", "{text}", "--dataset", "digits"], "is not a Keras model file"),
    ("lesion", ["--model", "{sequential}", "--dataset", "digits"],
     "was not built by keras_resnet: it has no residual units named stage{s}_block{b}"),
    ("lesion", ["--model", "{cifar_input}", "--dataset", "digits"],
     "images are 8x8x3, the model 'resnet8' takes 32x32x3"),
    ("lesion", ["--model", "{classes100}", "--dataset", "digits"],
     "it has 10 classes, the model 'resnet8' 100"),
    ("lesion", ["--model", "{resnet8}"],
     "--dataset or --data-dir is needed: there is no metadata.json beside the model"),
    ("lesion", ["--model", "{resnet8}", "--dataset", "mnist"], "--dataset: invalid choice"),
    ("lesion", ["--model", "{resnet8}", "--dataset", "digits", "--compare", "{text}"],
     "cannot be read as JSON"),
    ("lesion", ["--model", "{resnet8}", "--dataset", "digits", "--max-delete", "-1"],
     "--max-delete -1 is negative"),
    ("lesion", ["--model", "{plain8}", "--dataset", "digits", "--max-delete", "2"],
     "--max-delete 2 is more than the model's 1 deletable blocks"),
    ("paths", ["--model", "{plain8}", "--dataset", "digits"], "a plain net has one path"),
    ("paths", ["--model", "{resnet8}", "--dataset", "digits", "--samples", "0"],
     "--samples: expected an int >= 1"),
    ("shattered_gradients", ["--depths", "2,3"], "--depths 3 is not an even number"),
    ("shattered_gradients", ["--depths", "two"], "'two' is not a comma-separated list of integers"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(recipe, args, message, models,
                                                         tmp_path, capsys):
    out = tmp_path / "out"
    subs = dict(models, tmp=str(tmp_path))
    args = [a.format(**subs) if "{" in a and "{s}" not in a else a for a in args]
    code, stdout, err = _main(recipe, args + ["--out", str(out)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"recipes/{recipe}.py: error: ")
    assert (message.format(**subs) if "{s}" not in message else message) in lines[0]
    assert not out.exists()


def test_out_must_be_a_directory(models, tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    code, _, err = _main("shattered_gradients", ["--out", str(target)], capsys)
    assert code == 2 and "is not a directory" in err


def test_cli_tables_match_the_library():
    """The command line reads the library's tables (no copies): every dataset it offers loads."""
    assert cli.ORDERINGS == specs.ORDERINGS
    from keras_resnet import data
    from keras_resnet.training.config import DATASETS

    assert set(cli.DATASETS) <= set(data.DATASETS)
    assert {d for names in DATASETS.values() for d in names} <= set(data.DATASETS)


def _env():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES="")
    return env


@pytest.mark.parametrize("recipe", ["lesion", "paths", "shattered_gradients"])
def test_help_answers_without_importing_keras(recipe):
    code = (f"import runpy, sys; sys.argv = ['recipes/{recipe}.py', '--help']\n"
            "try:\n"
            f"    runpy.run_path({os.path.join(REPO, 'recipes', recipe + '.py')!r}, "
            "run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print('KERAS' if 'keras' in sys.modules or 'tensorflow' in sys.modules else 'LIGHT')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("LIGHT")
    assert "--out" in proc.stdout and "default" in proc.stdout


def test_lesion_recipe_as_a_script(models, tmp_path):
    """The script itself, in a fresh process (TensorFlow backend)."""
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", "lesion.py"), "--model", models["plain8"],
         "--dataset", "digits", "--out", str(out), "--draws", "1", "--max-delete", "1",
         "--max-swaps", "0", "--limit", "30"],
        capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "lesion.json").read_text())
    assert result["residual"] is False and list(result["delete_single"]) == ["stage1_block1"]
    assert result["reorder"]["points"] == [] and np.isclose(result["chance_accuracy"], 0.1)
    assert "evaluations (100%) in" in proc.stdout    # the progress display, as plain lines
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout and "\b" not in proc.stdout


def test_progress_prints_plain_lines_when_not_a_terminal():
    import io

    from keras_resnet.training.progress import Counter

    now = [0.0]
    out = io.StringIO()
    counter = Counter(10, "layers", stream=out, interactive=False, every=30.0,
                      clock=lambda: now[0])
    for done in range(1, 11):
        now[0] += 10.0     # one unit every 10 s: a line at most every 30 s, and the last one
        counter.update(done)
    counter.update(10)
    assert out.getvalue().splitlines() == ["1/10 layers (10%) - ETA 1m30s",
                                           "4/10 layers (40%) - ETA 1m00s",
                                           "7/10 layers (70%) - ETA 30s",
                                           "10/10 layers (100%) in 1m40s"]
    tty = io.StringIO()
    counter = Counter(4, "batches", stream=tty, interactive=True, clock=lambda: 0.0)
    counter.update(2)
    counter.update(4)
    assert tty.getvalue() == ("\r[==========>.........] 2/4 batches (50%) - ETA 0s"
                              "\r[====================] 4/4 batches (100%) in 0s"
                              + " " * 2 + "\n")


def test_digits_analyses_under_jax_need_no_tensorflow(models, tmp_path):
    """The GPU machines have JAX and no TensorFlow: the digits path must not import it."""
    code = ("import sys\n"
            "from keras_resnet.cli import analyze as cli\n"
            f"args = ['--model', {models['resnet8']!r}, '--dataset', 'digits', '--limit', '20',"
            " '--quiet']\n"
            f"assert cli.main('lesion', args + ['--out', {str(tmp_path / 'l')!r}, '--draws', '1',"
            " '--max-delete', '0', '--max-swaps', '0']) == 0\n"
            f"assert cli.main('paths', args + ['--out', {str(tmp_path / 'p')!r}, '--samples', '1',"
            " '--batch-size', '4']) == 0\n"
            "print('TF' if 'tensorflow' in sys.modules else 'NO-TF')\n")
    env = dict(_env(), KERAS_BACKEND="jax")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("NO-TF")
    assert json.loads((tmp_path / "l" / "lesion.json").read_text())["settings"]["backend"] == "jax"
