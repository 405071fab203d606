"""What the papers compared: named configurations with the values the papers printed.

Backend-free and cheap to import (no keras): the recipes check their flags with
these tables before anything heavy is imported.

A :class:`Configuration` is a name plus the :class:`~keras_resnet.training.TrainConfig`
fields that differ from the experiment's common recipe (the *base*), e.g.
``{"depth": 56, "plain": True}`` or ``{"model_extras": {"skip": "scaling"}}``.

Sources: He et al. 2015, "Deep Residual Learning for Image Recognition" (Fig. 1,
Fig. 6, Table 6); He et al. 2016, "Identity Mappings in Deep Residual Networks"
(Table 1 / Fig. 2, Table 2 / Fig. 4); Srivastava et al. 2015, "Training Very Deep
Networks" (highway networks).

Highway networks as a row of the skips table: a highway layer computes
``y = T(x) * H(x) + (1 - T(x)) * x`` with a transform gate ``T(x) = sigmoid(W_T x + b_T)``
whose bias starts negative, so that every layer starts close to the identity
(Srivastava et al. 2015). That is the *exclusive gating* of He et al. 2016 (Fig. 2c)
with ``g = T``: ``keras_resnet.ResNet(..., skip="exclusive_gating", gate_bias=b_T)``.
The Identity Mappings row uses ``b_g = -6``; the highway row keeps its own bias
(:data:`HIGHWAY_GATE_BIAS` by default; Srivastava et al. suggest values such as -1
or -3).
"""

from __future__ import annotations

import dataclasses
import re

from keras_resnet import specs
from keras_resnet.training.config import TrainConfig

# He et al. 2015, Table 6: CIFAR-10 test error (%) of the residual nets, option A.
PAPER_RESNET_CIFAR10 = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}
# He et al. 2015, Fig. 6: the depths of the plain and residual panels on CIFAR-10.
PAPER_DEGRADATION_DEPTHS = (20, 32, 44, 56)
PAPER_RESIDUAL_ONLY_DEPTHS = (110,)
HIGHWAY_GATE_BIAS = -2.0
# "fail": the paper reports that this row did not converge.
FAIL = "fail"

