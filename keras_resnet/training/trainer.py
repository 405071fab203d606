"""The trainer: one run, from checked settings to metrics and an export.

:class:`Trainer` is the small public API that the recipes, the KerasTuner
search and the experiment runner share::

    trainer = Trainer(TrainConfig(dataset="digits", depth=20, run_dir="runs/r20"))
    metrics = trainer.run()          # train (or resume), evaluate, export
    trainer.history                  # one dict per epoch (the rows of log.csv)

Constructing a trainer checks everything and writes nothing. ``run`` is a few
named steps: :meth:`build` (model, optimizer, compiled steps), restoring the
newest checkpoint, one :meth:`train_epoch` and :meth:`end_epoch` per epoch,
and :meth:`finish` (metrics, export). Only the engine differs between
backends (``engine_tf`` for tf.distribute, ``engine_jax`` for JAX). This module
holds the loop and the checkpoint/resume bookkeeping; what a run writes besides
(config.json, TensorBoard, metrics.json, the export) is the
:class:`~keras_resnet.training.outputs.RunOutputs` mixin.
"""

from __future__ import annotations

import math
import os

import keras
import numpy as np

from keras_resnet.training import checkpoints as ckpt
from keras_resnet.training.config import (ConfigError, TrainingDiverged, resolve_config)
from keras_resnet.training.model import (build_model, builder_kwargs, check_builder_kwargs,
                                         decay_variables, make_optimizer)
from keras_resnet.training.outputs import RunOutputs
from keras_resnet.training.plan import make_plan
from keras_resnet.training.progress import Progress, Timer, fmt_seconds
from keras_resnet.training.rundir import (RunLog, check_output_dir, check_run_dir,
                                          default_run_dir, log_row)
from keras_resnet.training.schedules import make_schedule

# Read the metrics back to the host (progress, NaN check) every this many steps.
# (On a GPU, a multiple of the engines' 32 steps per call: fewer distinct call lengths to compile.)
DEFAULT_LOG_EVERY = {"gpu": 128, "cpu": 4}


def run_length(plan):
    """How long a run is, in words: ``20 epochs (440 steps)``, ``4 steps (of a 32-step epoch)``."""
    if plan.total_steps < plan.steps_per_epoch:
        return f"{plan.total_steps} step{'s' * (plan.total_steps != 1)} (of a " \
               f"{plan.steps_per_epoch}-step epoch)"
    return f"{plan.epochs} epoch{'s' * (plan.epochs != 1)} ({plan.total_steps} steps)"


def make_engine(config, strategy=None):
    """The engine of the running Keras backend (``config.backend`` must agree with it)."""
    backend = keras.backend.backend()
    if config.backend is not None and config.backend != backend:
        raise ConfigError(f"--backend {config.backend} but Keras runs the {backend} backend "
                          f"(KERAS_BACKEND is read when keras is first imported); set "
                          f"KERAS_BACKEND={config.backend} before importing keras.")
    if backend == "tensorflow":
        from keras_resnet.training.engine_tf import TFEngine

        return TFEngine(config, strategy)
    if backend == "jax":
        from keras_resnet.training.engine_jax import JaxEngine

        return JaxEngine(config, strategy)
    raise ConfigError(f"The training recipes run under the tensorflow and jax backends; "
                      f"KERAS_BACKEND is {backend!r}.")


def load_data(config, backend="tensorflow"):
    """``keras_resnet.data.load`` for a resolved config; its ValueErrors become ConfigErrors."""
    from keras_resnet import data as data_lib

    kwargs = {"seed": config.seed, "holdout": config.holdout}
    if config.val_split is not None:
        kwargs["val_split"] = config.val_split
    if config.image_size is not None:
        kwargs["image_size"] = config.image_size
    if config.dataset in ("synthetic", "folder") and config.image_size is None:
        kwargs["image_size"] = 32 if config.recipe == "cifar10" else 224
    if config.dataset == "synthetic":
        kwargs["num_classes"] = 10 if config.recipe == "cifar10" else 1000
        if config.synthetic_examples is not None:
            kwargs["synthetic_examples"] = config.synthetic_examples
    name = None if config.dataset == "folder" else config.dataset
    if backend != "tensorflow" and config.dataset not in ("digits", "synthetic"):
        raise ConfigError(f"--dataset {config.dataset} needs tf.data (TensorFlow); under the "
                          f"{backend} backend the recipes train on --dataset digits or synthetic.")
    try:
        return data_lib.load(name, data_dir=config.data_dir, **kwargs)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0] if str(e) else repr(e)) from None


