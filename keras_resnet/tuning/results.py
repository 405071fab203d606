"""A search's results: one row per trial, results.csv, the Pareto front, results.png, a table.

A row holds the trial id, its status (``completed``, ``rejected`` over budget,
or ``failed`` with its error), every hyperparameter, the network's trainable
parameters and multiply-adds (counted from the architecture), the best
validation accuracy and the seconds it trained. The Pareto front is the set of
completed trials that no other trial beats on both accuracy and multiply-adds.
No Keras here; matplotlib is imported by :func:`plot` only.
"""

from __future__ import annotations

import csv
import io
import math
import os

from keras_resnet.training.progress import fmt_seconds
from keras_resnet.training.rundir import write_atomic
from keras_resnet.tuning import space as S

FIELDS = ("trial", "status", S.DEPTH, S.BLOCK, S.WIDTH, S.PREACT, S.SHORTCUT, S.LEARNING_RATE,
          S.WEIGHT_DECAY, "epochs", "params", "macs", "val_accuracy", "train_seconds", "error")
COMPLETED, REJECTED, FAILED = "completed", "rejected", "failed"


def _metric(trial, name):
    metrics = trial.metrics
    if not metrics.exists(name):
        return None
    return metrics.get_best_value(name) if name == "val_accuracy" else \
        metrics.get_last_value(name)


def _last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def trial_row(trial, space, *, epochs=None, error=None):
    """The results row of a KerasTuner trial.

    Args:
        trial: a ``keras_tuner`` ``Trial``.
        space: the search's :class:`~keras_resnet.tuning.space.Space`.
        epochs: int or None, the epochs of a trial without Hyperband's
            ``tuner/epochs``.
        error: str or None, the error of a failed trial (default: the last
            line of the trial's message).
    """
    values = trial.hyperparameters.values
    rejection = space.rejection(values)
    if trial.status == "COMPLETED":
        status = COMPLETED
    elif rejection is not None:
        status = REJECTED
    elif trial.status in ("FAILED", "INVALID"):
        status = FAILED
    else:
        status = trial.status.lower()   # running (a search stopped mid-trial)
    arch = space.architecture(values)
    counts = space.counts(values)
    lr, weight_decay = space.training_values(values)
    row = {"trial": trial.trial_id, "status": status, S.DEPTH: values[S.DEPTH],
           S.BLOCK: arch.block, S.WIDTH: values[S.WIDTH], S.PREACT: bool(values[S.PREACT]),
           S.SHORTCUT: arch.shortcut, S.LEARNING_RATE: lr, S.WEIGHT_DECAY: weight_decay,
           "epochs": values.get("tuner/epochs", epochs), "params": counts.params,
           "macs": counts.macs, "val_accuracy": None, "train_seconds": None, "error": ""}
    if status == COMPLETED:
        row["val_accuracy"] = _metric(trial, "val_accuracy")
        row["train_seconds"] = _metric(trial, "train_seconds")
    elif status == REJECTED:
        row["error"] = rejection
    elif status == FAILED:
        row["error"] = error or _last_line(trial.message)
    return row


def sort_rows(rows):
    return sorted(rows, key=lambda r: (len(str(r["trial"])), str(r["trial"])))


