"""The TensorFlow engine: tf.distribute strategies, the train and evaluation steps.

One engine serves every strategy: the default (one device),
``tf.distribute.MirroredStrategy`` over the GPUs of one machine and
``tf.distribute.MultiWorkerMirroredStrategy`` across machines (``TF_CONFIG``).
A ``tf.function`` runs ``steps_per_execution`` train steps per call (a
``tf.range`` loop over ``strategy.run``), reading the input iterator inside, and
returns the sums of the loss, the L2 penalty and the correct predictions as
device tensors: the host reads them only when the trainer logs. Every
replica's loss is divided by the *global* batch size, so the all-reduced sum of
the gradients is the gradient of the mean over the global batch. (``model.fit``
under MultiWorkerMirroredStrategy fails in TF 2.21 / Keras 3.15 with "Attempt to
convert a value (PerReplica...) to a Tensor"; this loop does not.)
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from keras_resnet.training.config import ConfigError
from keras_resnet.training.engine import (Engine, evaluation_sums, outputs_are_logits,
                                          train_objective)


def _tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}).") from None


def make_strategy(gpus=None):
    """The tf.distribute strategy for ``--gpus``: Mirrored (N > 1), multi-worker (TF_CONFIG) or default.

    Args:
        gpus: int or None. None: one GPU if any is present, else the CPU. 0: the CPU.
            N > 1: ``MirroredStrategy`` over the first N GPUs (per worker under TF_CONFIG).

    Raises:
        ConfigError: ``gpus`` exceeds the GPUs present.
    """
    present = tf.config.list_physical_devices("GPU")
    if gpus is not None and gpus > len(present):
        raise ConfigError(f"--gpus {gpus} asks for more GPUs than the {len(present)} present "
                          "on this machine.")
    if gpus is not None and len(present) > gpus:
        tf.config.set_visible_devices(present[:gpus], "GPU")
    tf_config = _tf_config()
    if tf_config and sum(len(v) for v in tf_config.get("cluster", {}).values()) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if gpus is not None and gpus > 1:
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(gpus)])
    return tf.distribute.get_strategy()


def strategy_name(strategy):
    """``"MirroredStrategy"``, ``"MultiWorkerMirroredStrategy"``, ``"DefaultDistributionStrategy"``..."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"   # an alias of CollectiveAllReduceStrategy
    return type(strategy).__name__.lstrip("_")


