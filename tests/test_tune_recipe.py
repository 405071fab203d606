"""recipes/tune.py and keras_resnet.tuning.search: searches whose trials the trainer runs.

Tiny searches on the digits (CIFAR ResNet-8/14, batch 128, 11 steps per epoch).
The recipe runs in subprocesses, as users run it; in-process searches use
``run_search`` directly. Every trial trains in a process of its own unless
``--in-process``.
"""

import functools
import glob
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from tests.conftest import requires_tensorflow
from tests.test_runs import _alive
from tests.test_tuning import frozen_imports  # noqa: F401 - a fixture (autouse)

pytestmark = requires_tensorflow

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

import keras_resnet  # noqa: E402
from keras_resnet.training import ConfigError, TrainConfig  # noqa: E402
from keras_resnet.tuning import results as R  # noqa: E402
from keras_resnet.tuning.config import SearchConfig, check_search_dir, resolve_search  # noqa: E402
from keras_resnet.tuning.search import run_search  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUNE = os.path.join(REPO, "recipes", "tune.py")
DIGITS = ["--dataset", "digits", "--batch-size", "128"]


def _env(**extra):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=REPO)
    for key in [k for k in env if k.startswith("KERASTUNER_") or k == "TF_CONFIG"]:
        env.pop(key)
    env.update(extra)
    return env


