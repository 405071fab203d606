"""The search space of a ResNet search, resolved from the tables and checked, without Keras.

A :class:`Space` holds the choices a search may make (depths, widths,
pre-activation, blocks, shortcuts, learning rates, weight decays) and the
budgets. It maps a trial's hyperparameter values to the arguments of
``keras_resnet.ResNet`` (:meth:`Space.builder_kwargs`), counts the network they
describe from the architecture (:meth:`Space.counts`, no weights allocated) and
says whether it is over budget (:meth:`Space.rejection`). The KerasTuner
hypermodel (:mod:`keras_resnet.tuning.hypermodel`) declares this space to
KerasTuner; the search recipe's command line checks its flags with it before
importing Keras.

Depths come from :mod:`keras_resnet.specs`: the CIFAR family offers every depth
of its rules (6n+2 with basic blocks, 9n+2 with bottlenecks, He et al. 2015 and
2016) up to :data:`DEFAULT_MAX_CIFAR_DEPTH`, the ImageNet family the depths of
its table.

Example:

>>> space = resolve_space("cifar", depths=[20, 56], widths=[1, 2], preact=False)
>>> space.depths, space.widths
((20, 56), (1, 2))
>>> space.builder_kwargs({DEPTH: 56, WIDTH: 2, PREACT: False})
{'depth': 56, 'family': 'cifar', 'width': 2, 'preact': False}
>>> space.counts({DEPTH: 20, WIDTH: 1, PREACT: False})
Counts(params=269722, macs=40551040)
"""

from __future__ import annotations

import dataclasses
import itertools
import math

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


# -- argument checks ---------------------------------------------------------------------------

def _is_number(x):
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)


def _choices_or_range(name, value, *, minimum=0.0, minimum_open=True, log=False):
    """A list of choices, or a 2-tuple ``(min, max)`` range, of positive numbers."""
    what = (f"a list of {'positive' if minimum_open else 'non-negative'} numbers, or a "
            f"(min, max) tuple")
    if isinstance(value, (str, bytes, dict, set)) or not isinstance(value, (list, tuple)):
        if _is_number(value):
            value = [value]
        else:
            raise TypeError(f"Argument `{name}` must be {what}; received {value!r} of type "
                            f"{type(value).__name__}.")
    for x in value:
        if not _is_number(x) or x < minimum or (minimum_open and x == minimum):
            raise ValueError(f"Invalid value for argument `{name}`: received {value!r}; "
                             f"{x!r} is not a {'positive' if minimum_open else 'non-negative'} "
                             f"finite number (expected {what}).")
    if not value:
        raise ValueError(f"Invalid value for argument `{name}`: received {value!r}; expected "
                         f"{what}, not empty.")
    if isinstance(value, tuple) and len(value) == 2:
        low, high = value
        if not low < high:
            raise ValueError(f"Invalid value for argument `{name}`: received the range "
                             f"{value!r}; a (min, max) range needs min < max (a list such as "
                             f"[{low!r}] fixes one value).")
        return Range(low, high, log=log and low > 0)
    return tuple(dict.fromkeys(value))   # unique, in the order given


def _bools(name, value):
    if isinstance(value, bool):
        return (value,)
    if not isinstance(value, (list, tuple)) or not value or \
            not all(isinstance(v, bool) for v in value):
        raise TypeError(f"Argument `{name}` must be a bool or a non-empty list of bools "
                        f"(False, True); received {value!r}.")
    return tuple(dict.fromkeys(value))


def _names(name, value, allowed):
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"Argument `{name}` must be None or a non-empty list of "
                        f"{', '.join(map(repr, allowed))}; received {value!r}.")
    for v in value:
        if v not in allowed:
            raise ValueError(f"Invalid value for argument `{name}`: received {value!r}; "
                             f"{v!r} is not one of {', '.join(map(repr, allowed))}.")
    return tuple(dict.fromkeys(value))