def write_csv(path, rows):
    """Write ``rows`` to ``path`` atomically (a crash never leaves half a file)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in sort_rows(rows):
        out = {k: ("" if row.get(k) is None else row[k]) for k in FIELDS}
        if out["train_seconds"] != "":
            out["train_seconds"] = round(float(out["train_seconds"]), 2)
        writer.writerow(out)
    write_atomic(path, buffer.getvalue())


def read_results(path):
    """Read a results.csv back: a list of dicts with numbers and booleans parsed.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "results.csv")
    >>> write_csv(path, [{"trial": "0", "status": "completed", "depth": 20, "width": 2,
    ...                   "preact": True, "params": 1073, "macs": 16000,
    ...                   "val_accuracy": 0.97}])
    >>> row = read_results(path)[0]
    >>> row["depth"], row["width"], row["preact"], row["val_accuracy"], row["block"]
    (20, 2, True, 0.97, None)
    """
    def parse(key, text):
        if text == "":
            return None if key != "error" else ""
        if key in ("trial", "status", "error", S.BLOCK, S.SHORTCUT):
            return text
        if text in ("True", "False"):
            return text == "True"
        number = float(text)
        return int(number) if number.is_integer() and "." not in text and "e" not in text \
            else number

    with open(path, newline="") as f:
        return [{k: parse(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def pareto_front(rows):
    """The completed rows no other completed row beats on accuracy and multiply-adds.

    Sorted by multiply-adds; each has a higher accuracy than every cheaper one.

    Example:

    >>> rows = [{"status": "completed", "macs": m, "val_accuracy": a}
    ...         for m, a in [(10, 0.5), (20, 0.4), (30, 0.9), (30, 0.8), (40, 0.9)]]
    >>> [(r["macs"], r["val_accuracy"]) for r in pareto_front(rows)]
    [(10, 0.5), (30, 0.9)]
    """
    done = [r for r in rows if r["status"] == COMPLETED and r.get("val_accuracy") is not None
            and r.get("macs") is not None]
    front, best = [], -math.inf
    for row in sorted(done, key=lambda r: (r["macs"], -r["val_accuracy"])):
        if row["val_accuracy"] > best:
            front.append(row)
            best = row["val_accuracy"]
    return front


def describe_row(row):
    """``ResNet-20 width 2 preact basic A``, with ``lr``/``wd`` where not the papers' values."""
    text = S.describe({S.DEPTH: row[S.DEPTH], S.WIDTH: row[S.WIDTH], S.PREACT: row[S.PREACT]}) \
        + f" {row[S.BLOCK]} {row[S.SHORTCUT]}"
    if row.get(S.LEARNING_RATE) not in (None, S.DEFAULT_LEARNING_RATE):
        text += f" lr {row[S.LEARNING_RATE]:.3g}"
    if row.get(S.WEIGHT_DECAY) not in (None, S.DEFAULT_WEIGHT_DECAY):
        text += f" wd {row[S.WEIGHT_DECAY]:.3g}"
    return text


def human(n):
    """``1.07M``, ``162M``, ``40.6K``, ``3.86G``: three significant digits."""
    if n is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.3g}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return str(n)


def human_bytes(n):
    """``412 MB``, ``1.21 GB``."""
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def summary(rows):
    """``12 trials: 9 completed, 2 rejected over budget, 1 failed``."""
    count = {s: sum(r["status"] == s for r in rows) for s in (COMPLETED, REJECTED, FAILED)}
    parts = [f"{count[COMPLETED]} completed"]
    if count[REJECTED]:
        parts.append(f"{count[REJECTED]} rejected over budget")
    if count[FAILED]:
        parts.append(f"{count[FAILED]} failed")
    return f"{len(rows)} trial{'' if len(rows) == 1 else 's'}: " + ", ".join(parts)


def ranked(rows):
    return sorted((r for r in rows if r["status"] == COMPLETED and r["val_accuracy"] is not None),
                  key=lambda r: (-r["val_accuracy"], r["macs"] or 0, r["params"]))


def ranked_table(rows, n=10):
    """The ``n`` best completed trials as a text table (best first), Pareto trials starred."""
    on_front = {id(r) for r in pareto_front(rows)}
    head = (f"{'rank':>4}  {'trial':>5}  {'network':<42} {'params':>7} {'MACs':>7} "
            f"{'val acc':>7} {'time':>7}")
    lines = [head]
    for i, r in enumerate(ranked(rows)[:n], start=1):
        star = "*" if id(r) in on_front else " "
        lines.append(f"{i:>4}{star} {r['trial']:>5}  {describe_row(r):<42} {human(r['params']):>7} "
                     f"{human(r['macs']):>7} {r['val_accuracy']:>7.4f} "
                     f"{fmt_seconds(r['train_seconds'] or 0):>7}")
    lines.append("(* on the Pareto front: no trial is both cheaper and more accurate)")
    return "\n".join(lines)


def markdown_table(rows, n=10):
    """The ranked table in Markdown (for documentation)."""
    on_front = {id(r) for r in pareto_front(rows)}
    lines = ["| rank | trial | depth | width | preact | block | shortcut | params | MACs | "
             "val accuracy | seconds | Pareto |", "|" + "---|" * 12]
    for i, r in enumerate(ranked(rows)[:n], start=1):
        lines.append(f"| {i} | {r['trial']} | {r[S.DEPTH]} | {S._number(r[S.WIDTH])} | "
                     f"{'yes' if r[S.PREACT] else 'no'} | {r[S.BLOCK]} | {r[S.SHORTCUT]} | "
                     f"{r['params']:,} | {r['macs']:,} | {r['val_accuracy']:.4f} | "
                     f"{r['train_seconds']:.0f} | {'*' if id(r) in on_front else ''} |")
    return "\n".join(lines)


