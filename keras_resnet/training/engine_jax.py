"""The JAX engine: jitted multi-step training with ``keras.distribution.DataParallel``.

The step is the standard stateless one: ``model.stateless_call`` and
``optimizer.stateless_apply`` inside one ``jax.jit``-compiled (XLA) function
that runs ``steps_per_execution`` steps with ``jax.lax.scan`` over a stack of
batches, and returns the new state and the sums of the loss, the L2 penalty and
the correct predictions, as device arrays: the host reads them only when the
trainer logs. The state (every variable) lives on the devices between calls and
is written back to the Keras variables at the end of each epoch (evaluation,
checkpoints, export).

``--gpus N`` (N > 1) runs under ``keras.distribution.DataParallel``: variables
replicated, every batch split along its first axis; XLA's SPMD partitioner
inserts the gradient all-reduce, and BatchNorm statistics are computed over the
global batch (synchronised BatchNorm for free). The input is NumPy
(``InputData.numpy_train_epochs``), prefetched on a background thread, so
TensorFlow is never imported for the digits and synthetic datasets.
"""

from __future__ import annotations

import contextlib
import queue
import threading

import keras
import numpy as np

from keras_resnet.training.config import ConfigError

DEFAULT_STEPS_PER_EXECUTION = {"gpu": 32, "cpu": 4}


