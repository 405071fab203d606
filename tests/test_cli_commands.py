"""The command-line layer: zero refused by every recipe, checks before TensorFlow loads,
quiet start-up, help texts, and the keras-resnet dispatcher (issues 16 and 18)."""

import os
import subprocess
import sys

import pytest

from keras_resnet.cli import analyze, experiment, main as dispatcher, train, tune

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=REPO)
    for key in ("TF_CONFIG", "TF_CPP_MIN_LOG_LEVEL"):
        env.pop(key, None)
    env.update(extra)
    return env


# (command's main, its first arguments, the flag set to zero, other flags)
ZERO_CASES = [
    (train.main, ("cifar10",), "--epochs", ["--dataset", "digits"]),
    (train.main, ("cifar10",), "--batch-size", ["--dataset", "digits"]),
    (train.main, ("cifar10",), "--lr", ["--dataset", "digits"]),
    (train.main, ("imagenet",), "--steps", ["--dataset", "synthetic"]),
    (train.main, ("imagenet",), "--batch-size", ["--dataset", "synthetic"]),
    (tune.main, (), "--epochs", ["--dataset", "digits"]),
    (tune.main, (), "--batch-size", ["--dataset", "digits"]),
    (tune.main, (), "--max-trials", ["--dataset", "digits"]),
    (experiment.main, ("degradation",), "--epochs", ["--dataset", "digits"]),
    (experiment.main, ("degradation",), "--batch-size", ["--dataset", "digits"]),
    (experiment.main, ("degradation",), "--lr", ["--dataset", "digits"]),
    (experiment.main, ("identity_mappings",), "--epochs", ["--dataset", "digits", "--table",
                                                           "units"]),
    (experiment.main, ("identity_mappings",), "--lr", ["--dataset", "digits", "--table",
                                                       "skips"]),
    (analyze.main, ("lesion",), "--draws", ["--model", "{model}", "--dataset", "digits"]),
    (analyze.main, ("lesion",), "--batch-size", ["--model", "{model}", "--dataset", "digits"]),
    (analyze.main, ("paths",), "--samples", ["--model", "{model}", "--dataset", "digits"]),
    (analyze.main, ("shattered_gradients",), "--width", []),
    (analyze.main, ("shattered_gradients",), "--inits", []),
]


@pytest.mark.parametrize("command, first, flag, others", ZERO_CASES,
                         ids=[f"{c.__module__.split('.')[-1]}-{'-'.join(f)}{flag}"
                              for c, f, flag, _ in ZERO_CASES])