TABLES = ("skips", "units")
# The depth the paper used for each block kind in the Identity Mappings tables.
PAPER_DEPTH = {"basic": 110, "bottleneck": 164}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
# Set by the runner for every configuration: where it writes, and how much it prints.
RUNNER_FIELDS = ("run_dir", "export", "no_export", "quiet")


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One trained model of an experiment.

    Args:
        name: str, unique within the experiment; also the name of its run
            directory (letters, digits, ``_ . + -``).
        settings: dict of :class:`~keras_resnet.training.TrainConfig` fields that
            differ from the experiment's base recipe (``model_extras`` merges with
            the base's).
        label: str or None, the legend and table label (default: ``name``).
            Configurations that differ only in their seed share a label.
        group: str or None, which panel or table column it belongs to.
        paper: float, ``"fail"`` or None: the paper's test error (%) for this
            row, or that it failed to converge.
        source: str, where ``paper`` was printed.

    Example:

    >>> c = Configuration("plain-56", {"depth": 56, "plain": True}, group="plain")
    >>> c.label, c.group
    ('plain-56', 'plain')
    """

    name: str
    settings: dict = dataclasses.field(default_factory=dict)
    label: str | None = None
    group: str | None = None
    paper: float | str | None = None
    source: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"Invalid value for argument `name`: received {self.name!r}; "
                             "expected a non-empty str of letters, digits, '_', '.', '+' and "
                             "'-' (it names the run directory).")
        if not isinstance(self.settings, dict):
            raise TypeError(f"Argument `settings` of configuration {self.name!r} must be a "
                            f"dict of TrainConfig fields; received {type(self.settings).__name__}.")
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        for key in self.settings:
            if key not in fields or key in RUNNER_FIELDS:
                allowed = ", ".join(sorted(fields - set(RUNNER_FIELDS)))
                raise ValueError(f"Invalid key in argument `settings` of configuration "
                                 f"{self.name!r}: received {key!r}; expected TrainConfig fields "
                                 f"({allowed}); the runner sets {', '.join(RUNNER_FIELDS)}.")
        if self.label is None:
            object.__setattr__(self, "label", self.name)

    def with_seed(self, seed):
        """The same configuration under another seed: name ``<name>_seed<seed>``, same label."""
        return dataclasses.replace(self, name=f"{self.name}_seed{seed}",
                                   settings={**self.settings, "seed": seed})


def check_cifar_depth(depth, flag="--depth", block=None):
    """Raise ValueError unless ``depth`` is a CIFAR-family depth (6n+2 basic, 9n+2 bottleneck).

    Example:

    >>> check_cifar_depth(21)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --depth 21 is not a depth of the CIFAR family; expected 6n+2 with basic blocks ...
    """
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"{flag} must be an int; received {depth!r}.")
    fits = specs.cifar_blocks_for(depth)
    if not fits or (block is not None and block not in fits):
        kinds = ("6n+2 with basic blocks (20, 32, 44, 56, 110, ...)" if block == "basic"
                 else specs.allowed_cifar_depths_text())
        raise ValueError(f"{flag} {depth} is not a depth of the CIFAR family; expected {kinds}.")
    return depth


def block_of(depth, settings=None):
    """The block kind a CIFAR ``depth`` builds with (the named papers' choice first)."""
    extras = (settings or {}).get("model_extras", {})
    return extras.get("block") or specs.cifar_blocks_for(depth)[0]


def with_seeds(configurations, seeds):
    """Each configuration once per seed (``<name>_seed<s>``, seed-major order).

    With one seed (or None) the configurations are returned unchanged: the
    experiment's base recipe holds the seed.
    """
    if seeds is None or len(seeds) <= 1:
        return list(configurations)
    return [c.with_seed(s) for s in seeds for c in configurations]


def degradation(depths=PAPER_DEGRADATION_DEPTHS, residual_only_depths=()):
    """He et al. 2015, Fig. 1 and Fig. 6: plain nets and their residual twins at each depth.

    Args:
        depths: CIFAR depths trained both plain and residual.
        residual_only_depths: depths trained residual only (the paper's ResNet-110).

    Returns:
        A list of :class:`Configuration`: ``plain-<d>`` (group ``"plain"``) for
        every depth, then ``resnet-<d>`` (group ``"residual"``), the residual ones
        with the paper's CIFAR-10 test error (Table 6) where it printed one.

    Example:

    >>> [c.name for c in degradation((20, 56), residual_only_depths=(110,))]
    ['plain-20', 'plain-56', 'resnet-20', 'resnet-56', 'resnet-110']
    """
    depths, extra = tuple(depths), tuple(residual_only_depths)
    if not depths and not extra:
        raise ValueError("Argument `depths` is empty; expected at least one CIFAR depth.")
    for d in (*depths, *extra):
        check_cifar_depth(d, "--depths")
    seen = set()
    for d in depths + extra:
        if d in seen:
            raise ValueError(f"Depth {d} appears twice in `depths`/`residual_only_depths`.")
        seen.add(d)
    out = [Configuration(f"plain-{d}", {"depth": d, "plain": True}, group="plain")
           for d in depths]
    for d in depths + extra:
        out.append(Configuration(f"resnet-{d}", {"depth": d}, group="residual",
                                 paper=PAPER_RESNET_CIFAR10.get(d),
                                 source="He et al. 2015, Table 6 (CIFAR-10)"))
    return out


@dataclasses.dataclass(frozen=True)
class Row:
    """A row of an Identity Mappings table: builder settings and the paper's errors by depth."""

    key: str
    label: str
    settings: dict
    paper: dict                     # paper depth (110, 164) -> test error (%) or "fail"
    note: str = ""


# He et al. 2016, Table 1 (Fig. 2): shortcut functions on ResNet-110, CIFAR-10 test error
# (median of 5 runs). The 1x1 conv row uses the builder's option C, which follows every
# projection with BatchNorm; the paper's Fig. 2(e) draws the convolution alone. The
# dropout row uses the builder's inverted dropout (the kept shortcut is scaled by 2 in
# training, identity at inference); the paper's dropout is read as a scale with
# expectation 0.5 on the shortcut.
SKIP_ROWS = (
    Row("original", "original (identity)", {}, {110: 6.61}),
    Row("scaling", "constant scaling 0.5/0.5", {"model_extras": {"skip": "scaling"}},
        {110: 12.35}),
    Row("exclusive_gating", "exclusive gating, b_g=-6",
        {"model_extras": {"skip": "exclusive_gating", "gate_bias": -6.0}}, {110: 8.70}),
    Row("shortcut_gating", "shortcut-only gating, b_g=-6",
        {"model_extras": {"skip": "shortcut_gating", "gate_bias": -6.0}}, {110: 6.91}),
    Row("shortcut_gating_b0", "shortcut-only gating, b_g=0",
        {"model_extras": {"skip": "shortcut_gating", "gate_bias": 0.0}}, {110: 12.86}),
    Row("conv_shortcut", "1x1 conv shortcut", {"shortcut": "C"}, {110: 12.22},
        note="option C: 1x1 conv + BatchNorm on every shortcut (the paper: 1x1 conv)"),
    Row("dropout_shortcut", "dropout shortcut (0.5)", {"model_extras": {"skip": "dropout"}},
        {110: FAIL}, note="inverted dropout: kept shortcuts scaled by 2 in training"),
)

# He et al. 2016, Table 2 (Fig. 4): unit orderings on ResNet-110 / ResNet-164, CIFAR-10.
UNIT_ROWS = (
    Row("original", "original (post-activation)", {}, {110: 6.61, 164: 5.93}),
    Row("bn_after_add", "BN after addition", {"model_extras": {"ordering": "bn_after_add"}},
        {110: 8.17, 164: 6.50}),
    Row("relu_before_add", "ReLU before addition",
        {"model_extras": {"ordering": "relu_before_add"}}, {110: 7.84, 164: 6.14}),
    Row("relu_preact", "ReLU-only pre-activation", {"model_extras": {"ordering": "relu_preact"}},
        {110: 6.71, 164: 5.91}),
    Row("full_preact", "full pre-activation", {"model_extras": {"ordering": "full_preact"}},
        {110: 6.37, 164: 5.46}),
)

TABLE_ROWS = {"skips": SKIP_ROWS, "units": UNIT_ROWS}
TABLE_SOURCES = {"skips": "He et al. 2016, Table 1 (CIFAR-10, ResNet-110)",
                 "units": "He et al. 2016, Table 2 (CIFAR-10, ResNet-110 / ResNet-164)"}
TABLE_TITLES = {"skips": "Shortcut functions", "units": "Residual-unit orderings"}
# The paper's depths per table (the recipe's defaults on CIFAR).
PAPER_TABLE_DEPTHS = {"skips": (110,), "units": (110, 164)}


def highway_row(gate_bias=HIGHWAY_GATE_BIAS):
    """The highway-network row (Srivastava et al. 2015): exclusive gating with its own bias."""
    if isinstance(gate_bias, bool) or not isinstance(gate_bias, (int, float)):
        raise TypeError(f"Argument `gate_bias` must be a number; received {gate_bias!r}.")
    return Row("highway", f"highway (exclusive gating, b_g={float(gate_bias):g})",
               {"model_extras": {"skip": "exclusive_gating", "gate_bias": float(gate_bias)}},
               {}, note="Srivastava et al. 2015; not in the paper's table")


def table_rows(table, highway_bias=HIGHWAY_GATE_BIAS):
    """The rows of ``table`` (skips: with a highway row unless ``highway_bias`` is None)."""
    if table not in TABLE_ROWS:
        raise ValueError(f"Invalid value for argument `table`: received {table!r}; "
                         f"expected one of {', '.join(TABLES)}.")
    rows = list(TABLE_ROWS[table])
    if table == "skips" and highway_bias is not None:
        rows.append(highway_row(highway_bias))
    return rows


def identity_mappings(table, depths=None, highway_bias=HIGHWAY_GATE_BIAS):
    """He et al. 2016: one configuration per row of ``table`` and depth.

    Args:
        table: ``"skips"`` (Table 1, shortcut functions, plus a highway row) or
            ``"units"`` (Table 2, unit orderings).
        depths: CIFAR depths (default: the paper's, 110 for skips, 110 and 164 for units).
        highway_bias: float or None, the highway row's gate bias (None: no highway row).

    Returns:
        A list of :class:`Configuration` named ``<row>-<depth>``, grouped by
        depth, with the paper's error for the row at the paper's depth of the
        same block kind (ResNet-110 for basic blocks, ResNet-164 for bottlenecks).

    Example:

    >>> [c.name for c in identity_mappings("units", depths=(20,))][:2]
    ['original-20', 'bn_after_add-20']
    >>> identity_mappings("skips", depths=(20,))[-1].settings["model_extras"]
    {'skip': 'exclusive_gating', 'gate_bias': -2.0}
    """
    rows = table_rows(table, highway_bias)
    depths = tuple(PAPER_TABLE_DEPTHS[table] if depths is None else depths)
    if not depths:
        raise ValueError("Argument `depths` is empty; expected at least one CIFAR depth.")
    if len(set(depths)) != len(depths):
        raise ValueError(f"Argument `depths` repeats a depth: {depths}.")
    for d in depths:
        check_cifar_depth(d)
    out = []
    for depth in depths:
        paper_depth = PAPER_DEPTH[block_of(depth)]
        for row in rows:
            settings = {**row.settings, "depth": depth}
            out.append(Configuration(
                f"{row.key}-{depth}", settings, label=row.label, group=f"depth {depth}",
                paper=row.paper.get(paper_depth),
                source=f"{TABLE_SOURCES[table].split(' (')[0]} (CIFAR-10, ResNet-{paper_depth})"
                if row.paper.get(paper_depth) is not None else ""))
    return out
