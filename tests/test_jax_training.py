"""The recipes under the JAX backend, on a machine without TensorFlow.

The GPU machines this package is measured on have JAX and no TensorFlow, so
these tests run the recipes in subprocesses under ``KERAS_BACKEND=jax`` with
TensorFlow made unimportable (the path finder does not see it), which is
what such a machine looks like to the package. Each JAX process spends many
seconds starting, so one process (SESSION) runs every check that needs no
process of its own, one after the other, each with its output captured apart.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.xdist_group("jax_subprocess")

# The path finder stops seeing TensorFlow, as on a machine without it: importing it
# raises ModuleNotFoundError and importlib.util.find_spec returns None (which JAX's
# compilation cache asks for).
NO_TENSORFLOW = textwrap.dedent("""
    import sys
    from importlib.machinery import PathFinder
    class _NoTensorFlow(PathFinder):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                return None
            return super().find_spec(name, path, target)
    sys.meta_path[:] = [_NoTensorFlow if f is PathFinder else f for f in sys.meta_path]
""")


def _env(cache=None):
    """A JAX process's environment; ``cache``: a folder for XLA's persistent compilation
    cache, so that processes compiling the same step (the same program, to the byte)
    compile it once."""
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    env.pop("TF_CONFIG", None)
    if cache:
        env.update(JAX_COMPILATION_CACHE_DIR=str(cache),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return env


def _python(code, *args, cwd=None, timeout=900, cache=None):
    return subprocess.run([sys.executable, "-c", NO_TENSORFLOW + textwrap.dedent(code), *args],
                          cwd=cwd or REPO, env=_env(cache), capture_output=True, text=True,
                          timeout=timeout)


RECIPE = os.path.join(REPO, "recipes", "cifar10.py")
# ``cifar(run_dir, *flags)``: the CIFAR recipe on the digits under JAX; unless
# --no-export is given, the export is reloaded and the same command run again.
CIFAR = f"""
    import os, runpy, sys
    def cifar(run_dir, *flags):
        argv = [{RECIPE!r}, "--dataset", "digits", "--depth", "8", "--batch-size", "128",
                "--epochs", "2", "--seed", "4", "--drop-path-rate", "0.2",
                "--run-dir", run_dir, *flags]
        sys.argv = list(argv)
        try:
            runpy.run_path(argv[0], run_name="__main__")
        except SystemExit as e:
            print("EXIT", e.code, "tensorflow" in sys.modules)
        if "--no-export" not in flags:
            import keras
            model = keras.saving.load_model(os.path.join(
                "saved_models", os.path.basename(run_dir), "model.keras"))
            print("LOADED", model.name, keras.backend.backend(), "tensorflow" in sys.modules)
            # The same command again: the finished run is restored from its checkpoint.
            sys.argv = list(argv)
            try:
                runpy.run_path(argv[0], run_name="__main__")
            except SystemExit as e:
                print("AGAIN", e.code)
