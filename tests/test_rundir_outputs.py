"""Output locations are checked before any work (issue 18.4); default folders carry the
settings (issue 18.12)."""

import os
import subprocess
import sys

import pytest

from keras_resnet.training.config import ConfigError, TrainConfig
from keras_resnet.training.rundir import check_output_dir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _recipe(name, args, cwd, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    return subprocess.run([sys.executable, os.path.join(REPO, "recipes", name), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def _one_line_error(proc, prog, flag, path):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith(f"{prog}: error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"{prog}: error: {flag} {path} cannot be created or written (")
    assert errors[0].endswith(f"choose another {flag}.")
    assert "epoch 1" not in proc.stdout   # nothing trained


# -- the check itself -------------------------------------------------------------------------

def test_check_output_dir_leaves_nothing_behind(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    check_output_dir(str(target), "--out")
    assert os.listdir(tmp_path) == []          # the folders it made to try are gone
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "x.txt").write_text("x")
    check_output_dir(str(tmp_path / "keep"), "--out")
    assert os.listdir(tmp_path / "keep") == ["x.txt"]
    with pytest.raises(ConfigError, match=r"^--out .*x.txt exists and is not a directory"):
        check_output_dir(str(tmp_path / "keep" / "x.txt"), "--out")


@pytest.mark.parametrize("path, reason", [("/proc/x", "No such file or directory"),
                                          ("/sys/kernel/run1", "Operation not permitted")])
def test_check_output_dir_names_the_flag_and_the_reason(path, reason):
    if not os.path.isdir(os.path.dirname(path)):
        pytest.skip(f"no {os.path.dirname(path)} here")
    with pytest.raises(ConfigError) as error:
        check_output_dir(path, "--run-dir")
    assert str(error.value) == (f"--run-dir {path} cannot be created or written ({reason}); "
                                "choose another --run-dir.")


# -- every recipe, before any work -------------------------------------------------------------

DIGITS = ["--dataset", "digits", "--epochs", "1", "--batch-size", "128"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_training_refuses_an_unwritable_export_or_run_dir_at_once(tmp_path):
    proc = _recipe("cifar10.py", [*DIGITS, "--depth", "8", "--export", "/proc/x"], tmp_path)
    _one_line_error(proc, "recipes/cifar10.py", "--export", "/proc/x")
    if os.path.isdir("/sys/kernel"):
        proc = _recipe("cifar10.py", [*DIGITS, "--depth", "8", "--run-dir", "/sys/kernel/run1"],
                       tmp_path)
        _one_line_error(proc, "recipes/cifar10.py", "--run-dir", "/sys/kernel/run1")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_the_trainer_checks_its_export_before_training(tmp_path, monkeypatch):
    """The library path: an export folder that cannot be written, before any epoch."""
    pytest.importorskip("keras")
    from keras_resnet.training import Trainer

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^--export /proc/x cannot be created"):
        Trainer(TrainConfig(dataset="digits", depth=8, epochs=1, run_dir="r", export="/proc/x"))
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_search_and_experiment_refuse_unwritable_folders_before_training(tmp_path):
    proc = _recipe("tune.py", [*DIGITS, "--depths", "8", "--widths", "1", "--max-trials", "1",
                               "--dir", "/proc/x"], tmp_path)
    _one_line_error(proc, "recipes/tune.py", "--dir", "/proc/x")
    proc = _recipe("tune.py", [*DIGITS, "--depths", "8", "--widths", "1", "--max-trials", "1",
                               "--dir", "s", "--final-epochs", "1", "--export", "/proc/x"],
                   tmp_path)
    _one_line_error(proc, "recipes/tune.py", "--export", "/proc/x")
    proc = _recipe("degradation.py", [*DIGITS, "--depths", "8", "--out", "/proc/x"], tmp_path)
    _one_line_error(proc, "recipes/degradation.py", "--out", "/proc/x")
    assert os.listdir(tmp_path) == []


# -- default folders carry the settings (18.12) ------------------------------------------------

def test_default_search_folder_carries_the_settings():
    from keras_resnet.tuning.config import SearchConfig, resolve_search

    def folder(**kw):
        train = TrainConfig(dataset="digits", **kw.pop("train", {}))
        return resolve_search(SearchConfig(train, **kw))[0].directory

    base = folder(epochs=2)
    assert base.startswith(os.path.join("searches", "digits-random_"))
    assert folder(epochs=2) == base                                    # the same command
    assert folder(epochs=2, max_trials=20, quiet=True) == base         # resume-free settings
    assert folder(epochs=3) != base                                    # another --epochs
    assert folder(epochs=2, train={"seed": 1}) != base
    assert folder(epochs=2, depths=[8, 14]) != base


def test_default_experiment_folder_carries_the_settings():
    from keras_resnet.cli.experiment import build_parser, plan_degradation, plan_identity_mappings

    def out(experiment, *args):
        plan = plan_degradation if experiment == "degradation" else plan_identity_mappings
        return plan(build_parser(experiment, "x").parse_args(list(args)))[2]

    first = out("degradation", "--dataset", "digits", "--epochs", "2")
    assert first.startswith(os.path.join("runs", "degradation_digits_"))
    assert out("degradation", "--dataset", "digits", "--epochs", "2") == first
    assert out("degradation", "--dataset", "digits", "--epochs", "3") != first
    assert out("degradation", "--dataset", "digits", "--epochs", "2", "--seeds", "1,2") != first
    assert out("degradation", "--dataset", "digits", "--epochs", "2", "--depths", "8") != first
    table = out("identity_mappings", "--table", "units", "--dataset", "digits", "--epochs", "2")
    assert table != out("identity_mappings", "--table", "units", "--dataset", "digits",
                        "--epochs", "3")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_the_library_sweeps_check_their_folders_before_training(tmp_path, monkeypatch):
    """run_search and run_experiment, called from Python: the same one-line refusal."""
    pytest.importorskip("keras_tuner")
    from keras_resnet.experiments import Configuration, run_experiment
    from keras_resnet.tuning.config import SearchConfig
    from keras_resnet.tuning.search import run_search

    monkeypatch.chdir(tmp_path)
    train = TrainConfig(dataset="digits", epochs=1, batch_size=128)
    with pytest.raises(ConfigError, match=r"^--dir /proc/x cannot be created or written"):
        run_search(SearchConfig(train, directory="/proc/x", depths=[8], widths=[1]))
    with pytest.raises(ConfigError, match=r"^--export /proc/x cannot be created or written"):
        run_search(SearchConfig(TrainConfig(dataset="digits", export="/proc/x"), directory="s",
                                depths=[8], widths=[1], final_epochs=1))
    with pytest.raises(ConfigError, match=r"^--out /proc/x cannot be created or written"):
        run_experiment([Configuration("resnet-8", {"depth": 8})], train, "/proc/x",
                       verbose=False)
    assert os.listdir(tmp_path) == []
