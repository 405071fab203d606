"""keras_resnet.experiments and recipes/degradation.py, recipes/identity_mappings.py.

The configurations, tables and plots are checked without training; the runner
and the recipes train CIFAR ResNet-8 (and its variants) on the 8x8 digits for
one or two epochs (the runner: batch 360, the table recipes: batch 128). The
degradation recipe runs once, on the small setting that shows the phenomenon
with a margin: two tests check its outputs and its numbers (and the recipe's
defaults over 3 seeds are checked by a slow test).
"""

import csv
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import requires_tensorflow

from keras_resnet import experiments  # noqa: E402  (no keras: the configurations)
from keras_resnet.experiments import Configuration, configurations as confs, report  # noqa: E402
from keras_resnet.training import ConfigError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset", "digits", "--batch-size", "128", "--quiet"]
# The runner's tests: batch 360 (the digits' test set) gives 3 training steps, one
# compiled call of one stack length, and one test batch per epoch. The JAX engine
# compiles every new stack length and batch shape anew (batch 128: stacks of 4 and
# 3 steps, test batches of 128 and 104), which costs more than the training itself.
BATCH = 360


# ---------------------------------------------------------------------------
# What the papers compared (no training).


def test_degradation_configurations_are_plain_and_residual_twins_with_paper_values():
    configs = experiments.degradation((20, 32, 44, 56), residual_only_depths=(110,))
    assert [c.name for c in configs] == ["plain-20", "plain-32", "plain-44", "plain-56",
                                         "resnet-20", "resnet-32", "resnet-44", "resnet-56",
                                         "resnet-110"]
    assert [c.settings for c in configs[:2]] == [{"depth": 20, "plain": True},
                                                 {"depth": 32, "plain": True}]
    assert all(c.group == "plain" and c.paper is None for c in configs[:4])
    # He et al. 2015, Table 6 (CIFAR-10 test error, %).
    assert [c.paper for c in configs[4:]] == [8.75, 7.51, 7.17, 6.97, 6.43]
    assert all(c.group == "residual" and c.settings == {"depth": c.settings["depth"]}
               for c in configs[4:])


def test_skips_table_rows_settings_and_paper_values():
    configs = experiments.identity_mappings("skips", depths=(110,))
    assert [(c.name, c.paper) for c in configs] == [
        ("original-110", 6.61), ("scaling-110", 12.35), ("exclusive_gating-110", 8.70),
        ("shortcut_gating-110", 6.91), ("shortcut_gating_b0-110", 12.86),
        ("conv_shortcut-110", 12.22), ("dropout_shortcut-110", "fail"), ("highway-110", None)]
    settings = {c.name: c.settings for c in configs}
    assert settings["original-110"] == {"depth": 110}
    assert settings["scaling-110"] == {"depth": 110, "model_extras": {"skip": "scaling"}}
    assert settings["exclusive_gating-110"]["model_extras"] == {"skip": "exclusive_gating",
                                                                "gate_bias": -6.0}
    assert settings["shortcut_gating_b0-110"]["model_extras"] == {"skip": "shortcut_gating",
                                                                  "gate_bias": 0.0}
    assert settings["conv_shortcut-110"] == {"depth": 110, "shortcut": "C"}
    assert settings["dropout_shortcut-110"]["model_extras"] == {"skip": "dropout"}
    # Highway networks (Srivastava et al. 2015) = exclusive gating with their own bias.
    assert settings["highway-110"]["model_extras"] == {"skip": "exclusive_gating",
                                                       "gate_bias": -2.0}
    own = experiments.identity_mappings("skips", depths=(20,), highway_bias=-3)[-1]
    assert own.settings["model_extras"]["gate_bias"] == -3.0 and "b_g=-3" in own.label
    assert len(experiments.identity_mappings("skips", depths=(20,), highway_bias=None)) == 7


