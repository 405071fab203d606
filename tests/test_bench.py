"""The benchmark harnesses (``recipes/benchmark.py``): what they could get wrong, on a fake clock,
and a smoke test of each mode (no timing is asserted on the real clock)."""

import json
import os
import subprocess
import sys

import pytest

from keras_resnet.bench.harness import Case, interleave
from tests.conftest import requires_tensorflow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeClock:
    """A clock that moves only when a fake step advances it."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_harness_interleaves_skips_warmup_and_takes_the_median_over_repeats():
    clock, order = FakeClock(), []
    # Seconds of each call, in call order: two slow warm-up calls (tracing) first.
    seconds = {"a": iter([100.0, 100.0, 1.0, 5.0, 2.0, 9.0, 3.0, 4.0]),
               "b": iter([50.0, 50.0, 2.0, 2.0, 8.0, 2.0, 6.0, 6.0])}

    def step_of(name):
        def step():
            order.append(name)
            clock.now += next(seconds[name])
        return step

    cases = [Case("a", {}, step_of("a"), 10, clock=clock),
             Case("b", {"batch_size": 20}, step_of("b"), 20, clock=clock)]
    a, b = interleave(cases, repeats=3, calls=2, warmup=2)
    # Warm-up of each case first, then each repetition runs every case in turn.
    assert order == ["a", "a", "b", "b"] + ["a", "a", "b", "b"] * 3
    # a's timed calls 1, 5, 2, 9, 3, 4: median 3.5 (the mean would be 4, the warm-up 100).
    assert a["calls"] == 6 and a["seconds_per_call_median"] == 3.5
    assert a["seconds_per_call_min"] == 1.0 and a["images_per_sec"] == 10 / 3.5
    # b's timed calls 2, 2, 8, 2, 6, 6: median 4.
    assert b["seconds_per_call_median"] == 4.0 and b["images_per_sec"] == 5.0
    assert b["label"] == "b" and b["batch_size"] == 20
    assert "call_seconds_median" not in a   # the step measured nothing itself
    with pytest.raises(ValueError, match="`repeats`: received 0"):
        interleave(cases, repeats=0, calls=1, warmup=0)


def test_a_step_that_times_itself_keeps_the_whole_call_as_a_second_figure():
    """model.fit: the steps (first batch to on_train_end) vs the call with its ~10 s teardown."""
    clock = FakeClock()

    def fit_like():
        clock.now += 0.5            # input iterator created
        start = clock()
        clock.now += 2.0            # the steps
        steps = clock() - start
        clock.now += 10.2           # the call returns long after on_train_end
        return steps

    case = Case("fit", {}, fit_like, 40, clock=clock)
    case.run(3)
    r = case.result()
    assert r["seconds_per_call_median"] == 2.0 and r["images_per_sec"] == 20.0
    assert r["call_seconds_median"] == pytest.approx(12.7)
    assert r["images_per_sec_whole_call"] == pytest.approx(40 / 12.7)


@requires_tensorflow
def test_fit_callback_times_from_the_first_batch_to_on_train_end():
    from keras_resnet.bench.cases import fit_steps_callback

    clock = FakeClock()
    timer = fit_steps_callback(clock)
    for _ in range(2):              # a second call starts afresh
        clock.now += 7.0
        timer.on_train_begin()
        clock.now += 1.0            # before the first batch: not counted
        timer.on_train_batch_begin(0)
        clock.now += 3.0
        timer.on_train_batch_begin(1)
        clock.now += 3.0
        timer.on_train_end()
        clock.now += 10.0           # the call's teardown: not counted
        assert timer.seconds == 6.0


def resnet50_stand_in(built):
    """A stand-in for ``keras.applications.ResNet50``: the same kinds of layers (biased
    convolutions, BatchNorm, ReLU, pooling, a softmax classifier), a few hundred parameters.
    It records the arguments it is called with in ``built``."""
    import keras

    def ResNet50(**kwargs):
        built.append(kwargs)
        inputs = keras.Input(kwargs["input_shape"])
        x = keras.layers.Conv2D(8, 3, strides=2, name="conv1_conv")(inputs)
        x = keras.layers.BatchNormalization(name="conv1_bn")(x)
        x = keras.layers.Activation("relu", name="conv1_relu")(x)
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        outputs = keras.layers.Dense(kwargs["classes"], activation="softmax",
                                     name="predictions")(x)
        return keras.Model(inputs, outputs, name="resnet50")

    return ResNet50


def run_side_by_side(tmp_path, capsys, model, parameters, name):
    """``--train --compare fit,keras-applications`` through the command line: the checks."""
    from keras_resnet.cli import bench as cli

    out = tmp_path / "r.json"
    code = cli.main(["--train", "--model", model, "--batch-size", "4",
                     "--image-size", "32", "--compare", "fit,keras-applications",
                     "--repeats", "2", "--calls", "1", "--fit-steps", "3",
                     "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    labels = [r["label"] for r in result["results"]]
    assert labels == ["keras_resnet (package loop)", "keras_resnet (model.fit)",
                      "keras.applications.ResNet50 (package loop)"]
    ours = result["results"][0]
    assert ours["parameters"] == parameters and ours["model"] == name
    assert ours["steps_per_execution"] == 4 and ours["calls"] == 2
    fit = result["results"][1]
    assert fit["steps_per_call"] == 3 and fit["calls"] == 2
    assert fit["call_seconds_median"] >= fit["seconds_per_call_median"] > 0
    for r in result["results"]:
        assert r["images_per_sec"] > 0 and r["seconds_per_call_median"] > 0
        assert r["ratio_to_keras_resnet"] == pytest.approx(
            r["images_per_sec"] / ours["images_per_sec"])
    assert result["peak_bytes"] > 0 and result["machine"]["backend"] == "tensorflow"
    printed = capsys.readouterr().out
    assert "keras.applications.ResNet50 (package loop)" in printed and "ratio" in printed
    return result


@requires_tensorflow
def test_train_benchmark_measures_ours_and_the_comparisons_side_by_side(tmp_path, capsys,
                                                                       monkeypatch):
    """The harness end to end on tiny cases: a CIFAR ResNet-8 (``--model depth:8``) and a
    small stand-in for keras.applications.ResNet50, called as the real one is; the
    real ResNet-20 and ResNet50 run in the slow test below."""
    import keras

    from keras_resnet.bench import cases

    built = []
    monkeypatch.setattr(keras.applications, "ResNet50", resnet50_stand_in(built))
    # ResNet-8 by hand (one block per stage): 3x3 stem 3->16 + BN; 16->16; 16->32 and
    # 32->64 with option A (the first conv reads the narrower input); dense 64->10.
    resnet8 = (27 * 16 + 2 * 16) + 2 * (9 * 16 * 16 + 2 * 16) \
        + (9 * 16 * 32 + 9 * 32 * 32 + 4 * 32) + (9 * 32 * 64 + 9 * 64 * 64 + 4 * 64) \
        + (64 * 10 + 10)
    assert resnet8 == 75_290
    run_side_by_side(tmp_path, capsys, "depth:8", resnet8, "resnet8")
    assert built == [dict(weights=None, input_shape=(32, 32, 3), classes=10)]
    # A zoo name resolves to its entry's arguments (the slow test runs one end to end).
    assert cases.model_kwargs("resnet20_cifar", 32, 10) == {
        "depth": 20, "family": "cifar", "input_shape": (32, 32, 3), "classes": 10}


@pytest.mark.slow
@requires_tensorflow
def test_train_benchmark_side_by_side_with_the_real_resnet50(tmp_path, capsys):
    """What the fast test above checks, with the zoo's ResNet-20 and the real
    keras.applications.ResNet50 (25.6 M parameters) through the package's loop."""
    run_side_by_side(tmp_path, capsys, "resnet20_cifar", 269_722, "resnet20")