class JaxEngine:
    """Steps, input and state of a run under the JAX backend."""

    backend = "jax"

    def __init__(self, config):
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if config.gpus is not None and config.gpus > len(gpus):
            raise ConfigError(f"--gpus {config.gpus} asks for more GPUs than the {len(gpus)} "
                              "present on this machine.")
        if config.precision == "mixed_float16":
            raise ConfigError("--precision mixed_float16 needs loss scaling, which the JAX "
                              "engine does not do; use --precision mixed_bfloat16 under JAX.")
        if config.sync_bn:
            pass   # under DataParallel the statistics are over the global batch already
        count = len(gpus) if config.gpus is None else config.gpus
        count = min(count, 1) if config.gpus is None else count
        self.devices = gpus[:count] if count else jax.devices("cpu")[:1]
        self.gpu = bool(count)
        self.replicas = len(self.devices)
        self.distribution = None
        if self.replicas > 1:
            self.distribution = keras.distribution.DataParallel(devices=self.devices)
        self.name = "DataParallel" if self.distribution else (
            "SingleDevice(gpu)" if self.gpu else "SingleDevice(cpu)")
        self.chief = jax.process_index() == 0
        self.deterministic = (not self.gpu) if config.deterministic is None else config.deterministic
        self.steps_per_execution = (config.steps_per_execution
                                    or DEFAULT_STEPS_PER_EXECUTION["gpu" if self.gpu else "cpu"])
        self.config = config
        self._state = None

    def worker_label(self):
        return None

    def set_global_state(self, seed):
        import sys

        if "tensorflow" in sys.modules:
            keras.utils.set_random_seed(seed)
        else:
            # keras.utils.set_random_seed would import TensorFlow when it is installed
            # (to seed it too), seconds of start-up a JAX run does not need: the same
            # seeding without it (Keras's global seed is private state).
            import random

            from keras.src.backend.common import global_state
            from keras.src.random import seed_generator

            global_state.set_global_attribute("global_random_seed", seed)
            global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
            random.seed(seed)
            np.random.seed(seed)
        if self.distribution is not None:
            keras.distribution.set_distribution(self.distribution)

    def scope(self):
        return self.distribution.scope() if self.distribution else contextlib.nullcontext()

    def new_counter(self):
        return None

    # -- shardings -------------------------------------------------------------------
    def _shardings(self):
        import jax
        from jax.sharding import NamedSharding, PartitionSpec as P

        if self.distribution is None:
            device = self.devices[0]
            single = jax.sharding.SingleDeviceSharding(device)
            return single, single, single
        mesh = self.distribution.device_mesh.backend_mesh
        return (NamedSharding(mesh, P(None, "batch")), NamedSharding(mesh, P("batch")),
                NamedSharding(mesh, P()))

    # -- steps ---------------------------------------------------------------------------
    def compile(self, model, optimizer, decayed, *, classes, weight_decay, label_smoothing,
                global_batch, xla=True, preprocessing=None):
        import jax
        import jax.numpy as jnp

        from keras_resnet.data.device import resized_crops

        def inputs(batch):
            # (images, labels), or (uint8 sources, labels, crop boxes, flips) for
            # random-resized-crop data: the crops are resized on the device.
            if len(batch) == 2:
                return batch
            sources, labels, boxes, flips = batch
            return resized_crops(sources, boxes, flips, preprocessing), labels

        self.model, self.optimizer = model, optimizer
        decayed_ids = {id(v) for v in decayed}
        decay_mask = [id(v) in decayed_ids for v in model.trainable_variables]

        def loss_fn(trainable, non_trainable, images, labels):
            probs, non_trainable = model.stateless_call(trainable, non_trainable, images,
                                                        training=True)
            probs = probs.astype("float32")
            if label_smoothing:
                onehot = jax.nn.one_hot(labels, classes)
                targets = onehot * (1 - label_smoothing) + label_smoothing / classes
                per_example = -jnp.sum(targets * jnp.log(jnp.clip(probs, 1e-7, 1.0)), axis=-1)
            else:
                picked = jnp.take_along_axis(probs, labels[:, None].astype("int32"), axis=-1)
                per_example = -jnp.log(jnp.clip(picked[:, 0], 1e-7, 1.0))
            loss = jnp.mean(per_example)
            l2 = sum(0.5 * jnp.sum(jnp.square(w.astype("float32")))
                     for w, keep in zip(trainable, decay_mask) if keep)
            l2 = weight_decay * l2
            correct = jnp.sum((jnp.argmax(probs, -1) == labels).astype("float32"))
            return loss + l2, (loss, l2, correct, non_trainable)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def one_step(state, batch):
            trainable, non_trainable, opt_vars = state
            images, labels = inputs(batch)
            (_, (loss, l2, correct, non_trainable)), grads = grad_fn(
                trainable, non_trainable, images, labels)
            trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
            return (trainable, non_trainable, opt_vars), jnp.stack([loss, l2, correct])

        def train_steps(state, batches):
            state, out = jax.lax.scan(one_step, state, batches)
            return state, jnp.sum(out, axis=0)

        def eval_step(trainable, non_trainable, images, labels):
            # Labels < 0 mark padding (the last batch, padded to a multiple of the devices).
            probs, _ = model.stateless_call(trainable, non_trainable, images, training=False)
            probs = probs.astype("float32")
            valid = labels >= 0
            safe = jnp.where(valid, labels, 0).astype("int32")
            picked = jnp.take_along_axis(probs, safe[:, None], axis=-1)[:, 0]
            loss = jnp.sum(jnp.where(valid, -jnp.log(jnp.clip(picked, 1e-7, 1.0)), 0.0))
            correct = jnp.sum((valid & (jnp.argmax(probs, -1) == safe)).astype("float32"))
            return jnp.stack([loss, correct])

        self._train_steps = jax.jit(train_steps, donate_argnums=(0,))
        self._eval = jax.jit(eval_step)
        self._stack_sharding, self._batch_sharding, self._replicated = self._shardings()
        self._state = None
        self._test = None

    def _pull_state(self):
        """The device state: (trainable, non-trainable, optimizer) variable values."""
        if self._state is None:
            self._state = ([v.value for v in self.model.trainable_variables],
                           [v.value for v in self.model.non_trainable_variables],
                           [v.value for v in self.optimizer.variables])
        return self._state

    def finish_state(self):
        """Write the device state back into the Keras variables."""
        if self._state is None:
            return
        trainable, non_trainable, opt_vars = self._state
        for v, x in zip(self.model.trainable_variables, trainable):
            v.assign(x)
        for v, x in zip(self.model.non_trainable_variables, non_trainable):
            v.assign(x)
        for v, x in zip(self.optimizer.variables, opt_vars):
            v.assign(x)
        self._state = None

    def _put(self, *arrays, stacked=True):
        """Device arrays, split along the batch axis (axis 1 of a stack of batches)."""
        import jax

        sharding = self._stack_sharding if stacked else self._batch_sharding
        return tuple(jax.device_put(a, sharding) for a in arrays)

    def run_steps(self, iterator, n):
        """Run ``n`` train steps on the next ``n`` batches; return the device sums."""
        batches = self._put(*iterator.next_stack(n))
        state, sums = self._train_steps(self._pull_state(), batches)
        self._state = state
        return sums

    def train_step(self, batch):
        batches = self._put(*(np.asarray(a)[None] for a in batch))
        state, sums = self._train_steps(self._pull_state(), batches)
        self._state = state
        return tuple(np.asarray(sums))

    @staticmethod
    def add(a, b):
        return a + b

    @staticmethod
    def to_host(sums):
        return tuple(float(v) for v in np.asarray(sums))

    def sync_replicas(self):
        """Write the device state back (evaluation and checkpoints read the Keras variables)."""
        self.finish_state()

    # -- input ---------------------------------------------------------------------
    def train_iterator(self, data, plan, start_epoch):
        source = data.numpy_train_epochs(plan.global_batch, start_epoch, plan.steps_per_epoch,
                                         crops_on_device=data.augment == "imagenet")
        return _Prefetcher(source)

    def evaluate(self, data, batch_size):
        trainable = [v.value for v in self.model.trainable_variables]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        total, count = np.zeros(2), 0
        for images, labels in data.numpy_test_batches(batch_size):
            n = len(labels)
            if n % self.replicas:
                pad = self.replicas - n % self.replicas
                images = np.concatenate([images, np.repeat(images[-1:], pad, 0)])
                labels = np.concatenate([labels, np.full(pad, -1, labels.dtype)])
            x, y = self._put(images, labels, stacked=False)
            total += np.asarray(self._eval(trainable, non_trainable, x, y))
            count += n
        return total[0] / max(count, 1), total[1] / max(count, 1)

    # -- state -----------------------------------------------------------------------
    @staticmethod
    def read(variable):
        return np.asarray(keras.ops.convert_to_numpy(variable.value))

    @staticmethod
    def assign(variable, value):
        variable.assign(value)


class _Prefetcher:
    """Batches from a NumPy iterator, prepared on a background thread (a few ahead).

    ``next_stack(n)`` returns the next ``n`` batches stacked along a new first
    axis, the shape ``jax.lax.scan`` takes.
    """

    def __init__(self, source, depth=4):
        self._source = iter(source)
        self._queue = queue.Queue(maxsize=depth)
        self._error = None
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _fill(self):
        try:
            for batch in self._source:
                self._queue.put(batch)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            self._error = e
        self._queue.put(None)

    def __next__(self):
        batch = self._queue.get()
        if batch is None:
            if self._error is not None:
                raise self._error
            raise StopIteration
        return batch

    def next_stack(self, n):
        batches = [next(self) for _ in range(n)]
        return tuple(np.stack(parts) for parts in zip(*batches))
