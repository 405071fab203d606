"""Tables of an experiment's results: final errors per configuration, next to the paper's.

Plain Python over the runner's results (no keras, no matplotlib). Configurations
that differ only in their seed share a label and become one row: the table shows
the median over the seeds (the papers report medians of 5 runs) and every seed's
value.
"""

from __future__ import annotations

import csv
import io
import statistics

from keras_resnet.experiments.configurations import FAIL

CSV_FIELDS = ("label", "group", "depth", "seeds", "status", "epochs", "test_error",
              "train_error", "train_loss", "test_error_per_seed", "train_error_per_seed",
              "trainable_params", "paper_test_error", "paper_source", "settings")


def _fmt(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


def summarize(results):
    """One row per (group, label): final errors (%) over the seeds, and the paper's value.

    Args:
        results: the dict :func:`~keras_resnet.experiments.run_experiment` returns
            (or its ``configurations`` list).

    Returns:
        A list of dicts with the keys of :data:`CSV_FIELDS`, in the order the
        configurations were given. ``test_error`` and ``train_error`` are the
        medians over the seeds of the last epoch's errors (None for a
        configuration that trained no epoch); ``status`` is ``"finished"`` when
        every seed finished, else the seeds' statuses.

    Example:

    >>> run = {"label": "resnet-20", "group": "residual", "depth": 20, "seed": 1,
    ...        "status": "finished", "epochs": 2, "settings": {"depth": 20},
    ...        "paper": 8.75, "source": "He et al. 2015, Table 6 (CIFAR-10)",
    ...        "trainable_params": 270410,
    ...        "final": {"test_error": 1.5, "train_error": 0.5, "train_loss": 0.02}}
    >>> row = summarize([run, dict(run, seed=2, final={"test_error": 2.5,
    ...                                                "train_error": 0.7, "train_loss": 0.03})])[0]
    >>> row["test_error"], row["test_error_per_seed"], row["paper_test_error"]
    (2.0, [1.5, 2.5], 8.75)
    """
    runs = results["configurations"] if isinstance(results, dict) else results
    rows, order = {}, []
    for r in runs:
        key = (r.get("group"), r["label"])
        if key not in rows:
            rows[key] = []
            order.append(key)
        rows[key].append(r)
    out = []
    for key in order:
        group = rows[key]
        first = group[0]
        finals = [g["final"] for g in group if g.get("final")]

        def median(name):
            values = [f[name] for f in finals if f.get(name) is not None]
            return statistics.median(values) if values else None

        statuses = [g["status"] for g in group]
        out.append({
            "label": first["label"], "group": first.get("group"), "depth": first.get("depth"),
            "seeds": [g.get("seed") for g in group],
            "status": "finished" if all(s == "finished" for s in statuses) else ", ".join(statuses),
            "epochs": first.get("epochs"),
            "test_error": median("test_error"), "train_error": median("train_error"),
            "train_loss": median("train_loss"),
            "test_error_per_seed": [f.get("test_error") for f in finals],
            "train_error_per_seed": [f.get("train_error") for f in finals],
            "trainable_params": first.get("trainable_params"),
            "paper_test_error": first.get("paper"), "paper_source": first.get("source", ""),
            "settings": first.get("settings", {}),
        })
    return out


def _paper_text(value):
    if value is None:
        return ""
    return "fails to converge" if value == FAIL else f"{value:.2f}"


def _status_text(row):
    return "" if row["status"] == "finished" else row["status"]


def format_table(rows, title=None):
    """A fixed-width text table of :func:`summarize` rows (what the recipes print).

    Example:

    >>> print(format_table([{"label": "resnet-20", "group": "residual", "seeds": [1],
    ...                      "status": "finished", "test_error": 1.25, "train_error": 0.5,
    ...                      "paper_test_error": 8.75, "trainable_params": 270410,
    ...                      "test_error_per_seed": [1.25], "train_error_per_seed": [0.5]}]))
    configuration  group     train error %  test error %  paper test error % (CIFAR-10)  parameters
    resnet-20      residual           0.50          1.25                           8.75     270,410
    """
    multi = any(len(r["seeds"]) > 1 for r in rows)
    header = ["configuration", "group", "train error %", "test error %"]
    if multi:
        header += ["train error % per seed", "test error % per seed"]
    header += ["paper test error % (CIFAR-10)", "parameters"]
    if any(_status_text(r) for r in rows):
        header.append("status")
    lines = []
    for r in rows:
        cells = [r["label"], r.get("group") or "", _fmt(r["train_error"]),
                 _fmt(r["test_error"])]
        if multi:
            cells += [" ".join(_fmt(v) for v in r["train_error_per_seed"]),
                      " ".join(_fmt(v) for v in r["test_error_per_seed"])]
        cells += [_paper_text(r.get("paper_test_error")),
                  "" if r.get("trainable_params") is None else f"{r['trainable_params']:,}"]
        if "status" in header:
            cells.append(_status_text(r))
        lines.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    numeric = {i for i, h in enumerate(header) if "%" in h or h == "parameters"}

    def render(cells):
        return "  ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    text = "\n".join([render(header)] + [render(c) for c in lines])
    return f"{title}\n{text}" if title else text


def to_csv(rows):
    """The :func:`summarize` rows as CSV text (lists as space-separated values)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        cells = dict(r)
        for key in ("seeds", "test_error_per_seed", "train_error_per_seed"):
            cells[key] = " ".join(_fmt(v, 4) if isinstance(v, float) else str(v)
                                  for v in r[key])
        for key in ("test_error", "train_error", "train_loss"):
            cells[key] = _fmt(r[key], 4)
        cells["paper_test_error"] = "" if r["paper_test_error"] is None else r["paper_test_error"]
        cells["settings"] = " ".join(f"{k}={v}" for k, v in sorted(r["settings"].items()))
        writer.writerow(cells)
    return buffer.getvalue()


def to_markdown(rows, title, dataset, paper_header, notes=()):
    """The :func:`summarize` rows as a Markdown table: ours next to the paper's.

    Args:
        rows: :func:`summarize` rows.
        title: str, the heading.
        dataset: str, what we trained on (named in the column headers).
        paper_header: str, what the paper column holds (e.g. its table and network).
        notes: lines printed under the table.
    """
    groups = []
    for r in rows:
        if r.get("group") not in groups:
            groups.append(r.get("group"))
    multi = any(len(r["seeds"]) > 1 for r in rows)
    seeds = sorted({s for r in rows for s in r["seeds"] if s is not None})
    stat = "median of seeds " + ", ".join(map(str, seeds)) if multi else (
        f"seed {seeds[0]}" if seeds else "")
    status = any(_status_text(r) for r in rows)
    lines = [f"# {title}", ""]
    header = (f"| configuration | {'group | ' if len(groups) > 1 else ''}test error % "
              f"({dataset}, {stat}) | train error % | parameters | {paper_header} |"
              + (" status |" if status else ""))
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        cells = [r["label"]]
        if len(groups) > 1:
            cells.append(r.get("group") or "")
        cells += [_fmt(r["test_error"]) or "-", _fmt(r["train_error"]) or "-",
                  "" if r.get("trainable_params") is None else f"{r['trainable_params']:,}",
                  _paper_text(r.get("paper_test_error"))]
        if status:
            cells.append(_status_text(r))
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