@requires_tensorflow
def test_depth_table_runs_each_depth_in_a_fresh_process(tmp_path, monkeypatch):
    """The command line in this process, a depth measured for real in a child process;
    then, with the child replaced by a recorder, one child per depth, in order, with the
    settings passed through, and a failed depth kept as a row."""
    import types

    from keras_resnet.bench import depths
    from keras_resnet.cli import bench as cli
    from keras_resnet.runs.isolation import IsolatedError

    out = tmp_path / "d.json"
    assert cli.main(["--train", "--depths", "8", "--batch-size", "2", "--repeats", "1",
                     "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["depth_table"]
    assert [r["depth"] for r in rows] == [8]
    assert all(r["seconds_per_step"] > 0 and r["peak_bytes"] > 0 for r in rows)
    assert rows[0]["preact"] is True and rows[0]["block"] == "basic"
    assert rows[0]["batch_size"] == 2 and rows[0]["backend"] == "tensorflow"

    calls = []

    def fake_run_isolated(fn, kwargs, output):
        assert fn is depths.one_depth and output == os.devnull
        calls.append(kwargs)
        if kwargs["depth"] == 20:
            raise IsolatedError("ResourceExhaustedError: OOM")
        return types.SimpleNamespace(value=dict(rows[0], depth=kwargs["depth"]))

    monkeypatch.setattr(depths, "run_isolated", fake_run_isolated)
    assert cli.main(["--train", "--depths", "8,20,14", "--batch-size", "2", "--repeats", "1",
                     "--json", str(out)]) == 0
    assert calls == [dict(depth=d, batch_size=2, precision="float32", preact=True, repeats=1,
                          remat=False) for d in (8, 20, 14)]
    rows = json.loads(out.read_text())["depth_table"]
    assert [r["depth"] for r in rows] == [8, 20, 14]
    assert rows[1] == {"depth": 20, "error": "ResourceExhaustedError: OOM"}


def test_build_benchmark_harness(monkeypatch):
    """`recipes/benchmark.py --build`: a fresh process per build, real layer counts; then,
    with the process replaced by a recorder, the interleaving and the median over repeats."""
    import types

    import keras

    from keras_resnet.bench import build

    monkeypatch.setitem(build.BUILD_MODELS, "tiny", dict(depth=8))
    result = build.build_benchmark(("tiny",), repeats=1)
    assert result["tiny"]["top_level_layers"] == 2 + 3 + 2  # input, stem, 3 blocks, head
    assert len(result["tiny"]["build_s"]) == 1 and result["tiny"]["build_s_median"] > 0
    assert result["tiny"]["recursion_limit"] == sys.getrecursionlimit()
    assert result["tiny"]["backend"] == keras.backend.backend()
    with pytest.raises(ValueError, match="`models`.*'resnet7'"):
        build.build_benchmark(("resnet7",))

    monkeypatch.setitem(build.BUILD_MODELS, "other", dict(depth=14))
    order, seconds = [], iter([5.0, 1.0, 2.0, 9.0, 4.0, 3.0])

    def fake_run_isolated(fn, kwargs, output):
        assert fn is build.build_once and output == os.devnull
        order.append(kwargs["depth"])
        return types.SimpleNamespace(value={"build_s": next(seconds), "import_s": 1.0,
                                            "top_level_layers": kwargs["depth"],
                                            "recursion_limit": 1000, "backend": "b"})

    monkeypatch.setattr(build, "run_isolated", fake_run_isolated)
    logged = []
    result = build.build_benchmark(("tiny", "other"), repeats=3, log=logged.append)
    assert order == [8, 14, 8, 14, 8, 14]                  # interleaved: A, B, A, B, ...
    assert result["tiny"]["build_s"] == [5.0, 2.0, 4.0]
    assert result["tiny"]["build_s_median"] == 4.0            # not the mean (3.67)
    assert result["other"]["build_s"] == [1.0, 9.0, 3.0]
    assert result["other"]["build_s_median"] == 3.0           # not the mean (4.33)
    assert result["other"]["top_level_layers"] == 14 and len(logged) == 6


@requires_tensorflow
def test_unknown_model_or_comparison_is_a_clear_error(capsys):
    from keras_resnet.bench import throughput
    from keras_resnet.cli import bench as cli

    assert cli.main(["--train", "--model", "resnet7"]) == 2
    assert "Invalid value for argument `model`: received 'resnet7'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="`compare`: received 'tf1'"):
        throughput.compare("resnet20_cifar", comparisons=("tf1",))
    with pytest.raises(ValueError, match="`fit_steps`: received 0; expected a positive integer"):
        throughput.compare("resnet20_cifar", comparisons=("fit",), fit_steps=0)


def test_an_option_of_another_mode_is_refused(capsys):
    from keras_resnet.cli import bench as cli

    with pytest.raises(SystemExit) as info:
        cli.main(["--inference", "--batch-size", "8"])
    assert info.value.code == 2
    assert "--batch-size belongs to --train or --compile, not --inference" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--train", "--inference"])   # one mode at a time
    with pytest.raises(SystemExit):
        cli.main(["--compile", "--models", "resnet20"])
    assert "--models belongs to --inference, not --compile" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--build", "--depths", "164"])
    assert "--depths belongs to --train or --compile, not --build" in capsys.readouterr().err


def test_compile_mode_refuses_bad_modes_and_depths_before_measuring(capsys, tmp_path):
    from keras_resnet.bench import compile_memory
    from keras_resnet.cli import bench as cli

    assert cli.COMPILE_MODES == compile_memory.MODES   # the parser's copy (no JAX import)
    out = tmp_path / "rows.jsonl"
    assert cli.main(["--compile", "--modes", "scan,bogus", "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --modes: 'bogus' is not one of scan, scan-remat, scan-remat-convs, "
                   "unroll, unroll-remat")
    assert cli.main(["--compile", "--depths", "164,x"]) == 2
    assert "--depths: '164,x' is not a comma-separated list" in capsys.readouterr().err
    assert not out.exists()   # nothing measured, nothing written


@requires_tensorflow
def test_benchmark_arguments_and_table():
    from keras_resnet.bench import inference

    with pytest.raises(ValueError, match="`models`.*'resnet18'"):
        inference.inference_benchmark(("resnet18",))
    with pytest.raises(ValueError, match="`repeats`"):
        inference.inference_benchmark(("resnet20",), repeats=0)
    rows = [{"model": "resnet20", "input": "32x32", "format": f, "bytes": b, "median_ms": t,
             "min_ms": t / 2, "max_abs_diff": 0.0}
            for f, b, t in (("keras", 2_000_000, 4.0), ("tflite int8", 500_000, 1.0))]
    table = inference.format_table({"rows": rows}).splitlines()
    assert table[2] == "| resnet20 (32x32) | keras | 2.00 | 4.00 | 2.00 | 1.00x | 0.0e+00 |"
    assert table[3] == "| resnet20 (32x32) | tflite int8 | 0.50 | 1.00 | 0.50 | 4.00x | 0.0e+00 |"


@pytest.mark.slow
@requires_tensorflow
def test_benchmark_runs_every_format():
    from keras_resnet.bench import inference

    result = inference.inference_benchmark(("resnet20",), repeats=2, calls=1, warmup=1)
    rows = {r["format"]: r for r in result["rows"]}
    assert tuple(rows) == inference.FORMATS
    assert all(r["median_ms"] > 0 and r["bytes"] > 100_000 for r in rows.values())
    assert rows["tflite float32"]["max_abs_diff"] <= 1e-5
    assert rows["tflite int8"]["bytes"] < 0.4 * rows["tflite float32"]["bytes"]


def test_serving_and_bench_packages_and_help_import_no_keras():
    """``import keras_resnet.serving`` / ``.bench`` and the three recipes' --help stay light;
    ``recipes/benchmark.py --help`` runs as the script it is."""
    code = ("import runpy, sys, keras_resnet.serving, keras_resnet.bench\n"
            "from keras_resnet.cli import serve as s\n"
            "from keras_resnet.cli import bench as b\n"
            "for build in (s.build_export_parser, s.build_predict_parser, s.build_parser,\n"
            "              b.build_parser):\n"
            "    build().format_help()\n"
            "sys.argv = ['recipes/benchmark.py', '--help']\n"
            "try:\n"
            "    runpy.run_path('recipes/benchmark.py', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage: recipes/benchmark.py" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"
