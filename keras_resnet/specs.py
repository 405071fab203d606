"""Architecture tables: the single source of truth for every depth and named model.

Everything else (the builder, the zoo table, the tests, the tuner's search space)
reads these tables. Adding an ImageNet depth is one line in ``IMAGENET_DEPTHS``;
CIFAR depths are generated from the 6n+2 / 9n+2 rules, not listed by hand.

Sources: He et al. 2015, "Deep Residual Learning for Image Recognition" (Table 1,
Table 6, section 4.2); He et al. 2016, "Identity Mappings in Deep Residual
Networks" (Tables 2 and 3); Zagoruyko & Komodakis 2016, "Wide Residual Networks".
"""

from __future__ import annotations

import dataclasses

FAMILIES = ("cifar", "imagenet")
BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("A", "B", "C")
# Residual-unit orderings of He et al. 2016 (Identity Mappings), Fig. 4 / Table 2.
ORDERINGS = ("post", "bn_after_add", "relu_before_add", "relu_preact", "full_preact")
# Shortcut ("skip") functions of He et al. 2016, Fig. 2 / Table 1.
SKIPS = ("identity", "scaling", "exclusive_gating", "shortcut_gating", "dropout")
STRIDE_AT = ("1x1", "3x3")
DOWNSAMPLE_AT = ("first", "last")
POOLINGS = (None, "avg", "max")
# What ResNet / WideResNet return: the network, or its features by pyramid level.
OUTPUTS = (None, "features")


@dataclasses.dataclass(frozen=True)
class UnitOrdering:
    """Where a residual unit's BatchNorms and ReLUs sit (He et al. 2016, Fig. 4).

    Each field lists the operations (``"bn"``, ``"relu"``) applied, in order, at
    one place of the unit. Convolution i of the branch owns BatchNorm i, used at
    exactly one of the places that concern it: before it, after it, or (for the
    last convolution) after the addition.

    Attributes:
        before_conv: on the input of every branch convolution (pre-activation).
        after_conv: on the output of every branch convolution but the last.
        after_last_conv: on the output of the last one, before the addition.
        after_add: on the sum of shortcut and residual.
    """

    before_conv: tuple
    after_conv: tuple
    after_last_conv: tuple
    after_add: tuple

    @property
    def preactivation(self):
        """The branch starts with an activation: projection shortcuts read the
        pre-activated input and have no BatchNorm, and the network ends with a ReLU."""
        return bool(self.before_conv)

    @property
    def bn_before_conv(self):
        """BatchNorm i normalises the input of convolution i (else its output): the
        stem then has no BatchNorm and the network ends with one (``post_bn``)."""
        return "bn" in self.before_conv


UNIT_ORDERINGS = {
    # (a) original: conv-BN-ReLU ... conv-BN, addition, ReLU.
    "post": UnitOrdering((), ("bn", "relu"), ("bn",), ("relu",)),
    # (b) BN after addition: conv-BN-ReLU ... conv, addition, BN, ReLU.
    "bn_after_add": UnitOrdering((), ("bn", "relu"), (), ("bn", "relu")),
    # (c) ReLU before addition: conv-BN-ReLU ... conv-BN-ReLU, addition.
    "relu_before_add": UnitOrdering((), ("bn", "relu"), ("bn", "relu"), ()),
    # (d) ReLU-only pre-activation: ReLU-conv-BN ... ReLU-conv-BN, addition.
    "relu_preact": UnitOrdering(("relu",), ("bn",), ("bn",), ()),
    # (e) full pre-activation: BN-ReLU-conv ... BN-ReLU-conv, addition.
    "full_preact": UnitOrdering(("bn", "relu"), (), (), ()),
}
PREACT_ORDERINGS = tuple(o for o, unit in UNIT_ORDERINGS.items() if unit.preactivation)

BOTTLENECK_EXPANSION = 4
STAGE_FILTERS = {"cifar": (16, 32, 64), "imagenet": (64, 128, 256, 512)}
STEM_FILTERS = {"cifar": 16, "imagenet": 64}
DEFAULT_INPUT_SHAPE = {"cifar": (32, 32, 3), "imagenet": (224, 224, 3)}
DEFAULT_CLASSES = {"cifar": 10, "imagenet": 1000}
# Total downsampling factor of each family's body (stem included).
REDUCTION = {"cifar": 4, "imagenet": 32}
# The smallest spatial input each family accepts (every stage keeps >= 1 pixel).
MIN_INPUT_SIZE = {"cifar": 4, "imagenet": 32}

# ImageNet: depth -> (block, blocks per stage). He et al. 2015 Table 1;
# depth 200 from He et al. 2016 ("Identity Mappings").
IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}

# Layers per block, counting weighted layers on the residual branch.
LAYERS_PER_BLOCK = {"basic": 2, "bottleneck": 3}


