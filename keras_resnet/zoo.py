"""The zoo table: every named model of the literature, measured beside the paper."""

from __future__ import annotations

import keras

from keras_resnet.flops import flops as count_flops
from keras_resnet import models, specs
from keras_resnet.layers import BottleneckBlock

COLUMNS = ("model", "depth", "family", "block", "preact", "params", "GMACs",
           "paper params", "paper error %", "source")
WIDTHS = (24, 5, 8, 10, 6, 12, 6, 12, 26, 0)


def build(name, **overrides):
    """Build a zoo model by name (see ``specs.ZOO``)."""
    if name not in specs.ZOO:
        raise ValueError(f"Invalid value for argument `name`: received {name!r}; expected "
                         f"one of {', '.join(sorted(specs.ZOO))}.")
    entry = specs.ZOO[name]
    return getattr(models, entry.builder)(**{**entry.kwargs, **overrides})


def trainable_params(model):
    return int(sum(int(keras.ops.size(w)) for w in model.trainable_weights))


def row(name):
    """One row of the zoo table, measured on a freshly built model."""
    entry = specs.ZOO[name]
    model = build(name)
    layer = model.get_layer("stage1_block1")
    arch_block = "bottleneck" if isinstance(layer, BottleneckBlock) else "basic"
    out = {
        "model": name, "depth": entry.kwargs["depth"], "family": entry.family,
        "block": arch_block, "preact": layer.ordering == "full_preact",
        "params": trainable_params(model), "GMACs": count_flops(model) / 1e9,
        "paper params": entry.paper_params or "", "paper error %": entry.paper_error or "",
        "source": entry.source,
    }
    keras.backend.clear_session()
    return out


def format_row(r, markdown=False):
    cells = [r["model"], str(r["depth"]), r["family"], r["block"], "yes" if r["preact"] else "",
             f"{r['params']:,}", f"{r['GMACs']:.2f}", r["paper params"], r["paper error %"],
             r["source"]]
    if markdown:
        return "| " + " | ".join(cells) + " |"
    return "  ".join(c.ljust(w) if w else c for c, w in zip(cells, WIDTHS)).rstrip()


def header(markdown=False):
    if markdown:
        return "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS)
    return "  ".join(c.ljust(w) if w else c for c, w in zip(COLUMNS, WIDTHS)).rstrip()
