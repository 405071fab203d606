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
import importlib.util
import queue
import random
import sys
import threading

import keras
import numpy as np

from keras_resnet.training.config import ConfigError
from keras_resnet.training.engine import (Engine, evaluation_sums, outputs_are_logits,
                                          train_objective)


def _tensorflow_installed_but_not_loaded():
    if "tensorflow" in sys.modules:
        return False
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):   # hidden or broken: keras will not load it either
        return False


def _join_processes():
    """Join the other processes of a multi-process run, once, before JAX starts.

    ``KERAS_DISTRIBUTION_NUM_PROCESSES`` (> 1), ``KERAS_DISTRIBUTION_PROCESS_ID``
    and ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (the coordinator's ``host:port``
    first) are ``keras.distribution.initialize``'s; it calls
    ``jax.distributed.initialize``. ``jax.devices()`` then lists every
    process's devices.
    """
    import os

    import jax

    if int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1") or 1) > 1 \
            and not jax.distributed.is_initialized():
        keras.distribution.initialize()


class JaxEngine(Engine):
    """Steps, input and state of a run under the JAX backend."""

    backend = "jax"

    def __init__(self, config, distribution=None):
        """``distribution``: a ``keras.distribution.DataParallel`` to run under instead of
        the one ``config.gpus`` makes (e.g. over CPU devices, or every process's devices)."""
        import jax

        if config.precision == "mixed_float16":
            raise ConfigError("--precision mixed_float16 needs loss scaling, which the JAX "
                              "engine does not do; use --precision mixed_bfloat16 under JAX.")
        _join_processes()
        if distribution is None:
            gpus = [d for d in jax.local_devices() if d.platform == "gpu"]
            if config.gpus is not None and config.gpus > len(gpus):
                raise ConfigError(f"--gpus {config.gpus} asks for more GPUs than the "
                                  f"{len(gpus)} present on this machine.")
            count = min(len(gpus), 1) if config.gpus is None else config.gpus
            # The first `count` GPUs (or the CPU) of every process.
            by_process = {}
            for d in jax.devices("gpu" if count else "cpu"):
                by_process.setdefault(d.process_index, []).append(d)
            self.devices = [d for p in sorted(by_process)
                            for d in by_process[p][:max(count, 1)]]
            if len(self.devices) > 1:
                distribution = keras.distribution.DataParallel(devices=self.devices)
        elif not isinstance(distribution, keras.distribution.DataParallel):
            raise ConfigError(f"`strategy` under the JAX backend is a "
                              f"keras.distribution.DataParallel (or use --gpus); received "
                              f"{type(distribution).__name__}.")
        else:
            self.devices = list(np.asarray(distribution.device_mesh.devices).ravel())
        # --sync-bn needs nothing here: under DataParallel the step is one SPMD
        # program over the global batch, so BatchNorm's statistics are global
        # (tests/test_jax_devices.py compares them with one device's).
        self.distribution = distribution
        on_gpu = self.devices[0].platform == "gpu"
        name = "DataParallel" if distribution else (
            "SingleDevice(gpu)" if on_gpu else "SingleDevice(cpu)")
        super().__init__(config, name=name, chief=jax.process_index() == 0,
                         replicas=len(self.devices), gpu=on_gpu)
        self._state = None

    def worker_label(self):
        """``None`` on the first process, else ``"process1"`` etc. (its own checkpoints)."""
        import jax

        return None if self.chief else f"process{jax.process_index()}"

    def set_global_state(self, seed):
        if _tensorflow_installed_but_not_loaded():
            # keras.utils.set_random_seed would import TensorFlow (to seed it too):
            # seconds of start-up a JAX run does not need. What a JAX run draws from
            # is seeded without it: every keras.random.SeedGenerator made without a
            # seed draws its seed from Python's `random`, the NumPy input from NumPy
            # generators, and the traced step can use only seeded generators (JAX
            # refuses Keras's global generator under jit).
            random.seed(seed)
            np.random.seed(seed)
        else:
            keras.utils.set_random_seed(seed)
        if self.distribution is not None:
            keras.distribution.set_distribution(self.distribution)

    def scope(self):
        return self.distribution.scope() if self.distribution else contextlib.nullcontext()

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
        from_logits = outputs_are_logits(model)
        # Identical blocks of a stage run as one jax.lax.scan over stacked variables
        # (training/scan.py): the compiled step does not grow with depth.
        from keras_resnet.training.scan import scan_layout

        self._scan = scan_layout(model, optimizer, unroll=getattr(self.config, "unroll", False))
        forward, apply = model.stateless_call, optimizer.stateless_apply
        if self._scan is not None:
            forward, apply = self._scan.forward, self._scan.apply
            decay_mask = self._scan.compact_mask(decay_mask)

        def loss_fn(trainable, non_trainable, images, labels):
            # The step sees the global batch (SPMD): the mean loss, the penalty once.
            outputs, non_trainable = forward(trainable, non_trainable, images, training=True)
            # The penalty is reported, not differentiated: its gradient is added below.
            decayed = [jax.lax.stop_gradient(w) for w, keep in zip(trainable, decay_mask) if keep]
            loss, l2, correct = train_objective(
                outputs, labels, decayed,
                classes=classes, weight_decay=weight_decay, label_smoothing=label_smoothing,
                global_batch=global_batch, from_logits=from_logits)
            return loss, (loss, l2, correct, non_trainable)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def one_step(state, batch):
            trainable, non_trainable, opt_vars = state
            images, labels = inputs(batch)
            (_, (loss, l2, correct, non_trainable)), grads = grad_fn(
                trainable, non_trainable, images, labels)
            # The L2 penalty's gradient, weight_decay * w, added to each decayed
            # variable's gradient (the same mathematics as differentiating
            # weight_decay / 2 * sum(w ** 2), without autodiff's pass over every kernel).
            grads = [g + (weight_decay * w).astype(g.dtype) if keep else g
                     for g, w, keep in zip(grads, trainable, decay_mask)]
            trainable, opt_vars = apply(opt_vars, grads, trainable)
            return (trainable, non_trainable, opt_vars), jnp.stack([loss, l2, correct])

        def train_steps(state, batches):
            state, out = jax.lax.scan(one_step, state, batches)
            return state, jnp.sum(out, axis=0)

        def eval_step(trainable, non_trainable, images, labels):
            outputs, _ = forward(trainable, non_trainable, images, training=False)
            return evaluation_sums(outputs, labels, classes=classes, from_logits=from_logits)

        self._train_steps = jax.jit(train_steps, donate_argnums=(0,))
        self._eval = jax.jit(eval_step)
        self._stack_sharding, self._batch_sharding, self._replicated = self._shardings()
        self._state = None

    def _pull_state(self):
        """The device state: (trainable, non-trainable, optimizer) variable values."""
        if self._state is None:
            self._state = ([v.value for v in self.model.trainable_variables],
                           [v.value for v in self.model.non_trainable_variables],
                           [v.value for v in self.optimizer.variables])
            if self._scan is not None:
                self._state = self._scan.pack_state(self._state)
        return self._state

    def finish_state(self):
        """Write the device state back into the Keras variables."""
        if self._state is None:
            return
        trainable, non_trainable, opt_vars = (self._state if self._scan is None
                                              else self._scan.unpack_state(self._state))
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

    def repeat_batch(self, images, labels):
        """The same global batch every step (each stack of ``n`` placed once)."""
        return _Repeat(self, np.asarray(images), np.asarray(labels))

    def sync_replicas(self):
        """Write the device state back (evaluation and checkpoints read the Keras variables)."""
        self.finish_state()

    # -- input ---------------------------------------------------------------------
    def train_iterator(self, data, plan, start_epoch):
        source = data.numpy_train_epochs(plan.global_batch, start_epoch, plan.steps_per_epoch,
                                         crops_on_device=data.augment == "imagenet")
        return _Prefetcher(source)

    def _test_batches(self, data, batch_size):
        self._eval_vars = ([v.value for v in self.model.trainable_variables],
                           [v.value for v in self.model.non_trainable_variables])
        if self._scan is not None:
            self._eval_vars = self._scan.pack(*self._eval_vars)
        return data.numpy_test_batches(batch_size)

    def _eval_batch(self, batch):
        images, labels = batch
        n = len(labels)
        if n % self.replicas:   # pad to a multiple of the devices; labels -1 count for nothing
            pad = self.replicas - n % self.replicas
            images = np.concatenate([images, np.repeat(images[-1:], pad, 0)])
            labels = np.concatenate([labels, np.full(pad, -1, labels.dtype)])
        x, y = self._put(images, labels, stacked=False)
        return self._eval(*self._eval_vars, x, y)


class _Repeat:
    """A :meth:`JaxEngine.run_steps` iterator giving one batch every step, kept on the devices."""

    def __init__(self, engine, images, labels):
        self._engine, self._images, self._labels = engine, images, labels
        self._stacks = {}

    def next_stack(self, n):
        if n not in self._stacks:
            self._stacks[n] = self._engine._put(np.repeat(self._images[None], n, axis=0),
                                                np.repeat(self._labels[None], n, axis=0))
        return self._stacks[n]


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
