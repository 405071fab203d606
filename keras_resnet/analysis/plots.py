"""Pictures of the analyses' results (matplotlib, drawn off-screen; PNG, SVG or PDF).

Each ``plot_*`` function takes the dict an analysis returned (or its JSON,
read back), returns a ``matplotlib.figure.Figure`` and, given ``path``,
saves it there (the format from the suffix), atomically. The figures are
made without ``pyplot``, so no GUI backend is touched and no global state
changes: they render with Agg and work on machines without a display.
"""

from __future__ import annotations

import os

import numpy as np

from keras_resnet.analysis.files import write_atomically

FORMATS = (".png", ".svg", ".pdf")
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
VEIT = "Veit et al. 2016"
BALDUZZI = "Balduzzi et al. 2017"


def _figure(width, height):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


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


def plot_lesion(results, path=None):
    """Veit et al.'s Fig. 3 and 5 for one or more :func:`lesion_study` results.

    Three panels: accuracy after deleting each single block (downsampling
    blocks hatched), accuracy against the number of random blocks deleted
    (mean and standard deviation over the draws), and accuracy against
    Kendall's tau of the block order after random swaps. Several results (a
    ResNet and its plain twin) are drawn side by side.
    """
    results = _as_list(results)
    fig = _figure(16, 5.4)
    ax_single, ax_k, ax_order = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.5, 1, 1]})
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
    ax_single.set_title(f"Deleting one block ({VEIT}, Fig. 3: a ResNet barely changes,\n"
                        "a plain (VGG) net falls to chance)", fontsize=10)
    ax_k.set_xlabel("blocks deleted at random, k")
    ax_k.set_title(f"Deleting k blocks, mean and std over draws\n({VEIT}, Fig. 5a: error grows "
                   "smoothly)", fontsize=10)
    ax_order.set_xlabel("Kendall's tau of the block order (1 = original)")
    ax_order.invert_xaxis()
    ax_order.set_title(f"Swapping pairs of compatible blocks\n({VEIT}, Fig. 5b: error grows "
                       "smoothly as tau falls)", fontsize=10)
    handles = {}
    for ax in (ax_single, ax_k, ax_order):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncol=min(len(handles), 4), fontsize=8)
    n = results[0].get("examples")
    fig.suptitle("Lesion study" + (f" on {n} test images" if n else ""), fontsize=12)
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
    fig = _figure(16, 5.4)
    ax_count, ax_mag, ax_total = fig.subplots(1, 3)
    ax_count.bar(lengths, counts, color=COLORS[0])
    ax_count.set_xlabel("path length (blocks whose residual branch the path goes through)")
    ax_count.set_ylabel("number of paths")
    ax_count.set_title(f"(a) {n} blocks: {2 ** n:,} paths, lengths Binomial({n}, 1/2)\n"
                       f"({VEIT}, Fig. 6a: ResNet-110, 54 blocks)", fontsize=10)
    ax_mag.errorbar(lengths, mag, yerr=np.minimum(sem, 0.999 * mag), marker="o",
                    color=COLORS[1], capsize=3,
                    label=f"measured: mean and its standard error over "
                          f"{result['settings']['samples']} batches")
    if result.get("decay_per_block"):
        positive = mag > 0
        coef = np.polyfit(lengths[positive], np.log(mag[positive]), 1)
        ax_mag.plot(lengths, np.exp(np.polyval(coef, lengths)), color="gray", linestyle="--",
                    label=f"exponential fit: x{result['decay_per_block']:.3g} per block")
    ax_mag.set_yscale("log")
    ax_mag.set_xlabel("path length k (blocks)")
    ax_mag.set_ylabel("gradient magnitude at the first block's input\n(L2 norm per example)")
    ax_mag.set_title(f"(b) gradient along one path of length k\n({VEIT}, Fig. 6b: falls "
                     "exponentially with k)", fontsize=10)
    ax_mag.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    total = np.asarray(eff["total_gradient"])
    ax_total.bar(lengths, total / total.sum() if total.sum() > 0 else total, color=COLORS[2])
    lo, hi = eff["interval_90"]
    ax_total.axvspan(lo - 0.5, hi + 0.5, color=COLORS[2], alpha=0.12,
                     label=f"90% of the gradient: {lo}-{hi} blocks "
                           f"({lo * per_block}-{hi * per_block} layers)")
    ax_total.axvline(eff["median_length"], color="black", linestyle="--",
                     label=f"median: {eff['median_length']} blocks "
                           f"({eff['median_length'] * per_block} layers)")
    ax_total.axvline(n / 2, color="gray", linestyle=":", label=f"median path length: {n / 2:g}")
    ax_total.set_xlabel("path length k (blocks)")
    ax_total.set_ylabel("share of the total gradient magnitude")
    ax_total.set_title(f"(c) number of paths x gradient per path\n({VEIT}, Fig. 6c: ResNet-110, "
                       "5-17 blocks = 10-34 layers)", fontsize=10)
    ax_total.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    for ax in (ax_count, ax_mag, ax_total):
        ax.grid(alpha=0.3)
    fig.suptitle(f"Paths through {result.get('model', 'the model')} and the gradient they carry",
                 fontsize=12)
    return _finish(fig, path)


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
    xs = np.linspace(grid["low"], grid["high"], grid["points"])
    fig = _figure(18, 11)
    rows = fig.add_gridspec(3, 1, height_ratios=[1, 1.15, 1.2])
    top, middle, bottom = (rows[0].subgridspec(1, 5), rows[1].subgridspec(1, 5),
                           rows[2].subgridspec(1, 3))
    cov_axes = []
    for col, (title, entry) in enumerate(_pick_examples(result)):
        ax = fig.add_subplot(top[0, col])
        ax.plot(xs, entry["gradients"], color=COLORS[col % len(COLORS)], linewidth=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("input x")
        if col == 0:
            ax.set_ylabel("gradient d output / d x")
        ax.grid(alpha=0.3)
        ax = fig.add_subplot(middle[0, col])
        cov_axes.append(ax)
        image = ax.imshow(np.asarray(entry["covariance"]), cmap="RdBu_r", vmin=-1, vmax=1,
                          origin="lower",
                          extent=(grid["low"], grid["high"], grid["low"], grid["high"]))
        ax.set_xlabel("input x")
        if col == 0:
            ax.set_ylabel("input x'")
        ax.set_title("covariance of the gradients at x and x'", fontsize=9)
    fig.colorbar(image, ax=cov_axes, shrink=0.9,
                 label="covariance over initialisations\n(standardised gradients)")
    ax_plain = fig.add_subplot(bottom[0, 0])
    ax_res = fig.add_subplot(bottom[0, 1], sharey=ax_plain)
    ax_depth = fig.add_subplot(bottom[0, 2])
    depths = result["summary"]["depths"]
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
        ax.set_title(f"autocorrelation of the gradient, {name}s\n({BALDUZZI}, Fig. 2)",
                     fontsize=10)
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    ax_plain.set_ylabel("autocorrelation")
    for kind, name, color in (("plain", "feed-forward", COLORS[1]), ("resnet", "ResNet",
                                                                      COLORS[0])):
        values = result["summary"][f"{kind}_lag1_correlation"]
        ax_depth.plot(depths, values, marker="o", color=color, label=name)
    brown = result["references"]["brown_noise"]["lag1_correlation"]
    ax_depth.axhline(brown, color="black", linestyle="--", label=f"brown noise: {brown:.2f}")
    band = 2.0 / np.sqrt(grid["points"])
    ax_depth.axhspan(-band, band, color="gray", alpha=0.2,
                     label=f"white noise: |r| < 2/sqrt({grid['points']})")
    ax_depth.set_ylim(-0.25, 1.05)
    ax_depth.set_xlabel("depth (weighted layers)")
    ax_depth.set_ylabel("correlation of neighbouring gradients (lag 1)")
    ax_depth.set_title(f"{BALDUZZI}: decays exponentially with depth without skips,\n"
                       "sublinearly with them", fontsize=10)
    ax_depth.legend(fontsize=8)
    ax_depth.grid(alpha=0.3, which="both")
    s = result["settings"]
    fig.suptitle(f"Shattered gradients at initialisation: {grid['points']} inputs in "
                 f"[{grid['low']:g}, {grid['high']:g}], width {s['width']}, "
                 f"{s['inits']} initialisations per net", fontsize=12)
    return _finish(fig, path)
