"""The engine interface the trainer drives, and the objective both engines compute.

An engine is what differs between backends: how the step is compiled
(``tf.function`` or ``jax.jit``), how it is distributed (``tf.distribute`` or
``keras.distribution.DataParallel``) and how input reaches the devices
(``tf.data`` or NumPy batches). :class:`Engine` declares what the trainer,
the benchmarks and the tests may call; ``engine_tf.TFEngine`` and
``engine_jax.JaxEngine`` implement it.

What the step computes is written once, here, in ``keras.ops``: the
cross-entropy (from probabilities or logits, with label smoothing), the L2
penalty, the count of correct predictions and the evaluation sums. Both
engines call these functions inside their compiled steps, so a change to the
objective is one change.
"""

from __future__ import annotations

import abc

import keras
import numpy as np
from keras import ops

# Train steps per compiled call: enough to hide the per-call overhead on a GPU;
# on a CPU a step (tens of ms and up) dwarfs the call, so fewer suffice.
DEFAULT_STEPS_PER_EXECUTION = {"gpu": 32, "cpu": 4}


# -- the objective (keras.ops, any backend) ---------------------------------------------
def outputs_are_logits(model):
    """True when ``model``'s ``predictions`` layer has no activation (it returns logits).

    The package's models end in a softmax (``classifier_activation="softmax"``):
    the loss then takes probabilities. ``classifier_activation=None`` (or
    ``"linear"``) makes them return logits, and the loss takes those.
    """
    try:
        layer = model.get_layer("predictions")
    except ValueError:
        return False
    activation = getattr(layer, "activation", None)
    return activation is None or activation is keras.activations.linear


def cross_entropy(outputs, labels, *, classes, label_smoothing=0.0, from_logits=False):
    """Per-example cross-entropy of integer ``labels`` under ``outputs``, in float32.

    Args:
        outputs: (B, classes) probabilities (``from_logits=False``) or logits.
        labels: (B,) integer class indices.
        classes: int, the number of classes.
        label_smoothing: float in [0, 1): the target puts ``1 - label_smoothing``
            on the label and spreads ``label_smoothing`` evenly over every class
            (Szegedy et al. 2016), as ``keras.losses.categorical_crossentropy`` does.
        from_logits: whether ``outputs`` are logits.

    Returns:
        (B,) float32 losses; ``keras.ops`` clips probabilities to
        ``[epsilon, 1 - epsilon]`` before the logarithm, as Keras's losses do.
    """
    outputs = ops.cast(outputs, "float32")
    if label_smoothing:
        targets = ops.one_hot(ops.cast(labels, "int32"), classes, dtype="float32")
        # The same arithmetic as keras.losses.categorical_crossentropy's smoothing.
        targets = targets * (1.0 - label_smoothing) + (
            label_smoothing / ops.cast(classes, "float32"))
        return ops.categorical_crossentropy(targets, outputs, from_logits=from_logits)
    return ops.sparse_categorical_crossentropy(labels, outputs, from_logits=from_logits)


def l2_penalty(weights, weight_decay):
    """``weight_decay / 2 * sum(w ** 2)`` over ``weights`` (computed in float32).

    The papers' weight decay as a loss term (see
    :func:`keras_resnet.training.model.decay_variables`).
    """
    total = ops.zeros((), "float32")
    for w in weights:
        total = total + 0.5 * ops.sum(ops.square(ops.cast(w, "float32")))
    return weight_decay * total


def count_correct(outputs, labels):
    """The number of examples whose arg-max output is their label (a float32 scalar)."""
    hits = ops.equal(ops.cast(ops.argmax(outputs, axis=-1), "int32"), ops.cast(labels, "int32"))
    return ops.sum(ops.cast(hits, "float32"))


def train_objective(outputs, labels, decayed, *, classes, weight_decay, label_smoothing,
                    global_batch, replicas=1, from_logits=False):
    """One replica's ``(loss, l2, correct)`` for its part of a global batch.

    ``loss`` is the sum of the per-example cross-entropies divided by the
    *global* batch size and ``l2`` the penalty divided by ``replicas``, so the
    sum over the replicas (tf.distribute's all-reduce) is the mean loss of the
    global batch plus the penalty once. With one replica (or under JAX's SPMD
    partitioning, where the step sees the global batch) they are the mean
    loss and the penalty. The gradient is taken of ``loss + l2``.

    Args:
        outputs, labels: this replica's model outputs and integer labels.
        decayed: the values of the variables the L2 penalty covers.
        classes, label_smoothing, from_logits: as in :func:`cross_entropy`.
        weight_decay: float, the L2 coefficient.
        global_batch: int, the examples of one step over all replicas.
        replicas: int, the replicas whose results are summed.
    """
    per_example = cross_entropy(outputs, labels, classes=classes,
                                label_smoothing=label_smoothing, from_logits=from_logits)
    loss = ops.sum(per_example) / global_batch
    l2 = l2_penalty(decayed, weight_decay)
    if replicas > 1:
        l2 = l2 / replicas
    return loss, l2, count_correct(outputs, labels)


def evaluation_sums(outputs, labels, *, classes, from_logits=False):
    """``[loss sum, correct, count]`` (float32) of a test batch; labels < 0 are padding.

    Padding (rows added so a batch splits evenly over the devices) counts for
    nothing. The loss is the plain cross-entropy (no label smoothing).
    """
    labels = ops.cast(labels, "int32")
    valid = ops.greater_equal(labels, 0)
    safe = ops.where(valid, labels, 0)
    weight = ops.cast(valid, "float32")
    per_example = cross_entropy(outputs, safe, classes=classes, from_logits=from_logits)
    hits = ops.equal(ops.cast(ops.argmax(outputs, axis=-1), "int32"), safe)
    return ops.stack([ops.sum(per_example * weight),
                      ops.sum(ops.cast(hits, "float32") * weight), ops.sum(weight)])


