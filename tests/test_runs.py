"""keras_resnet.runs: the one subprocess mechanism and the sweep runner's records."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from keras_resnet.runs import IsolatedError, isolated, run_isolated


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_isolated_computes_in_another_process():
    assert isolated(os.getpid) != os.getpid()
    assert isolated(divmod, 17, 5) == (3, 2)
    done = run_isolated(sum, ([1, 2, 3],))
    assert done.value == 6 and done.peak_bytes > 0 and done.seconds > 0


def test_isolated_reports_the_childs_error_in_one_line():
    with pytest.raises(IsolatedError) as error:
        isolated(int, "x")
    assert str(error.value) == "ValueError: invalid literal for int() with base 10: 'x'"
    assert error.value.error_type == "ValueError" and "Traceback" in error.value.traceback
    assert error.value.returncode == 1


def test_isolated_kills_a_child_that_runs_too_long():
    start = time.monotonic()
    with pytest.raises(IsolatedError, match=r"^the child process did not finish within 1 s"):
        isolated(time.sleep, 60, timeout=1)
    assert time.monotonic() - start < 30


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_child_dies_with_its_parent(tmp_path):
    """kill -9 of the parent: the kernel ends the child at once (PR_SET_PDEATHSIG)."""
    code = ("import time; from keras_resnet.runs import isolated; "
            "isolated(time.sleep, 120)")
    parent = subprocess.Popen([sys.executable, "-c", code])
    child, deadline = None, time.time() + 60
    while child is None and time.time() < deadline:
        try:
            with open(f"/proc/{parent.pid}/task/{parent.pid}/children") as f:
                found = [int(p) for p in f.read().split()]
        except OSError:
            found = []
        child = found[0] if found else None
        time.sleep(0.05)
    assert child is not None
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        if not _alive(child):
            break
        time.sleep(0.05)
    assert not _alive(child)


def test_a_failed_job_is_recorded_with_its_reason_and_tried_again(tmp_path):
    """A job that fails (here: a depth the builder refuses) does not stop the sweep."""
    pytest.importorskip("keras")
    from keras_resnet.runs import Job, Sweep
    from keras_resnet.training import TrainConfig

    run_dir = str(tmp_path / "bad")
    job = Job("bad", TrainConfig(dataset="digits", depth=9, epochs=1, run_dir=run_dir))
    outcome = Sweep().run(job)
    assert outcome.status == "failed" and outcome.history == [] and not outcome.skipped
    assert outcome.message.startswith("ConfigError: ") and "depth" in outcome.message
    with open(os.path.join(run_dir, "run.json")) as f:
        record = json.load(f)
    assert (record["name"], record["status"], record["message"]) == \
        ("bad", "failed", outcome.message)
    with open(os.path.join(run_dir, "error.txt")) as f:
        text = f.read()
    assert text.splitlines()[0] == outcome.message and "Traceback" in text
    again = Sweep().run(job)   # a failed job is not "done": the next sweep tries it again
    assert again.status == "failed" and not again.skipped