def test_every_recipe_refuses_zero_in_one_line(command, first, flag, others, tmp_path,
                                               capsys):
    """`--epochs 0` trained 10 epochs of degradation.py (zero became the default)."""
    model = tmp_path / "model.keras"
    model.write_text("not read: the flags are checked first")
    out = tmp_path / "out"
    where = {"cifar10": "--run-dir", "imagenet": "--run-dir"}.get(first[0] if first else "",
                                                                  "--dir" if not first else "--out")
    args = [a.replace("{model}", str(model)) for a in others] + [flag, "0", where, str(out)]
    code = command(*first, args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and ": error: " in err[0] and flag in err[0], err
    assert not out.exists()


CHECK_BEFORE_TENSORFLOW = """
import sys
from keras_resnet.cli.train import main
code = main({recipe!r}, sys.argv[1:])
print("CODE", code, "tensorflow" in sys.modules, "keras" in sys.modules)
"""


@pytest.mark.parametrize("recipe, args, message", [
    ("cifar10", ["--dataset", "digits", "--depth", "57"], "received 57; expected 6n+2"),
    ("imagenet", ["--dataset", "synthetic", "--depth", "19"], "expected one of 18, 34, 50"),
    ("cifar10", ["--data-dir", "{tmp}/missing"], "--data-dir {tmp}/missing is not an existing"),
    ("cifar10", ["--dataset", "digits", "--batch-size", "4096"],
     "--batch-size 4096 is larger than the 1437 training images"),
    ("cifar10", ["--dataset", "synthetic", "--synthetic-examples", "100", "--batch-size", "128"],
     "--batch-size 128 is larger than the 100 training images"),
    ("cifar10", ["--dataset", "digits", "--ordering", "post", "--preact"], "`ordering`"),
])
def test_errors_that_need_no_tensorflow_come_before_it_loads(recipe, args, message, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run([sys.executable, "-c", CHECK_BEFORE_TENSORFLOW.format(recipe=recipe),
                           *args, "--run-dir", str(tmp_path / "run")], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "CODE 2 False False", proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message.replace("{tmp}", str(tmp_path)) in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_no_native_start_up_chatter_even_without_tf_cpp_min_log_level(tmp_path):
    """absl's pre-init notice, oneDNN/CUDA-stub lines and `failed call to cuInit` are not shown:
    an error after TensorFlow loaded is the only line on stderr."""
    proc = subprocess.run([sys.executable, os.path.join(REPO, "recipes", "cifar10.py"),
                           "--dataset", "digits", "--gpus", "64", "--run-dir",
                           str(tmp_path / "run")], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "recipes/cifar10.py: error: --gpus 64 asks for more GPUs than the 0 present on this "
        "machine."] or (proc.stderr.count("\n") == 1 and "--gpus 64" in proc.stderr), proc.stderr
    for noise in ("cuInit", "absl", "I0000", "oneDNN", "cuda drivers"):
        assert noise not in proc.stderr


def test_quiet_native_stderr_keeps_other_messages_and_failures():
    from keras_resnet.training.environment import _keep

    assert not _keep("WARNING: All log messages before absl::InitializeLog() is called are "
                     "written to STDERR", 0)
    assert not _keep("I0000 00:00:1796195202.449173   10823 port.cc:153] oneDNN custom "
                     "operations are on.", 2)
    assert _keep("I0000 00:00:1796195202.449173   10823 port.cc:153] oneDNN custom "
                 "operations are on.", 0)
    assert not _keep("E0000 00:00:1796195217.053684   10823 cuda_platform.cc:52] failed call "
                     "to cuInit: INTERNAL: CUDA error", 0)
    assert _keep("E0000 00:00:1796195217.053684   10823 bfc_allocator.cc:52] out of memory", 2)
    assert _keep("Traceback (most recent call last):", 3)


def test_help_texts():
    im = experiment.build_parser("identity_mappings").format_help()
    section = im[im.index("what to compare:"):]
    table = section[section.index("--table"):section.index("--depth")]
    assert "(required)" in table and "default: none" not in table
    lesion = analyze.build_parser("lesion").format_help()
    section = lesion[lesion.index("model and data:"):]
    assert "(required)" in section[section.index("--model"):section.index("--dataset")]
    cifar = " ".join(train.build_parser("cifar10").format_help().split())
    assert "about 10x slower than tensorflow" in cifar   # --backend jax on a CPU


def test_dispatcher_runs_each_command_under_its_own_name(capsys):
    assert dispatcher.main(["train", "cifar10", "--dataset", "nope"]) == 2
    assert capsys.readouterr().err.startswith(
        "keras-resnet train cifar10: error: --dataset 'nope' is unknown")
    assert dispatcher.main(["experiment", "degradation", "--depths", "21"]) == 2
    assert "keras-resnet experiment degradation: error: --depths 21" in capsys.readouterr().err
    assert dispatcher.main(["train", "mnist"]) == 2
    assert "expected one of cifar10, imagenet; received 'mnist'" in capsys.readouterr().err
    assert dispatcher.main(["fly"]) == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err
    assert dispatcher.main(["zoo", "resnet18"]) == 0
    assert "11,689,512" in capsys.readouterr().out


def test_the_run_length_reads_right():
    from keras_resnet.training.plan import Plan
    from keras_resnet.training.trainer import run_length

    def plan(total, epochs, per_epoch):
        p = Plan.__new__(Plan)
        object.__setattr__(p, "total_steps", total)
        object.__setattr__(p, "epochs", epochs)
        object.__setattr__(p, "steps_per_epoch", per_epoch)
        return p

    assert run_length(plan(4, 1, 32)) == "4 steps (of a 32-step epoch)"
    assert run_length(plan(22, 1, 22)) == "1 epoch (22 steps)"
    assert run_length(plan(440, 20, 22)) == "20 epochs (440 steps)"
