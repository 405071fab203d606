"""The papers' experiments end to end: train, then write the numbers, the tables and the pictures.

What ``recipes/degradation.py`` and ``recipes/identity_mappings.py`` run; each
function is the whole experiment for a base recipe (a
:class:`~keras_resnet.training.TrainConfig`) and an output directory.
"""

from __future__ import annotations

import os
import sys

from keras_resnet.experiments import configurations as confs
from keras_resnet.experiments import plots, report
from keras_resnet.experiments.runner import run_experiment
from keras_resnet.training.rundir import describe, write_atomic, write_json


def _say(stream, show, text):
    if show:
        print(text, file=stream or sys.stdout, flush=True)


def run_degradation(base, out_dir, *, depths=confs.PAPER_DEGRADATION_DEPTHS,
                    residual_only_depths=(), seeds=None, verbose=True, summary=True,
                    stream=None, **kwargs):
    """He et al. 2015, Fig. 1 / Fig. 6: plain and residual nets at each depth, one recipe.

    Trains :func:`~keras_resnet.experiments.degradation` configurations with
    :func:`~keras_resnet.experiments.run_experiment`, then writes
    ``<out_dir>/degradation.json`` (every number), ``degradation.png`` and
    ``degradation.svg`` (two panels: plain and residual; thin lines training
    error, bold lines test error, one colour per depth), and prints the final
    errors as a table.

    Args:
        base: the :class:`~keras_resnet.training.TrainConfig` every net trains with.
        out_dir: str, the experiment's directory.
        depths: depths trained plain and residual.
        residual_only_depths: depths trained residual only.
        seeds: list of ints or None: train every configuration once per seed.
        verbose: bool, the progress display.
        summary: bool, print the final table and the files written.
        stream: where to print (default ``sys.stdout``).
        **kwargs: passed to :func:`~keras_resnet.experiments.run_experiment`
            (``data``, ``strategy``, ``callbacks``).

    Returns:
        The results dict of :func:`~keras_resnet.experiments.run_experiment`, with
        ``experiment``, ``dataset`` and ``files`` (what was written) added.
    """
    configurations = confs.with_seeds(confs.degradation(depths, residual_only_depths), seeds)
    results = run_experiment(configurations, base, out_dir, verbose=verbose, stream=stream,
                             **kwargs)
    dataset = base.dataset or "cifar10"
    results.update(experiment="degradation", dataset=dataset,
                   source="He et al. 2015, Fig. 1 and Fig. 6")
    out_dir = os.fspath(out_dir)
    files = plots.plot_degradation(results, os.path.join(out_dir, "degradation"),
                                   dataset=dataset)
    json_path = os.path.join(out_dir, "degradation.json")
    results["files"] = [json_path, *files]
    write_json(json_path, results)
    rows = report.summarize(results)
    _say(stream, summary, "\n" + report.format_table(
        rows, f"Final errors after {_length(results)} ({dataset}):"))
    _say(stream, summary, "\n" + "\n".join(f"Wrote {describe(p)}" for p in results["files"]))
    return results


def _length(results):
    epochs = sorted({r["epochs"] for r in results["configurations"] if r["epochs"]})
    return f"{'/'.join(map(str, epochs))} epochs" if epochs else "training"


def run_identity_mappings(base, out_dir, table, *, depths=None,
                          highway_bias=confs.HIGHWAY_GATE_BIAS, seeds=None, verbose=True,
                          summary=True, stream=None, **kwargs):
    """He et al. 2016, Table 1 (``table="skips"``) or Table 2 (``"units"``): one model per row.

    Trains :func:`~keras_resnet.experiments.identity_mappings` configurations
    with :func:`~keras_resnet.experiments.run_experiment`, then writes
    ``<out_dir>/table.csv`` and ``table.md`` (our final test error next to the
    paper's for every row), ``curves.png`` and ``curves.svg`` (training loss and
    test error per epoch, all rows) and ``identity_mappings.json`` (every
    number), and prints the table.

    Args:
        base: the :class:`~keras_resnet.training.TrainConfig` every row trains with.
        out_dir: str, the experiment's directory.
        table: ``"skips"`` or ``"units"``.
        depths: CIFAR depths (default: the paper's).
        highway_bias: float or None: the gate bias of the skips table's highway
            row (None: no highway row).
        seeds, verbose, summary, stream, **kwargs: as :func:`run_degradation`.

    Returns:
        The results dict, with ``experiment``, ``table``, ``dataset`` and ``files``.
    """
    configurations = confs.with_seeds(
        confs.identity_mappings(table, depths, highway_bias=highway_bias), seeds)
    results = run_experiment(configurations, base, out_dir, verbose=verbose, stream=stream,
                             **kwargs)
    dataset = base.dataset or "cifar10"
    results.update(experiment="identity_mappings", table=table, dataset=dataset,
                   source=confs.TABLE_SOURCES[table])
    out_dir = os.fspath(out_dir)
    rows = report.summarize(results)
    csv_path, md_path = os.path.join(out_dir, "table.csv"), os.path.join(out_dir, "table.md")
    write_atomic(csv_path, report.to_csv(rows))
    notes = [f"Trained: {dataset}, {_length(results)}, the same recipe, data order and seed for "
             "every row; test error after the last epoch.",
             f"Paper: {confs.TABLE_SOURCES[table]}, median of 5 runs; the paper column is the "
             "paper's network of the same block kind (ResNet-110: basic, ResNet-164: "
             "bottleneck)."]
    notes += [f"{row.label}: {row.note}." for row in confs.table_rows(table, highway_bias)
              if row.note]
    title = f"{confs.TABLE_TITLES[table]} (He et al. 2016, Table {1 if table == 'skips' else 2})"
    paper_header = ("paper test error % (CIFAR-10, ResNet-110)" if table == "skips" else
                    "paper test error % (CIFAR-10, ResNet-110 basic / ResNet-164 bottleneck)")
    write_atomic(md_path, report.to_markdown(rows, title, dataset, paper_header, notes))
    files = plots.plot_curves(results, os.path.join(out_dir, "curves"), dataset=dataset,
                              title=f"{title}: {dataset}",
                              paper_depths=tuple(confs.PAPER_DEPTH.values()))
    json_path = os.path.join(out_dir, "identity_mappings.json")
    results["files"] = [csv_path, md_path, *files, json_path]
    write_json(json_path, results)
    _say(stream, summary, "\n" + report.format_table(rows, f"{title}, {dataset}:"))
    _say(stream, summary, "\n" + "\n".join(f"Wrote {describe(p)}" for p in results["files"]))
    return results