"""

# One JAX process runs every check below that needs no process of its own: each
# part's stdout and stderr are captured apart, and an exception in one part is
# reported by that part's test alone.
SESSION = CIFAR + f"""
    import contextlib, io, json, time, traceback
    root = sys.argv[1]
    os.chdir(root)

    def imagenet():
        # Random-resized-crop data: the crops are resized on the device (uint8 input).
        # ResNet-18 is the smallest ImageNet depth, 32 the smallest ImageNet input.
        sys.argv = [{os.path.join(REPO, 'recipes', 'imagenet.py')!r}, "--dataset", "synthetic",
                    "--image-size", "32", "--synthetic-examples", "64", "--depth", "18",
                    "--batch-size", "16", "--steps", "3", "--run-dir", root + "/imagenet"]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as e:
            print("EXIT", e.code)

    def refuses():
        from keras_resnet.cli.train import main
        for args in (["--dataset", "cifar10"], ["--dataset", "digits", "--precision",
                     "mixed_float16"], ["--dataset", "digits", "--gpus", "4"]):
            print("CODE", main("cifar10", args + ["--run-dir", root + "/refused"]))

    def bench():
        from keras_resnet.cli import bench as cli
        code = cli.main(["--train", "--model", "resnet20_cifar", "--batch-size", "2",
                         "--image-size", "8", "--repeats", "1", "--calls", "1",
                         "--steps-per-execution", "2", "--json", root + "/bench.json"])
        print("CODE", code, "tensorflow" in sys.modules)

    def remat():
        import jax, keras, numpy as np
        import keras_resnet
        from keras_resnet.training.remat import rematerialize_blocks
        keras.utils.set_random_seed(0)
        plain = keras_resnet.ResNet(8, input_shape=(8, 8, 3), classes=10, preact=True,
                                    drop_path_rate=0.0)
        remat = keras_resnet.ResNet(8, input_shape=(8, 8, 3), classes=10, preact=True)
        remat.set_weights(plain.get_weights())
        changed = rematerialize_blocks(remat)
        x = np.random.default_rng(0).standard_normal((4, 8, 8, 3)).astype("float32")
        def grads(model):
            tv = [v.value for v in model.trainable_variables]
            ntv = [v.value for v in model.non_trainable_variables]
            def loss(tv):
                y, new = model.stateless_call(tv, ntv, x, training=True)
                return (y ** 2).sum(), new
            fn = jax.value_and_grad(loss, has_aux=True)
            (value, stats), g = jax.jit(fn)(tv)
            text = str(jax.make_jaxpr(fn)(tv))
            return float(value), g, stats, text.count("remat") + text.count("checkpoint")
        a, b = grads(plain), grads(remat)
        print("RESULT", json.dumps({{
            "changed": changed, "loss": [a[0], b[0]],
            "grad_diff": max(float(np.abs(p - q).max()) for p, q in zip(a[1], b[1])),
            "stats_diff": max(float(np.abs(p - q).max()) for p, q in zip(a[2], b[2])),
            "checkpoints": [a[3] > 0, b[3] > 0]}}))

    results = {{}}
    # First the rerun of the killed run, in a fresh process as a user's rerun would be;
    # then the uninterrupted run it is compared with.
    for name, part in (("resumed", lambda: cifar(root + "/runs/killed", "--no-export",
                                                 "--quiet")),
                       ("cifar", lambda: cifar(root + "/runs/jax_digits")),
                       ("imagenet", imagenet), ("refuses", refuses), ("bench", bench),
                       ("remat", remat)):
        out, err, began = io.StringIO(), io.StringIO(), time.monotonic()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                part()
            error = None
        except BaseException:
            error = traceback.format_exc()
        results[name] = {{"out": out.getvalue(), "err": err.getvalue(), "error": error,
                         "seconds": round(time.monotonic() - began, 1)}}
    print("SESSION", json.dumps(results))
