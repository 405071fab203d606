"""Pictures of the analyses' results (matplotlib, drawn off-screen; PNG, SVG or PDF).

Each ``plot_*`` function takes the dict an analysis returned (or its JSON,
read back), returns a ``matplotlib.figure.Figure`` and, given ``path``,
saves it there (the format from the suffix), atomically. The figures are
made without ``pyplot``, so no GUI backend is touched and no global state
changes: they render with Agg and work on machines without a display.

Titles say what is drawn. Below the panels a caption gives, first, what this
result shows, computed from it ("This result: ..."), then what the paper
found, labelled as such: a picture never states a paper's conclusion as if
its own data showed it.
"""

from __future__ import annotations

import os

import numpy as np

from keras_resnet.analysis.files import write_atomically

FORMATS = (".png", ".svg", ".pdf")
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
VEIT = "Veit et al. 2016"
BALDUZZI = "Balduzzi et al. 2017"


def _figure(width, height, found=(), paper=None):
    """``(figure, body)``: the panels go in ``body``; the caption sits below it.

    The caption says what this result shows (``found``: sentences computed from
    it) and, labelled as such, what the paper found (``paper``). Its text is also
    ``figure.caption``.
    """
    import textwrap

    from matplotlib.figure import Figure

    chars = int(width * 13)   # about 13 characters per inch at 9 points
    lines = [textwrap.fill(f"This result: {f}", chars) for f in found]
    if paper:
        lines.append(textwrap.fill(f"The paper's finding (not measured here): {paper}", chars))
    text = "\n".join(lines)
    below = (text.count("\n") + 1) * 9 * 1.4 / 72 + 0.1 if text else 0.0
    fig = Figure(figsize=(width, height + below), dpi=110, layout="constrained")
    fig.caption = text
    if not text:
        return fig, fig
    body, caption = fig.subfigures(2, 1, height_ratios=[height, below])
    caption.text(0.005, 0.9, text, ha="left", va="top", fontsize=9, color="#333333")
    return fig, body