def cifar_blocks_per_stage(depth: int, block: str) -> int | None:
    """Blocks per stage of a CIFAR net, or None when ``depth`` does not fit ``block``.

    Basic nets have depth 6n + 2, bottleneck nets 9n + 2 (three stages of n
    blocks, plus the stem convolution and the classifier).
    """
    per_stage = 3 * LAYERS_PER_BLOCK[block]
    if depth < per_stage + 2 or (depth - 2) % per_stage:
        return None
    return (depth - 2) // per_stage


def cifar_blocks_for(depth: int) -> tuple[str, ...]:
    """The block kinds a CIFAR depth fits, the paper's preference first."""
    named = NAMED_CIFAR_BLOCK.get(depth)
    fits = tuple(b for b in BLOCKS if cifar_blocks_per_stage(depth, b) is not None)
    if named in fits:
        fits = (named,) + tuple(b for b in fits if b != named)
    return fits


# Named CIFAR models of the papers and their block kind (20, 56 and 110 are also
# 9n+2; the papers built them with basic blocks).
NAMED_CIFAR_BLOCK = {20: "basic", 32: "basic", 44: "basic", 56: "basic",
                     110: "basic", 1202: "basic", 164: "bottleneck", 1001: "bottleneck"}


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """A named model of the literature, with what the paper reported."""

    name: str
    builder: str                      # "ResNet" or "WideResNet"
    kwargs: dict
    family: str
    paper_params: str | None = None   # as printed in the paper
    paper_error: str | None = None    # top-1 error (%) as printed, with dataset
    source: str = ""


def _cifar(depth, params, error, preact=False, source="He et al. 2015, Table 6"):
    prefix = "preact_" if preact else ""
    kwargs = {"depth": depth, "family": "cifar"}
    if preact:
        kwargs["preact"] = True
    return ZooEntry(f"{prefix}resnet{depth}_cifar", "ResNet", kwargs, "cifar",
                    params, error, source)


def _imagenet(depth, params, error=None, preact=False, source="He et al. 2015, Table 1"):
    prefix = "preact_" if preact else ""
    kwargs = {"depth": depth, "family": "imagenet"}
    if preact:
        kwargs["preact"] = True
    return ZooEntry(f"{prefix}resnet{depth}", "ResNet", kwargs, "imagenet",
                    params, error, source)


ZOO: dict[str, ZooEntry] = {e.name: e for e in [
    _cifar(20, "0.27M", "8.75 (CIFAR-10)"),
    _cifar(32, "0.46M", "7.51 (CIFAR-10)"),
    _cifar(44, "0.66M", "7.17 (CIFAR-10)"),
    _cifar(56, "0.85M", "6.97 (CIFAR-10)"),
    _cifar(110, "1.7M", "6.43 (CIFAR-10)"),
    _cifar(1202, "19.4M", "7.93 (CIFAR-10)"),
    _cifar(164, "1.7M", "5.93 (CIFAR-10)", source="He et al. 2016, Table 2"),
    _cifar(1001, "10.2M", "7.61 (CIFAR-10)", source="He et al. 2016, Table 3"),
    _cifar(110, "1.7M", "6.37 (CIFAR-10)", preact=True, source="He et al. 2016, Table 2"),
    _cifar(164, "1.7M", "5.46 (CIFAR-10)", preact=True, source="He et al. 2016, Table 2"),
    _cifar(1001, "10.2M", "4.92 (CIFAR-10)", preact=True, source="He et al. 2016, Table 3"),
    ZooEntry("wrn_28_10", "WideResNet", {"depth": 28, "width": 10}, "cifar",
             "36.5M", "4.00 (CIFAR-10)", "Zagoruyko & Komodakis 2016"),
    ZooEntry("wrn_40_4", "WideResNet", {"depth": 40, "width": 4}, "cifar",
             "8.9M", "4.53 (CIFAR-10)", "Zagoruyko & Komodakis 2016"),
    _imagenet(18, "11.7M"),
    _imagenet(34, "21.8M", "24.52 (10-crop, option B)", source="He et al. 2015, Tables 1, 3"),
    _imagenet(50, "25.6M", "24.7 (single crop)"),
    _imagenet(101, "44.5M", "23.6 (single crop)"),
    _imagenet(152, "60.2M", "23.0 (single crop)"),
    _imagenet(200, "64.7M", None, preact=True, source="He et al. 2016"),
]}

# Multiply-adds printed in He et al. 2015, Table 1 ("FLOPs"), in units of 1e9.
PAPER_GMACS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}


def allowed_cifar_depths_text() -> str:
    return ("6n+2 with basic blocks (20, 32, 44, 56, 110, 1202, ...) or 9n+2 with "
            "bottleneck blocks (164, 1001, ...)")


def allowed_imagenet_depths_text() -> str:
    return ", ".join(str(d) for d in IMAGENET_DEPTHS)