"""


def _start(workdir, run, *flags, cache=None):
    code = NO_TENSORFLOW + textwrap.dedent(CIFAR) + "\ncifar(*sys.argv[1:])\n"
    return subprocess.Popen([sys.executable, "-c", code, os.path.join(workdir, "runs", run),
                             *flags], cwd=workdir, env=_env(cache), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A digits run SIGKILLed inside epoch 2's checkpoint write (epoch 2 trained, not
    saved), then SESSION once; the session's digits runs find the killed run's compiled
    steps in the compilation cache. Returns its root folder, a function giving one part's
    (stdout, stderr), failing the calling test if that part raised, and whether the
    kill landed inside the write."""
    from tests.test_faults import kill_inside_write

    root = tmp_path_factory.mktemp("jax_session")
    cache = tmp_path_factory.mktemp("xla_cache")
    inside = kill_inside_write(
        str(root), "killed", os.path.join("checkpoints", "epoch-0002.npz.tmp"),
        start=lambda workdir, run: _start(workdir, run, "--no-export", "--quiet", cache=cache),
        ready=lambda d: os.path.exists(os.path.join(d, "checkpoints", "epoch-0001.npz")),
        deadline=900)
    proc = _python(SESSION, str(root), cwd=root, cache=cache, timeout=1800)
    if "SESSION" not in proc.stdout:
        pytest.fail(f"the JAX session ended with {proc.returncode}: "
                    f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    results = json.loads(proc.stdout.rsplit("SESSION", 1)[1])
    print({name: r["seconds"] for name, r in results.items()})

    def part(name):
        r = results[name]
        if r["error"]:
            pytest.fail(f"{name}: {r['error']}\n{r['err'][-3000:]}")
        return r["out"], r["err"]

    return root, part, inside


def test_cifar_recipe_on_the_digits_under_jax_killed_and_resumed_exactly(session):
    """The recipe under JAX without TensorFlow: trains, exports, reloads; the same command
    restores the finished run; a second run SIGKILLed inside epoch 2's checkpoint write
    (epoch 2 trained, not saved) and rerun ends with the first run's weights, optimizer
    state and stochastic-depth seed states bit for bit (XLA on the CPU is deterministic)."""
    root, part, inside = session
    out, err = part("cifar")
    assert "EXIT 0 False" in out, err[-3000:]
    assert "LOADED resnet8 jax False" in out, err[-3000:]
    assert "AGAIN 0" in out and "after epoch 2 (" in out
    run_dir = root / "runs" / "jax_digits"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and metrics["epochs_completed"] == 2
    assert metrics["steps_completed"] == 22 and metrics["test_accuracy"] > 0.5
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["epoch-0002.npz"]
    assert sorted(os.listdir(root / "saved_models" / "jax_digits")) == \
        ["metadata.json", "model.keras"]
    assert "epoch 2/2:" in out and "Wrote " in out

    assert inside
    out, err = part("resumed")
    assert "EXIT 0 False" in out, err[-3000:]
    straight = np.load(run_dir / "checkpoints" / "epoch-0002.npz")
    resumed = np.load(root / "runs" / "killed" / "checkpoints" / "epoch-0002.npz")
    assert sorted(straight.files) == sorted(resumed.files)
    for key in straight.files:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
    rows = (root / "runs" / "killed" / "log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]


RESUME = """
    import json, sys
    import keras
    from keras_resnet.training import TrainConfig, train
    from keras_resnet.training import checkpoints as ckpt
    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True
    root = sys.argv[1]
    def config(name):
        return TrainConfig(dataset="digits", depth=8, batch_size=128, epochs=2, seed=4,
                           drop_path_rate=0.2, quiet=True, no_export=True,
                           run_dir=f"{root}/{name}")
    straight = train(config("straight"))
    first = train(config("resumed"), callbacks=[Stop()])
    second = train(config("resumed"))
    out = {"first": first["epochs_completed"], "resumed_from": second["resumed_from_epoch"],
           "steps": [straight["steps_completed"], second["steps_completed"]],
           "tensorflow": "tensorflow" in sys.modules}
    a = ckpt.CheckpointStore(f"{root}/straight/checkpoints")
    b = ckpt.CheckpointStore(f"{root}/resumed/checkpoints")
    sa, sb = a.load(a.latest()[1]), b.load(b.latest()[1])
    out["keys_equal"] = sorted(sa) == sorted(sb)
    out["max_diff"] = max(float(abs(sa[k].astype("float64") - sb[k].astype("float64")).max())
                          for k in sa)
    print("RESULT", json.dumps(out))
"""


@pytest.mark.slow
def test_jax_resume_continues_exactly_random_streams_included(tmp_path):
    """Stopped after epoch 1 and resumed: the same weights, optimizer state and
    stochastic-depth seed states as an uninterrupted run (XLA on CPU is deterministic)."""
    proc = _python(RESUME, str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["first"] == 1 and out["resumed_from"] == 1
    assert out["steps"] == [22, 22] and out["keys_equal"] and not out["tensorflow"]
    assert out["max_diff"] == 0.0


def test_imagenet_recipe_on_synthetic_images_under_jax(session):
    """Random-resized-crop data: the crops are resized on the device (uint8 input)."""
    root, part, _ = session
    out, err = part("imagenet")
    assert "EXIT 0" in out, err[-3000:]
    metrics = json.loads((root / "imagenet" / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and metrics["steps_completed"] == 3
    assert metrics["model"] == "resnet18" and np.isfinite(metrics["test_loss"])
    assert "Not exported: a run of 3 steps" in out


def test_jax_refuses_what_it_cannot_do(session):
    root, part, _ = session
    out, err = part("refuses")
    assert out.count("CODE 2") == 3, (out, err[-2000:])
    errors = [ln for ln in err.splitlines() if ln.startswith("recipes/cifar10.py: error")]
    assert "needs tf.data (TensorFlow)" in errors[0]
    assert "use --precision mixed_bfloat16 under JAX" in errors[1]
    assert "--gpus 4 asks for more GPUs than the 0 present" in errors[2]
    assert not (root / "refused").exists()


def test_remat_recomputes_blocks_with_the_same_gradients_and_statistics(session):
    out, err = session[1]("remat")
    out = json.loads(out.split("RESULT", 1)[1])
    assert out["changed"] == 3 and out["checkpoints"] == [False, True]
    assert out["loss"][0] == pytest.approx(out["loss"][1], rel=1e-6)
    assert out["grad_diff"] < 1e-5 and out["stats_diff"] < 1e-6


def test_training_benchmark_under_jax_without_tensorflow(session):
    root, part, _ = session
    out, err = part("bench")
    assert "CODE 0 False" in out, err[-3000:]
    result = json.loads((root / "bench.json").read_text())
    ours = result["results"][0]
    assert ours["backend"] == "jax" and ours["steps_per_execution"] == 2
    assert ours["images_per_sec"] > 0 and ours["parameters"] == 269_722
