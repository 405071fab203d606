"""What a run writes besides its checkpoints and log: config.json, TensorBoard
scalars, metrics.json and the export.

:class:`RunOutputs` is a mixin of :class:`~keras_resnet.training.trainer.Trainer`;
its methods read the trainer's ``config``, ``plan``, ``engine``, ``data``,
``model``, ``optimizer``, ``builder``, ``history``, ``run_dir`` and
``export_dir``, and the per-epoch timings the loop collects.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import sys

import keras
import numpy as np

from keras_resnet.training import checkpoints as ckpt
from keras_resnet.training.model import build_model
from keras_resnet.training.rundir import write_json


def _versions():
    import platform

    out = {"python": platform.python_version(), "keras": keras.__version__,
           "numpy": np.__version__, "backend": keras.backend.backend()}
    for name in ("tensorflow", "jax"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "?")
    return out


def _throughput(epochs):
    """Images per second over ``(images, seconds)`` epochs, leaving out the first of several."""
    if not epochs:
        return None
    kept = epochs[1:] if len(epochs) > 1 else epochs
    return sum(n for n, _ in kept) / max(sum(t for _, t in kept), 1e-9)


class RunOutputs:
    """config.json, TensorBoard scalars, metrics.json and the export of a trainer's run."""

    def _write_config(self):
        c, plan = self.config, self.plan
        write_json(os.path.join(self.run_dir, "config.json"), {
            "flags": c.flags(), "plan": dataclasses.asdict(plan), "builder": self.builder,
            # name, sizes, classes, preprocessing; a folder's path and held-out split
            "dataset": self.data.describe(),
            "backend": self.engine.backend, "strategy": self.engine.name,
            "replicas": self.replicas, "versions": _versions(), "command": sys.argv})

    def _tensorboard(self):
        if not self.chief or self.engine.backend != "tensorflow":
            return None
        import tensorflow as tf

        return tf.summary.create_file_writer(os.path.join(self.run_dir, "tensorboard"))

    def _scalars(self, epoch, row):
        if self._writer is None:
            return
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        # TensorBoard scalar events without needing the tensorboard package.
        metadata = summary_pb2.SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"
        with self._writer.as_default(step=epoch):
            for key in ("lr", "loss", "l2_loss", "accuracy", "test_loss", "test_accuracy",
                        "images_per_sec"):
                tf.summary.write(key, tf.constant(row[key], tf.float32), step=epoch,
                                 metadata=metadata.SerializeToString())
            self._writer.flush()

    # -- the end ---------------------------------------------------------------------
    def finish(self, start, test=None):
        """Metrics, metrics.json and the export (chief); return the metrics dict."""
        c, plan = self.config, self.plan
        if test is None:   # nothing left to train (the run had finished): evaluate
            test = self.engine.evaluate(self.data, plan.global_batch)
        self.engine.finish_state()
        completed = int(self.history[-1]["epoch"]) if self.history else start
        metrics = {
            "test_accuracy": test[1], "test_loss": test[0],
            "epochs_completed": completed, "epochs": plan.epochs,
            "steps_completed": int(keras.ops.convert_to_numpy(self.optimizer.iterations)),
            "replicas": self.replicas, "strategy": self.engine.name,
            "backend": self.engine.backend, "global_batch": plan.global_batch,
            "precision": c.precision,
            # Steady state: the first epoch of a process also traces and compiles the step.
            "train_images_per_sec": _throughput(self._throughput),
            "train_seconds_this_process": self._train_seconds,
            "resumed_from_epoch": start, "skipped_files": int(getattr(self.data, "skipped_files", 0)),
            "dataset": self.data.name, "model": self.model.name,
            "history": [dict(r) for r in self.history],
        }
        metrics["export_dir"] = None
        if self.chief:
            if self.exporting:
                done = os.path.exists(os.path.join(self.export_dir, "metadata.json")) and \
                    os.path.exists(os.path.join(self.run_dir, "metrics.json"))
                metrics["export_dir"] = os.path.abspath(self.export_dir) if done else self.export()
            write_json(os.path.join(self.run_dir, "metrics.json"),
                       {k: v for k, v in metrics.items() if k != "history"})
        return metrics

    def float32_model(self):
        """A float32 copy of the trained model outside any strategy scope (for export)."""
        copy = build_model(self.builder, "float32")
        state = ckpt.collect({"model": self.model.variables}, self.engine.read)
        ckpt.restore({"model": copy.variables}, state, lambda v, x: v.assign(x),
                     source="the trained model")
        return copy

    def export(self):
        """Export the model with ``keras_resnet.serving.export_model``; return its directory."""
        from keras_resnet.serving import directory as export_lib

        c = self.config
        rows = self.history
        metrics = {"test_accuracy": None}
        if rows:
            metrics = {"test_accuracy": rows[-1]["test_accuracy"],
                       "test_loss": rows[-1]["test_loss"], "epochs_completed": rows[-1]["epoch"]}
        metadata = {"dataset": self.data.name, "data": self.data.describe(),
                    "builder": {"name": "ResNet", "kwargs": self.builder},
                    "metrics": metrics, "run_dir": os.path.abspath(self.run_dir),
                    "training": {"recipe": c.recipe, "precision": c.precision,
                                 "global_batch": self.plan.global_batch, "lr": self.plan.lr,
                                 "epochs": self.plan.epochs, "seed": c.seed,
                                 "backend": self.engine.backend}}
        metadata.update(getattr(self, "extra_metadata", None) or {})
        # A process killed while exporting leaves export_model's temporary folder
        # next to the target; it is never read, and removed here before trying again.
        target = os.path.abspath(self.export_dir)
        for stale in glob.glob(os.path.join(os.path.dirname(target),
                                            f".{os.path.basename(target)}.tmp-*")):
            shutil.rmtree(stale, ignore_errors=True)
        overwrite = c.export is None   # the default path belongs to this run
        model = self.float32_model()
        if self.engine.backend != "tensorflow":
            return export_lib.export_model(model, self.export_dir,
                                           preprocessing=self.data.preprocessing,
                                           class_names=list(self.data.class_names),
                                           metadata=metadata, overwrite=overwrite,
                                           formats=("keras",))
        return export_lib.export_model(model, self.export_dir,
                                       preprocessing=self.data.preprocessing,
                                       class_names=list(self.data.class_names),
                                       metadata=metadata, overwrite=overwrite)

