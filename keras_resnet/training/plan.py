"""The plan of a run: what a resolved configuration means for a dataset size and a replica count.

Backend-free (no keras, no TensorFlow).
"""

from __future__ import annotations

import dataclasses
import math

from keras_resnet.training.config import REFERENCE_BATCH, ConfigError


@dataclasses.dataclass
class Plan:
    """Batches, steps, epochs and the learning-rate schedule of a run.

    ``schedule`` is a plain dict (kind ``"step"`` or ``"cosine"``, the peak
    learning rate, boundaries or total steps, and the warm-up), turned into a
    Keras schedule by :func:`keras_resnet.training.schedules.make_schedule`.
    """

    dataset: str
    depth: int
    global_batch: int
    replicas: int
    per_replica_batch: int
    steps_per_epoch: int
    total_steps: int
    epochs: int
    lr: float
    schedule: dict
    zero_init: bool
    precision: str

    def steps_in_epoch(self, epoch):
        """Steps of 1-based ``epoch`` (the last one may be partial)."""
        return max(0, min(self.steps_per_epoch,
                          self.total_steps - (epoch - 1) * self.steps_per_epoch))

    def first_step(self, epoch):
        """The optimizer step (0-based) at which 1-based ``epoch`` starts."""
        return (epoch - 1) * self.steps_per_epoch


def make_plan(config, train_size, replicas):
    """Resolve the schedule of a resolved ``config`` for ``train_size`` images and ``replicas``.

    Example:

    >>> from keras_resnet.training.config import TrainConfig, resolve_config
    >>> plan = make_plan(resolve_config(TrainConfig(dataset="cifar10", depth=110)), 50000, 1)
    >>> plan.total_steps, plan.epochs, plan.schedule["boundaries"], plan.schedule["warmup_steps"]
    (64000, 165, [32000, 48000], 400)
    """
    c = config
    if c.batch_size % replicas:
        raise ConfigError(f"--batch-size {c.batch_size} (the global batch) is not divisible "
                          f"by the {replicas} replicas; use a multiple of {replicas}.")
    steps_per_epoch = train_size // c.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"--batch-size {c.batch_size} is larger than the {train_size} "
                          "training images.")
    if c.steps is not None:
        total = c.steps
        epochs = math.ceil(total / steps_per_epoch)
    else:
        epochs = c.epochs
        total = epochs * steps_per_epoch
    reference = REFERENCE_BATCH[c.recipe]
    lr = c.lr * c.batch_size / reference
    large_batch = c.batch_size > reference
    warmup = {"warmup_steps": 0}
    if c.recipe == "cifar10":
        if c.depth >= 110 and c.dataset != "digits":
            # He et al. 2015 sec. 4.2: ResNet-110 warms up at 0.01 for ~400 iterations (batch 128).
            warmup = {"warmup_steps": max(1, round(400 * 128 / c.batch_size)),
                      "warmup_lr": lr / 10, "warmup": "constant"}
        fractions = (0.5, 0.75)          # 32k and 48k of 64k iterations
    else:
        warmup_epochs = c.warmup_epochs
        if warmup_epochs is None:
            warmup_epochs = 5.0 if large_batch else 0.0   # Goyal et al. 2017
        if warmup_epochs > 0:
            warmup = {"warmup_steps": max(1, round(warmup_epochs * steps_per_epoch)),
                      "warmup_lr": min(c.lr, lr), "warmup": "linear"}
        fractions = (30 / 90, 60 / 90, 80 / 90)
    if c.schedule == "step":
        schedule = {"kind": "step", "peak_lr": lr,
                    "boundaries": [round(f * total) for f in fractions], **warmup}
    else:
        schedule = {"kind": "cosine", "peak_lr": lr, "total_steps": total, **warmup}
    zero_init = {"on": True, "off": False, "auto": large_batch}[c.zero_init]
    return Plan(dataset=c.dataset, depth=c.depth, global_batch=c.batch_size, replicas=replicas,
                per_replica_batch=c.batch_size // replicas, steps_per_epoch=steps_per_epoch,
                total_steps=total, epochs=epochs, lr=lr, schedule=schedule, zero_init=zero_init,
                precision=c.precision)