def trial_line(row, progress=""):
    """One line for a trial that ended: its configuration, counts, accuracy and time."""
    head = f"trial {row['trial']:>3} {row['status']:<9} {describe_row(row):<40} " \
           f"{human(row['params']):>6} params {human(row['macs']):>6} MACs"
    if row["status"] == COMPLETED:
        text = f"{head}  val_accuracy {row['val_accuracy']:.4f}  " \
               f"{fmt_seconds(row['train_seconds'] or 0)}"
    elif row["status"] == REJECTED:
        text = f"{head}  ({row['error'].split(' has ', 1)[-1]})"
    else:
        text = f"{head}  {row['error']}"
    return f"{text}  {progress}".rstrip()


def plot(path, rows, *, max_macs=None, title=None):
    """Validation accuracy against multiply-adds (log axis), the Pareto front, rejections marked.

    Writes a PNG to ``path`` atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
    from matplotlib.transforms import blended_transform_factory

    done = [r for r in rows if r["status"] == COMPLETED and r["val_accuracy"] is not None]
    rejected = [r for r in rows if r["status"] == REJECTED and r["macs"]]
    failed = [r for r in rows if r["status"] == FAILED and r["macs"]]
    front = pareto_front(rows)
    fig, ax = plt.subplots(figsize=(8.5, 4.8), dpi=110)
    widths = sorted({float(r[S.WIDTH]) for r in done})
    cmap = plt.get_cmap("viridis")
    for i, w in enumerate(widths):
        for preact, marker in ((False, "o"), (True, "s")):
            pts = [r for r in done if float(r[S.WIDTH]) == w and bool(r[S.PREACT]) == preact]
            if pts:
                ax.scatter([r["macs"] for r in pts], [r["val_accuracy"] for r in pts],
                           marker=marker, s=36, color=cmap(i / max(1, len(widths) - 1) * 0.85),
                           edgecolor="black", linewidth=0.4, zorder=3,
                           label=f"width {S._number(w)}{', preact' if preact else ''}")
    if front:
        xs = [r["macs"] for r in front]
        ys = [r["val_accuracy"] for r in front]
        ax.step(xs, ys, where="post", color="tab:red", linewidth=1.2, zorder=2,
                label="Pareto front (labels: depth-width)")
        for r in front:
            ax.annotate(f"{r[S.DEPTH]}-{S._number(r[S.WIDTH])}", (r["macs"], r["val_accuracy"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=7,
                        color="tab:red")
    bottom = blended_transform_factory(ax.transData, ax.transAxes)
    if rejected:
        ax.scatter([r["macs"] for r in rejected], [0.03] * len(rejected), marker="x", s=30,
                   color="grey", transform=bottom, zorder=3, clip_on=False,
                   label=f"rejected over budget ({len(rejected)})")
    if failed:
        ax.scatter([r["macs"] for r in failed], [0.03] * len(failed), marker="v", s=30,
                   color="tab:orange", transform=bottom, zorder=3, clip_on=False,
                   label=f"failed ({len(failed)})")
    if max_macs:
        ax.axvline(max_macs, color="grey", linestyle="--", linewidth=1,
                   label=f"max_macs {human(max_macs)}")
    ax.set_xscale("log")
    every = [r["macs"] for r in done + rejected + failed] + ([max_macs] if max_macs else [])
    if every:   # rejected and failed marks are drawn in axes units: widen the limits by hand
        low, high = min(every), max(every)
        ax.set_xlim(low / 1.25, high * 1.25)
    def tick(x, _, minor=False):
        if minor and round(x / 10 ** math.floor(math.log10(x) + 1e-9)) not in (2, 5):
            return ""   # minor labels at 2 and 5 times a power of ten only
        return human(int(round(x))) if x >= 1 else f"{x:g}"

    ax.xaxis.set_major_formatter(FuncFormatter(tick))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, p: tick(x, p, minor=True)))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("multiply-adds per example (log scale)")
    ax.set_ylabel("best validation accuracy")
    if done:
        low = min(r["val_accuracy"] for r in done)
        ax.set_ylim(max(0.0, low - 0.12 * (1.0 - low + 0.05)), min(1.0, 1.0 + 0.01))
    ax.grid(True, which="both", alpha=0.25)
    ax.set_title(title or f"ResNet search: {summary(rows)}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, buffer.getvalue())
