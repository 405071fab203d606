"""The search space of a ResNet search, resolved from the tables and checked, without Keras.

:func:`resolve_space` checks a search's arguments (each error names the
argument, the value received and what is allowed) and resolves them into a
:class:`Space`: the choices a search may make (depths, widths, pre-activation,
blocks, shortcuts, learning rates, weight decays), the budgets, and the
cheapest candidate as the defaults. A :class:`Space` maps a trial's
hyperparameter values to the arguments of ``keras_resnet.ResNet``
(:meth:`Space.builder_kwargs`), counts the network they describe from the
architecture (:meth:`Space.counts`, no weights allocated) and says whether it is
over budget (:meth:`Space.rejection`). The KerasTuner hypermodel
(:mod:`keras_resnet.tuning.hypermodel`) declares this space to KerasTuner; the
search recipe's command line checks its flags with it before importing Keras.

This module holds the checks; the names, defaults, :class:`Range`,
:class:`Space` and the depths of each family are declared in
:mod:`keras_resnet.tuning.hyperparameters`, and :func:`best_call` (a trial as
the builder call that rebuilds it) is :mod:`keras_resnet.tuning.rebuild`; both
are re-exported here.

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
from keras_resnet import specs
# The declaration and the builder call of a trial, re-exported: ``tuning.space`` is
# where the search's modules and users find every name of the space.
from keras_resnet.tuning.hyperparameters import (  # noqa: F401
    BLOCK, DEFAULT_LEARNING_RATE, DEFAULT_MAX_CIFAR_DEPTH, DEFAULT_WEIGHT_DECAY, DEFAULT_WIDTHS,
    DEPTH, FAMILY, HYPERPARAMETERS, LEARNING_RATE, MOMENTUM, PREACT, SHORTCUT, WEIGHT_DECAY, WIDTH,
    Range, Space, _allowed_depths_text, _fits, _number, describe, family_depths)
from keras_resnet.tuning.rebuild import _values, best_call  # noqa: F401


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
