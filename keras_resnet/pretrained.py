"""What ``weights="imagenet"`` requires of a network, without Keras.

The official keras.applications weights fix the network's layout: the depths
that have them, their classifier, and the extras (stride placement, stem bias)
that reproduce each flavour. :func:`keras_resnet.architecture.resolve_resnet`
fills in and checks these before anything is built.
"""

from __future__ import annotations

import os


# ImageNet depths with official keras.applications weights.
IMAGENET_WEIGHT_DEPTHS = (50, 101, 152)
IMAGENET_CLASSES = 1000
# The layout (extras of ``ResNet``) that reproduces each keras.applications flavour:
# ResNet50/101/152 (post-activation, our defaults) and ResNet50V2/101V2/152V2
# (pre-activation, stride on the 3x3 of a stage's last block, a stem bias).
LAYOUTS = {
    False: {"stride_at": "1x1", "downsample_at": "first", "stem_bias": False},
    True: {"stride_at": "3x3", "downsample_at": "last", "stem_bias": True},
}
# Fields of an Architecture the official weights fix, and the argument that sets each.
FIXED_FIELDS = {"family": "family", "block": "block", "stage_blocks": "depth",
                 "stage_filters": "width", "out_filters": "width",
                 "stem_filters": "depth", "ordering": "ordering", "shortcut": "shortcut",
                 "skip": "skip", "residual": "residual", "stride_at": "stride_at",
                 "downsample_at": "downsample_at", "stem_bias": "stem_bias"}


def check_weights_argument(weights, allow_imagenet=True):
    """Raise a ValueError unless ``weights`` is None, ``"imagenet"`` or an existing file."""
    allowed = "None, 'imagenet' or the path of a weights file" if allow_imagenet else \
        "None or the path of a weights file"
    if weights is None:
        return
    if isinstance(weights, str) and weights == "imagenet" and allow_imagenet:
        return
    if not isinstance(weights, (str, os.PathLike)) or weights == "imagenet":
        raise ValueError(f"Invalid value for argument `weights`: received {weights!r}; "
                         f"expected {allowed}.")
    if not os.path.exists(weights):
        raise ValueError(f"Invalid value for argument `weights`: no file at "
                         f"{os.fspath(weights)!r}; expected {allowed}.")


def imagenet_layout(depth, preact, extras, family=None):
    """Fill in the extras that reproduce keras.applications' layout for ``weights="imagenet"``.

    Post-activation nets need our defaults; pre-activation (V2) nets need
    ``stride_at="3x3"``, ``downsample_at="last"`` and ``stem_bias=True``.

    Args:
        depth: int, the requested depth.
        preact: bool, True for the V2 (pre-activation) nets.
        extras: dict, the user's extra keyword arguments of ``ResNet``.
        family: str or None, the user's ``family`` argument.

    Returns:
        A new dict: ``extras`` with the V2 layout set where the user left it unset.

    Raises:
        ValueError: naming ``weights`` for a depth or family without official
            weights, or the argument the user set to a value they cannot fill.

    Example:

    >>> imagenet_layout(50, True, {})
    {'stride_at': '3x3', 'downsample_at': 'last', 'stem_bias': True}
    """
    if depth not in IMAGENET_WEIGHT_DEPTHS or family not in (None, "imagenet"):
        raise ValueError(f"Invalid value for argument `weights`: 'imagenet' weights exist for "
                         f"ImageNet depths {IMAGENET_WEIGHT_DEPTHS} (plain or preact); "
                         f"received depth={depth!r}, family={family!r}.")
    result = dict(extras)
    for key, value in LAYOUTS[bool(preact)].items():
        given = result.get(key)
        if given is None:
            if preact:
                result[key] = value
        elif given != value:
            net = f"ResNet{depth}" + ("V2" if preact else "")
            raise ValueError(
                f"Invalid value for argument `{key}` with weights='imagenet': received "
                f"{given!r}; keras.applications' {net} weights need {key}={value!r} "
                f"(leave it unset).")
    return result
