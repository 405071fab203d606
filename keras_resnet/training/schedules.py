"""Learning-rate schedules of the recipes, as Keras schedules.

Keras already has the two shapes the papers use: ``PiecewiseConstantDecay``
(divide by 10 at fixed iterations, He et al. 2015) and ``CosineDecay`` with a
linear warm-up (Goyal et al. 2017 warm up linearly). Two combinations have no
Keras schedule, a step schedule after a *linear* warm-up (ImageNet above batch
256) and a cosine after a *constant* warm-up (CIFAR ResNet-110 and deeper with
``--schedule cosine``): :class:`WarmupSchedule` wraps any Keras schedule with
a warm-up for those. Every schedule is driven by ``optimizer.iterations``, so
a restored optimizer resumes its schedule exactly, and uses ``keras.ops`` only
(TensorFlow and JAX).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_resnet")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``warmup_steps`` steps of warm-up, then ``schedule`` (called with the global step).

    Args:
        schedule: a ``keras.optimizers.schedules.LearningRateSchedule``; its
            value at ``warmup_steps`` is the end point of a linear warm-up.
        warmup_steps: int >= 0.
        warmup_lr: float, the learning rate at step 0.
        warmup: ``"constant"`` (``warmup_lr`` until ``warmup_steps``; He et al.
            2015 sec. 4.2) or ``"linear"`` (from ``warmup_lr`` to the schedule's
            value at ``warmup_steps``; Goyal et al. 2017).

    Example:

    >>> after = keras.optimizers.schedules.PiecewiseConstantDecay([9, 19], [0.4, 0.04, 0.004])
    >>> s = WarmupSchedule(after, warmup_steps=5, warmup_lr=0.1, warmup="linear")
    >>> [round(float(s(i)), 6) for i in (0, 1, 5, 9, 10, 20)]
    [0.1, 0.16, 0.4, 0.4, 0.04, 0.004]
    """

    def __init__(self, schedule, warmup_steps, warmup_lr, warmup="linear"):
        if warmup not in ("linear", "constant"):
            raise ValueError(f"Invalid value for argument `warmup`: received {warmup!r}; "
                             "expected 'linear' or 'constant'.")
        if isinstance(schedule, dict):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.warmup_lr = float(warmup_lr)
        self.warmup = warmup

    def __call__(self, step):
        step = ops.cast(step, "float32")
        after = ops.cast(self.schedule(step), "float32")
        w = float(max(self.warmup_steps, 1))
        if self.warmup == "constant":
            during = ops.full_like(after, self.warmup_lr)
        else:
            end = ops.cast(self.schedule(float(self.warmup_steps)), "float32")
            during = self.warmup_lr + (end - self.warmup_lr) * step / w
        return ops.where(step < self.warmup_steps, during, after)

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "warmup_steps": self.warmup_steps, "warmup_lr": self.warmup_lr,
                "warmup": self.warmup}


def make_schedule(spec):
    """The Keras schedule of a plan's ``schedule`` dict (see :class:`~.plan.Plan`).

    ``"step"``: ``peak_lr`` divided by 10 at each boundary (the step at which the
    new value starts). ``"cosine"``: half-cosine from ``peak_lr`` to 0 at
    ``total_steps``. Both after the plan's warm-up.

    Example:

    >>> s = make_schedule({"kind": "step", "peak_lr": 0.1, "boundaries": [32000, 48000],
    ...                    "warmup_steps": 400, "warmup_lr": 0.01, "warmup": "constant"})
    >>> type(s).__name__, [round(float(s(i)), 6) for i in (0, 399, 400, 31999, 32000, 48000)]
    ('PiecewiseConstantDecay', [0.01, 0.01, 0.1, 0.1, 0.01, 0.001])
    """
    schedules = keras.optimizers.schedules
    spec = dict(spec)
    kind, peak = spec["kind"], float(spec["peak_lr"])
    warmup_steps = int(spec.get("warmup_steps", 0))
    warmup_lr, warmup = spec.get("warmup_lr"), spec.get("warmup", "linear")
    if kind == "step":
        boundaries = [int(b) for b in spec["boundaries"]]
        values = [peak * 0.1 ** i for i in range(len(boundaries) + 1)]
        if warmup_steps and warmup == "constant" and warmup_steps <= min(boundaries, default=warmup_steps):
            # The constant warm-up is one more piece of the same staircase.
            boundaries, values = [warmup_steps] + boundaries, [float(warmup_lr)] + values
            warmup_steps = 0
        # Keras's boundaries are inclusive (values[i] while step <= boundaries[i]);
        # ours name the first step of the next value.
        after = schedules.PiecewiseConstantDecay([b - 1 for b in boundaries], values)
    elif kind == "cosine":
        total = int(spec["total_steps"])
        if warmup_steps and warmup == "linear":
            return schedules.CosineDecay(float(warmup_lr), max(total - warmup_steps, 1),
                                         warmup_target=peak, warmup_steps=warmup_steps)
        after = schedules.CosineDecay(peak, max(total - warmup_steps, 1))
        if warmup_steps:
            # Keras's cosine counts from 0; ours starts decaying after the warm-up.
            after = _Shifted(after, warmup_steps)
    else:
        raise ValueError(f"Invalid schedule kind {kind!r}; expected 'step' or 'cosine'.")
    if warmup_steps:
        return WarmupSchedule(after, warmup_steps, warmup_lr, warmup)
    return after


@keras.saving.register_keras_serializable(package="keras_resnet")
class _Shifted(keras.optimizers.schedules.LearningRateSchedule):
    """``schedule(step - offset)``: a Keras schedule that starts ``offset`` steps late."""

    def __init__(self, schedule, offset):
        if isinstance(schedule, dict):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        self.schedule, self.offset = schedule, int(offset)

    def __call__(self, step):
        return self.schedule(ops.maximum(ops.cast(step, "float32") - self.offset, 0.0))

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "offset": self.offset}