def test_units_table_paper_column_follows_the_block_kind():
    configs = experiments.identity_mappings("units", depths=(20, 29))
    orderings = ["original", "bn_after_add", "relu_before_add", "relu_preact", "full_preact"]
    assert [c.name for c in configs] == [f"{o}-{d}" for d in (20, 29) for o in orderings]
    # 20: basic blocks -> the paper's ResNet-110 column; 29 = 9n+2: bottleneck -> ResNet-164.
    assert [c.paper for c in configs] == [6.61, 8.17, 7.84, 6.71, 6.37,
                                          5.93, 6.50, 6.14, 5.91, 5.46]
    assert configs[0].group == "depth 20" and configs[5].group == "depth 29"
    assert configs[4].settings == {"depth": 20, "model_extras": {"ordering": "full_preact"}}
    assert "ResNet-164" in configs[5].source
    # The skips table printed ResNet-110 only: no paper value for a bottleneck depth.
    assert [c.paper for c in experiments.identity_mappings("skips", depths=(29,))] == [None] * 8


@pytest.mark.parametrize("call, match", [
    (lambda: experiments.identity_mappings("orderings"),
     r"`table`: received 'orderings'; expected one of skips, units"),
    (lambda: experiments.identity_mappings("skips", depths=(21,)),
     r"--depth 21 is not a depth of the CIFAR family; expected 6n\+2"),
    (lambda: experiments.degradation((20, 50 + 1)), r"--depths 51 is not a depth"),
    (lambda: experiments.degradation((20, 20)), r"Depth 20 appears twice"),
    (lambda: experiments.degradation(()), r"`depths` is empty"),
    (lambda: Configuration("a/b"), r"`name`: received 'a/b'"),
    (lambda: Configuration("a", {"depht": 20}), r"settings` of configuration 'a': received "
                                                r"'depht'; expected TrainConfig fields"),
    (lambda: Configuration("a", {"run_dir": "x"}), r"the runner sets run_dir"),
    (lambda: experiments.highway_row("-2"), r"`gate_bias` must be a number; received '-2'"),
])
def test_bad_arguments_name_themselves(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_with_seeds_names_each_seed_and_keeps_the_label():
    configs = experiments.with_seeds(experiments.degradation((8,)), [1, 2])
    assert [(c.name, c.label, c.settings.get("seed")) for c in configs] == [
        ("plain-8_seed1", "plain-8", 1), ("resnet-8_seed1", "resnet-8", 1),
        ("plain-8_seed2", "plain-8", 2), ("resnet-8_seed2", "resnet-8", 2)]
    assert experiments.with_seeds(configs[:2], [5]) == configs[:2]


def _fake_run(label, group, depth, seed, train, test, paper=None, status="finished"):
    n = len(train)
    return {"name": f"{label}_seed{seed}", "label": label, "group": group, "depth": depth,
            "seed": seed, "status": status, "epochs": n, "settings": {"depth": depth},
            "paper": paper, "source": "", "trainable_params": 1000 * depth,
            "history": {"epoch": list(range(1, n + 1)), "train_error": train, "test_error": test,
                        "train_loss": [1.0 / (i + 1) for i in range(n)]},
            "final": {"train_error": train[-1], "test_error": test[-1],
                      "train_loss": 1.0 / n}}


def _fake_results():
    runs = []
    for seed, shift in ((1, 0.0), (2, 1.0), (3, 2.0)):
        runs += [_fake_run("plain-20", "plain", 20, seed, [50, 10 + shift], [55, 12 + shift]),
                 _fake_run("plain-56", "plain", 56, seed, [80, 60 + shift], [82, 61 + shift]),
                 _fake_run("resnet-20", "residual", 20, seed, [40, 2 + shift], [45, 3 + shift],
                           paper=8.75),
                 _fake_run("resnet-56", "residual", 56, seed, [45, 1 + shift], [47, 2 + shift],
                           paper=6.97)]
    return {"configurations": runs}


def test_summary_takes_the_median_over_seeds_and_keeps_every_value():
    rows = report.summarize(_fake_results())
    assert [r["label"] for r in rows] == ["plain-20", "plain-56", "resnet-20", "resnet-56"]
    assert rows[1]["train_error"] == 61.0 and rows[1]["train_error_per_seed"] == [60, 61, 62]
    assert rows[3]["test_error"] == 3.0 and rows[3]["paper_test_error"] == 6.97
    assert rows[0]["seeds"] == [1, 2, 3] and rows[0]["status"] == "finished"
    text = report.format_table(rows)
    assert text.splitlines()[0].split("  ")[0] == "configuration"
    assert "train error % per seed" in text and "60.00 61.00 62.00" in text
    parsed = list(csv.DictReader(report.to_csv(rows).splitlines()))
    assert [(r["label"], r["test_error"], r["seeds"]) for r in parsed][3] == (
        "resnet-56", "3.0000", "1 2 3")
    md = report.to_markdown(rows, "T", "digits", "paper %", notes=["a note"])
    assert "| resnet-56 | residual | 3.00 | 2.00 | 56,000 | 6.97 |" in md
    assert "median of seeds 1, 2, 3" in md and md.rstrip().endswith("- a note")


def _svg_text(path):
    with open(path) as f:
        return f.read()


def test_degradation_plot_has_titles_axes_legends_and_the_papers_values(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    from keras_resnet.experiments import plots

    paths = plots.plot_degradation(_fake_results(), tmp_path / "deg.png", dataset="cifar10")
    assert paths == [str(tmp_path / "deg.png"), str(tmp_path / "deg.svg")]
    assert Image.open(paths[0]).size[0] > 1000
    svg = _svg_text(paths[1])
    for text in ("Plain vs residual nets on cifar10", "mean of seeds 1, 2, 3",
                 "plain nets", "residual nets (ResNets)", "epoch", "error (%, log scale)",
                 "plain-20", "ResNet-56", "training error (thin)", "test error (bold)",
                 "He et al. 2015, Table 6 (test)"):
        assert text in svg, text
    # On another dataset the paper's CIFAR-10 values are not drawn.
    other = plots.plot_degradation(_fake_results(), tmp_path / "digits", dataset="digits")
    assert "Table 6" not in _svg_text(other[1])


def test_degradation_plot_draws_the_mean_over_seeds_and_its_band():
    pytest.importorskip("matplotlib")
    import numpy as np

    from keras_resnet.experiments import plots

    figure = plots.degradation_figure(_fake_results(), dataset="cifar10")
    plain_ax, res_ax = figure.axes[:2]
    # Seeds 1, 2, 3 shift the last epoch's errors by 0, 1, 2: the line is their mean (+1),
    # the band spans min to max. Thin lines: training error; bold: test error.
    expected = {plain_ax: [([50, 11], [50, 10], [50, 12]), ([55, 13], [55, 12], [55, 14]),
                           ([80, 61], [80, 60], [80, 62]), ([82, 62], [82, 61], [82, 63])],
                res_ax: [([40, 3], [40, 2], [40, 4]), ([45, 4], [45, 3], [45, 5]),
                         ([45, 2], [45, 1], [45, 3]), ([47, 3], [47, 2], [47, 4])]}
    for ax, want in expected.items():
        drawn = [ln for ln in ax.lines if len(ln.get_xdata()) == 2 and ln.get_linestyle() == "-"
                 and list(ln.get_xdata()) == [1, 2]]
        assert [ln.get_linewidth() for ln in drawn] == [1.0, 2.5, 1.0, 2.5]
        for line, band, (mean, low, high) in zip(drawn, ax.collections, want):
            np.testing.assert_allclose(line.get_ydata(), mean)
            edges = band.get_paths()[0].vertices
            at_last = edges[np.isclose(edges[:, 0], 2), 1]
            assert (at_last.min(), at_last.max()) == (low[1], high[1])
    papers = sorted(ln.get_ydata()[0] for ln in res_ax.lines if ln.get_linestyle() == ":"
                    and len(ln.get_ydata()))
    assert papers == [6.97, 8.75]     # He et al. 2015, Table 6: ResNet-56, ResNet-20


def test_curves_plot_draws_every_row(tmp_path):
    pytest.importorskip("matplotlib")
    from keras_resnet.experiments import plots

    results = {"configurations": [
        _fake_run("original (identity)", "depth 110", 110, 0, [5, 1], [9, 6.5], paper=6.61),
        _fake_run("full pre-activation", "depth 110", 110, 0, [5, 1], [9, 6.2], paper=6.37),
        _fake_run("dropout shortcut (0.5)", "depth 110", 110, 0, [90], [90], paper="fail",
                  status="diverged")]}
    paths = plots.plot_curves(results, tmp_path / "curves", dataset="cifar10", title="Table 2",
                              paper_depths=(110,))
    svg = _svg_text(paths[1])
    for text in ("Table 2 (seed 0)", "training loss", "cross-entropy",
                 "nats per image, log scale", "test error (%, log scale)", "original (identity)",
                 "full pre-activation", "dropout shortcut (0.5)", "paper (test error)"):
        assert text in svg, text
    import numpy as np

    figure = plots.curves_figure(results, dataset="cifar10", paper_depths=(110,))
    loss_ax, error_ax = figure.axes[:2]
    for ax, key in ((loss_ax, "train_loss"), (error_ax, "test_error")):
        drawn = {ln.get_label(): ln for ln in ax.lines
                 if ln.get_linestyle() == "-" and ln.get_marker() == "None"}
        assert list(drawn) == [r["label"] for r in results["configurations"]]
        for run in results["configurations"]:
            line = drawn[run["label"]]
            np.testing.assert_allclose(line.get_xdata(), run["history"]["epoch"])
            np.testing.assert_allclose(line.get_ydata(), run["history"][key])
    # the diverged row ends in a cross at its last value; the paper's values are dotted
    crosses = [ln for ln in error_ax.lines if ln.get_marker() == "x"]
    assert [(list(c.get_xdata()), list(c.get_ydata())) for c in crosses] == [([1], [90])]
    assert sorted(ln.get_ydata()[0] for ln in error_ax.lines
                  if ln.get_linestyle() == ":" and len(ln.get_ydata())) == [6.37, 6.61]


# ---------------------------------------------------------------------------
# The command lines: bad input and --help answer before anything is trained.


@pytest.mark.parametrize("experiment, args, message", [
    ("degradation", ["--depths", "20,21"], "--depths 21 is not a depth of the CIFAR family"),
    ("degradation", ["--depths", "20,x"],
     "argument --depths: '20,x' is not a comma-separated list of integers"),
    ("degradation", ["--dataset", "mnist"], "argument --dataset: invalid choice: 'mnist'"),
    ("degradation", ["--seeds", "1,1"], "--seeds 1,1: expected distinct seeds"),
    ("degradation", ["--lr", "-1"], "--lr must be positive; received -1.0"),
    ("identity_mappings", ["--table", "nope"], "argument --table: invalid choice: 'nope'"),
    ("identity_mappings", [], "the following arguments are required: --table"),
    ("identity_mappings", ["--table", "units", "--depth", "110,30"],
     "--depth 30 is not a depth of the CIFAR family"),
])
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(experiment, args, message,
                                                              tmp_path, capsys):
    from keras_resnet.cli.experiment import main

    out = tmp_path / "out"
    code = main(experiment, [*args, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"recipes/{experiment}.py: error: ")
    assert message in err[0]
    assert not out.exists()


@pytest.mark.parametrize("recipe", ["degradation", "identity_mappings"])
def test_help_and_bad_input_answer_without_importing_keras(recipe):
    """``--help`` and a bad depth are answered before keras, TensorFlow or JAX is imported."""
    bad = ["--depths", "21"] if recipe == "degradation" else ["--table", "skips", "--depth", "21"]
    script = ("import sys\n"
              "from keras_resnet.cli.experiment import main\n"
              f"codes = [main({recipe!r}, ['--help']), main({recipe!r}, {bad!r})]\n"
              "heavy = sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules)\n"
              "print('HEAVY', heavy, 'CODES', codes)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"))
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "HEAVY [] CODES [0, 2]", proc.stderr
    text = proc.stdout
    for flag in ("--dataset", "--epochs", "--seed", "--seeds", "--gpus", "--precision", "--out"):
        assert flag in text, flag
    assert ("--depths" if recipe == "degradation" else "--highway-bias") in text


# ---------------------------------------------------------------------------
# The runner: one trainer, the same data and seed, reruns skip what finished.


def _base(**kw):
    from keras_resnet.training import TrainConfig

    return TrainConfig(**{"dataset": "digits", "epochs": 1, "batch_size": BATCH, **kw})


@requires_tensorflow
def test_every_configuration_trains_as_the_trainer_alone_would(tmp_path):
    """Two identical configurations see the same data order and seed: identical
    histories, equal to a standalone run of the trainer with those settings."""
    from keras_resnet import training

    results = experiments.run_experiment(
        [Configuration("a", {"depth": 8}), Configuration("b", {"depth": 8})],
        _base(seed=3), tmp_path / "exp", verbose=False)
    a, b = results["configurations"]
    assert a["status"] == b["status"] == "finished"
    assert a["history"] == {**b["history"], "epoch_seconds": a["history"]["epoch_seconds"]}
    alone = training.train(training.TrainConfig(
        dataset="digits", depth=8, epochs=1, batch_size=BATCH, seed=3, quiet=True,
        no_export=True, run_dir=str(tmp_path / "alone")))
    row = alone["history"][0]
    assert a["history"]["train_loss"] == [float(row["loss"])]
    assert a["history"]["test_error"] == [100 * (1 - float(row["test_accuracy"]))]
    assert a["run_dir"] == str(tmp_path / "exp" / "a")
    assert a["trainable_params"] == 75290 and a["seed"] == 3 and a["depth"] == 8
    assert results["base"]["dataset"] == "digits" and "run_dir" not in results["base"]
    json.dumps(results)   # plain data


@pytest.mark.multibackend
def test_the_runner_trains_under_the_running_backend(tmp_path):
    """TensorFlow (tf.distribute engine) or JAX (keras.distribution engine)."""
    import keras

    results = experiments.run_experiment([Configuration("resnet-8", {"depth": 8})], _base(),
                                         tmp_path / "exp", verbose=False)
    (run,) = results["configurations"]
    assert run["status"] == "finished" and run["history"]["epoch"] == [1]
    with open(tmp_path / "exp" / "resnet-8" / "config.json") as f:
        assert json.load(f)["backend"] == keras.backend.backend()


@requires_tensorflow
def test_rerun_skips_finished_configurations_and_resumes_an_interrupted_one(tmp_path):
    import keras

    class Recorder(keras.callbacks.Callback):
        def __init__(self, stop=False):
            super().__init__()
            self.epochs, self.stop = [], stop

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(epoch)
            if self.stop:
                self.model.stop_training = True

    out = tmp_path / "exp"
    plain, res = Configuration("plain-8", {"depth": 8, "plain": True}), \
        Configuration("resnet-8", {"depth": 8})
    base = _base(epochs=2)
    experiments.run_experiment([plain], base, out, verbose=False)
    stopper = Recorder(stop=True)   # "interrupted" after its first epoch
    first = experiments.run_experiment([res], base, out, verbose=False, callbacks=[stopper])
    assert first["configurations"][0]["status"] == "incomplete" and stopper.epochs == [0]
    checkpoint = out / "plain-8" / "checkpoints" / "epoch-0002.npz"
    stamp = checkpoint.stat().st_mtime_ns
    recorder = Recorder()
    lines = []

    class Stream:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    again = experiments.run_experiment([plain, res], base, out, callbacks=[recorder],
                                       stream=Stream())
    assert recorder.epochs == [1]              # only resnet-8's second epoch trained
    assert checkpoint.stat().st_mtime_ns == stamp
    assert [r["status"] for r in again["configurations"]] == ["finished", "finished"]
    assert [len(r["history"]["epoch"]) for r in again["configurations"]] == [2, 2]
    text = "".join(lines)
    assert "[1/2] plain-8: finished in an earlier run" in text
    assert "[2/2] resnet-8: 2 epochs, resuming after epoch 1" in text
    assert "[2/2] resnet-8 epoch 2/2: loss " in text and "experiment ETA 0s" in text
    with open(out / "resnet-8" / "metrics.json") as f:
        assert json.load(f)["resumed_from_epoch"] == 1
    # Other settings in the same directory: refused, naming the flag, nothing written.
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(ConfigError, match=r"--epochs 2 -> 3") as error:
        experiments.run_experiment([plain], _base(epochs=3), out, verbose=False)
    assert str(error.value).startswith(f"--out {out}: configuration plain-8: {out / 'plain-8'} "
                                       "holds a run with other settings")
    assert "choose another --out" in str(error.value) and "--run-dir" not in str(error.value)
    assert sorted(p.name for p in out.rglob("*")) == before


@requires_tensorflow
def test_a_diverging_configuration_is_recorded_and_the_experiment_goes_on(tmp_path):
    out = tmp_path / "exp"
    configs = [Configuration("boom", {"depth": 8, "lr": 1e30}, paper=experiments.FAIL),
               Configuration("fine", {"depth": 8})]
    results = experiments.run_experiment(configs, _base(deterministic=False), out,
                                         verbose=False)
    boom, fine = results["configurations"]
    assert boom["status"] == "diverged" and "the training loss became" in boom["message"]
    assert boom["history"]["epoch"] == [] and fine["status"] == "finished"
    rows = report.summarize(results)
    assert rows[0]["status"] == "diverged" and rows[0]["test_error"] is None
    assert "fails to converge" in report.format_table(rows)
    again = experiments.run_experiment(configs, _base(deterministic=False), out, verbose=False)
    assert [r["status"] for r in again["configurations"]] == ["diverged", "finished"]


@requires_tensorflow
def test_bad_configuration_is_refused_before_anything_trains(tmp_path):
    out = tmp_path / "exp"
    configs = [Configuration("fine", {"depth": 8}),
               Configuration("bad", {"depth": 8, "model_extras": {"skip": "sideways"}})]
    with pytest.raises(ConfigError, match=r"skip.*'sideways'"):
        experiments.run_experiment(configs, _base(), out, verbose=False)
    assert not out.exists()


def test_progress_eta_counts_every_configuration_left(monkeypatch):
    pytest.importorskip("keras")
    from keras_resnet.experiments import runner

    clock = iter([0.0, 10.0, 12.0])
    monkeypatch.setattr(runner.time, "perf_counter", lambda: next(clock))
    lines = []

    class Stream:
        def write(self, text):
            lines.append(text.rstrip("\n"))

        def flush(self):
            pass

    progress = runner.ExperimentProgress(2, [(2, 10.0), (3, 20.0)], stream=Stream())
    progress.start(1, "a", "out/a", 2, 0, 10.0)
    for epoch, loss in ((0, 1.5), (1, 0.5)):
        progress.on_epoch_begin(epoch)
        progress.on_epoch_end(epoch, {"loss": loss, "accuracy": 0.75, "val_accuracy": 0.5})
    # Epoch 1 includes building and compiling: no estimate before a steady epoch.
    assert lines[1] == ("[1/2] a epoch 1/2: loss 1.5000 - train error 25.00% - test error "
                        "50.00% - 10s - experiment ETA --")
    # Epoch 2: 2 s steady for cost 10 (0.2 s per unit); a first epoch costs 8 s more:
    # b's 3 epochs of cost 20 take 3 x 20 x 0.2 + 8 = 20 s.
    assert lines[2].endswith("- 2s - experiment ETA 20s")


# ---------------------------------------------------------------------------
# The recipes end to end.


# The degradation recipe on the setting that shows the phenomenon (He et al. 2015,
# Fig. 1 / Fig. 6) on the digits: six epochs of ResNet-8/32 and their plain twins,
# batch 128, lr 0.025, seed 0. One run, read by the two tests below.
DEGRADATION_FLAGS = ["--dataset", "digits", "--batch-size", "128", "--quiet", "--depths", "8,32",
                     "--epochs", "6", "--lr", "0.025", "--seed", "0"]
degradation_run_group = pytest.mark.xdist_group("experiments_degradation_digits")


@pytest.fixture(scope="module")
def degradation_run(tmp_path_factory):
    """``recipes/degradation.py`` with DEGRADATION_FLAGS: (exit code, stdout, out dir)."""
    import contextlib
    import io

    from keras_resnet.cli.experiment import main

    out = tmp_path_factory.mktemp("degradation") / "deg"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main("degradation", [*DEGRADATION_FLAGS, "--out", str(out)])
    return code, printed.getvalue(), out


@requires_tensorflow
@degradation_run_group
def test_degradation_recipe_writes_json_plot_and_table(degradation_run):
    from PIL import Image

    code, printed, out = degradation_run
    assert code == 0
    with open(out / "degradation.json") as f:
        saved = json.load(f)
    assert saved["experiment"] == "degradation" and saved["dataset"] == "digits"
    assert [(r["name"], r["status"], len(r["history"]["test_error"]))
            for r in saved["configurations"]] == [("plain-8", "finished", 6),
                                                   ("plain-32", "finished", 6),
                                                   ("resnet-8", "finished", 6),
                                                   ("resnet-32", "finished", 6)]
    assert Image.open(out / "degradation.png").format == "PNG"
    assert (out / "degradation.svg").stat().st_size > 1000
    table = printed[printed.index("Final errors after 6 epochs (digits):"):].splitlines()
    assert table[1].split()[:2] == ["configuration", "group"]
    assert [row.split()[:2] for row in table[2:6]] == [
        ["plain-8", "plain"], ["plain-32", "plain"], ["resnet-8", "residual"],
        ["resnet-32", "residual"]]
    assert f"Wrote {out / 'degradation.json'}" in printed


def _identity_mappings_recipe(table, depth, tmp_path, capsys):
    from keras_resnet.cli.experiment import main

    out = tmp_path / table
    code = main("identity_mappings", [*TINY, "--table", table, "--depth", depth, "--epochs",
                                      "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    with open(out / "table.csv") as f:
        rows = list(csv.DictReader(f))
    labels = [row.label for row in confs.table_rows(table)]
    depths = [int(d) for d in depth.split(",")]
    assert [(r["label"], int(r["depth"])) for r in rows] == [(label, d) for d in depths
                                                              for label in labels]
    md = (out / "table.md").read_text()
    for label in labels:
        assert f"| {label} |" in md
    with open(out / "identity_mappings.json") as f:
        saved = json.load(f)
    for r in saved["configurations"]:   # every row trained its epoch (or diverged, reported)
        assert r["status"] in ("finished", "diverged"), r["name"]
        if r["status"] == "finished":
            assert len(r["history"]["test_error"]) == 1 and r["trainable_params"] > 0
    assert (out / "curves.png").exists() and (out / "curves.svg").exists()
    return rows, md


@requires_tensorflow
def test_identity_mappings_skips_table_every_row_trains(tmp_path, capsys):
    rows, md = _identity_mappings_recipe("skips", "8", tmp_path, capsys)
    paper = {r["label"]: r["paper_test_error"] for r in rows}
    assert paper["original (identity)"] == "6.61" and paper["dropout shortcut (0.5)"] == "fail"
    assert paper["highway (exclusive gating, b_g=-2)"] == ""
    params = {r["label"]: int(r["trainable_params"]) for r in rows}
    # The gates and the 1x1 shortcuts add parameters; scaling and dropout do not.
    assert params["constant scaling 0.5/0.5"] == params["original (identity)"] == 75290
    assert params["exclusive gating, b_g=-6"] > params["original (identity)"]
    assert params["1x1 conv shortcut"] > params["original (identity)"]
    assert "fails to converge" in md and "Srivastava et al. 2015" in md


@requires_tensorflow
def test_identity_mappings_units_table_every_row_trains(tmp_path, capsys):
    rows, md = _identity_mappings_recipe("units", "8", tmp_path, capsys)
    assert [r["paper_test_error"] for r in rows] == ["6.61", "8.17", "7.84", "6.71", "6.37"]
    assert "ResNet-110 basic / ResNet-164 bottleneck" in md


@requires_tensorflow
@pytest.mark.slow
def test_identity_mappings_units_table_every_row_trains_at_two_block_kinds(tmp_path, capsys):
    rows, md = _identity_mappings_recipe("units", "8,11", tmp_path, capsys)
    assert [r["paper_test_error"] for r in rows] == ["6.61", "8.17", "7.84", "6.71", "6.37",
                                                     "5.93", "6.5", "6.14", "5.91", "5.46"]


# ---------------------------------------------------------------------------
# The phenomenon (He et al. 2015, Fig. 1 / Fig. 6) on the digits.


def _final_train_error(results, label):
    return [r["final"]["train_error"] for r in results["configurations"] if r["label"] == label]


@requires_tensorflow
@degradation_run_group
def test_degradation_direction_on_the_digits_fast(degradation_run):
    """Six epochs of ResNet-8/32 and their plain twins (the recipe's run above, seed 0):
    the deeper plain net trains worse than the shallower one, the deeper residual net
    better. Measured here on seeds 0, 1, 2: plain 14.6 -> 67.4, 11.4 -> 53.7,
    12.3 -> 56.5 (% training error); residual 13.9 -> 7.8, 11.7 -> 6.5, 13.2 -> 7.3:
    margins of 42 and 5 points."""
    code, _, out = degradation_run
    assert code == 0
    with open(out / "degradation.json") as f:
        results = json.load(f)
    (plain8,), (plain32,) = _final_train_error(results, "plain-8"), \
        _final_train_error(results, "plain-32")
    (res8,), (res32,) = _final_train_error(results, "resnet-8"), \
        _final_train_error(results, "resnet-32")
    assert plain32 - plain8 >= 20, (plain8, plain32)
    assert res8 - res32 >= 2, (res8, res32)
    assert plain32 - res32 >= 20, (plain32, res32)


@requires_tensorflow
@pytest.mark.slow
def test_degradation_direction_on_the_digits_three_seeds_recipe_defaults(tmp_path, capsys):
    """The recipe's digits defaults over seeds 1, 2, 3 (docs/experiments.md): for every
    seed the deepest plain net trains worse than the shallowest, the deepest residual
    net at least as well as the shallowest."""
    from keras_resnet.cli.experiment import DIGITS_DEGRADATION, main

    out = tmp_path / "deg"
    assert main("degradation", ["--dataset", "digits", "--seeds", "1,2,3", "--quiet",
                                "--out", str(out)]) == 0
    with open(out / "degradation.json") as f:
        results = json.load(f)
    shallow, deep = min(DIGITS_DEGRADATION["depths"]), max(DIGITS_DEGRADATION["depths"])
    for seed in (1, 2, 3):
        def error(kind, depth):
            (value,) = [r["final"]["train_error"] for r in results["configurations"]
                        if r["name"] == f"{kind}-{depth}_seed{seed}"]
            return value

        assert error("plain", deep) - error("plain", shallow) >= 20, seed
        assert error("resnet", deep) <= error("resnet", shallow), seed
