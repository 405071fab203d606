"""Faults tested from outside: SIGKILL at random moments, a full disk, a read-only run directory.

A harness runs the real recipe in a subprocess and kills it with SIGKILL from
outside: while it trains, inside the write of a checkpoint, inside the write of
``log.csv`` and while it exports (it watches the run and export directories, makes
the short writes block on a FIFO so the kill lands inside them every time, and in
the slow test also kills at random moments). Each time, rerunning the same command must end with exactly the
weights of an uninterrupted run, and ``log.csv``, ``metrics.json`` and the
export must be whole. The library has no test hook for this: the kills come
from outside, as a real crash would. (Each TensorFlow process spends seconds
starting, so the uninterrupted reference run and the first killed run share one
process, and both tests start from copies of that killed run.)
"""

import csv
import glob
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import requires_tensorflow

pytestmark = [requires_tensorflow, pytest.mark.xdist_group("faults")]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--dataset", "digits", "--depth", "8", "--batch-size", "128", "--epochs", "3",
        "--seed", "3", "--quiet"]
NO_EXPORT = ["--no-export"]   # an output flag: a run resumes with or without it


def _env():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    return env


def _start(workdir, run, extra=(), preexec=None, prefix=()):
    return subprocess.Popen(
        [*prefix, sys.executable, os.path.join(REPO, "recipes", "cifar10.py"), *ARGS, *extra,
         "--run-dir", os.path.join(workdir, "runs", run)],
        cwd=workdir, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=preexec)


def _run(workdir, run, extra=(), preexec=None, timeout=600, prefix=()):
    proc = _start(workdir, run, extra, preexec, prefix)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _final_state(workdir, run):
    from keras_resnet.training.checkpoints import CheckpointStore

    store = CheckpointStore(os.path.join(workdir, "runs", run, "checkpoints"))
    epoch, path = store.latest()
    return epoch, store.load(path)


WATCHERS = {
    # Each returns True while the write it names is in progress.
    # (The writes of a checkpoint and of log.csv are too short to catch by watching:
    # kill_inside_write makes them block.)
    "step": lambda run_dir, export_parent, name: _log_rows(run_dir) >= 1,
    "epoch 2 saved": lambda run_dir, export_parent, name: os.path.exists(
        os.path.join(run_dir, "checkpoints", "epoch-0002.npz")),
    "export": lambda run_dir, export_parent, name: bool(
        glob.glob(os.path.join(export_parent, f".{name}.tmp-*"))),
}


def _log_rows(run_dir):
    try:
        with open(os.path.join(run_dir, "log.csv")) as f:
            return max(0, len(f.read().strip().splitlines()) - 1)
    except OSError:
        return 0


def kill_during(workdir, run, moment, rng, deadline=300, duration=30.0):
    """Start the recipe and SIGKILL it during ``moment`` (or at a random time if the
    moment passes unseen); return what was caught."""
    run_dir = os.path.join(workdir, "runs", run)
    export_parent = os.path.join(workdir, "saved_models")
    proc = _start(workdir, run)
    watch = WATCHERS.get(moment)
    start = time.monotonic()
    # "random": a moment between start-up and the end of an uninterrupted run of ``duration``.
    random_at = start + rng.uniform(0.3, 0.95) * duration
    caught = None
    while proc.poll() is None and time.monotonic() - start < deadline:
        if watch is not None and watch(run_dir, export_parent, run):
            if moment in ("step", "epoch 2 saved"):
                # Somewhere in epoch 2's steps (an epoch of the digits takes well under
                # a second on a quiet machine).
                time.sleep(rng.uniform(0.0, 0.1))
            caught = moment
            break
        if watch is None and time.monotonic() >= random_at:
            caught = "random"
            break
        time.sleep(0.01)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    if proc.returncode != -signal.SIGKILL:
        print(f"{moment}: the recipe ended by itself ({proc.returncode}):", err[-3000:])
    return caught, proc.returncode


