"""The zoo table: every named model of the literature, counted beside the paper.

Parameters and multiply-adds are counted from each model's architecture
(:mod:`keras_resnet.counting`), without building it: the whole table takes
milliseconds and imports neither Keras nor a backend. They equal what
``trainable_params`` and ``flops`` measure on the built models
(``tests/test_counting.py``).
"""

from __future__ import annotations

from keras_resnet import architecture, counting, specs
from keras_resnet.counting import trainable_params  # noqa: F401 - part of this module's API

COLUMNS = ("model", "depth", "family", "block", "preact", "params", "GMACs",
           "paper params", "paper error %", "source")
WIDTHS = (24, 5, 8, 10, 6, 12, 6, 12, 26, 0)


def _entry(name):
    if name not in specs.ZOO:
        raise ValueError(f"Invalid value for argument `name`: received {name!r}; expected "
                         f"one of {', '.join(sorted(specs.ZOO))}.")
    return specs.ZOO[name]


def build(name, **overrides):
    """Build a zoo model by name (see ``specs.ZOO``)."""
    from keras_resnet import models

    entry = _entry(name)
    return getattr(models, entry.builder)(**{**entry.kwargs, **overrides})


def resolve(name):
    """The :class:`~keras_resnet.architecture.Architecture` of a zoo model, without Keras."""
    entry = _entry(name)
    if entry.builder == "WideResNet":
        return architecture.resolve_wide_resnet(**entry.kwargs)
    return architecture.resolve_resnet(**entry.kwargs)


def count(name):
    """:class:`~keras_resnet.counting.Counts` of a zoo model, counted without building it."""
    entry = _entry(name)
    counter = counting.count_wide if entry.builder == "WideResNet" else counting.count
    return counter(**entry.kwargs)


def row(name):
    """One row of the zoo table, counted from the model's architecture."""
    entry = _entry(name)
    arch = resolve(name)
    counts = count(name)
    return {
        "model": name, "depth": entry.kwargs["depth"], "family": arch.family,
        "block": arch.block, "preact": arch.ordering == "full_preact",
        "params": counts.params, "GMACs": counts.macs / 1e9,
        "paper params": entry.paper_params or "", "paper error %": entry.paper_error or "",
        "source": entry.source,
    }


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