def is_chief(strategy):
    """True on the worker that writes the run directory (always, without TF_CONFIG)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def _uses_gpu(strategy):
    try:
        devices = tuple(strategy.extended.worker_devices)
    except RuntimeError:   # the default strategy: the default device
        return bool(tf.config.list_logical_devices("GPU"))
    return any("GPU" in d.upper() for d in devices)


class TFEngine(Engine):
    """Steps, input and replica state of a run under a ``tf.distribute`` strategy."""

    backend = "tensorflow"

    def __init__(self, config, strategy=None):
        if config.remat:
            raise ConfigError("--remat runs under the JAX backend (--backend jax); under "
                              "TensorFlow, lower --batch-size instead.")
        self.strategy = strategy if strategy is not None else make_strategy(config.gpus)
        super().__init__(config, name=strategy_name(self.strategy),
                         chief=is_chief(self.strategy),
                         replicas=self.strategy.num_replicas_in_sync,
                         gpu=_uses_gpu(self.strategy))
        self.multi_worker = isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy)

    # -- placement ---------------------------------------------------------------
    def worker_label(self):
        """``None`` on the chief, else ``"worker1"`` etc. (its own checkpoint folder)."""
        if self.chief:
            return None
        resolver = self.strategy.cluster_resolver
        return f"{resolver.task_type}{resolver.task_id}"

    def set_global_state(self, seed):
        """Seed every generator; op determinism if asked (only once all checks passed)."""
        keras.utils.set_random_seed(seed)
        if self.deterministic:
            tf.config.experimental.enable_op_determinism()

    def scope(self):
        return self.strategy.scope()

    # -- steps -------------------------------------------------------------------
    def compile(self, model, optimizer, decayed, *, classes, weight_decay, label_smoothing,
                global_batch, xla=False, preprocessing=None):
        """Make the multi-step train function, the evaluation step and the replica sync."""
        strategy, replicas = self.strategy, self.replicas
        from_logits = outputs_are_logits(model)

        def forward_backward(images, labels):
            with tf.GradientTape() as tape:
                outputs = model(images, training=True)
                loss, l2, correct = train_objective(
                    outputs, labels, [v.value for v in decayed], classes=classes,
                    weight_decay=weight_decay, label_smoothing=label_smoothing,
                    global_batch=global_batch, replicas=replicas, from_logits=from_logits)
                scaled = optimizer.scale_loss(loss + l2)
            grads = tape.gradient(scaled, model.trainable_variables)
            return grads, tf.stack([loss, l2, correct])

        if xla:
            forward_backward = tf.function(forward_backward, jit_compile=True)

        def replica_train(images, labels):
            grads, sums = forward_backward(images, labels)
            optimizer.apply(grads, model.trainable_variables)
            return sums

        @tf.function
        def train_steps(iterator, n):
            sums = tf.zeros(3)
            for _ in tf.range(n):
                per_replica = strategy.run(replica_train, args=next(iterator))
                sums = sums + strategy.reduce("SUM", per_replica, axis=None)
            return sums

        def replica_eval(images, labels):
            return evaluation_sums(model(images, training=False), labels, classes=classes,
                                   from_logits=from_logits)

        @tf.function
        def eval_step(batch):
            return strategy.reduce("SUM", strategy.run(replica_eval, args=batch), axis=None)

        # BatchNorm moving statistics are local to each replica (Keras creates them
        # with aggregation "none"): each replica updates its copy from its own part
        # of the batch. At the end of every epoch they are replaced by their mean
        # over all replicas, so every replica and worker evaluates and checkpoints
        # the same model. (--sync-bn, set on the layers by build_model, makes the
        # batch statistics themselves global.)
        stats = [v for v in model.non_trainable_variables
                 if "float" in str(v.dtype) and "seed" not in v.path]

        def replica_sync():
            ctx = tf.distribute.get_replica_context()
            means = ctx.all_reduce(tf.distribute.ReduceOp.MEAN,
                                   [tf.identity(v.value) for v in stats])
            for v, m in zip(stats, means):
                v.assign(m)

        @tf.function
        def sync_step():
            strategy.run(replica_sync)

        self._train_steps, self._eval_step = train_steps, eval_step
        self._sync = sync_step if (self.replicas > 1 and stats) else None
        self._test = None

    def run_steps(self, iterator, n):
        """Run ``n`` train steps; return the device sums (loss, l2, correct) without syncing."""
        return self._train_steps(iterator, tf.constant(n, tf.int32))

    def repeat_batch(self, images, labels):
        """The same global batch every step, split over the replicas by the strategy."""
        return iter(self._distribute(tf.data.Dataset.from_tensors((images, labels)).repeat()))

    def sync_replicas(self):
        """Average the replicas' BatchNorm statistics (end of an epoch)."""
        if self._sync is not None:
            self._sync()

    # -- input ---------------------------------------------------------------------
    def _distribute(self, dataset):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    def train_iterator(self, data, plan, start_epoch):
        """One iterator over the training batches of every epoch from ``start_epoch`` (1-based).

        Built once per process. Across workers (MultiWorkerMirroredStrategy)
        every worker reads only its own shard of each epoch (examples ``i, i + N,
        ...``), sharded before decoding and augmentation, so the input work does
        not grow with the number of hosts; the examples of a global step are the
        same as on one machine. The dataset is infinite, so tf.distribute skips the
        cross-worker "any data left?" check on every ``next()``.
        """
        if self.multi_worker:
            return iter(self.strategy.distribute_datasets_from_function(
                lambda ctx: self.worker_dataset(ctx, data, plan, start_epoch)))
        dataset = epochs_dataset(data, plan.global_batch, start_epoch, plan.steps_per_epoch,
                                 end_epoch=plan.epochs + 1)
        return iter(self._distribute(dataset))

    def worker_dataset(self, ctx, data, plan, start_epoch):
        """One worker's training input (``ctx``: a ``tf.distribute.InputContext``):
        its shard of every epoch from ``start_epoch``, in per-replica batches."""
        per_replica = ctx.get_per_replica_batch_size(plan.global_batch)
        local_replicas = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        return epochs_dataset(data, per_replica, start_epoch, plan.steps_per_epoch * local_replicas,
                              num_shards=ctx.num_input_pipelines,
                              shard_index=ctx.input_pipeline_id, end_epoch=plan.epochs + 1)

    def _test_batches(self, data, batch_size):
        if self._test is None:   # built once: every epoch evaluates the same batches
            self._test = self._distribute(data.test_dataset(batch_size))
        return self._test

    def _eval_batch(self, batch):
        return self._eval_step(batch)


def epochs_dataset(data, batch_size, start_epoch, steps_per_epoch, *, num_shards=1, shard_index=0,
                   end_epoch=None):
    """Every epoch from ``start_epoch`` to ``end_epoch`` (excluded), ``steps_per_epoch``
    batches each, as one dataset built once (``InputData.train_epochs``)."""
    return data.train_epochs(batch_size, start_epoch, steps_per_epoch, num_shards=num_shards,
                             shard_index=shard_index, end_epoch=end_epoch)
