"""Pictures of an experiment's results, drawn the way the papers show them.

Matplotlib without pyplot: each function builds a ``matplotlib.figure.Figure``
and saves it as PNG and SVG, so nothing here touches the user's global
matplotlib state (backend, open figures). Configurations that differ only in
their seed share a label: their mean is drawn as the line, the band spans the
seeds' minimum to maximum.
"""

from __future__ import annotations

import os

from keras_resnet.experiments.configurations import FAIL

# Colours per depth / row: matplotlib's "tab10" cycle, written out so that a
# configuration keeps its colour across panels.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
LINESTYLES = ("-", "--", ":", "-.")


def _save(figure, path):
    """Save ``figure`` as ``<stem>.png`` and ``<stem>.svg``; return both paths."""
    stem = os.fspath(path)
    if stem.endswith((".png", ".svg")):
        stem = stem[:-4]
    directory = os.path.dirname(stem)
    if directory:
        os.makedirs(directory, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        target = f"{stem}.{ext}"
        tmp = f"{target}.tmp"
        figure.savefig(tmp, format=ext, dpi=120, bbox_inches="tight",
                       metadata={"Date": None} if ext == "svg" else None)
        os.replace(tmp, target)
        paths.append(target)
    return paths


def _figure(ncols, width=6.0, height=4.3):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, axes


def _legend_below(ax, fontsize=8):
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=fontsize,
              frameon=False)