def _tune(args, cwd, timeout=600, **env):
    return subprocess.run([sys.executable, TUNE, *args], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def _trial_lines(stdout):
    return [line for line in stdout.splitlines() if line.startswith("trial ")]


def _params(row):
    return _built_params(row["depth"], row["width"], row["preact"])


@functools.lru_cache(maxsize=None)
def _built_params(depth, width, preact):
    """The trial's network built and its weights counted (not the counting module the
    search itself uses to check budgets)."""
    model = keras_resnet.ResNet(depth, width=width, preact=preact, family="cifar",
                                input_shape=(8, 8, 3), classes=10)
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _check_rows(rows):
    """Every row's counts are the architecture's; rejected rows are over budget."""
    for row in rows:
        assert row["params"] == _params(row), row
        if row["status"] == "completed":
            assert 0.0 <= row["val_accuracy"] <= 1.0 and row["train_seconds"] > 0


# -- command line ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, code, message", [
    (["--help"], 0, None),
    (["--dataset", "nope"], 2, "--dataset 'nope' is unknown"),
    (["--tuner", "grid"], 2, "argument --tuner: invalid choice: 'grid'"),
    (["--depths", "21"], 2, "--depths: 21 is not a cifar depth; expected 6n+2"),
    (["--depths", "20,x"], 2, "argument --depths: '20,x' is not a comma-separated list"),
    (["--widths", "0"], 2, "--widths: received [0]; 0 is not a positive"),
    (["--max-params", "10"], 2, "--max-params: received 10; the smallest network in the space"),
    (["--max-macs", "lots"], 2, "argument --max-macs: 'lots' is not a count"),
    (["--epochs", "0"], 2, "--epochs must be an integer >= 1; received 0"),
    (["--depths", "20,110", "--max-params", "1M"], 2,
     "--depths: ResNet-110 has at least 1,727,962"),
])
def test_help_and_bad_input_answer_without_keras_and_write_nothing(tmp_path, args, code,
                                                                   message):
    script = ("import sys; sys.argv = ['recipes/tune.py'] + sys.argv[1:]\n"
              "from keras_resnet.cli.tune import main\n"
              "code = main()\n"
              "heavy = sorted(m for m in ('keras', 'tensorflow', 'jax', 'keras_tuner') "
              "if m in sys.modules)\n"
              "print('HEAVY', heavy, 'CODE', code)")
    proc = subprocess.run([sys.executable, "-c", script, *DIGITS, *args], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == f"HEAVY [] CODE {code}", proc.stderr
    if message:
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("recipes/tune.py: error:")
        assert message in proc.stderr, proc.stderr
    assert os.listdir(tmp_path) == []


def test_a_search_directory_of_other_settings_is_refused(tmp_path):
    config, _ = resolve_search(SearchConfig(TrainConfig(dataset="digits"), epochs=2,
                                            directory=str(tmp_path / "s")))
    os.makedirs(config.directory)
    with open(os.path.join(config.directory, "search.json"), "w") as f:
        json.dump({"flags": config.flags()}, f)
    assert check_search_dir(config.directory, config) is True
    more = resolve_search(SearchConfig(TrainConfig(dataset="digits"), epochs=2, max_trials=30,
                                       directory=config.directory, final_epochs=5))[0]
    assert check_search_dir(config.directory, more) is True   # a longer search, a retraining
    for change, shown in (({"epochs": 3}, "--epochs 2 -> 3"),
                          ({"widths": (1, 4)}, "--widths [1, 2, 4] -> {'range': [1, 4]}")):
        other = resolve_search(SearchConfig(TrainConfig(dataset="digits"), **{
            "epochs": 2, "directory": config.directory, **change}))[0]
        with pytest.raises(ConfigError, match=re.escape(shown)):
            check_search_dir(config.directory, other)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    proc = _tune([*DIGITS, "--dir", str(tmp_path / "notes")], tmp_path)
    assert proc.returncode == 2 and "holds no search.json" in proc.stderr.splitlines()[-1]
    assert os.listdir(tmp_path / "notes") == ["todo.txt"]
    proc = _tune(["--data-dir", str(tmp_path / "missing")], tmp_path)
    assert proc.returncode == 2 and "missing" in proc.stderr.splitlines()[-1]
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["notes", "s"]


# -- end to end, killed and resumed ---------------------------------------------------------------

def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def test_search_end_to_end_resumes_after_a_kill(tmp_path):
    """A 3-trial search, killed (kill -9) in its second trained trial, then rerun."""
    args = [*DIGITS, "--depths", "8,14", "--widths", "1,4", "--max-params", "300K",
            "--max-trials", "3", "--epochs", "3", "--dir", "search", "--seed", "2"]
    proc = subprocess.Popen([sys.executable, TUNE, *args], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runs = tmp_path / "search" / "runs"
    deadline, victim, child = time.time() + 300, None, None
    while time.time() < deadline and proc.poll() is None:
        started = sorted(glob.glob(str(runs / "trial_*")), key=os.path.getctime)
        # Killed once the second trial's epoch-1 checkpoint is written (atomically; the
        # log row comes just before it), before its epoch 2 ends.
        if len(started) >= 2 and os.path.exists(
                os.path.join(started[1], "checkpoints", "epoch-0001.npz")):
            victim, child = started[1], (_children(proc.pid) or [None])[0]
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    first, _ = proc.communicate(timeout=60)
    assert victim is not None, first
    finished = {p: os.path.getmtime(p) for p in glob.glob(str(runs / "*" / "metrics.json"))}
    assert len(finished) == 1 and len(_trial_lines(first)) >= 1
    if child is not None:   # the trial's process ends with the search
        for _ in range(100):
            if not _alive(child):
                break
            time.sleep(0.1)
        assert not _alive(child)

    second = _tune(args, tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    out = second.stdout
    assert "Resuming the search in search:" in out
    assert all(os.path.getmtime(p) == t for p, t in finished.items())   # not rerun
    with open(os.path.join(victim, "metrics.json")) as f:
        assert json.load(f)["resumed_from_epoch"] == 1   # the killed trial went on
    lines = _trial_lines(out)
    assert lines and all(re.search(r"(completed|rejected|failed)", line) for line in lines)
    assert "search ETA" in lines[-1]
    rows = R.read_results(tmp_path / "search" / "results.csv")
    assert [r["status"] for r in rows].count("completed") == 3
    assert {r["status"] for r in rows} <= {"completed", "rejected"}
    _check_rows(rows)
    for row in rows:
        assert (row["status"] == "rejected") == (row["params"] > 300_000)
        if row["status"] == "rejected":
            assert "max_params=300,000" in row["error"]
    from PIL import Image

    with Image.open(tmp_path / "search" / "results.png") as image:
        assert image.size[0] > 500 and image.size[1] > 300
    best = max((r for r in rows if r["status"] == "completed"),
               key=lambda r: (r["val_accuracy"], -r["macs"]))
    call = re.search(r"keras_resnet\.ResNet\(.*\)", out).group(0)
    assert f"Best (trial {best['trial']}," in out
    model = eval(call, {"keras_resnet": keras_resnet})
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == best["params"]
    assert model.input_shape == (None, 8, 8, 3) and model.output_shape == (None, 10)
    assert "rank  trial  network" in out


# -- failures ---------------------------------------------------------------------------------

class _OutOfMemoryOnce(keras.callbacks.Callback):
    """Raises TensorFlow's out-of-memory error in the first trial it sees."""

    def __init__(self):
        super().__init__()
        self.trials = 0

    def on_train_begin(self, logs=None):
        self.trials += 1
        if self.trials == 1:
            raise tf.errors.ResourceExhaustedError(
                None, None, "OOM when allocating tensor with shape[128,16,8,8]")


def test_in_process_out_of_memory_fails_one_trial_then_the_best_is_retrained(tmp_path):
    config = SearchConfig(
        TrainConfig(dataset="digits", batch_size=128, export=str(tmp_path / "export")),
        directory=str(tmp_path / "s"), depths=[8], widths=[1, 2], preact=False, max_trials=2,
        epochs=1, final_epochs=1, in_process=True)
    out = io.StringIO()
    result = run_search(config, callbacks=[_OutOfMemoryOnce()], out=out)
    statuses = [(r["status"], r["error"]) for r in result.rows]
    assert statuses[0] == ("failed", "ResourceExhaustedError: OOM when allocating tensor "
                                     "with shape[128,16,8,8]")
    assert statuses[1] == ("completed", "")
    assert result.best["trial"] == result.rows[1]["trial"]
    assert result.final["epochs_completed"] == 1
    export = tmp_path / "export"
    assert (export / "model.keras").exists() and (export / "metadata.json").exists()
    with open(export / "metadata.json") as f:
        builder = json.load(f)["architecture"]["builder"]["kwargs"]
    assert (builder["depth"], builder["width"]) == (8, result.best["width"])
    assert os.path.isdir(tmp_path / "s" / f"final_trial_{result.best['trial']}")
    with pytest.raises(ValueError, match="`callbacks`"):
        run_search(SearchConfig(TrainConfig(dataset="digits"), directory=str(tmp_path / "x")),
                   callbacks=[_OutOfMemoryOnce()])


# -- a trial per process: failures and memory ----------------------------------------------------

DIVERGING_LR = 1e9
PROCESS_TRIALS = 6
MEMORY_MARGIN_MB = 20
one_search = pytest.mark.xdist_group("tune_recipe_trial_processes")


@pytest.fixture(scope="module")
def trial_processes(tmp_path_factory):
    """One search of 6 trials (ResNet-8, one epoch each), every trial in a process of its own.

    The trial with learning rate 1e9 diverges; the process of the first other trial is
    killed once its run directory's config.json is written (kill -9, as the out-of-memory
    killer would); the other four train. The three tests below read different trials of it.
    """
    tmp = tmp_path_factory.mktemp("trial_processes")
    proc = subprocess.Popen([sys.executable, TUNE, *DIGITS, "--depths", "8", "--widths", "1",
                             "--preact", "off", "--learning-rates", "1e9,0.2,0.1,0.05,0.02,0.01",
                             "--max-trials", str(PROCESS_TRIALS), "--epochs", "1", "--dir", "s"],
                            cwd=tmp, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline, killed = time.time() + 600, None
    while time.time() < deadline and killed is None and proc.poll() is None:
        for path in glob.glob(str(tmp / "s" / "runs" / "trial_*" / "config.json")):
            with open(path) as f:   # written atomically
                lr = json.load(f)["flags"]["lr"]
            children = _children(proc.pid)
            if lr != DIVERGING_LR and children:
                os.kill(children[0], signal.SIGKILL)
                killed = os.path.basename(os.path.dirname(path))[len("trial_"):]
                break
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=600)
    rows = R.read_results(tmp / "s" / "results.csv") if proc.returncode == 0 else []
    return types.SimpleNamespace(directory=tmp / "s", returncode=proc.returncode, out=out,
                                 killed=killed, rows=rows)


def _ran(search):
    assert search.returncode == 0 and len(search.rows) == PROCESS_TRIALS, search.out
    return {r["trial"]: r for r in search.rows}


@one_search
def test_a_failed_trial_is_recorded_and_the_search_goes_on(trial_processes):
    """A trial whose loss diverges (its own process) fails with its error; the others train."""
    rows = _ran(trial_processes)
    (diverged,) = [r for r in rows.values() if r["learning_rate"] == DIVERGING_LR]
    assert diverged["status"] == "failed"
    assert diverged["error"].startswith("TrainingDiverged: the training loss became nan")
    with open(trial_processes.directory / "errors" / f"trial_{diverged['trial']}.txt") as f:
        text = f.read()
    assert text.splitlines()[0] == diverged["error"] and "Traceback" in text
    assert any("failed" in line and "TrainingDiverged" in line
               for line in _trial_lines(trial_processes.out))
    assert [r["status"] for r in rows.values()
            if r["trial"] not in (diverged["trial"], trial_processes.killed)] == ["completed"] * 4


@one_search
def test_a_killed_trial_process_is_a_failed_trial(trial_processes):
    """The out-of-memory killer ends a trial's process: that trial fails, the search goes on."""
    rows = _ran(trial_processes)
    assert trial_processes.killed is not None, trial_processes.out
    killed = rows[trial_processes.killed]
    assert killed["learning_rate"] != DIVERGING_LR
    assert (killed["status"], killed["error"]) == (
        "failed", "the trial's process was killed by signal 9 (out of memory?)")
    later = [r for r in rows.values() if int(r["trial"]) > int(killed["trial"])
             and r["learning_rate"] != DIVERGING_LR]
    assert later and all(r["status"] == "completed" for r in later)


@one_search
def test_memory_stays_flat_over_six_trials(trial_processes):
    """The search's resident memory after the 6th trial is within 20 MB of that after the 2nd.

    Trained in the search's own process (``--in-process``), the same six trials grew it by
    about 38 MB from the 2nd to the 6th (1017 MB to 1.03 GB, about 10 MB a ResNet-8 trial
    as docs/search.md says); in processes of their own it stayed at 933 MB throughout.
    """
    _ran(trial_processes)
    memory = [float(m) for m in re.findall(r"search (\d+) MB", trial_processes.out)]
    assert len(memory) == PROCESS_TRIALS, trial_processes.out
    assert abs(memory[-1] - memory[1]) <= MEMORY_MARGIN_MB, memory


# -- Hyperband through the trainer ---------------------------------------------------------------

def test_hyperband_trials_train_their_epoch_budget(tmp_path):
    config = SearchConfig(TrainConfig(dataset="digits", batch_size=128),
                          directory=str(tmp_path / "h"), tuner="hyperband", epochs=2, factor=2,
                          depths=[8], widths=[1, 2], preact=False, in_process=True)
    result = run_search(config, out=io.StringIO())
    rows = [r for r in result.rows if r["status"] == "completed"]
    assert rows and {r["epochs"] for r in rows} <= {1, 2}
    for row in rows:   # each trial trained from scratch for its budget
        with open(tmp_path / "h" / "runs" / f"trial_{row['trial']}" / "log.csv") as f:
            assert len(f.read().strip().splitlines()) - 1 == row["epochs"]


# -- distribution --------------------------------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_trials_checking_their_run_directories_at_once_both_pass(tmp_path, monkeypatch):
    """Two trials' processes starting together check DIR/runs/trial_<id> under a missing DIR/runs.

    Both interleavings that failed one trial of a distributed search (its one line:
    "--run-dir ... cannot be created or written (File exists)" or "(No such file or
    directory)"), played in one process: the other process's check makes DIR/runs just
    before this one does, or removes the DIR/runs it made just before this one makes its
    trial's folder in it.
    """
    from keras_resnet.training.rundir import check_output_dir

    runs, mkdir = tmp_path / "runs", os.mkdir
    moves = []

    def other_process_first(path, *args, **kwargs):
        if moves:
            moves.pop(0)(os.fspath(path))
        return mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", other_process_first)
    moves.append(lambda path: mkdir(path))   # the other check makes DIR/runs first
    check_output_dir(str(runs / "trial_0"), "--run-dir")
    assert os.listdir(tmp_path) == ["runs"] and os.listdir(runs) == []   # its folder stays

    moves.append(lambda path: os.rmdir(runs))   # ... then removes it: checked again
    check_output_dir(str(runs / "trial_1"), "--run-dir")
    assert not moves and os.listdir(tmp_path) == []   # nothing of this check is left


def test_distributed_chief_and_two_workers_share_the_trials(tmp_path):
    args = [*DIGITS, "--depths", "8", "--widths", "1,2", "--max-trials", "4", "--epochs", "1",
            "--dir", "d"]
    common = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(_free_port())}
    procs = {name: subprocess.Popen([sys.executable, TUNE, *args], cwd=tmp_path,
                                    env=_env(KERASTUNER_TUNER_ID=name, **common),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in ("chief", "tuner0", "tuner1")}
    outs = {name: p.communicate(timeout=900)[0] for name, p in procs.items()}
    assert all(p.returncode == 0 for p in procs.values()), outs
    by_worker = {name: [re.match(r"trial +(\d+)", line).group(1)
                        for line in _trial_lines(outs[name])] for name in ("tuner0", "tuner1")}
    assert by_worker["tuner0"] and by_worker["tuner1"], outs   # shared out
    assert sorted(by_worker["tuner0"] + by_worker["tuner1"]) == ["0", "1", "2", "3"]
    assert "Chief: serving the oracle at 127.0.0.1:" in outs["chief"]
    rows = R.read_results(tmp_path / "d" / "results.csv")
    bad = [r for r in rows if r["status"] != "completed"]
    if bad:   # what the failed trials wrote, whole (an assertion message is cut short)
        files = sorted((tmp_path / "d").glob("*/trial_*.txt"))
        pytest.fail("\n".join([f"not completed: {bad}"] + [
            f"--- {p}\n{p.read_text()[-4000:]}" for p in files
            if any(f"trial_{r['trial']}." in p.name for r in bad)] + [
            f"--- {name}\n{out[-3000:]}" for name, out in outs.items()]), pytrace=False)
    _check_rows(rows)
