"""keras_resnet.training: schedules, plans, precision, NaN handling, strategies, checkpoints.

The distributed tests run the library or the real recipe in subprocesses: two
logical CPU devices must be configured before TensorFlow initializes, and
MultiWorkerMirroredStrategy needs one process per worker.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import requires_tensorflow

pytestmark = requires_tensorflow

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from keras_resnet import training  # noqa: E402
from keras_resnet.training import ConfigError, TrainConfig  # noqa: E402
from keras_resnet.training import checkpoints as ckpt  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny run of the real recipe: CIFAR ResNet-8 on the 8x8 digits, 11 steps per epoch.
TINY = ["--dataset", "digits", "--depth", "8", "--batch-size", "128", "--quiet", "--no-export"]


def _env(**extra):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _recipe(args, **env):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "recipes", "cifar10.py"), *args],
                            cwd=REPO, env=_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def checkpoint_values(run_dir):
    """Every array of the newest checkpoint of a run directory (model, optimizer, trainer)."""
    store = ckpt.CheckpointStore(os.path.join(run_dir, "checkpoints"))
    latest = store.latest()
    assert latest, f"no checkpoint in {run_dir}"
    return store.load(latest[1])


def _resolved(**kw):
    return training.resolve_config(TrainConfig(**kw))


def _digits():
    from keras_resnet import data as data_lib

    return data_lib.load("digits")


# ---------------------------------------------------------------------------
# Schedules and plans (pure computation).


def test_schedules_are_keras_schedules_with_the_papers_values():
    schedules = keras.optimizers.schedules
    step = training.make_schedule({"kind": "step", "peak_lr": 0.1, "boundaries": [32000, 48000],
                                   "warmup_steps": 400, "warmup_lr": 0.01, "warmup": "constant"})
    assert isinstance(step, schedules.PiecewiseConstantDecay)
    assert [round(float(step(s)), 6) for s in (0, 399, 400, 31999, 32000, 47999, 48000)] == \
        [0.01, 0.01, 0.1, 0.1, 0.01, 0.01, 0.001]
    cosine = training.make_schedule({"kind": "cosine", "peak_lr": 0.4, "total_steps": 100,
                                     "warmup_steps": 10, "warmup_lr": 0.1, "warmup": "linear"})
    assert isinstance(cosine, schedules.CosineDecay)
    np.testing.assert_allclose([float(cosine(s)) for s in (0, 5, 10, 55, 100)],
                               [0.1, 0.25, 0.4, 0.2, 0.0], atol=1e-6)
    # The two combinations Keras has no schedule for: a hand-written warm-up wrapper.
    linear_step = training.make_schedule({"kind": "step", "peak_lr": 0.4, "boundaries": [10, 20],
                                          "warmup_steps": 5, "warmup_lr": 0.1,
                                          "warmup": "linear"})
    assert isinstance(linear_step, training.WarmupSchedule)
    np.testing.assert_allclose([float(linear_step(s)) for s in (0, 1, 4, 5, 9, 10, 19, 20)],
                               [0.1, 0.16, 0.34, 0.4, 0.4, 0.04, 0.04, 0.004], rtol=1e-6)
    constant_cosine = training.make_schedule({"kind": "cosine", "peak_lr": 0.4,
                                              "total_steps": 110, "warmup_steps": 10,
                                              "warmup_lr": 0.04, "warmup": "constant"})
    np.testing.assert_allclose([float(constant_cosine(s)) for s in (0, 9, 10, 60, 110)],
                               [0.04, 0.04, 0.4, 0.2, 0.0], atol=1e-6)
    for schedule in (step, cosine, linear_step, constant_cosine):
        config = keras.optimizers.schedules.serialize(schedule)
        again = keras.optimizers.schedules.deserialize(json.loads(json.dumps(config)))
        assert type(again) is type(schedule)
        steps = np.arange(0, 120, 7)
        np.testing.assert_array_equal([float(again(s)) for s in steps],
                                      [float(schedule(s)) for s in steps])
    # No class of ours shadows a Keras schedule name.
    from keras_resnet.training import schedules as ours

    assert not {n for n in dir(ours) if not n.startswith("_")} & set(dir(schedules)) - {
        "keras", "ops", "annotations"}


def test_cifar_plan_is_the_papers_recipe():
    # He et al. 2015 sec. 4.2: batch 128, lr 0.1, /10 at 32k and 48k, stop at 64k;
    # ResNet-110 warms up at 0.01 for 400 iterations.
    plan = training.make_plan(_resolved(dataset="cifar10", depth=110), train_size=50000, replicas=1)
    assert (plan.global_batch, plan.lr, plan.total_steps, plan.steps_per_epoch, plan.epochs) == \
        (128, 0.1, 64000, 390, 165)
    assert plan.schedule == {"kind": "step", "peak_lr": 0.1, "boundaries": [32000, 48000],
                             "warmup_steps": 400, "warmup_lr": 0.01, "warmup": "constant"}
    assert plan.zero_init is False
    assert plan.steps_in_epoch(164) == 390 and plan.steps_in_epoch(165) == 64000 - 164 * 390
    lr = training.make_schedule(plan.schedule)
    assert [round(float(lr(s)), 6) for s in (0, 399, 400, 31999, 32000, 48000, 63999)] == \
        [0.01, 0.01, 0.1, 0.1, 0.01, 0.001, 0.001]
    # ResNet-56: no warm-up; 45k/5k holdout: 351 steps per epoch, still 64k iterations.
    plan = training.make_plan(_resolved(dataset="cifar10", depth=56, holdout=True), 45000, 1)
    assert plan.schedule["warmup_steps"] == 0 and plan.total_steps == 64000
    # Batch 256 on 2 replicas: lr follows the global batch, iterations halve.
    plan = training.make_plan(_resolved(dataset="cifar10", batch_size=256), 50000, replicas=2)
    assert (plan.lr, plan.total_steps, plan.per_replica_batch) == (0.2, 32000, 128)
    assert plan.schedule["boundaries"] == [16000, 24000]


def test_imagenet_plan_scales_lr_warms_up_and_zero_inits_large_batches():
    plan = training.make_plan(_resolved(recipe="imagenet", dataset="imagenet2012"), 1281167, 8)
    assert (plan.global_batch, plan.lr, plan.epochs, plan.steps_per_epoch) == (256, 0.1, 90, 5004)
    assert plan.schedule["boundaries"] == [30 * 5004, 60 * 5004, 80 * 5004]
    assert plan.schedule["warmup_steps"] == 0 and plan.zero_init is False
    big = training.make_plan(_resolved(recipe="imagenet", dataset="imagenet2012", batch_size=1024,
                                       schedule="cosine"), 1281167, 32)
    assert big.lr == pytest.approx(0.4) and big.zero_init is True
    assert big.schedule == {"kind": "cosine", "peak_lr": pytest.approx(0.4),
                            "total_steps": 90 * 1251, "warmup_steps": 5 * 1251,
                            "warmup_lr": 0.1, "warmup": "linear"}
    lr = training.make_schedule(big.schedule)
    assert float(lr(0)) == pytest.approx(0.1) and float(lr(5 * 1251)) == pytest.approx(0.4)
    off = training.make_plan(_resolved(recipe="imagenet", dataset="synthetic", batch_size=1024,
                                       zero_init="off", warmup_epochs=0), 1281167, 8)
    assert off.zero_init is False and off.schedule["warmup_steps"] == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=3, steps=10), "--epochs 3 and --steps 10 conflict"),
    (dict(dataset="mnist"), "--dataset 'mnist' is unknown"),
    (dict(recipe="imagenet", dataset="cifar10"), "--dataset 'cifar10' is unknown"),
    (dict(dataset="digits", data_dir="/x"), "conflict"),
    (dict(precision="float16"), "--precision 'float16'"),
    (dict(label_smoothing=1.5), "--label-smoothing"),
    (dict(lr=-0.1), "--lr must be positive"),
    (dict(batch_size=0), "--batch-size must be positive"),
    (dict(image_size=16), "--image-size applies to"),
    (dict(steps_per_execution=0), "--steps-per-execution must be positive"),
    (dict(log_every=2.5), "--log-every must be an integer"),
    (dict(backend="torch"), "--backend 'torch': expected one of tensorflow, jax"),
    (dict(model_extras={"colour": 1}), "model_extras 'colour'"),
    (dict(export="e", no_export=True), "--export e and --no-export conflict"),
    (dict(remat=True, backend="tensorflow"), "--remat runs under the JAX backend"),
])
def test_resolve_config_rejects_bad_flags(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        training.resolve_config(TrainConfig(**kwargs))


def test_bad_builder_extras_are_config_errors_before_anything_is_built(tmp_path):
    config = TrainConfig(dataset="digits", depth=8, model_extras={"ordering": "sideways"},
                         run_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="`ordering`: received 'sideways'"):
        training.Trainer(config, data=_digits())
    assert not (tmp_path / "run").exists()


def test_plan_rejects_batch_not_divisible_by_replicas():
    with pytest.raises(ConfigError, match="--batch-size 128 .* not divisible by the 3 replicas"):
        training.make_plan(_resolved(dataset="cifar10"), 50000, replicas=3)


def test_gpus_beyond_those_present_is_a_config_error():
    present = len(tf.config.list_physical_devices("GPU"))
    with pytest.raises(ConfigError, match=f"--gpus {present + 1} asks for more GPUs than the "
                                          f"{present} present"):
        training.make_strategy(present + 1)


# ---------------------------------------------------------------------------
# Precision: float32 variables, 16-bit compute, float32 logits/softmax/loss.


@pytest.mark.parametrize("precision, compute", [("mixed_float16", "float16"),
                                                ("mixed_bfloat16", "bfloat16")])
def test_mixed_precision_trains_with_float32_head(precision, compute, tmp_path):
    config = TrainConfig(dataset="digits", depth=8, batch_size=64, epochs=1, precision=precision,
                         deterministic=False, run_dir=str(tmp_path / "run"), no_export=True)
    trainer = training.Trainer(config, strategy=tf.distribute.get_strategy(), data=_digits())
    trainer.build()
    model = trainer.model
    assert {v.dtype for v in model.weights} == {"float32"}
    assert model.get_layer("stem").compute_dtype == compute
    assert model.get_layer("stage3_block1").compute_dtype == compute
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model.get_layer("avg_pool").compute_dtype == "float32"
    assert model.output.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"   # the global policy is restored
    scaled = isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (precision == "mixed_float16")
    # Same layer names and weight shapes as the builder's float32 model.
    reference = training.build_model(trainer.builder, "float32")
    assert [layer.name for layer in model.layers] == [layer.name for layer in reference.layers]
    assert [w.shape for w in model.weights] == [w.shape for w in reference.weights]
    images, labels = next(iter(trainer.data.train_dataset(64, epoch=0)))
    assert model(images[:2]).dtype == "float32"
    losses = [float(trainer.train_step((images, labels))[0]) for _ in range(6)]
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < 0.8 * losses[0], losses
    assert not os.path.exists(config.run_dir)      # building writes nothing


# ---------------------------------------------------------------------------
# NaN: stop with a clear message, keep the last good checkpoint.


class _NaNFromEpoch:
    """InputData whose training images become NaN from 1-based ``epoch`` on."""

    def __init__(self, data, epoch):
        self._data, self._epoch = data, epoch

    def __getattr__(self, name):
        return getattr(self._data, name)

    def train_dataset(self, batch_size, epoch=0, **kw):
        ds = self._data.train_dataset(batch_size, epoch, **kw)
        if epoch >= self._epoch:
            ds = ds.map(lambda x, y: (x * np.float32("nan"), y))
        return ds

    def train_epochs(self, batch_size, start_epoch, steps_per_epoch, end_epoch=None, **kw):
        first = self.train_dataset(batch_size, start_epoch, **kw).take(steps_per_epoch)
        for epoch in range(start_epoch + 1, start_epoch + 4):
            first = first.concatenate(self.train_dataset(batch_size, epoch, **kw)
                                      .take(steps_per_epoch))
        return first


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    run_dir = str(tmp_path / "run")
    config = TrainConfig(dataset="digits", depth=8, batch_size=128, epochs=3, deterministic=False,
                         run_dir=run_dir, no_export=True, quiet=True, log_every=1)
    trainer = training.Trainer(config, strategy=tf.distribute.get_strategy(),
                               data=_NaNFromEpoch(_digits(), epoch=2))
    # Step 1 or 2: oneDNN's ReLU maps NaN to 0, so the first NaN batch can give a finite
    # loss; its update makes the weights NaN, and the next step's L2 term reports it.
    with pytest.raises(training.TrainingDiverged, match=r"became nan at epoch 2, step [12]; stopped "
                       r"without saving: the last good checkpoint is .*epoch-0001.npz \(epoch 1\)"):
        trainer.run()
    assert ckpt.CheckpointStore(os.path.join(run_dir, "checkpoints")).epochs() == [1]
    saved = checkpoint_values(run_dir)
    assert int(saved["trainer/epoch"]) == 1
    assert all(np.isfinite(v).all() for v in saved.values() if v.dtype.kind == "f")
    assert not os.path.exists(os.path.join(run_dir, "metrics.json"))
    with open(os.path.join(run_dir, "log.csv")) as f:
        assert len(f.read().strip().splitlines()) == 2   # header + epoch 1


def test_absurd_learning_rate_exits_1_with_a_clear_message(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    from keras_resnet.cli.train import main

    code = main("cifar10", [*TINY, "--epochs", "1", "--lr", "1e30", "--nondeterministic",
                "--run-dir", run_dir])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("recipes/cifar10.py: error: the training loss became ")
    assert "no checkpoint was written yet" in err[-1] and "--lr" in err[-1]
    assert not os.path.exists(os.path.join(run_dir, "metrics.json"))


# ---------------------------------------------------------------------------
# The loop's public API: history, Keras callbacks, steps per execution.


class _Recorder(keras.callbacks.Callback):
    def __init__(self, stop_after=None):
        super().__init__()
        self.events, self.stop_after = [], stop_after

    def on_train_begin(self, logs=None):
        self.events.append(("begin", None))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch", epoch, dict(logs)))
        if self.stop_after is not None and epoch + 1 >= self.stop_after:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.events.append(("end", None))


def test_callbacks_history_and_early_stop(tmp_path):
    recorder = _Recorder(stop_after=2)
    config = TrainConfig(dataset="digits", depth=8, batch_size=128, epochs=4, quiet=True,
                         run_dir=str(tmp_path / "run"), no_export=True, steps_per_execution=3)
    metrics = training.train(config, data=_digits(), callbacks=[recorder])
    kinds = [e[0] for e in recorder.events]
    assert kinds == ["begin", "epoch", "epoch", "end"]
    logs = recorder.events[2][2]
    assert set(logs) == {"loss", "accuracy", "val_loss", "val_accuracy", "l2_loss", "lr"}
    assert metrics["epochs_completed"] == 2 and metrics["steps_completed"] == 22
    assert [int(r["epoch"]) for r in metrics["history"]] == [1, 2]
    assert logs["val_accuracy"] == pytest.approx(float(metrics["history"][1]["test_accuracy"]),
                                                 abs=1e-6)
    assert metrics["test_accuracy"] == pytest.approx(logs["val_accuracy"])


def test_steps_per_execution_and_log_every_do_not_change_the_result(tmp_path):
    """One step per call with a host read every step, or 5 steps per call with reads
    every 10 steps: the same batches, the same updates, the same weights."""
    results = []
    for spe, log_every in ((1, 1), (5, 10)):
        config = TrainConfig(dataset="digits", depth=8, batch_size=128, epochs=2, quiet=True,
                             seed=5, run_dir=str(tmp_path / f"run{spe}"), no_export=True,
                             steps_per_execution=spe, log_every=log_every)
        metrics = training.train(config, data=_digits())
        results.append((metrics, checkpoint_values(config.run_dir)))
        keras.backend.clear_session()
    (m1, a), (m2, b) = results
    assert m1["steps_completed"] == m2["steps_completed"] == 22
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert [r["loss"] for r in m1["history"]] == pytest.approx(
        [r["loss"] for r in m2["history"]], rel=1e-4)


# ---------------------------------------------------------------------------
# Checkpoints keyed by variable path.


def _model(**kw):
    import keras_resnet

    return keras_resnet.ResNet(8, input_shape=(8, 8, 3), family="cifar", classes=10, **kw)


def test_checkpoints_restore_by_path_whatever_the_order_of_the_variables(tmp_path):
    source, target = _model(seed=1), _model(seed=2)
    store = ckpt.CheckpointStore(str(tmp_path / "checkpoints"))
    read = lambda v: np.asarray(v)  # noqa: E731
    store.save(3, ckpt.collect({"model": source.variables}, read))
    state = store.load(store.latest()[1])
    # Restore into the variables listed in reverse order: values follow the paths.
    ckpt.restore({"model": list(reversed(target.variables))}, state, lambda v, x: v.assign(x))
    for a, b in zip(source.variables, target.variables):
        assert a.path == b.path
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    # Two same-shaped kernels of one block are distinct entries, never swapped.
    k1 = state["model/stage1_block1/stage1_block1_conv1/kernel"]
    k2 = state["model/stage1_block1/stage1_block1_conv2/kernel"]
    assert k1.shape == k2.shape and not np.array_equal(k1, k2)


def test_a_checkpoint_of_another_architecture_names_the_first_mismatching_path(tmp_path):
    state = ckpt.collect({"model": _model().variables}, lambda v: np.asarray(v))
    wider = _model(width=2)
    with pytest.raises(ckpt.CheckpointMismatch,
                       match=r"variable 'model/stage1_block1/stage1_block1_conv1/kernel' has "
                             r"shape \(3, 3, 16, 16\) there and \(3, 3, 16, 32\) in the model"):
        ckpt.restore({"model": wider.variables}, state, lambda v, x: v.assign(x))
    projections = _model(shortcut="B")
    with pytest.raises(ckpt.CheckpointMismatch, match="has no variable 'model/stage2_block1/"
                                                      "stage2_block1_shortcut_conv/kernel'"):
        ckpt.restore({"model": projections.variables}, state, lambda v, x: v.assign(x))
    state["model/extra/kernel"] = np.zeros(3)
    with pytest.raises(ckpt.CheckpointMismatch, match="'model/extra/kernel' is not in the model"):
        ckpt.restore({"model": _model().variables}, state, lambda v, x: v.assign(x))


# ---------------------------------------------------------------------------
# Strategies: two logical CPU devices; two real worker processes.

# One process with two logical CPU devices runs the MirroredStrategy checks and the
# --sync-bn check (each TensorFlow process spends seconds starting); each part prints
# its result on one line after its marker, or its traceback after FAILED.
TWO_CPUS_SCRIPT = textwrap.dedent("""
    import json, os, sys, traceback
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_resnet import data as data_lib, training
    from keras_resnet.training import checkpoints as ckpt
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    run_dir = sys.argv[1]

    def mirrored_runs():
        base = dict(dataset="digits", depth=8, steps=16, deterministic=True, quiet=True,
                    no_export=True, run_dir=run_dir)
        try:
            training.Trainer(training.TrainConfig(batch_size=63, **base), strategy=mirrored)
        except training.ConfigError as e:
            print("CONFIG ERROR:", e)
        assert not os.path.exists(run_dir)
        metrics = training.train(training.TrainConfig(batch_size=128, **base),
                                 strategy=mirrored)
        print("METRICS", json.dumps({k: v for k, v in metrics.items() if k != "history"}))

        # Resume across hardware: one epoch on one device, the rest on two replicas.
        class Stop(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                self.model.stop_training = True
        moved = dict(base, run_dir=run_dir + "_moved", steps=22)
        first = training.train(training.TrainConfig(batch_size=128, **moved),
                               strategy=tf.distribute.get_strategy(), callbacks=[Stop()])
        second = training.train(training.TrainConfig(batch_size=128, **moved),
                                strategy=mirrored)
        print("MOVED", json.dumps([first["epochs_completed"], second["resumed_from_epoch"],
                                   second["epochs_completed"], second["replicas"],
                                   second["steps_completed"]]))

    def sync_bn():
        data = data_lib.load("digits")
        batch = next(iter(data.train_dataset(128, epoch=1)))
        def one_step(strategy, sync_bn):
            config = training.TrainConfig(dataset="digits", depth=8, batch_size=128, epochs=1,
                                          sync_bn=sync_bn, run_dir="unused", no_export=True)
            trainer = training.Trainer(config, strategy=strategy, data=data)
            trainer.train_step(batch)
            return {v.path: np.asarray(v.value) for v in trainer.model.variables
                    if "moving_mean" in v.path}
        single = one_step(tf.distribute.get_strategy(), False)
        synced = one_step(mirrored, True)
        local = one_step(mirrored, False)
        gap = lambda a: max(float(np.abs(a[k] - single[k]).max()) for k in single)
        print("GAPS", json.dumps([gap(synced), gap(local)]))

    for name, part in (("MIRRORED", mirrored_runs), ("SYNC_BN", sync_bn)):
        print("PART", name, flush=True)
        try:
            part()
        except BaseException:
            print("FAILED", name, traceback.format_exc(), flush=True)
        print("END", name, flush=True)
""")


@pytest.fixture(scope="module")
def two_cpus(tmp_path_factory):
    """Run TWO_CPUS_SCRIPT once; return the run directory and a function giving one
    part's output, failing the calling test if that part raised."""
    run_dir = tmp_path_factory.mktemp("two_cpus") / "run"
    proc = subprocess.run([sys.executable, "-c", TWO_CPUS_SCRIPT, str(run_dir)], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=600)

    def part(name):
        if f"END {name}" not in proc.stdout:
            pytest.fail(f"{name}: the process ended with {proc.returncode}: "
                        f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        out = proc.stdout.split(f"PART {name}\n", 1)[1].split(f"END {name}\n", 1)[0]
        if f"FAILED {name}" in out:
            pytest.fail(f"{out[-3000:]}\n{proc.stderr[-3000:]}")
        return out

    return run_dir, part


@pytest.mark.xdist_group("subprocess_training")
def test_mirrored_strategy_on_two_logical_cpus_and_resume_on_other_hardware(two_cpus):
    run_dir, part = two_cpus
    out = part("MIRRORED")
    assert "CONFIG ERROR: --batch-size 63 (the global batch) is not divisible by the 2 replicas" \
        in out
    metrics = json.loads(out.split("METRICS", 1)[1].splitlines()[0])
    assert metrics["replicas"] == 2 and metrics["strategy"] == "MirroredStrategy"
    assert metrics["steps_completed"] == 16 and metrics["epochs_completed"] == 2
    config = json.loads((run_dir / "config.json").read_text())
    assert config["plan"]["per_replica_batch"] == 64
    rows = (run_dir / "log.csv").read_text().strip().splitlines()[1:]
    losses = [float(r.split(",")[3]) for r in rows]
    assert len(losses) == 2 and losses[1] < losses[0]
    # Epoch 1 on the default strategy, epoch 2 resumed under MirroredStrategy.
    moved = json.loads(out.split("MOVED", 1)[1].splitlines()[0])
    assert moved == [1, 1, 2, 2, 22]


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.xdist_group("subprocess_training")
def test_multi_worker_mirrored_two_processes(tmp_path):
    run_dir = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    args = [*TINY, "--steps", "14", "--run-dir", str(run_dir)]
    procs = [_recipe(args, TF_CONFIG=json.dumps({"cluster": cluster,
                                                 "task": {"type": "worker", "index": i}}))
             for i in range(2)]
    results = [_finish(p) for p in procs]
    for code, out, err in results:
        assert code == 0, err[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["strategy"] == "MultiWorkerMirroredStrategy"
    assert metrics["steps_completed"] == 14
    assert "Test accuracy" in results[0][1] and "Test accuracy" not in results[1][1]
    chief = checkpoint_values(str(run_dir))
    worker = checkpoint_values(str(run_dir / "worker1"))
    assert chief.keys() == worker.keys() and len(chief) > 20
    for key in chief:
        np.testing.assert_array_equal(chief[key], worker[key], err_msg=key)


def test_xla_train_step_compiles_and_learns(tmp_path):
    config = TrainConfig(dataset="digits", depth=8, batch_size=64, epochs=1, xla=True,
                         deterministic=False, run_dir=str(tmp_path / "run"), no_export=True)
    trainer = training.Trainer(config, strategy=tf.distribute.get_strategy(), data=_digits())
    trainer.build()
    images, labels = next(iter(trainer.data.train_dataset(64, epoch=0)))
    losses = [float(trainer.train_step((images, labels))[0]) for _ in range(4)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def test_each_worker_reads_only_its_shard_and_a_step_sees_the_global_batch(tmp_path):
    """Across workers the input is sharded before decoding/augmentation: two workers'
    batches of a step are disjoint and together are one machine's global batch."""
    config = TrainConfig(dataset="digits", depth=8, batch_size=64, epochs=3,
                         deterministic=False, run_dir=str(tmp_path / "run"), no_export=True)
    trainer = training.Trainer(config, strategy=tf.distribute.get_strategy(), data=_digits())
    steps = 3
    shards = []
    for worker in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker,
                                         num_replicas_in_sync=2)
        batches = list(trainer.engine.worker_dataset(ctx, trainer.data, trainer.plan, 2)
                       .take(steps))
        assert all(x.shape == (32, 8, 8, 3) for x, _ in batches)
        shards.append(batches)
    whole = list(trainer.data.train_dataset(64, epoch=2).take(steps))

    def rows(x):
        return sorted(map(bytes, np.asarray(x).reshape(len(x), -1)))

    for step in range(steps):
        a, b = shards[0][step][0].numpy(), shards[1][step][0].numpy()
        assert not set(rows(a)) & set(rows(b))
        np.testing.assert_array_equal(
            np.array(rows(np.concatenate([a, b]))), np.array(rows(whole[step][0].numpy())))


@pytest.mark.xdist_group("subprocess_training")
def test_sync_bn_makes_two_replicas_compute_the_global_batch_statistics(two_cpus):
    """With --sync-bn, two replicas of 64 update BatchNorm's moving means exactly as one
    device with the global batch of 128 does; without it each replica uses its half."""
    out = two_cpus[1]("SYNC_BN")
    synced, local = json.loads(out.split("GAPS", 1)[1].splitlines()[0])
    assert synced < 1e-5 and local > 1e-3, (synced, local)