# -- the interface ---------------------------------------------------------------------------
class Engine(abc.ABC):
    """What the trainer needs from a backend: placement, compiled steps, input and state.

    The life of an engine in a run: ``set_global_state(seed)``; the model and
    optimizer are built inside ``scope()``; ``compile(...)`` makes the steps;
    ``train_iterator(...)`` gives the input that ``run_steps(iterator, n)``
    consumes; ``add``/``to_host`` accumulate and read the step sums;
    ``sync_replicas()`` then ``evaluate(...)`` at the end of an epoch;
    ``read``/``assign`` move variables to and from checkpoints;
    ``finish_state()`` before anything else reads the Keras variables.

    Attributes (set by the constructor):
        backend: ``"tensorflow"`` or ``"jax"``.
        name: the distribution in words (``"MirroredStrategy"``,
            ``"DataParallel"``, ``"SingleDevice(cpu)"``...), recorded in metrics.
        chief: whether this process writes the run directory.
        replicas: devices a global batch is split over (all processes).
        gpu: whether the steps run on GPUs (picks the defaults below).
        deterministic: whether op determinism is asked for (default: on a CPU).
        steps_per_execution: train steps per compiled call.
    """

    backend = None

    def __init__(self, config, *, name, chief, replicas, gpu):
        self.config = config
        self.name, self.chief, self.replicas = name, bool(chief), int(replicas)
        self._gpu = bool(gpu)
        self.deterministic = (not self._gpu) if config.deterministic is None \
            else config.deterministic
        self.steps_per_execution = (config.steps_per_execution
                                    or DEFAULT_STEPS_PER_EXECUTION["gpu" if self._gpu else "cpu"])

    @property
    def gpu(self):
        """Whether the steps run on GPUs."""
        return self._gpu

    # -- placement ---------------------------------------------------------------------
    def worker_label(self):
        """``None`` on the chief, else a name for this worker's own checkpoint folder."""
        return None

    @abc.abstractmethod
    def set_global_state(self, seed):
        """Seed every generator and set process-wide options (after every check passed)."""

    @abc.abstractmethod
    def scope(self):
        """A context manager under which the model and optimizer variables are created."""

    # -- steps -------------------------------------------------------------------------
    @abc.abstractmethod
    def compile(self, model, optimizer, decayed, *, classes, weight_decay, label_smoothing,
                global_batch, xla=False, preprocessing=None):
        """Make the train and evaluation steps for ``model`` and ``optimizer``.

        Args:
            decayed: the variables the L2 penalty covers.
            classes, weight_decay, label_smoothing: the objective
                (:func:`train_objective`).
            global_batch: int, examples per step over all replicas.
            xla: compile the step with XLA (always, under JAX).
            preprocessing: the data's preprocessing spec (device-side crops).
        """

    @abc.abstractmethod
    def run_steps(self, iterator, n):
        """Run ``n`` train steps on the iterator's next ``n`` batches.

        Returns the device sums ``(loss, l2, correct)`` of those steps, not
        read back (see :meth:`to_host`).
        """

    @abc.abstractmethod
    def repeat_batch(self, images, labels):
        """An iterator for :meth:`run_steps` that gives the same global batch every step.

        The batch is placed on the devices once (benchmarks time the step
        alone; tests and tools train on a fixed batch).
        """

    def train_step(self, batch):
        """One train step on one global batch ``(images, labels)``: host ``(loss, l2, correct)``."""
        images, labels = batch
        return self.to_host(self.run_steps(self.repeat_batch(images, labels), 1))

    @staticmethod
    def add(a, b):
        """The sum of two step results (device arrays, not read back)."""
        return a + b

    @staticmethod
    def to_host(sums):
        """A step result as a tuple of Python floats (waits for the devices)."""
        return tuple(float(v) for v in np.asarray(sums))

    @abc.abstractmethod
    def sync_replicas(self):
        """Make every replica's variables equal and visible to Keras (end of an epoch)."""

    # -- input -------------------------------------------------------------------------
    @abc.abstractmethod
    def train_iterator(self, data, plan, start_epoch):
        """The input of every epoch from 1-based ``start_epoch``, for :meth:`run_steps`."""

    @abc.abstractmethod
    def _test_batches(self, data, batch_size):
        """The test set as batches :meth:`_eval_batch` takes."""

    @abc.abstractmethod
    def _eval_batch(self, batch):
        """:func:`evaluation_sums` of one test batch, summed over replicas (device)."""

    def evaluate(self, data, batch_size):
        """Test loss and accuracy over the whole test set (read back once, at the end)."""
        total = None
        for batch in self._test_batches(data, batch_size):
            sums = self._eval_batch(batch)
            total = sums if total is None else self.add(total, sums)
        loss, correct, count = self.to_host(total) if total is not None else (0.0, 0.0, 0.0)
        return loss / max(count, 1.0), correct / max(count, 1.0)

    # -- state -------------------------------------------------------------------------
    @staticmethod
    def read(variable):
        """A variable's value as a NumPy array (for checkpoints)."""
        return np.asarray(keras.ops.convert_to_numpy(variable.value))

    @staticmethod
    def assign(variable, value):
        """Set a variable from a checkpoint's array."""
        variable.assign(value)

    def finish_state(self):
        """Write any device-held state back into the Keras variables."""
