"""recipes/benchmark.py --train: a smoke test of the harness (it asserts no timing)."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import requires_tensorflow

pytestmark = requires_tensorflow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_benchmark_measures_ours_and_the_comparisons_side_by_side(tmp_path, capsys):
    from keras_resnet import benchmark

    out = tmp_path / "r.json"
    code = benchmark.main(["--train", "--model", "resnet20_cifar", "--batch-size", "4",
                           "--image-size", "32", "--compare", "fit,keras-applications",
                           "--repeats", "2", "--calls", "1", "--fit-steps", "3",
                           "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    labels = [r["label"] for r in result["results"]]
    assert labels == ["keras_resnet (package loop)", "keras_resnet (model.fit)",
                      "keras.applications.ResNet50 (package loop)"]
    ours = result["results"][0]
    assert ours["parameters"] == 269_722 and ours["model"] == "resnet20"
    assert ours["steps_per_execution"] == 4 and ours["calls"] == 2
    assert result["results"][1]["steps_per_call"] == 3
    for r in result["results"]:
        assert r["images_per_sec"] > 0 and r["seconds_per_call_median"] > 0
    assert result["results"][0]["ratio_to_keras_resnet"] == 1.0
    assert result["peak_bytes"] > 0 and result["machine"]["backend"] == "tensorflow"
    printed = capsys.readouterr().out
    assert "keras.applications.ResNet50 (package loop)" in printed and "ratio" in printed


def test_depth_table_runs_each_depth_in_a_fresh_process(tmp_path):
    out = tmp_path / "d.json"
    env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "recipes", "benchmark.py"),
                           "--train", "--depths", "8,14", "--batch-size", "2", "--repeats", "1",
                           "--json", str(out)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["depth_table"]
    assert [r["depth"] for r in rows] == [8, 14]
    assert all(r["seconds_per_step"] > 0 and r["peak_bytes"] > 0 for r in rows)
    assert rows[0]["preact"] is True and rows[0]["block"] == "basic"


def test_unknown_model_or_comparison_is_a_clear_error(capsys):
    from keras_resnet import train_benchmark

    assert train_benchmark.main(["--model", "resnet7"]) == 2
    assert "Invalid value for argument `model`: received 'resnet7'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="`compare`: received 'tf1'"):
        train_benchmark.compare("resnet20_cifar", comparisons=("tf1",))
    with pytest.raises(ValueError, match="`fit_steps`: received 0; expected a positive integer"):
        train_benchmark.compare("resnet20_cifar", comparisons=("fit",), fit_steps=0)