class Trainer(RunOutputs):
    """One training run: engine, data, model, optimizer, checkpoints and the loop.

    Args:
        config: a :class:`~keras_resnet.training.config.TrainConfig`.
        data: a ``keras_resnet.data.InputData`` or None (loaded from the config).
        strategy: None (from ``--gpus``/TF_CONFIG), a ``tf.distribute.Strategy``
            (TensorFlow) or a ``keras.distribution.DataParallel`` (JAX).
        callbacks: ``keras.callbacks.Callback`` objects; they get
            ``on_train_begin``, ``on_epoch_begin``/``on_epoch_end`` (0-based epoch,
            logs with ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
            ``l2_loss``, ``lr``) and ``on_train_end``; setting
            ``model.stop_training`` ends the run after the epoch.
        verbose: bool or None. None: the run's first lines, and the progress display
            unless ``config.quiet``; True: both; False: nothing.

    Constructing checks every setting and writes nothing (ConfigError).
    """

    def __init__(self, config, *, data=None, strategy=None, callbacks=None, verbose=None):
        self.config = resolve_config(config)
        c = self.config
        self.engine = make_engine(c, strategy)
        self.chief, self.replicas = self.engine.chief, self.engine.replicas
        self.data = data if data is not None else load_data(c, self.engine.backend)
        self.plan = make_plan(c, self.data.train_size, self.replicas)
        self.builder = builder_kwargs(c, self.plan, self.data.input_shape(),
                                      self.data.num_classes)
        check_builder_kwargs(self.builder)
        # The default run directory is named by the settings: the same command
        # resumes its unfinished run (--fresh: a new directory).
        self.resumed_default = False
        if c.run_dir is None:
            c.run_dir, self.resumed_default = default_run_dir(c, fresh=c.fresh)
        self.run_dir = c.run_dir
        self.resuming = check_run_dir(self.run_dir, c) if self.chief else False
        # A smoke run (shorter than one epoch) keeps no checkpoint and exports only
        # when --export is given: a 3-step ImageNet check should not write 300 MB.
        self.smoke = self.plan.total_steps < self.plan.steps_per_epoch
        self.export_dir = c.export or os.path.join("saved_models", os.path.basename(
            os.path.normpath(self.run_dir)))
        self.exporting = not c.no_export and not (self.smoke and c.export is None)
        if self.chief and self.exporting and os.path.isdir(self.export_dir) \
                and os.listdir(self.export_dir) \
                and not os.path.exists(os.path.join(self.run_dir, "metrics.json")):
            raise ConfigError(f"--export {self.export_dir} already exists and is not empty; "
                              "choose another directory.")
        if self.chief:   # every output location can be written, before any work
            check_output_dir(self.run_dir, "--run-dir")
            if self.exporting:
                check_output_dir(self.export_dir, "--export")
        self.callbacks = list(callbacks or [])
        self.verbose = (not c.quiet) if verbose is None else bool(verbose)
        self.announce = verbose is not False     # the run's first lines

        self.history = []
        self.model = None

    # -- setup -------------------------------------------------------------------
    def build(self):
        """Create the model, optimizer and compiled steps (no writes)."""
        if self.model is not None:
            return
        c, plan = self.config, self.plan
        # Global state (seeds, op determinism) changes only once every check passed.
        self.engine.set_global_state(c.seed)
        with self.engine.scope():
            self.model = build_model(self.builder, c.precision, sync_bn=c.sync_bn,
                                     remat=c.remat)
            self.prepare_model(self.model)
            self.optimizer = make_optimizer(plan, c.momentum)
            self.optimizer.build(self.model.trainable_variables)
        self.decayed = decay_variables(self.model)
        self.engine.compile(self.model, self.optimizer, self.decayed,
                            classes=self.data.num_classes, weight_decay=c.weight_decay,
                            label_smoothing=c.label_smoothing, global_batch=plan.global_batch,
                            xla=c.xla, preprocessing=self.data.preprocessing)
        label = self.engine.worker_label()
        folder = self.run_dir if label is None else os.path.join(self.run_dir, label)
        self.store = ckpt.CheckpointStore(os.path.join(folder, "checkpoints"))

    def prepare_model(self, model):
        """Hook between building the model and building the optimizer: a subclass loads
        weights or freezes layers here (the fine-tuning stages do); nothing by default."""

    def train_step(self, batch):
        """One training step on a global batch (tests, tools); returns (loss, l2, correct)."""
        self.build()
        return self.engine.train_step(batch)

    def _groups(self):
        return {"model": self.model.variables, "optimizer": self.optimizer.variables}

    def restore(self):
        """Restore the newest checkpoint, if any; return the last completed epoch (0: none)."""
        self.store.remove_temporary()
        latest = self.store.latest()
        if latest is None:
            return 0
        epoch, path = latest
        state = self.store.load(path)
        ckpt.restore(self._groups(), state, self.engine.assign, source=f"checkpoint {path}")
        return int(state["trainer/epoch"])

    def save_checkpoint(self, epoch):
        """Write the checkpoint of the completed ``epoch`` (every worker, its own folder)."""
        state = ckpt.collect(self._groups(), self.engine.read)
        state["trainer/epoch"] = np.asarray(epoch, np.int64)
        return self.store.save(epoch, state)

    def _say(self, text):
        if self.chief and self.announce:
            print(text, flush=True)

    # -- the loop ------------------------------------------------------------------
    def run(self):
        """Train (or resume), evaluate, write metrics.json and export; return the metrics."""
        c, plan = self.config, self.plan
        self.build()
        start = self.restore()
        self.log = RunLog(os.path.join(self.run_dir, "log.csv"))
        if self.chief:
            os.makedirs(self.run_dir, exist_ok=True)
            if not self.resuming:
                self._write_config()
            self.log.truncate(start)
            self.history = [dict(r) for r in self.log.rows()]
        self._announce(start)
        self._writer = self._tensorboard()
        self.progress = Progress(plan.epochs, plan.total_steps,
                                 enabled=self.verbose and self.chief)
        callbacks = keras.callbacks.CallbackList(self.callbacks, add_history=False,
                                                 add_progbar=False, model=self.model,
                                                 epochs=plan.epochs, steps=plan.steps_per_epoch,
                                                 verbose=0)
        callbacks.on_train_begin()
        self._epoch_times, self._throughput, self._train_seconds = [], [], 0.0
        test = None
        if start < plan.epochs:
            iterator = self.engine.train_iterator(self.data, plan, start + 1)
            for epoch in range(start + 1, plan.epochs + 1):
                callbacks.on_epoch_begin(epoch - 1)
                row = self.train_epoch(epoch, iterator)
                test = self.end_epoch(epoch, row, callbacks)
                if getattr(self.model, "stop_training", False):
                    break
        callbacks.on_train_end()
        return self.finish(start, test)

    def _announce(self, start):
        c, plan = self.config, self.plan
        trainable = int(sum(math.prod(v.shape) for v in self.model.trainable_variables))
        self._say(f"{self.data.name}: {self.data.train_size} training / {self.data.test_size} "
                  f"test images, {self.model.name} ({trainable:,} trainable parameters), "
                  f"{self.engine.name} with {self.replicas} replica(s), global batch "
                  f"{plan.global_batch}, lr {plan.lr:g}, {run_length(plan)}, "
                  f"precision {c.precision}.")
        if start:
            self._say(f"Resuming {self.run_dir} after epoch {start} ({self.store.path(start)})"
                      + (" (--fresh to start over)." if self.resumed_default else "."))
        elif self.resumed_default:
            self._say(f"Resuming {self.run_dir} (--fresh to start over).")
        self._say(f"Run directory: {self.run_dir}")

    def _log_every(self):
        kind = "gpu" if self.engine.gpu else "cpu"
        return self.config.log_every or DEFAULT_LOG_EVERY[kind]

    def train_epoch(self, epoch, iterator):
        """Train the steps of 1-based ``epoch``; return its training metrics (a log row).

        The host reads the metrics only every ``log_every`` steps (and at the end
        of the epoch): then the progress display is redrawn and a NaN/inf loss
        stops the run.
        """
        plan, engine = self.plan, self.engine
        steps = plan.steps_in_epoch(epoch)
        log_every, per_call = self._log_every(), engine.steps_per_execution
        timer = Timer()
        done, logged, sums, first = 0, 0, None, None
        host = (0.0, 0.0, 0.0)
        while done < steps:
            next_log = min(steps, (done // log_every + 1) * log_every)
            n = min(per_call, next_log - done)
            out = engine.run_steps(iterator, n)
            sums = out if sums is None else engine.add(sums, out)
            done += n
            if done == next_log:
                host = engine.to_host(sums)
                loss, l2, correct = host
                if not (math.isfinite(loss) and math.isfinite(l2)):
                    self._diverged(epoch, logged + 1, done, loss + l2)
                logged = done
                seconds = timer()
                if self._epoch_times:          # steady state from earlier epochs
                    pace = sum(t for _, t in self._throughput[1:] or self._throughput) / max(
                        sum(n for n, _ in self._throughput[1:] or self._throughput), 1)
                    self.progress.seconds_per_step(pace * plan.global_batch)
                elif first is None:            # the first call also traces and compiles
                    first = (seconds, done)
                    self.progress.seconds_per_step(seconds / done)
                else:
                    self.progress.seconds_per_step((seconds - first[0]) / (done - first[1]))
                self.progress.update(epoch, done, steps, {
                    "loss": f"{loss / done:.4f}",
                    "accuracy": f"{correct / (done * plan.global_batch):.4f}",
                    "img/s": f"{done * plan.global_batch / seconds:.0f}"},
                    steps_left=plan.total_steps - plan.first_step(epoch) - done,
                    epochs_left=plan.epochs - epoch + 1)
        seconds = timer()
        loss, l2, correct = host
        lr = float(make_schedule(plan.schedule)(plan.first_step(epoch)))
        return {**log_row(epoch=epoch, steps=plan.first_step(epoch) + steps, lr=lr,
                          loss=loss / steps, l2_loss=l2 / steps,
                          accuracy=correct / (steps * plan.global_batch),
                          images_per_sec=steps * plan.global_batch / seconds),
                "_train_seconds": seconds, "_images": steps * plan.global_batch}

    def _diverged(self, epoch, first, last, value):
        latest = self.store.latest()
        where = (f"the last good checkpoint is {latest[1]} (epoch {latest[0]})"
                 if latest else "no checkpoint was written yet")
        steps = f"step {last}" if first == last else f"steps {first}-{last}"
        raise TrainingDiverged(
            f"the training loss became {value} at epoch {epoch}, {steps}; stopped without "
            f"saving: {where}. Try a lower --lr (the run used {self.plan.lr:g} at batch "
            f"{self.plan.global_batch}).")

    def end_epoch(self, epoch, row, callbacks=None):
        """Evaluate, log, checkpoint and report a finished epoch; return (test loss, accuracy)."""
        plan = self.plan
        timer = Timer()
        self.engine.sync_replicas()
        test_loss, test_acc = self.engine.evaluate(self.data, plan.global_batch)
        eval_seconds = timer()
        train_seconds, images = row.pop("_train_seconds"), row.pop("_images")
        epoch_seconds = train_seconds + eval_seconds
        row.update(log_row(test_loss=test_loss, test_accuracy=test_acc,
                           epoch_seconds=epoch_seconds))
        self._epoch_times.append(epoch_seconds)
        self._throughput.append((images, train_seconds))
        self._train_seconds += train_seconds
        self.history.append(dict(row))
        if self.chief:
            self.log.append(row)
            self._scalars(epoch, row)
        if not self.smoke:
            self.save_checkpoint(epoch)
        logs = {"loss": row["loss"], "accuracy": row["accuracy"],
                "val_loss": test_loss, "val_accuracy": test_acc,
                "l2_loss": row["l2_loss"], "lr": row["lr"]}
        if callbacks is not None:
            callbacks.on_epoch_end(epoch - 1, logs)
        self.progress.eval_seconds(eval_seconds)
        self.progress.end_epoch(epoch, {
            "loss": f"{row['loss']:.6f}", "accuracy": f"{row['accuracy']:.6f}",
            "test_accuracy": f"{row['test_accuracy']:.6f}", "time": fmt_seconds(epoch_seconds),
            "img/s": f"{row['images_per_sec']:.1f}"},
            steps_left=plan.total_steps - min(plan.total_steps, epoch * plan.steps_per_epoch),
            epochs_left=plan.epochs - epoch)
        return test_loss, test_acc


def train(config, **kwargs):
    """Run a training configuration to the end; return the metrics dict (with ``history``).

    Keyword arguments as :class:`Trainer`'s.

    Raises:
        ConfigError: bad settings (nothing is written).
        TrainingDiverged: NaN/inf loss (the last good checkpoint is kept).
        RunDirError: the run directory could not be written (the last good checkpoint is kept).
    """
    return Trainer(config, **kwargs).run()