def _check_whole(workdir, run, reference):
    """The rerun's files are whole and its weights are the uninterrupted run's."""
    run_dir = os.path.join(workdir, "runs", run)
    epoch, state = _final_state(workdir, run)
    ref_epoch, ref_state = reference
    assert epoch == ref_epoch == 3
    assert state.keys() == ref_state.keys()
    for key in state:
        np.testing.assert_array_equal(state[key], ref_state[key], err_msg=key)
    with open(os.path.join(run_dir, "log.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert all(r["test_accuracy"] for r in rows)
    metrics = json.loads(open(os.path.join(run_dir, "metrics.json")).read())
    assert metrics["epochs_completed"] == 3 and metrics["steps_completed"] == 33
    export = os.path.join(workdir, "saved_models", run)
    meta = json.loads(open(os.path.join(export, "metadata.json")).read())
    from keras_resnet.training.rundir import du

    for name, info in meta["files"].items():
        assert du(os.path.join(export, name)) == info["bytes"], name
    assert not glob.glob(os.path.join(workdir, "saved_models", f".{run}.tmp-*"))
    assert not glob.glob(os.path.join(run_dir, "**", "*.tmp"), recursive=True)
    return metrics


def _reference(workdir):
    """The uninterrupted run: its final weights, and how long it took."""
    start = time.monotonic()
    code, _, err = _run(workdir, "straight")
    assert code == 0, err[-3000:]
    return _final_state(workdir, "straight"), time.monotonic() - start


def _kill_and_resume(workdir, moments, seed):
    rng = random.Random(seed)
    ref, duration = _reference(workdir)
    ref_metrics = json.loads(open(os.path.join(workdir, "runs", "straight",
                                               "metrics.json")).read())
    caught = []
    for i, moment in enumerate(moments):
        run = f"killed{i}"
        what, code = kill_during(workdir, run, moment, rng, duration=duration)
        caught.append((moment, what, code))
        code, out, err = _run(workdir, run)
        assert code == 0, (moment, err[-3000:])
        metrics = _check_whole(workdir, run, ref)
        assert metrics["test_accuracy"] == ref_metrics["test_accuracy"]
    print("kills:", caught)
    return caught


def kill_inside_write(workdir, run, target, ready, deadline=300, start=None):
    """Start (or resume) the recipe and SIGKILL it inside the write of ``target``.

    Once ``ready(run_dir)`` holds, a FIFO is put where the write will create its
    temporary file (``target``, relative to the run directory), opened for reading by
    this process and filled until it holds no more. The recipe's atomic write then
    opens it and blocks in its first ``write``: seeing the FIFO among the process's open
    files, the kill lands inside that write every time, without any hook in the
    library. The FIFO is then replaced by a regular file holding a few bytes, what a
    real kill leaves behind. Returns True if the kill landed inside the write.
    ``start(workdir, run)`` starts the process (default: the TensorFlow recipe).
    """
    import fcntl

    run_dir = os.path.join(workdir, "runs", run)
    path = os.path.join(run_dir, target)
    proc = (start or _start)(workdir, run)
    began, inside, fds = time.monotonic(), False, []
    try:
        while proc.poll() is None and time.monotonic() - began < deadline:
            if not fds and ready(run_dir):
                os.mkfifo(path)
                fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
                fds.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                fcntl.fcntl(fds[1], 1031, 4096)   # F_SETPIPE_SZ: the smallest pipe, then full
                try:
                    while True:
                        os.write(fds[1], b"\0" * 4096)
                except BlockingIOError:
                    pass
            if fds and _has_open(proc.pid, path):
                time.sleep(0.05)           # it is blocked in write(): the pipe is full
                inside = proc.poll() is None
                break
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        for fd in fds:
            os.close(fd)
        if fds:
            os.remove(path)
            with open(path, "wb") as f:   # what a killed write leaves: a partial file
                f.write(b"PK\x03\x04" if ".npz" in target else b"epoch,steps,lr")
    return inside and proc.returncode == -signal.SIGKILL


def _has_open(pid, path):
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
        except OSError:
            pass
    return False


# The uninterrupted reference run, then a fresh run, in one process (each TensorFlow
# process spends seconds starting): the recipe run as __main__ twice, as its command does.
REFERENCE_THEN_FRESH = """
import runpy, sys
recipe, args, straight, fresh = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
for run_dir, extra in ((straight, ["--no-export"]), (fresh, [])):
    sys.argv = [recipe, *args, *extra, "--run-dir", run_dir]
    try:
        runpy.run_path(recipe, run_name="__main__")
    except SystemExit as e:
        print("EXIT", e.code, flush=True)
"""


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """The starting point of both tests below, which each resume a copy of it: a fresh run
    SIGKILLed inside the write of epoch 2's checkpoint (epoch 1's is on disk). Its process
    first ran the uninterrupted reference run, with --no-export (the export checked is
    the killed run's own). (A resumed run first deletes leftover *.tmp checkpoints, so
    this kill has to be a fresh run's.)

    Returns ``inside`` (whether the kill landed inside the write), ``copy(workdir, run)``
    (the killed run copied to ``workdir/runs/<run>``), ``reference`` (the reference's
    newest epoch and checkpoint) and ``reference_metrics``.
    """
    import types

    workdir = str(tmp_path_factory.mktemp("started"))
    straight = os.path.join(workdir, "runs", "straight")
    fresh = os.path.join(workdir, "runs", "fresh")

    def start(workdir, run):
        return subprocess.Popen(
            [sys.executable, "-c", REFERENCE_THEN_FRESH, os.path.join(REPO, "recipes",
             "cifar10.py"), " ".join(ARGS), straight, os.path.join(workdir, "runs", run)],
            cwd=workdir, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)

    inside = kill_inside_write(workdir, "fresh", os.path.join("checkpoints",
                               "epoch-0002.npz.tmp"), start=start, deadline=600,
                               ready=lambda d: os.path.exists(
                                   os.path.join(d, "checkpoints", "epoch-0001.npz")))

    def copy(workdir, run):
        shutil.copytree(fresh, os.path.join(workdir, "runs", run), symlinks=True)

    if not os.path.exists(os.path.join(straight, "metrics.json")):
        pytest.fail(f"the reference run did not finish: {os.listdir(straight)}")
    with open(os.path.join(straight, "metrics.json")) as f:
        reference_metrics = json.load(f)
    return types.SimpleNamespace(inside=inside, copy=copy,
                                 reference=_final_state(workdir, "straight"),
                                 reference_metrics=reference_metrics)


def test_sigkill_inside_each_write_then_resume_is_exact(tmp_path, started):
    """One run killed four times, each time rerun with the same command: inside a
    checkpoint's write, during a step, inside log.csv's write and during the export. The last
    rerun ends with exactly the uninterrupted run's weights, log, metrics and export."""
    workdir = str(tmp_path)
    rng = random.Random(1)
    run = "killed"
    # A fresh run: inside epoch 2's checkpoint write (after epoch 1's is on disk).
    assert started.inside
    started.copy(workdir, run)
    assert sorted(os.listdir(os.path.join(workdir, "runs", run, "checkpoints"))) == \
        ["epoch-0001.npz", "epoch-0002.npz.tmp"]
    # Resumed after epoch 1: during a step of epoch 3.
    what, code = kill_during(workdir, run, "epoch 2 saved", rng)
    assert (what, code) == ("epoch 2 saved", -signal.SIGKILL)
    # Resumed after epoch 2: epoch 3's log row (log.csv is written before the checkpoint).
    assert kill_inside_write(workdir, run, "log.csv.tmp", ready=lambda d: True)
    what, code = kill_during(workdir, run, "export", rng)
    assert (what, code) == ("export", -signal.SIGKILL)
    code, out, err = _run(workdir, run)
    assert code == 0, err[-3000:]
    metrics = _check_whole(workdir, run, started.reference)
    assert metrics["test_accuracy"] == started.reference_metrics["test_accuracy"]


@pytest.mark.slow
def test_sigkill_at_many_moments_then_resume_is_exact(tmp_path):
    moments = ["step", "export", "random", "random", "random", "random"]
    caught = _kill_and_resume(str(tmp_path), moments, seed=2)
    assert [c[1] for c in caught] == ["step", "export"] + ["random"] * 4, caught


# ---------------------------------------------------------------------------
# A full disk and a read-only run directory.


def _file_size_limit(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _read_only(folder):
    """Make ``folder`` read-only for the next process; return the command prefix it needs.

    Without privileges, permission bits do it. root ignores them, so as root the process
    runs in a user namespace as the unprivileged user nobody (``unshare --user``, no
    mount and no capability needed): the kernel then checks the folder's permission bits
    for it like for anyone else, while it reads and writes the rest as before.
    """
    os.chmod(folder, 0o555)
    if os.geteuid() != 0:
        return []
    prefix = ["unshare", "--user", "--map-user=65534", "--map-group=65534"]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    if probe.returncode:
        pytest.fail("this machine allows no user namespace (unshare --user): the read-only "
                    "case cannot run as root here: " + probe.stderr.decode()[-300:])
    return prefix


def test_a_full_disk_or_a_read_only_run_directory_keeps_the_last_good_checkpoint(
        tmp_path, started):
    """The resumed run cannot write epoch 2's checkpoint: a clear error, exit 1, epoch 1's
    checkpoint untouched and nothing half-written; with room again it resumes. (The run
    starts from one killed after epoch 1; no export: the failing write is a checkpoint's.)"""
    workdir = str(tmp_path)
    assert started.inside
    started.copy(workdir, "full")
    run_dir = os.path.join(workdir, "runs", "full")
    ckpts = os.path.join(run_dir, "checkpoints")
    before = open(os.path.join(ckpts, "epoch-0001.npz"), "rb").read()
    # A full disk (a file-size limit: writes past it fail with EFBIG).
    code, out, err = _run(workdir, "full", NO_EXPORT, preexec=_file_size_limit(200_000))
    assert code == 1, err[-2000:]
    message = err.strip().splitlines()[-1]
    assert message.startswith("recipes/cifar10.py: error: could not write the checkpoint of "
                              "epoch 2 to ")
    assert "File too large" in message and "epoch-0001.npz (epoch 1), is kept" in message
    assert "rerun the same command to resume" in message
    assert os.listdir(ckpts) == ["epoch-0001.npz"]
    assert open(os.path.join(ckpts, "epoch-0001.npz"), "rb").read() == before
    # A read-only checkpoints folder.
    prefix = _read_only(ckpts)
    try:
        code, out, err = _run(workdir, "full", NO_EXPORT, prefix=prefix)
    finally:
        os.chmod(ckpts, 0o755)
    assert code == 1, err[-2000:]
    message = err.strip().splitlines()[-1]
    assert "could not write the checkpoint of epoch 2" in message
    assert "Permission denied" in message, message
    assert "epoch-0001.npz (epoch 1), is kept" in message
    assert os.listdir(ckpts) == ["epoch-0001.npz"]
    # With room again, the same command resumes after epoch 1 and finishes.
    code, out, err = _run(workdir, "full", NO_EXPORT)
    assert code == 0, err[-2000:]
    assert "Resuming" in out and "after epoch 1" in out
