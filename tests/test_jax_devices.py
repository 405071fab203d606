"""The JAX engine over several devices (keras.distribution.DataParallel), on the CPU.

``XLA_FLAGS=--xla_force_host_platform_device_count=2`` gives a JAX process two
CPU devices, so ``--gpus N``'s code path (one SPMD step over a device mesh,
the batch split along its first axis) runs here without GPUs. The check is
against one device on the same global batch: the same losses, weights and
BatchNorm statistics, which is also the proof that ``--sync-bn`` needs nothing
under JAX (per-device statistics would differ).
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


def _python(code, *args, devices=2, timeout=300):
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    env.pop("TF_CONFIG", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


TWO_DEVICES = """
    import json, sys
    import jax, keras, numpy as np
    from keras_resnet import data as data_lib
    from keras_resnet.training import TrainConfig, Trainer

    data = data_lib.load("digits")
    def run(name, strategy=None, **kw):
        config = TrainConfig(dataset="digits", depth=8, batch_size=40, steps=3, seed=3,
                             quiet=True, no_export=True, run_dir=f"{sys.argv[1]}/{name}", **kw)
        trainer = Trainer(config, data=data, strategy=strategy)
        metrics = trainer.run()
        state = {v.path: np.asarray(v.value) for v in trainer.model.variables}
        return trainer, metrics, state
    one, m1, s1 = run("one")
    assert one.engine.replicas == 1 and len(jax.devices()) == 2
    two, m2, s2 = run("two", keras.distribution.DataParallel(devices=jax.devices()),
                      sync_bn=True)
    odd = two.engine.evaluate(data, 45)      # 45 = 2 x 22 + 1: every batch padded
    gap = lambda keys: max(float(np.abs(s1[k] - s2[k]).max()) for k in keys)
    stats = [k for k in s1 if "moving_" in k]
    weights = [k for k in s1 if k not in stats and "seed" not in k]
    row1, row2 = m1["history"][-1], m2["history"][-1]
    print("RESULT", json.dumps({
        "replicas": two.engine.replicas, "name": two.engine.name,
        "sharding": str(two.model.trainable_variables[0].value.sharding.device_set.__len__()),
        "loss": [float(row1["loss"]), float(row2["loss"])],
        "l2": [float(row1["l2_loss"]), float(row2["l2_loss"])],
        "accuracy": [float(row1["accuracy"]), float(row2["accuracy"])],
        "test": [m1["test_loss"], m2["test_loss"], m1["test_accuracy"], m2["test_accuracy"]],
        "odd": list(odd),
        "steps": [m1["steps_completed"], m2["steps_completed"]],
        "weight_gap": gap(weights), "stats_gap": gap(stats), "stats": len(stats)}))
"""


def test_two_cpu_devices_train_as_one_device_on_the_global_batch(tmp_path):
    """Three steps of ResNet-8 at global batch 40: split over two CPU devices
    (DataParallel, 20 each) they give one device's losses, weights and BatchNorm
    moving statistics on the whole batch, to float tolerance; --sync-bn is accepted."""
    proc = _python(TWO_DEVICES, str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["replicas"] == 2 and out["name"] == "DataParallel" and out["sharding"] == "2"
    assert out["steps"] == [3, 3]
    for pair in ("loss", "l2", "accuracy"):
        assert out[pair][0] == pytest.approx(out[pair][1], rel=1e-5), pair
    t = out["test"]
    assert t[0] == pytest.approx(t[1], rel=1e-5) and t[2] == t[3]
    # Padding to a multiple of the devices counts for nothing.
    assert out["odd"][0] == pytest.approx(t[1], rel=1e-5) and out["odd"][1] == t[3]
    assert out["weight_gap"] < 1e-5
    # Every BatchNorm's moving mean and variance (per-device batches would differ
    # by far more: their variance misses the spread between the halves).
    assert out["stats"] == 2 * 7 and out["stats_gap"] < 1e-5


MULTI_PROCESS = """
    import json, sys
    from keras_resnet.training import TrainConfig, train
    # One epoch of 7 steps at global batch 180, in one compiled call.
    metrics = train(TrainConfig(dataset="digits", depth=8, batch_size=180, steps=7, seed=2,
                                steps_per_execution=7, log_every=7, quiet=True,
                                no_export=True, run_dir=sys.argv[1]))
    print("METRICS", json.dumps({k: v for k, v in metrics.items() if k != "history"}))
"""


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_as_one_data_parallel_run(tmp_path):
    """Multi-host JAX on one machine: two processes (one CPU device each) joined by
    keras.distribution.initialize's environment variables run one DataParallel step
    over both; each keeps its own checkpoint, and the two are identical."""
    run_dir = tmp_path / "run"
    port = _free_port()
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
               KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
               KERAS_DISTRIBUTION_NUM_PROCESSES="2")
    for key in ("TF_CONFIG", "XLA_FLAGS"):
        env.pop(key, None)
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(MULTI_PROCESS),
                               str(run_dir)], cwd=REPO, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              env=dict(env, KERAS_DISTRIBUTION_PROCESS_ID=str(i)))
             for i in range(2)]
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    metrics = [json.loads(out.split("METRICS", 1)[1]) for out, _ in results]
    for m in metrics:
        assert m["replicas"] == 2 and m["strategy"] == "DataParallel"
        assert m["steps_completed"] == 7 and m["epochs_completed"] == 1
    assert metrics[0]["test_loss"] == metrics[1]["test_loss"]
    assert (run_dir / "metrics.json").exists() and (run_dir / "log.csv").exists()
    from keras_resnet.training import checkpoints as ckpt

    def newest(folder):
        store = ckpt.CheckpointStore(str(folder / "checkpoints"))
        return store.load(store.latest()[1])

    chief, other = newest(run_dir), newest(run_dir / "process1")
    assert chief.keys() == other.keys() and len(chief) > 20
    for key in chief:
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)