def save_figure(fig, path):
    """Save ``fig`` to ``path`` (``.png``, ``.svg`` or ``.pdf``), atomically."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"Invalid value for argument `path`: {path!r}; expected a file name "
                         f"ending in {', '.join(FORMATS)}.")
    return write_atomically(path, lambda tmp: fig.savefig(tmp, format=suffix[1:]), suffix)


def _finish(fig, path):
    if path is not None:
        save_figure(fig, path)
    return fig


def _as_list(results):
    return [results] if isinstance(results, dict) else list(results)


def _label(result):
    kind = "residual" if result.get("residual", True) else "plain"
    return f"{result.get('model', '?')} ({kind})"


def _lesion_found(result):
    """One sentence of numbers about one lesion result."""
    single = result["delete_single"]
    text = f"{_label(result)} intact {100 * result['baseline_accuracy']:.1f}%"
    if single:
        values = np.asarray(list(single.values()), float)
        worst = min(single, key=single.get)
        text += (f"; one block deleted: median {100 * np.median(values):.1f}%, lowest "
                 f"{100 * single[worst]:.1f}% ({worst})")
    dk = result["delete_k"]
    if dk["k"]:
        text += (f"; {dk['k'][0]} to {dk['k'][-1]} random blocks deleted: "
                 f"{100 * dk['mean'][0]:.1f}% to {100 * dk['mean'][-1]:.1f}%")
        if len(dk["k"]) > 1:
            steps = np.abs(np.diff(dk["mean"]))
            i = int(np.argmax(steps))
            text += (f" (largest step {100 * steps[i]:.1f} points, k = {dk['k'][i]} to "
                     f"{dk['k'][i + 1]})")
    points = result["reorder"]["points"]
    if points:
        acc = [100 * p["accuracy"] for p in points]
        tau = [p["kendall_tau"] for p in points]
        text += (f"; swaps: {min(acc):.1f}% to {max(acc):.1f}% over Kendall's tau "
                 f"{min(tau):.2f} to {max(tau):.2f}")
    return text + "."


def plot_lesion(results, path=None):
    """Veit et al.'s Fig. 3 and 5 for one or more :func:`lesion_study` results.

    Three panels: accuracy after deleting each single block (downsampling
    blocks hatched), accuracy against the number of random blocks deleted
    (mean and standard deviation over the draws), and accuracy against
    Kendall's tau of the block order after random swaps. Several results (a
    ResNet and its plain twin) are drawn side by side.
    """
    results = _as_list(results)
    fig, body = _figure(16, 5.4, [_lesion_found(r) for r in results], (
        f"{VEIT} (ResNet-110 and a 15-layer VGG net on CIFAR-10, ResNet-200 on ImageNet): "
        "deleting one block of a ResNet barely changes its test error, except some "
        "downsampling blocks, while deleting one layer of a plain net drops it to chance "
        "(Fig. 3-4); the error grows smoothly with the number of blocks deleted (Fig. 5a) or "
        "swapped (Fig. 5b)."))
    ax_single, ax_k, ax_order = body.subplots(1, 3, gridspec_kw={"width_ratios": [1.5, 1, 1]})
    chance = 100 * results[0]["chance_accuracy"]
    names = [b["name"] for b in results[0]["blocks"]]
    width = 0.8 / len(results)
    for r, result in enumerate(results):
        color = COLORS[r % len(COLORS)]
        blocks = {b["name"]: b for b in result["blocks"]}
        xs, heights, hatches = [], [], []
        for i, name in enumerate(names):
            if name in result["delete_single"]:
                xs.append(i - 0.4 + width * (r + 0.5))
                heights.append(100 * result["delete_single"][name])
                hatches.append("//" if blocks.get(name, {}).get("downsampling") else "")
        bars = ax_single.bar(xs, heights, width=width * 0.95, color=color, alpha=0.85,
                             label=f"{_label(result)}: block deleted")
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
        baseline = 100 * result["baseline_accuracy"]
        for ax in (ax_single, ax_k, ax_order):
            ax.axhline(baseline, color=color, linestyle="--", linewidth=1,
                       label=f"{result.get('model', '?')} intact: {baseline:.1f}%")
        dk = result["delete_k"]
        if dk["k"]:
            ax_k.errorbar(dk["k"], 100 * np.asarray(dk["mean"]), yerr=100 * np.asarray(dk["std"]),
                          color=color, marker="o", capsize=3, label=_label(result))
        points = result["reorder"]["points"]
        if points:
            ax_order.scatter([p["kendall_tau"] for p in points],
                             [100 * p["accuracy"] for p in points], color=color, alpha=0.6,
                             s=18, label=_label(result))
    for ax in (ax_single, ax_k, ax_order):
        ax.axhline(chance, color="gray", linestyle=":", linewidth=1,
                   label=f"chance: {chance:.0f}%")
        ax.set_ylim(0, 102)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    ax_single.set_xticks(range(len(names)))
    ax_single.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax_single.set_xlabel("block deleted (hatched: downsampling block, shortcut kept)")
    ax_single.set_title("Accuracy after deleting one block", fontsize=10)
    ax_k.set_xlabel("blocks deleted at random, k")
    draws = (results[0].get("settings") or {}).get("draws")
    ax_k.set_title("Accuracy after deleting k random blocks\n(mean and std over "
                   + (f"{draws} draws)" if draws else "the draws)"), fontsize=10)
    ax_order.set_xlabel("Kendall's tau of the block order (1 = original)")
    ax_order.invert_xaxis()
    ax_order.set_title("Accuracy after swapping random pairs of compatible blocks",
                       fontsize=10)
    handles = {}
    for ax in (ax_single, ax_k, ax_order):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    body.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncol=min(len(handles), 4), fontsize=8)
    n = results[0].get("examples")
    body.suptitle("Lesion study" + (f" on {n} test images" if n else ""), fontsize=12)
    return _finish(fig, path)


def plot_paths(result, path=None):
    """Veit et al.'s Fig. 6 for a :func:`gradient_by_path_length` result.

    Three panels: the number of paths of each length, the gradient magnitude
    one path of each length carries (log scale, with the fitted exponential),
    and their product, the total gradient magnitude per path length, with its
    median and the lengths that carry 90% of it.
    """
    lengths = np.asarray(result["lengths"])
    n = result["num_blocks"]
    counts = np.asarray(result["path_counts"], dtype=float)
    mag = np.asarray(result["gradient_magnitude"])
    sem = np.asarray(result.get("gradient_magnitude_sem", result["gradient_magnitude_std"]))
    eff = result["effective"]
    per_block = eff.get("layers_per_block", 2)
    lo, hi = eff["interval_90"]
    fit = _exponential_fit(lengths, mag)
    found = []
    if fit is not None and result.get("decay_per_block"):
        found.append(f"along one path the gradient changes x{result['decay_per_block']:.3g} "
                     f"per block "
                     f"from length {lengths[0]} to {lengths[-1]} (exponential fit, R\u00b2 "
                     f"{fit[1]:.2f} on the log scale)")
    found.append(f"half of the total gradient comes from paths of at most "
                 f"{eff['median_length']} blocks ({eff['median_length'] * per_block} layers), "
                 f"90% from {lo} to {hi} blocks ({lo * per_block}-{hi * per_block} layers), of "
                 f"{n} blocks in all.")
    fig, body = _figure(16, 5.4, ["; ".join(found)], (
        f"{VEIT} (ResNet-110, 54 blocks, Fig. 6): path lengths follow Binomial(54, 1/2); the "
        "gradient along a path falls exponentially with its length; most of the gradient comes "
        "from paths of 5-17 blocks (10-34 layers)."))
    ax_count, ax_mag, ax_total = body.subplots(1, 3)
    ax_count.bar(lengths, counts, color=COLORS[0])
    ax_count.set_xlabel("path length (blocks whose residual branch the path goes through)")
    ax_count.set_ylabel("number of paths")
    ax_count.set_title(f"(a) paths of each length: {n} blocks, {2 ** n:,} paths\n"
                       f"(exact counts: C({n}, k))", fontsize=10)
    ax_mag.errorbar(lengths, mag, yerr=np.minimum(sem, 0.999 * mag), marker="o",
                    color=COLORS[1], capsize=3,
                    label=f"measured: mean and its standard error over "
                          f"{result['settings']['samples']} batches")
    if result.get("decay_per_block") and fit is not None:
        ax_mag.plot(lengths, np.exp(np.polyval(fit[0], lengths)), color="gray", linestyle="--",
                    label=f"exponential fit: x{result['decay_per_block']:.3g} per block "
                          f"(R\u00b2 {fit[1]:.2f} on the log scale)")
    ax_mag.set_yscale("log")
    ax_mag.set_xlabel("path length k (blocks)")
    ax_mag.set_ylabel("gradient magnitude at the first block's input\n(L2 norm per example)")
    ax_mag.set_title("(b) gradient magnitude along one path of length k", fontsize=10)
    ax_mag.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    total = np.asarray(eff["total_gradient"])
    ax_total.bar(lengths, total / total.sum() if total.sum() > 0 else total, color=COLORS[2])
    ax_total.axvspan(lo - 0.5, hi + 0.5, color=COLORS[2], alpha=0.12,
                     label=f"90% of the gradient: {lo}-{hi} blocks "
                           f"({lo * per_block}-{hi * per_block} layers)")
    ax_total.axvline(eff["median_length"], color="black", linestyle="--",
                     label=f"median: {eff['median_length']} blocks "
                           f"({eff['median_length'] * per_block} layers)")
    ax_total.axvline(n / 2, color="gray", linestyle=":", label=f"median path length: {n / 2:g}")
    ax_total.set_xlabel("path length k (blocks)")
    ax_total.set_ylabel("share of the total gradient magnitude")
    ax_total.set_title("(c) share of the total gradient by path length\n(number of paths x "
                       "gradient per path)", fontsize=10)
    ax_total.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    for ax in (ax_count, ax_mag, ax_total):
        ax.grid(alpha=0.3)
    body.suptitle(f"Paths through {result.get('model', 'the model')} and the gradient they "
                  "carry", fontsize=12)
    return _finish(fig, path)


def _exponential_fit(lengths, magnitudes):
    """``(polyfit coefficients of log magnitude, R^2 on the log scale)``, or None."""
    positive = magnitudes > 0
    if positive.sum() < 2:
        return None
    x, y = lengths[positive], np.log(magnitudes[positive])
    coef = np.polyfit(x, y, 1)
    spread = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - np.polyval(coef, x)) ** 2).sum()) / spread if spread > 0 else 1.0
    return coef, r2


def _pick_examples(result):
    nets = result["nets"]
    plain = [n for n in nets if n["kind"] == "plain"]
    resnet = [n for n in nets if n["kind"] == "resnet"]
    shallow, deep = min(plain, key=lambda n: n["depth"]), max(plain, key=lambda n: n["depth"])
    deep_res = max(resnet, key=lambda n: n["depth"])
    refs = result["references"]
    return [(f"(a) feed-forward, {shallow['depth']} layers", shallow),
            (f"(b) feed-forward, {deep['depth']} layers", deep),
            (f"(c) ResNet, {deep_res['depth']} layers", deep_res),
            ("(d) brown noise", refs["brown_noise"]),
            ("(e) white noise", refs["white_noise"])]


def plot_shattered(result, path=None):
    """Balduzzi et al.'s Fig. 1-2 for a :func:`shattered_gradients` result.

    Top: the gradient across the grid for a shallow and a deep feed-forward
    net, a deep ResNet, brown and white noise; below each, the covariance of
    the standardised gradients between grid points over the initialisations.
    Bottom: the autocorrelation against lag for feed-forward nets and ResNets
    of each depth, and the correlation of neighbouring gradients against depth.
    """
    grid = result["grid"]
    inits = result["settings"]["inits"]
    xs = np.linspace(grid["low"], grid["high"], grid["points"])
    summary = result["summary"]
    depths = summary["depths"]
    plain, res = summary["plain_lag1_correlation"], summary["resnet_lag1_correlation"]
    brown = result["references"]["brown_noise"]["lag1_correlation"]
    found = (f"the lag-1 correlation goes from {plain[0]:.2f} to {plain[-1]:.2f} in the "
             f"feed-forward nets and from {res[0]:.2f} to {res[-1]:.2f} in the ResNets between "
             f"depths {depths[0]} and {depths[-1]} (brown noise {brown:.2f}, white noise "
             f"about 0)")
    if inits < 2:
        found += f"; the covariance maps need at least 2 initialisations (this result: {inits})"
    fig, body = _figure(18, 11, [found + "."], (
        f"{BALDUZZI} (rectifier nets on 1-D inputs, 256 points in [-2, 2], Fig. 1-2): the "
        "gradient of a shallow net looks like brown noise, that of a deep feed-forward net like "
        "white noise; the correlation of neighbouring gradients decays exponentially with depth "
        "without skips and sublinearly with them."))
    rows = body.add_gridspec(3, 1, height_ratios=[1, 1.15, 1.2])
    top, middle, bottom = (rows[0].subgridspec(1, 5), rows[1].subgridspec(1, 5),
                           rows[2].subgridspec(1, 3))
    cov_axes = []
    for col, (title, entry) in enumerate(_pick_examples(result)):
        ax = body.add_subplot(top[0, col])
        ax.plot(xs, entry["gradients"], color=COLORS[col % len(COLORS)], linewidth=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("input x")
        if col == 0:
            ax.set_ylabel("gradient d output / d x")
        ax.grid(alpha=0.3)
        ax = body.add_subplot(middle[0, col])
        ax.set_xlabel("input x")
        if col == 0:
            ax.set_ylabel("input x'")
        ax.set_title("covariance of the gradients at x and x'", fontsize=9)
        if entry.get("covariance") is None:   # one initialisation: no covariance over them
            ax.text(0.5, 0.5, f"not drawn: a covariance over\ninitialisations needs at least "
                              f"2\n(this result: {inits})", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        cov_axes.append(ax)
        image = ax.imshow(np.asarray(entry["covariance"]), cmap="RdBu_r", vmin=-1, vmax=1,
                          origin="lower",
                          extent=(grid["low"], grid["high"], grid["low"], grid["high"]))
    body.colorbar(image, ax=cov_axes, shrink=0.9,
                 label="covariance over initialisations\n(standardised gradients;\n"
                       "noise: over 8 samples)" if inits < 8 else
                       "covariance over initialisations\n(standardised gradients)")
    ax_plain = body.add_subplot(bottom[0, 0])
    ax_res = body.add_subplot(bottom[0, 1], sharey=ax_plain)
    ax_depth = body.add_subplot(bottom[0, 2])
    step = grid.get("step", (grid["high"] - grid["low"]) / (grid["points"] - 1))
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    for ax, kind, name in ((ax_plain, "plain", "feed-forward"), (ax_res, "resnet", "ResNet")):
        nets = [n for n in result["nets"] if n["kind"] == kind]
        for i, entry in enumerate(nets):
            ax.plot(range(len(entry["autocorrelation"])), entry["autocorrelation"],
                    color=cmap(i / max(1, len(nets) - 1)), label=f"{entry['depth']} layers")
        for ref, style in (("brown_noise", "--"), ("white_noise", ":")):
            acf = result["references"][ref]["autocorrelation"]
            ax.plot(range(len(acf)), acf, color="black", linestyle=style,
                    label=ref.replace("_", " "))
        ax.set_xlabel(f"lag (grid steps of {step:.4f} in x)")
        ax.set_title(f"autocorrelation of the gradient, {name} nets\n(mean over {inits} "
                     f"initialisation{'s' if inits > 1 else ''})", fontsize=10)
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    ax_plain.set_ylabel("autocorrelation")
    for kind, name, color in (("plain", "feed-forward", COLORS[1]), ("resnet", "ResNet",
                                                                      COLORS[0])):
        values = result["summary"][f"{kind}_lag1_correlation"]
        ax_depth.plot(depths, values, marker="o", color=color, label=name)
    ax_depth.axhline(brown, color="black", linestyle="--", label=f"brown noise: {brown:.2f}")
    band = 2.0 / np.sqrt(grid["points"])
    ax_depth.axhspan(-band, band, color="gray", alpha=0.2,
                     label=f"white noise: |r| < 2/sqrt({grid['points']})")
    ax_depth.set_ylim(-0.25, 1.05)
    ax_depth.set_xlabel("depth (weighted layers)")
    ax_depth.set_ylabel("correlation of neighbouring gradients (lag 1)")
    ax_depth.set_title("correlation of the gradients at neighbouring inputs\nagainst depth",
                       fontsize=10)
    ax_depth.legend(fontsize=8)
    ax_depth.grid(alpha=0.3, which="both")
    s = result["settings"]
    body.suptitle(f"Shattered gradients at initialisation: {grid['points']} inputs in "
                  f"[{grid['low']:g}, {grid['high']:g}], width {s['width']}, "
                  f"{inits} initialisation{'s' if inits > 1 else ''} per net", fontsize=12)
    return _finish(fig, path)
