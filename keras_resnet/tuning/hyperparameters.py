"""The hyperparameters of a ResNet search and the record of a resolved search space.

What a search may choose, declared once: the hyperparameter names (constants a
user fixes or narrows a choice by, and the columns of results.csv), the papers'
defaults, :class:`Range` (a numeric range), :class:`Space` (a resolved space: a
trial's values -> builder arguments, counts and budget check), :func:`describe`
(a trial's network in a few words) and the depths each family offers
(:func:`family_depths`). No Keras. The checks that build a :class:`Space` from
a search's arguments are :func:`keras_resnet.tuning.space.resolve_space`.

Depths come from :mod:`keras_resnet.specs`: the CIFAR family offers every depth
of its rules (6n+2 with basic blocks, 9n+2 with bottlenecks, He et al. 2015 and
2016) up to :data:`DEFAULT_MAX_CIFAR_DEPTH`, the ImageNet family the depths of
its table.
"""

from __future__ import annotations

import dataclasses

from keras_resnet import architecture as A
from keras_resnet import counting, specs

# Hyperparameter names: a user fixes or narrows a choice by these names
# (``hp.Fixed(keras_resnet.tuning.DEPTH, 56)``), results.csv uses them as columns.
FAMILY = "family"
DEPTH = "depth"
BLOCK = "block"
WIDTH = "width"
PREACT = "preact"
SHORTCUT = "shortcut"
LEARNING_RATE = "learning_rate"
WEIGHT_DECAY = "weight_decay"
HYPERPARAMETERS = (FAMILY, DEPTH, BLOCK, WIDTH, PREACT, SHORTCUT, LEARNING_RATE, WEIGHT_DECAY)

# The deepest CIFAR net offered by default: ResNet-110, the deepest of He et al.
# 2015's main CIFAR table (their 1202-layer net overfits). ``depths=`` goes deeper.
DEFAULT_MAX_CIFAR_DEPTH = 110
DEFAULT_WIDTHS = (1, 2, 4)
# The papers' optimiser settings (He et al. 2015, section 4.2): lr 0.1 at batch
# 128, weight decay 1e-4, momentum 0.9.
DEFAULT_LEARNING_RATE = 0.1
DEFAULT_WEIGHT_DECAY = 1e-4
MOMENTUM = 0.9


@dataclasses.dataclass(frozen=True)
class Range:
    """A (min, max) range of a numeric hyperparameter: ints step 1, floats continuous."""

    low: float
    high: float
    log: bool = False

    @property
    def integer(self):
        return isinstance(self.low, int) and isinstance(self.high, int)


@dataclasses.dataclass(frozen=True)
class Space:
    """A resolved search space: the choices of every hyperparameter, budgets, input and head.

    Build it with :func:`resolve_space`, which checks every argument. Choices are
    tuples (a single value is fixed); ``widths``, ``learning_rates`` and
    ``weight_decays`` may instead be a :class:`Range`. ``blocks`` and
    ``shortcuts`` are None when the depth table and the family decide them.
    ``defaults`` are the values of the cheapest candidate in the space (fewest
    multiply-adds): KerasTuner builds the defaults once when a tuner is created
    and grid search starts there, so they must fit the budgets.
    """

    family: str
    input_shape: tuple
    classes: int
    depths: tuple
    widths: tuple | Range
    preact: tuple
    blocks: tuple | None
    shortcuts: tuple | None
    learning_rates: tuple | Range
    weight_decays: tuple | Range
    max_params: int | None
    max_macs: int | None
    data_format: str
    defaults: dict = dataclasses.field(default_factory=dict, compare=False)

    def builder_kwargs(self, values):
        """The architecture arguments of ``keras_resnet.ResNet`` for a trial's values.

        Args:
            values: a dict of hyperparameter values (a KerasTuner ``hp.values``;
                other keys, such as Hyperband's ``tuner/epochs``, are ignored).
        """
        kwargs = {"depth": values[DEPTH], "family": self.family}
        if values.get(BLOCK) is not None:
            kwargs["block"] = values[BLOCK]
        kwargs["width"] = values[WIDTH]
        kwargs["preact"] = bool(values[PREACT])
        if values.get(SHORTCUT) is not None:
            kwargs["shortcut"] = values[SHORTCUT]
        return kwargs

    def architecture(self, values):
        """The resolved :class:`~keras_resnet.architecture.Architecture` of a trial."""
        return A.resolve_resnet(input_shape=self.input_shape, data_format=self.data_format,
                                classes=self.classes, **self.builder_kwargs(values))

    def counts(self, values):
        """Trainable parameters and multiply-adds of a trial's network, without building it."""
        return counting.count(input_shape=self.input_shape, classes=self.classes,
                              data_format=self.data_format, **self.builder_kwargs(values))

    def rejection(self, values):
        """Why a trial's network is over budget (one line), or None when it fits."""
        if self.max_params is None and self.max_macs is None:
            return None
        n = self.counts(values)
        over = []
        if self.max_params is not None and n.params > self.max_params:
            over.append(f"{n.params:,} trainable parameters > max_params={self.max_params:,}")
        if self.max_macs is not None and n.macs is not None and n.macs > self.max_macs:
            over.append(f"{n.macs:,} multiply-adds > max_macs={self.max_macs:,}")
        if not over:
            return None
        return f"over budget: {describe(values)} has {' and '.join(over)}"

    def training_values(self, values):
        """``(learning_rate, weight_decay)`` of a trial (the papers' values when not searched)."""
        return (float(values.get(LEARNING_RATE, DEFAULT_LEARNING_RATE)),
                float(values.get(WEIGHT_DECAY, DEFAULT_WEIGHT_DECAY)))