def _budget(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0 or not float(value).is_integer():
        raise ValueError(f"Invalid value for argument `{name}`: received {value!r}; expected "
                         "None or a positive whole number.")
    return int(value)


def _depths(family, depths, blocks):
    if depths is None:
        return family_depths(family, blocks)
    if isinstance(depths, (int, str)) or not isinstance(depths, (list, tuple)):
        depths = [depths]
    if not depths:
        raise ValueError("Invalid value for argument `depths`: received an empty list; "
                         "expected depths of the family (or None for all of them).")
    for d in depths:
        if isinstance(d, bool) or not isinstance(d, int):
            raise TypeError(f"Argument `depths` must be a list of ints; received {depths!r} "
                            f"({d!r} is a {type(d).__name__}).")
        if not _fits(family, d, blocks):
            for_blocks = "" if blocks is None else f" with {' and '.join(blocks)} blocks"
            raise ValueError(f"Invalid value for argument `depths`: {d} is not a {family} "
                             f"depth{for_blocks}; expected {_allowed_depths_text(family, blocks)}.")
    return tuple(sorted(set(depths)))


def _low(choice):
    return choice.low if isinstance(choice, Range) else min(choice)


def _first(choice):
    return choice.low if isinstance(choice, Range) else choice[0]


def resolve_space(family="cifar", input_shape=None, classes=None, *, depths=None,
                  widths=DEFAULT_WIDTHS, preact=(False, True), blocks=None, shortcuts=None,
                  learning_rates=None, weight_decays=None, max_params=None, max_macs=None,
                  data_format="channels_last"):
    """Check the arguments of a ResNet search and resolve them into a :class:`Space`.

    Arguments as :class:`~keras_resnet.tuning.ResNetHyperModel`'s. With a budget,
    the default depth list stops at the depths that can fit it at the smallest
    width; a depth given in ``depths`` that can never fit is an error, as is a
    budget that nothing in the space fits.

    Raises:
        ValueError, TypeError: naming the argument, the value received and what
            is allowed.

    Example:

    >>> resolve_space("cifar", max_params=300_000).depths
    (8, 11, 14, 20)
    >>> resolve_space("cifar", depths=[20, 110], max_params=300_000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `depths`: ResNet-110 has at least 1,727,962 ...
    """
    A.check_choice("family", family, specs.FAMILIES)
    data_format = A.check_choice("data_format", data_format, ("channels_last", "channels_first"))
    if input_shape is None:
        h, w, c = specs.DEFAULT_INPUT_SHAPE[family]
        input_shape = (h, w, c) if data_format == "channels_last" else (c, h, w)
    input_shape = A.check_input_shape(tuple(input_shape) if isinstance(input_shape, list)
                                      else input_shape, data_format)
    A.check_head(classes=classes)
    classes = specs.DEFAULT_CLASSES[family] if classes is None else classes
    blocks = _names("blocks", blocks, specs.BLOCKS)
    if blocks is not None and not family_depths(family, blocks, max_depth=1000):
        raise ValueError(f"Invalid value for argument `blocks`: received {blocks!r}; no "
                         f"{family} depth has a net of each of these blocks (ImageNet depths "
                         "have one block kind each: narrow `depths` instead).")
    default_depths = depths is None
    depths = _depths(family, depths, blocks)
    given_widths, widths = widths, _choices_or_range("widths", widths)
    preact = _bools("preact", preact)
    shortcuts = _names("shortcuts", shortcuts, specs.SHORTCUTS)
    learning_rates = (DEFAULT_LEARNING_RATE,) if learning_rates is None else \
        _choices_or_range("learning_rates", learning_rates, log=True)
    weight_decays = (DEFAULT_WEIGHT_DECAY,) if weight_decays is None else \
        _choices_or_range("weight_decays", weight_decays, minimum_open=False, log=True)
    max_params = _budget("max_params", max_params)
    max_macs = _budget("max_macs", max_macs)
    spatial = input_shape[:2] if data_format == "channels_last" else input_shape[1:]
    if max_macs is not None and None in spatial:
        raise ValueError(f"Invalid value for argument `max_macs`: received {max_macs:,} with "
                         f"input_shape={input_shape!r}; counting multiply-adds needs a known "
                         "height and width.")
    space = Space(family, input_shape, classes, depths, widths, preact, blocks, shortcuts,
                  learning_rates, weight_decays, max_params, max_macs, data_format)
    # The cheapest candidate of every depth: the smallest width, and the cheapest of the
    # discrete choices (a few hundred counts at most, well under a millisecond each).
    cheapest = {}
    for depth in depths:
        options = []
        for block, pre, shortcut in itertools.product(blocks or (None,), preact,
                                                      shortcuts or (None,)):
            values = {DEPTH: depth, BLOCK: block, WIDTH: _low(widths), PREACT: pre,
                      SHORTCUT: shortcut}
            try:
                space.architecture(values)
            except A.OptionAWidthError:   # the architecture's own check, in the search's terms
                raise ValueError(
                    f"Invalid value for argument `widths`: received {given_widths!r}; width "
                    f"{_number(_low(widths))} narrows the first stage below the stem's "
                    f"{specs.STEM_FILTERS[family]} channels, and option A shortcuts "
                    "(zero-padding) cannot reduce channels: use widths of at least 1, or "
                    "shortcuts B or C.") from None
            n = space.counts(values)
            options.append(((n.macs or 0, n.params), values, n))
        cheapest[depth] = min(options, key=lambda o: o[0])
    fitting = [d for d in depths if space.rejection(cheapest[d][1]) is None]
    if not fitting:
        key, values, n = min(cheapest.values(), key=lambda o: o[0])
        name = "max_params" if max_params is not None and n.params > max_params else "max_macs"
        limit = max_params if name == "max_params" else max_macs
        have = f"{n.params:,} trainable parameters" if name == "max_params" else \
            f"{n.macs:,} multiply-adds"
        raise ValueError(f"Invalid value for argument `{name}`: received {limit:,}; the "
                         f"smallest network in the space, {describe(values)}, has {have}.")
    if default_depths:
        depths = tuple(fitting)
    else:
        for d in depths:
            if d not in fitting:
                _, values, n = cheapest[d]
                if max_params is not None and n.params > max_params:
                    have, name, limit = f"{n.params:,} trainable parameters", "max_params", \
                        max_params
                else:
                    have, name, limit = f"{n.macs:,} multiply-adds", "max_macs", max_macs
                raise ValueError(f"Invalid value for argument `depths`: ResNet-{d} has at "
                                 f"least {have} (its smallest form in this space), over "
                                 f"{name}={limit:,}.")
    _, values, _ = min((cheapest[d] for d in depths), key=lambda o: o[0])
    defaults = {DEPTH: values[DEPTH], WIDTH: _low(widths), PREACT: values[PREACT],
                BLOCK: values[BLOCK], SHORTCUT: values[SHORTCUT],
                LEARNING_RATE: _first(learning_rates), WEIGHT_DECAY: _first(weight_decays)}
    return dataclasses.replace(space, depths=depths, defaults=defaults)


# -- the builder call of a trial -------------------------------------------------------------

def _values(hp):
    """A trial's values from a KerasTuner ``HyperParameters`` (its ``.values``) or a dict."""
    values = hp if isinstance(hp, dict) else getattr(hp, "values", None)
    if not isinstance(values, dict) or DEPTH not in values:
        raise TypeError(f"Argument `hp` must be a keras_tuner.HyperParameters or a dict of "
                        f"hyperparameter values with a {DEPTH!r} entry; received {hp!r}.")
    return values


def best_call(hp, **kwargs):
    """The ``keras_resnet.ResNet(...)`` source line that rebuilds a trial's architecture.

    Args:
        hp: the trial's ``keras_tuner.HyperParameters`` (for example
            ``tuner.get_best_hyperparameters()[0]``) or a dict of its values.
        **kwargs: more builder arguments to write after the architecture's, such
            as ``input_shape`` and ``classes``.

    Returns:
        str: a call with only the arguments that differ from the builder's
        defaults, so that ``eval`` of it (after ``import keras_resnet``) builds
        the trial's network.

    Example:

    >>> best_call({DEPTH: 56, WIDTH: 2, PREACT: True, FAMILY: "cifar"})
    'keras_resnet.ResNet(depth=56, preact=True, width=2)'
    >>> best_call({DEPTH: 50, WIDTH: 1.0, PREACT: False, FAMILY: "cifar"}, classes=10)
    "keras_resnet.ResNet(depth=50, family='cifar', classes=10)"
    """
    values = _values(hp)
    never = getattr(hp, "keras_resnet_never_completed", None)   # set by budgeted's oracle
    if never:
        raise ValueError(f"Argument `hp` is the hyperparameters of {never}, which never "
                         "trained to completion: no network to rebuild; check the search's "
                         "failed trials.")
    depth = values[DEPTH]
    family = values.get(FAMILY) or ("imagenet" if depth in specs.IMAGENET_DEPTHS else "cifar")
    args = {"depth": depth}
    try:
        inferred = A.resolve_family(depth)
    except ValueError:
        inferred = None
    if inferred != family:
        args["family"] = family
    if values.get(PREACT):
        args["preact"] = True
    default = A.resolve_resnet(depth, family=family)
    chosen = A.resolve_resnet(depth, family=family, block=values.get(BLOCK),
                              shortcut=values.get(SHORTCUT))
    if chosen.block != default.block:
        args["block"] = chosen.block
    width = values.get(WIDTH, 1)
    if width != 1:
        args["width"] = int(width) if float(width).is_integer() else width
    if chosen.shortcut != default.shortcut:
        args["shortcut"] = chosen.shortcut
    args.update(kwargs)
    return "keras_resnet.ResNet(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"
