"""The papers' training experiments: one recipe over a list of named configurations.

Modules, each one concern:

* ``configurations``: what the papers compared, as :class:`Configuration` lists
  with the values the papers printed: :func:`degradation` (He et al. 2015,
  Fig. 1 / Fig. 6), :func:`identity_mappings` (He et al. 2016, Tables 1 and 2,
  and a highway row after Srivastava et al. 2015) (no keras);
* ``runner``: :func:`run_experiment` trains them with the one trainer of
  :mod:`keras_resnet.training` and collects per-epoch losses and errors;
* ``report``: the final errors as text, CSV and Markdown tables (no keras);
* ``plots``: the pictures, PNG and SVG (matplotlib, no keras);
* ``papers``: the whole experiments the recipes run (:func:`run_degradation`,
  :func:`run_identity_mappings`).

The recipes' command lines are :mod:`keras_resnet.cli.experiment`.

The names below are imported lazily: ``import keras_resnet.experiments`` (and
the recipes' ``--help``) imports neither keras nor TensorFlow.

Example:

>>> from keras_resnet.experiments import degradation, identity_mappings
>>> [c.name for c in degradation((20, 56))]
['plain-20', 'plain-56', 'resnet-20', 'resnet-56']
>>> [(c.label, c.paper) for c in identity_mappings("skips")][:2]
[('original (identity)', 6.61), ('constant scaling 0.5/0.5', 12.35)]
"""

from keras_resnet.experiments.configurations import (FAIL, HIGHWAY_GATE_BIAS, TABLES,
                                                     Configuration, Row, degradation,
                                                     highway_row, identity_mappings,
                                                     table_rows, with_seeds)
from keras_resnet.experiments.report import format_table, summarize, to_csv, to_markdown

_LAZY = {
    "run_experiment": "runner", "collect": "runner", "ExperimentProgress": "runner",
    "run_degradation": "papers", "run_identity_mappings": "papers",
    "plot_degradation": "plots", "plot_curves": "plots",
}

__all__ = ["FAIL", "HIGHWAY_GATE_BIAS", "TABLES", "Configuration", "Row", "degradation",
           "highway_row", "identity_mappings", "table_rows", "with_seeds", "format_table",
           "summarize", "to_csv", "to_markdown", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"keras_resnet.experiments.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'keras_resnet.experiments' has no attribute {name!r}")