def _percent_ticks(ax):
    """Label a log axis at 1, 2, 5 x 10^k as plain numbers (0.5, 1, 2, 5, 10, ...)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _integer_epochs(ax):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _by_label(runs):
    """``{label: [runs]}`` in first-seen order (the seeds of one configuration together)."""
    out = {}
    for r in runs:
        if r["history"]["epoch"]:
            out.setdefault(r["label"], []).append(r)
    return out


def _series(runs, key):
    """Epochs, mean, min and max of ``key`` over ``runs`` (cut to the shortest history)."""
    n = min(len(r["history"][key]) for r in runs)
    epochs = runs[0]["history"]["epoch"][:n]
    columns = list(zip(*(r["history"][key][:n] for r in runs)))
    mean = [sum(c) / len(c) for c in columns]
    return epochs, mean, [min(c) for c in columns], [max(c) for c in columns]


def _draw(ax, runs, key, color, linewidth, label, linestyle="-", band=True):
    epochs, mean, low, high = _series(runs, key)
    ax.plot(epochs, mean, color=color, linewidth=linewidth, linestyle=linestyle, label=label)
    if band and len(runs) > 1:
        ax.fill_between(epochs, low, high, color=color, alpha=0.15, linewidth=0)
    diverged = [r for r in runs if r["status"] == "diverged"]
    if diverged:
        ax.plot([epochs[-1]], [mean[-1]], marker="x", color=color, markersize=8)


def _seeds_text(runs):
    seeds = sorted({r.get("seed") for r in runs if r.get("seed") is not None})
    if len(seeds) > 1:
        return f"mean of seeds {', '.join(map(str, seeds))} (band: min-max)"
    return f"seed {seeds[0]}" if seeds else ""


def plot_degradation(results, path, *, dataset=None, title=None):
    """He et al. 2015, Fig. 1 / Fig. 6: two panels, plain and residual, saved as PNG and SVG.

    Draws :func:`degradation_figure` (same arguments) and writes ``<path>.png``
    and ``<path>.svg`` (a ``.png`` or ``.svg`` suffix is replaced); returns
    the two paths.
    """
    return _save(degradation_figure(results, dataset=dataset, title=title), path)


def degradation_figure(results, *, dataset=None, title=None):
    """He et al. 2015, Fig. 1 / Fig. 6 as a ``matplotlib.figure.Figure``: plain and residual.

    Thin lines are training error, bold lines test error, one colour per depth;
    the paper's CIFAR-10 test errors (Table 6) are drawn as dotted lines in the
    residual panel when ``dataset`` is ``"cifar10"``.

    Args:
        results: the dict :func:`~keras_resnet.experiments.run_experiment`
            returns for :func:`~keras_resnet.experiments.degradation` configurations.
        dataset: str or None, the dataset's name (titles; paper values for CIFAR-10).
        title: str or None, the figure title.

    Returns:
        The figure: ``axes[0]`` plain, ``axes[1]`` residual; in each, per
        configuration label, the training error (thin) then the test error
        (bold) line, the mean over the seeds per epoch.
    """
    runs = results["configurations"]
    depths = []
    for r in runs:
        if r["depth"] not in depths:
            depths.append(r["depth"])
    color = {d: COLORS[i % len(COLORS)] for i, d in enumerate(depths)}
    figure, axes = _figure(2, height=5.0)
    low, top = 100.0, 0.0
    for ax, group, name in zip(axes, ("plain", "residual"), ("plain", "ResNet")):
        _integer_epochs(ax)
        members = _by_label(r for r in runs if r.get("group") == group)
        for label, reps in members.items():
            depth = reps[0]["depth"]
            _draw(ax, reps, "train_error", color[depth], 1.0, None)
            _draw(ax, reps, "test_error", color[depth], 2.5, f"{name}-{depth}")
            for key in ("train_error", "test_error"):
                top = max(top, max(max(r["history"][key]) for r in reps))
                low = min(low, min(min(r["history"][key]) for r in reps))
        if dataset == "cifar10" and group == "residual":
            for label, reps in members.items():
                paper = reps[0].get("paper")
                if isinstance(paper, float):
                    ax.axhline(paper, color=color[reps[0]["depth"]], linestyle=":",
                               linewidth=1.2)
            ax.plot([], [], color="black", linestyle=":",
                    label="He et al. 2015, Table 6 (test)")
        ax.set_title(("plain nets" if group == "plain" else "residual nets (ResNets)")
                     + ("" if members else ": none trained"))
        ax.set_xlabel("epoch")
        ax.set_ylabel("error (%, log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.plot([], [], color="gray", linewidth=1.0, label="training error (thin)")
        ax.plot([], [], color="gray", linewidth=2.5, label="test error (bold)")
        _legend_below(ax)
    for ax in axes:
        # Log scale: the plain nets' failures (tens of %) and the residual nets'
        # last tenths of a percent are both readable in one picture.
        ax.set_yscale("log", nonpositive="clip")
        ax.set_ylim(max(0.05, low * 0.7), min(100.0, top * 1.3))
        _percent_ticks(ax)
    where = f" on {dataset}" if dataset else ""
    figure.suptitle(title or f"Plain vs residual nets{where} (He et al. 2015, Fig. 6): "
                    f"{_seeds_text(runs)}")
    return figure


def plot_curves(results, path, *, dataset=None, title=None, paper_depths=()):
    """Training loss and test error per epoch of every configuration, saved as PNG and SVG.

    Draws :func:`curves_figure` (same arguments) and writes ``<path>.png`` and
    ``<path>.svg``; returns the two paths.
    """
    return _save(curves_figure(results, dataset=dataset, title=title,
                               paper_depths=paper_depths), path)


def curves_figure(results, *, dataset=None, title=None, paper_depths=()):
    """Training loss and test error per epoch of every configuration (the tables' curves).

    One colour per row (label), one line style per group (depth); the paper's
    test error of a row is a dotted line when ``dataset`` is ``"cifar10"`` and
    the configuration's depth is one of ``paper_depths``.

    Args:
        results: the dict :func:`~keras_resnet.experiments.run_experiment` returns.
        dataset: str or None, the dataset's name.
        title: str or None, the figure title.
        paper_depths: depths at which the paper's values apply.

    Returns:
        The figure: ``axes[0]`` the training loss, ``axes[1]`` the test error,
        one line per (group, label) in first-seen order, the mean over seeds.
    """
    runs = results["configurations"]
    labels, groups = [], []
    for r in runs:
        if r["label"] not in labels:
            labels.append(r["label"])
        if r.get("group") not in groups:
            groups.append(r.get("group"))
    color = {label: COLORS[i % len(COLORS)] for i, label in enumerate(labels)}
    style = {g: LINESTYLES[i % len(LINESTYLES)] for i, g in enumerate(groups)}
    figure, (loss_ax, error_ax) = _figure(2, width=6.5, height=5.5)
    members = {}
    for r in runs:
        if r["history"]["epoch"]:
            members.setdefault((r.get("group"), r["label"]), []).append(r)
    shown_paper = False
    for (group, label), reps in members.items():
        text = label if len(groups) == 1 else f"{label} ({group})"
        _draw(loss_ax, reps, "train_loss", color[label], 1.5, text, style[group])
        _draw(error_ax, reps, "test_error", color[label], 1.5, text, style[group])
        paper = reps[0].get("paper")
        if dataset == "cifar10" and reps[0]["depth"] in paper_depths and paper is not None \
                and paper != FAIL:
            error_ax.axhline(paper, color=color[label], linestyle=":", linewidth=1.0)
            shown_paper = True
    if shown_paper:
        error_ax.plot([], [], color="black", linestyle=":", label="paper (test error)")
    loss_ax.set_yscale("log", nonpositive="clip")
    loss_ax.set_title("training loss")
    loss_ax.set_ylabel("cross-entropy (nats per image, log scale)")
    error_ax.set_title("test error")
    error_ax.set_ylabel("test error (%, log scale)")
    errors = [e for reps in members.values() for r in reps for e in r["history"]["test_error"]]
    error_ax.set_yscale("log", nonpositive="clip")
    error_ax.set_ylim(max(0.05, min(errors, default=1.0) * 0.7),
                      min(100.0, max(errors, default=100.0) * 1.3))
    _percent_ticks(error_ax)
    for ax in (loss_ax, error_ax):
        _integer_epochs(ax)
        ax.set_xlabel("epoch")
        ax.grid(True, which="both", alpha=0.3)
    handles, names = error_ax.get_legend_handles_labels()
    figure.legend(handles, names, loc="outside lower center", ncol=min(4, len(names)),
                  fontsize=8, frameon=False)
    figure.suptitle(f"{title or 'Training curves' + (' on ' + dataset if dataset else '')}"
                    f" ({_seeds_text(runs)})")
    return figure
