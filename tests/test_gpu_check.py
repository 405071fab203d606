"""``make gpu-check`` (keras_resnet.bench.gpu_check) works before a GPU machine's minutes go on it.

The dry run runs cases at toy size on the CPU through the same code paths (a
fresh process per case, its time limit, the JSON and the table); a case over
its limit is stopped and reported while the others still run. JAX only.
"""

import json
import os

import pytest

import keras

pytestmark = [
    pytest.mark.multibackend,
    pytest.mark.skipif(keras.backend.backend() != "jax", reason="the GPU check runs JAX"),
]


def _env():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=repo)


def test_a_case_over_its_limit_is_stopped_and_reported():
    from keras_resnet.bench import gpu_check

    result = gpu_check._run_case("preact1001_b128", "depth",
                                 {"depth": 29, "mode": "scan", "batch_size": 2,
                                  "image_size": 8}, 0.5, _env())
    assert result["case"] == "preact1001_b128"
    assert result["error"].startswith("stopped at its limit")
    assert result["wall_seconds"] < 30


def _dry_run(tmp_path, cases):
    from keras_resnet.bench import gpu_check

    out = tmp_path / "check.json"
    code = gpu_check.main(["--dry-run", "--cases", ",".join(cases), "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["dry_run"] and [r["case"] for r in report["results"]] == list(cases)
    assert (tmp_path / "check.txt").read_text().splitlines()[0].startswith("case")
    return {r["case"]: r for r in report["results"]}


def test_dry_run_of_the_cifar_and_deep_cases(tmp_path):
    results = _dry_run(tmp_path, ["resnet56_b128", "preact1001_b128_remat"])
    for r in results.values():
        assert "error" not in r, r
    r56 = results["resnet56_b128"]
    assert r56["images_per_sec"] > 0 and r56["batch_size"] == 4
    assert r56["paper_schedule_seconds"] == pytest.approx(64000 * r56["seconds_per_step"])
    deep = results["preact1001_b128_remat"]
    assert deep["mode"] == "scan-remat" and deep["depth"] == 29
    assert deep["compile_seconds"] > 0 and deep["peak_bytes"] > 0
    assert [n for _, n in deep["scanned_runs"]] == [2, 2, 2]


@pytest.mark.slow
def test_dry_run_of_every_case(tmp_path):
    from keras_resnet.bench import gpu_check

    results = _dry_run(tmp_path, list(gpu_check.CASES))
    for r in results.values():
        assert "error" not in r, r


def test_bad_case_names_are_refused_before_any_work(capsys):
    from keras_resnet.bench import gpu_check

    assert gpu_check.main(["--dry-run", "--cases", "resnet50_b256,nope"]) == 2
    assert "--cases 'nope'" in capsys.readouterr().err