def describe(values):
    """A short name of a trial's network: ``ResNet-56 width 2 preact shortcut B``."""
    text = f"ResNet-{values[DEPTH]}"
    if values.get(BLOCK) is not None:
        text += f" {values[BLOCK]}"
    text += f" width {_number(values[WIDTH])}"
    if values.get(PREACT):
        text += " preact"
    if values.get(SHORTCUT) is not None:
        text += f" shortcut {values[SHORTCUT]}"
    return text


def _number(x):
    """``2`` for 2 and 2.0, ``1.5`` for 1.5, four significant digits for the rest."""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return f"{x:.4g}" if isinstance(x, float) else str(x)


# -- candidate depths ------------------------------------------------------------------------

def family_depths(family, blocks=None, max_depth=None):
    """Every depth the builder accepts for ``family`` (and each of ``blocks``), ascending.

    CIFAR depths follow the rules 6n+2 (basic) and 9n+2 (bottleneck) up to
    ``max_depth`` (default :data:`DEFAULT_MAX_CIFAR_DEPTH`); ImageNet depths are
    the rows of ``specs.IMAGENET_DEPTHS``.

    Example:

    >>> family_depths("cifar", max_depth=30)
    (8, 11, 14, 20, 26, 29)
    >>> family_depths("cifar", blocks=("basic", "bottleneck"), max_depth=60)
    (20, 38, 56)
    >>> family_depths("imagenet", blocks=("bottleneck",))
    (50, 101, 152, 200)
    """
    if family == "imagenet":
        return tuple(d for d, (block, _) in sorted(specs.IMAGENET_DEPTHS.items())
                     if blocks is None or all(b == block for b in blocks))
    max_depth = DEFAULT_MAX_CIFAR_DEPTH if max_depth is None else max_depth
    return tuple(d for d in range(1, max_depth + 1) if _fits(family, d, blocks))


def _fits(family, depth, blocks):
    """Does ``depth`` have a net in ``family`` for every one of ``blocks`` (any block: None)?"""
    if family == "imagenet":
        entry = specs.IMAGENET_DEPTHS.get(depth)
        return entry is not None and (blocks is None or all(b == entry[0] for b in blocks))
    fits = specs.cifar_blocks_for(depth)
    if blocks is None:
        return bool(fits)
    return all(b in fits for b in blocks)


def _allowed_depths_text(family, blocks):
    if family == "imagenet":
        depths = family_depths("imagenet", blocks)
        return ", ".join(map(str, depths)) if depths else "none"
    rules = {"basic": "6n+2 (8, 14, 20, 26, 32, ...)", "bottleneck": "9n+2 (11, 20, 29, 38, ...)"}
    if blocks is None:
        return f"{rules['basic']} or {rules['bottleneck']}"
    if len(blocks) == 1:
        return rules[blocks[0]]
    return "depths of both rules, 18n+2 (20, 38, 56, ...)"
