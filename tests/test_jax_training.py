"""The recipes under the JAX backend, on a machine without TensorFlow.

The GPU machines this package is measured on have JAX and no TensorFlow, so
these tests run the recipes in subprocesses under ``KERAS_BACKEND=jax`` with
TensorFlow made unimportable (a meta-path finder that refuses it), which is
what such a machine looks like to the package.
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

NO_TENSORFLOW = textwrap.dedent("""
    import sys
    class _NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ModuleNotFoundError("No module named 'tensorflow' (hidden by the test)")
            return None
    sys.meta_path.insert(0, _NoTensorFlow())
""")


def _python(code, *args, cwd=None, timeout=900):
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    env.pop("TF_CONFIG", None)
    return subprocess.run([sys.executable, "-c", NO_TENSORFLOW + textwrap.dedent(code), *args],
                          cwd=cwd or REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_cifar_recipe_on_the_digits_under_jax_killed_and_resumed_exactly(tmp_path):
    """The recipe under JAX without TensorFlow: trains, exports, reloads; the same command
    restores the finished run; a second run SIGKILLed inside epoch 2's checkpoint write
    (epoch 2 trained, not saved) and rerun ends with the first run's weights, optimizer
    state and stochastic-depth seed states bit for bit (XLA on the CPU is deterministic)."""
    from tests.test_faults import kill_inside_write

    recipe = os.path.join(REPO, "recipes", "cifar10.py")
    code = f"""
        import runpy, sys
        run_dir = sys.argv[1]
        sys.argv = [{recipe!r}, "--dataset", "digits", "--depth", "8", "--batch-size", "128",
                    "--epochs", "2", "--seed", "4", "--drop-path-rate", "0.2",
                    "--run-dir", run_dir, *sys.argv[2:]]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as e:
            print("EXIT", e.code, "tensorflow" in sys.modules)
        if "--no-export" not in sys.argv:
            import keras
            model = keras.saving.load_model(run_dir.replace("runs", "saved_models") +
                                            "/model.keras")
            print("LOADED", model.name, keras.backend.backend(), "tensorflow" in sys.modules)
            # The same command again: the finished run is restored from its checkpoint.
            try:
                runpy.run_path(sys.argv[0], run_name="__main__")
            except SystemExit as e:
                print("AGAIN", e.code)
    """

    def start(workdir, run, *flags):
        env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
        env.pop("TF_CONFIG", None)
        return subprocess.Popen(
            [sys.executable, "-c", NO_TENSORFLOW + textwrap.dedent(code),
             os.path.join(workdir, "runs", run), *flags], cwd=workdir, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    out, err = start(str(tmp_path), "jax_digits").communicate(timeout=900)
    assert "EXIT 0 False" in out, err[-3000:]
    assert "LOADED resnet8 jax False" in out, err[-3000:]
    assert "AGAIN 0" in out and "after epoch 2 (" in out
    run_dir = tmp_path / "runs" / "jax_digits"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and metrics["epochs_completed"] == 2
    assert metrics["steps_completed"] == 22 and metrics["test_accuracy"] > 0.5
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["epoch-0002.npz"]
    assert sorted(os.listdir(tmp_path / "saved_models" / "jax_digits")) == \
        ["metadata.json", "model.keras"]
    assert "epoch 2/2:" in out and "Wrote " in out

    def quiet(workdir, run):
        return start(workdir, run, "--no-export", "--quiet")

    assert kill_inside_write(str(tmp_path), "killed", os.path.join("checkpoints",
                             "epoch-0002.npz.tmp"), start=quiet, ready=lambda d: os.path.exists(
                                 os.path.join(d, "checkpoints", "epoch-0001.npz")))
    out, err = quiet(str(tmp_path), "killed").communicate(timeout=900)
    assert "EXIT 0 False" in out, err[-3000:]
    straight = np.load(run_dir / "checkpoints" / "epoch-0002.npz")
    resumed = np.load(tmp_path / "runs" / "killed" / "checkpoints" / "epoch-0002.npz")
    assert sorted(straight.files) == sorted(resumed.files)
    for key in straight.files:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
    rows = (tmp_path / "runs" / "killed" / "log.csv").read_text().strip().splitlines()
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


def test_imagenet_recipe_on_synthetic_images_under_jax(tmp_path):
    """Random-resized-crop data: the crops are resized on the device (uint8 input)."""
    code = f"""
        import runpy, sys
        sys.argv = [{os.path.join(REPO, 'recipes', 'imagenet.py')!r}, "--dataset", "synthetic",
                    "--image-size", "64", "--depth", "18", "--batch-size", "16", "--steps", "3",
                    "--run-dir", sys.argv[1]]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as e:
            print("EXIT", e.code)
    """
    run_dir = tmp_path / "run"
    proc = _python(code, str(run_dir), cwd=tmp_path)
    assert "EXIT 0" in proc.stdout, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and metrics["steps_completed"] == 3
    assert metrics["model"] == "resnet18" and np.isfinite(metrics["test_loss"])
    assert "Not exported: a run of 3 steps" in proc.stdout


def test_jax_refuses_what_it_cannot_do(tmp_path):
    code = """
        import sys
        from keras_resnet.cli.train import main
        for args in (["--dataset", "cifar10"], ["--dataset", "digits", "--precision",
                     "mixed_float16"], ["--dataset", "digits", "--gpus", "4"]):
            print("CODE", main("cifar10", args + ["--run-dir", sys.argv[1]]))
    """
    proc = _python(code, str(tmp_path / "run"))
    assert proc.stdout.count("CODE 2") == 3, (proc.stdout, proc.stderr[-2000:])
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("recipes/cifar10.py: error")]
    assert "needs tf.data (TensorFlow)" in errors[0]
    assert "use --precision mixed_bfloat16 under JAX" in errors[1]
    assert "--gpus 4 asks for more GPUs than the 0 present" in errors[2]
    assert not (tmp_path / "run").exists()


REMAT = """
    import json
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
    print("RESULT", json.dumps({
        "changed": changed, "loss": [a[0], b[0]],
        "grad_diff": max(float(np.abs(p - q).max()) for p, q in zip(a[1], b[1])),
        "stats_diff": max(float(np.abs(p - q).max()) for p, q in zip(a[2], b[2])),
        "checkpoints": [a[3] > 0, b[3] > 0]}))
"""


def test_remat_recomputes_blocks_with_the_same_gradients_and_statistics():
    proc = _python(REMAT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["changed"] == 3 and out["checkpoints"] == [False, True]
    assert out["loss"][0] == pytest.approx(out["loss"][1], rel=1e-6)
    assert out["grad_diff"] < 1e-5 and out["stats_diff"] < 1e-6


def test_training_benchmark_under_jax_without_tensorflow(tmp_path):
    code = """
        import json, sys
        from keras_resnet.cli import bench as cli
        code = cli.main(["--train", "--model", "resnet20_cifar", "--batch-size", "2",
                               "--image-size", "8", "--repeats", "1", "--calls", "1",
                               "--steps-per-execution", "2", "--json", sys.argv[1]])
        print("CODE", code, "tensorflow" in sys.modules)
    """
    out = tmp_path / "r.json"
    proc = _python(code, str(out))
    assert "CODE 0 False" in proc.stdout, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    ours = result["results"][0]
    assert ours["backend"] == "jax" and ours["steps_per_execution"] == 2
    assert ours["images_per_sec"] > 0 and ours["parameters"] == 269_722
