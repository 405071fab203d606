"""The same command resumes its unfinished run; Ctrl-C says how (issue 18.3).

The default run directory is named by the settings that change what is
trained, so rerunning the identical command finds the run it left unfinished;
``--fresh`` starts over in a new directory, and nothing is deleted.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from keras_resnet.training.config import ConfigError, TrainConfig, resolve_config
from keras_resnet.training.rundir import default_run_dir, default_run_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR10 = os.path.join(REPO, "recipes", "cifar10.py")


def _config(**kw):
    return resolve_config(TrainConfig(**{"dataset": "digits", "depth": 8, "epochs": 3, **kw}))


def _start(path, finished=False):
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write("{}")
    if finished:
        with open(os.path.join(path, "metrics.json"), "w") as f:
            f.write("{}")


def test_the_default_name_carries_what_is_trained_and_nothing_else():
    name = default_run_name(_config())
    assert name.startswith("digits_resnet8_") and len(name) == len("digits_resnet8_") + 8
    # Outputs, verbosity and hardware leave the name alone ...
    for same in (dict(quiet=True), dict(export="x"), dict(gpus=0), dict(fresh=True),
                 dict(no_export=True), dict(log_every=2)):
        assert default_run_name(_config(**same)) == name, same
    # ... every setting of the training changes it.
    for other in (dict(epochs=4), dict(seed=1), dict(lr=0.05), dict(batch_size=32),
                  dict(width=2.0), dict(weight_decay=0.0)):
        assert default_run_name(_config(**other)) != name, other
    assert default_run_name(_config(preact=True)).startswith("digits_preact_resnet8_")


def test_the_newest_unfinished_run_is_resumed_and_fresh_starts_a_new_one(tmp_path):
    config = _config()
    base = str(tmp_path / default_run_name(config))
    assert default_run_dir(config, root=str(tmp_path)) == (base, False)   # nothing yet
    _start(base)
    assert default_run_dir(config, root=str(tmp_path)) == (base, True)    # unfinished: resume
    assert default_run_dir(config, root=str(tmp_path), fresh=True) == (base + "-2", False)
    _start(base + "-2")
    assert default_run_dir(config, root=str(tmp_path)) == (base + "-2", True)   # the newest
    with open(os.path.join(base + "-2", "metrics.json"), "w") as f:
        f.write("{}")
    assert default_run_dir(config, root=str(tmp_path)) == (base, True)    # the other one left
    with open(os.path.join(base, "metrics.json"), "w") as f:
        f.write("{}")
    assert default_run_dir(config, root=str(tmp_path)) == (base + "-3", False)   # all finished
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(base),
                                                  os.path.basename(base) + "-2"])


def test_fresh_with_an_explicit_run_dir_is_refused():
    with pytest.raises(ConfigError, match=r"^--fresh and --run-dir r1 conflict"):
        resolve_config(TrainConfig(dataset="digits", run_dir="r1", fresh=True))


def _log_epochs(run_dir):
    with open(os.path.join(run_dir, "log.csv"), newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def test_ctrl_c_says_how_to_resume_and_the_same_command_resumes(tmp_path):
    """SIGINT once epoch 1's checkpoint exists: one line, exit 130; the rerun continues."""
    args = [sys.executable, CIFAR10, "--dataset", "digits", "--depth", "8", "--epochs", "3",
            "--batch-size", "128", "--no-export", "--quiet"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline, checkpoint = time.time() + 300, None
    while time.time() < deadline and proc.poll() is None and checkpoint is None:
        runs = tmp_path / "runs"
        found = sorted(runs.glob("*/checkpoints/epoch-*.npz")) if runs.exists() else []
        checkpoint = found[0] if found else None
        time.sleep(0.02)
    assert checkpoint is not None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    run_dir = checkpoint.parent.parent
    if proc.returncode == 0:   # the run ended before the signal arrived: nothing to resume
        pytest.skip("the run finished before SIGINT arrived")
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "Traceback" not in out, err
    lines = [line for line in err.splitlines() if "recipes/cifar10.py" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("recipes/cifar10.py: error: interrupted; resume with the same "
                               "command: ")
    assert lines[0].endswith(f"{CIFAR10} --dataset digits --depth 8 --epochs 3 --batch-size 128 "
                             "--no-export --quiet")
    done = _log_epochs(run_dir)
    assert done and done == list(range(1, len(done) + 1)) and len(done) < 3
    assert not (run_dir / "metrics.json").exists()

    again = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"Resuming runs/{run_dir.name} after epoch" in again.stdout
    assert "(--fresh to start over)" in again.stdout
    assert os.listdir(tmp_path / "runs") == [run_dir.name]   # no second run directory
    assert _log_epochs(run_dir) == [1, 2, 3]                  # the epochs continued
    with open(run_dir / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["resumed_from_epoch"] >= 1 and metrics["epochs_completed"] == 3
