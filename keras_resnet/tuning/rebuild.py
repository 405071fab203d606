"""The ``keras_resnet.ResNet(...)`` line that rebuilds a trial's network.

:func:`best_call` turns a trial's hyperparameter values (a KerasTuner
``HyperParameters`` or a dict) into the shortest builder call, writing only
the arguments that differ from the builder's defaults. No Keras.
"""

from __future__ import annotations

from keras_resnet import architecture as A
from keras_resnet import specs
from keras_resnet.tuning.hyperparameters import BLOCK, DEPTH, FAMILY, PREACT, SHORTCUT, WIDTH


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
