"""Argument checks: each argument of the builders is checked by one function here.

Every check raises a ``ValueError`` or ``TypeError`` that names the argument in
backticks, shows the value received and says what is allowed. The builders
(:mod:`keras_resnet.architecture`, :mod:`keras_resnet.models`), the layers and the
counting call these; none writes its own; the extras an ``Architecture`` stores
are checked together (:func:`check_extras`). No Keras here.
"""

from __future__ import annotations

import math

from keras_resnet import specs


def check_choice(name, value, allowed):
    """Raise a ValueError naming ``name`` unless ``value`` is one of ``allowed``."""
    try:
        ok = value in allowed
    except TypeError:  # unhashable or incomparable values are not among the choices
        ok = False
    if not ok:
        raise ValueError(
            f"Invalid value for argument `{name}`: received {value!r}; "
            f"expected one of {', '.join(repr(a) for a in allowed)}.")
    return value


def check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"Argument `{name}` must be a bool (True or False); received "
                        f"{value!r} of type {type(value).__name__}.")
    return value


def check_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Argument `{name}` must be an int >= {minimum}; received {value!r} "
                        f"of type {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"Argument `{name}` must be >= {minimum}; received {value}.")
    return value


def check_rate(name, value):
    """A probability in [0, 1), as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Argument `{name}` must be a float in [0, 1); received {value!r} "
                        f"of type {type(value).__name__}.")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"Argument `{name}` must be in [0, 1); received {value}.")
    return float(value)


def check_number(name, value, *, low=-math.inf, high=math.inf, low_open=False, allowed=None):
    """A finite real number in [low, high] ((low, high] with ``low_open``), as a float."""
    allowed = allowed or "a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Argument `{name}` must be {allowed}; received {value!r} "
                        f"of type {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        raise ValueError(f"Argument `{name}` must be {allowed}; received {value!r}.")
    return value


def check_depth_type(depth):
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"Argument `depth` must be an int; received {depth!r} "
                        f"of type {type(depth).__name__}.")


def check_width(width):
    if isinstance(width, bool) or not isinstance(width, (int, float)):
        raise TypeError(f"Argument `width` must be a positive number (the widening factor "
                        f"k); received {width!r} of type {type(width).__name__}.")
    if not math.isfinite(width) or width <= 0:
        raise ValueError(f"Argument `width` must be a positive number (the widening "
                         f"factor k); received {width!r}.")
    return width


def check_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"Argument `seed` must be an int or None; received {seed!r} "
                        f"of type {type(seed).__name__}.")
    return seed


def check_head(include_top=True, pooling=None, classes=None, name=None, outputs=None):
    """Check the keras.applications-style head arguments (and ``outputs``) that need no Keras."""
    check_bool("include_top", include_top)
    check_choice("pooling", pooling, specs.POOLINGS)
    check_choice("outputs", outputs, specs.OUTPUTS)
    if outputs == "features" and (include_top or pooling is not None):
        raise ValueError(f"Invalid value for argument `outputs`: received {outputs!r} with "
                         f"include_top={include_top!r}, pooling={pooling!r}; the features "
                         "are the stage outputs: pass include_top=False and pooling=None.")
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int)
                                or classes < 1):
        raise ValueError(f"Invalid value for argument `classes`: received {classes!r}; "
                         "expected a positive int or None (the family's default).")
    if name is not None and (not isinstance(name, str) or not name or "/" in name):
        raise ValueError(f"Invalid value for argument `name`: received {name!r}; "
                         "expected a non-empty str without '/' (Keras's rule for names) "
                         "or None (the default name).")


# -- input shapes ------------------------------------------------------------------------

def spatial_size(input_shape, data_format):
    """The smaller known spatial side of ``input_shape`` (no batch axis), or None."""
    if input_shape is None:
        return None
    hw = input_shape[:2] if data_format == "channels_last" else input_shape[1:]
    sizes = [d for d in hw if d is not None]
    return min(sizes) if sizes else None


def check_input_shape(input_shape, data_format):
    if input_shape is None:
        return None
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3 or any(
            d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1)
            for d in input_shape):
        raise ValueError("Argument `input_shape` must be a tuple of 3 positive ints "
                         "(height, width, channels) or None entries for variable "
                         f"sizes; received {input_shape!r}.")
    channels = input_shape[-1] if data_format == "channels_last" else input_shape[0]
    if channels is None:
        raise ValueError(f"Argument `input_shape` needs a known channel count; "
                         f"received {input_shape!r}.")
    return tuple(input_shape)


# -- the extras ---------------------------------------------------------------------------

def check_extras(options):
    """Check the extras an ``Architecture`` stores as they are (None: the default)."""
    checks = {
        "skip": lambda v: check_choice("skip", v, specs.SKIPS),
        "dropout_rate": lambda v: check_rate("dropout_rate", v),
        "zero_init": lambda v: check_bool("zero_init", v),
        "stem_bias": lambda v: check_bool("stem_bias", v),
        "gate_bias": lambda v: check_number("gate_bias", v, allowed="a finite number (the "
                                            "initial bias b_g of the gate)"),
        "bn_momentum": lambda v: check_number("bn_momentum", v, low=0.0, high=1.0,
                                              allowed="a float in [0, 1]"),
        "bn_epsilon": lambda v: check_number("bn_epsilon", v, low=0.0, low_open=True,
                                             allowed="a positive float"),
        "seed": check_seed,
    }
    for key, value in options.items():
        if value is not None and key in checks:
            checks[key](value)
