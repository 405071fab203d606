"""The analyses' pictures draw their results: the plotted data against the result, titles that
describe, a caption whose numbers are computed here again from the result."""

import logging

import numpy as np
import pytest

import keras_resnet
from keras_resnet import analysis
from keras_resnet.analysis import lesion, paths, shattered

pytest.importorskip("matplotlib")
CLAIMS = ("barely", "smoothly", "exponentially", "sublinearly", "falls to chance")


def _images(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 8, 8, 3)).astype("float32")


def _titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()] + [
        sub._suptitle.get_text() for sub in fig.subfigs if sub._suptitle is not None]


def _check_words(fig, paper):
    """No title claims a finding; the caption names the paper's finding as the paper's."""
    for title in _titles(fig):
        assert not any(word in title.lower() for word in CLAIMS), title
    caption = " ".join(fig.caption.split())
    assert caption.startswith("This result: ")
    assert f"The paper's finding (not measured here): {paper}" in caption
    return caption


@pytest.fixture(scope="module")
def lesion_results():
    residual = keras_resnet.ResNet(14, input_shape=(8, 8, 3), seed=1)
    plain = keras_resnet.ResNet(14, input_shape=(8, 8, 3), residual=False, seed=1)
    data = (_images(20), np.arange(20) % 10)
    return [lesion.lesion_study(m, data, draws=2, max_delete=3, max_swaps=2, seed=3, verbose=0)
            for m in (residual, plain)]


def test_lesion_plot_draws_the_results(lesion_results):
    fig = analysis.plot_lesion(lesion_results)
    ax_single, ax_k, ax_order = fig.axes[:3]
    names = [b["name"] for b in lesion_results[0]["blocks"]]
    bars = [p for p in ax_single.patches]
    for r, result in enumerate(lesion_results):
        drawn = [name for name in names if name in result["delete_single"]]
        mine = bars[:len(drawn)]
        bars = bars[len(drawn):]
        np.testing.assert_allclose([b.get_height() for b in mine],
                                   [100 * result["delete_single"][n] for n in drawn])
        downsampling = {b["name"] for b in result["blocks"] if b["downsampling"]}
        assert [bool(b.get_hatch()) for b in mine] == [n in downsampling for n in drawn]
    assert not bars
    # the k-deletion curves: x = k, y = 100 x the mean over the draws
    curves = [ln for ln in ax_k.lines if ln.get_marker() == "o"]
    assert len(curves) == 2
    for curve, result in zip(curves, lesion_results):
        acc = np.asarray(result["delete_k"]["accuracy"], float)
        np.testing.assert_allclose(np.asarray(curve.get_xdata(), float), result["delete_k"]["k"])
        np.testing.assert_allclose(np.asarray(curve.get_ydata(), float), 100 * acc.mean(axis=1))
    # the intact accuracy is a dashed line in every panel; the swaps are (tau, accuracy) points
    for ax in (ax_single, ax_k, ax_order):
        ys = sorted(ln.get_ydata()[0] for ln in ax.lines if ln.get_linestyle() == "--")
        assert ys == sorted(100 * r["baseline_accuracy"] for r in lesion_results)
    for dots, result in zip(ax_order.collections, lesion_results):
        np.testing.assert_allclose(dots.get_offsets(),
                                   [(p["kendall_tau"], 100 * p["accuracy"])
                                    for p in result["reorder"]["points"]])
    caption = _check_words(fig, "Veit et al. 2016")
    for result in lesion_results:
        single = result["delete_single"]
        worst = min(single, key=single.get)
        median = 100 * float(np.median(list(single.values())))
        assert (f"intact {100 * result['baseline_accuracy']:.1f}%; one block deleted: median "
                f"{median:.1f}%, lowest {100 * single[worst]:.1f}% ({worst})") in caption


def test_paths_plot_draws_the_result():
    model = keras_resnet.ResNet(14, input_shape=(8, 8, 3), seed=2)
    result = paths.gradient_by_path_length(model, (_images(8), np.arange(8)), samples=3,
                                           batch_size=4, seed=1, verbose=0)
    fig = analysis.plot_paths(result)
    ax_count, ax_mag, ax_total = fig.axes[:3]
    np.testing.assert_allclose([p.get_height() for p in ax_count.patches],
                               [1, 6, 15, 20, 15, 6, 1])              # C(6, k), by hand
    measured = ax_mag.lines[0]
    np.testing.assert_allclose(measured.get_xdata(), range(7))
    np.testing.assert_allclose(measured.get_ydata(), result["gradient_magnitude"])
    total = np.asarray(result["path_counts"]) * np.asarray(result["gradient_magnitude"])
    np.testing.assert_allclose([p.get_height() for p in ax_total.patches][:7],
                               total / total.sum(), rtol=1e-5)
    caption = _check_words(fig, "Veit et al. 2016")
    # the fit, computed again: least squares on log magnitude, its slope and R^2
    k, y = np.arange(7.0), np.log(result["gradient_magnitude"])
    slope, intercept = np.linalg.lstsq(np.stack([k, np.ones(7)], 1), y, rcond=None)[0]
    r2 = 1 - np.sum((y - slope * k - intercept) ** 2) / np.sum((y - y.mean()) ** 2)
    assert (f"the gradient changes x{np.exp(slope):.3g} per block from length 0 to 6 "
            f"(exponential fit, R\u00b2 {r2:.2f} on the log scale)") in caption
    cumulative = np.cumsum(total) / total.sum()
    median = int(np.argmax(cumulative >= 0.5))
    assert f"paths of at most {median} blocks ({2 * median} layers)" in caption


@pytest.mark.parametrize("inits", [2, 1])
def test_shattered_plot_draws_the_result(inits, caplog):
    with caplog.at_level(logging.WARNING, logger="keras_resnet.analysis"):
        result = shattered.shattered_gradients((2, 6), width=8, inits=inits, points=32,
                                               max_lag=8, verbose=0)
    warned = [r.getMessage() for r in caplog.records if "--inits" in r.getMessage()]
    assert warned == ([] if inits > 1 else [
        "inits=1 (--inits): the covariance of the gradients over initialisations needs at "
        "least 2; it is left out (None) and not drawn."])
    fig = analysis.plot_shattered(result)
    nets = {(n["kind"], n["depth"]): n for n in result["nets"]}
    picked = [nets["plain", 2], nets["plain", 6], nets["resnet", 6],
              result["references"]["brown_noise"], result["references"]["white_noise"]]
    top = fig.axes[0:10:2]
    for ax, entry in zip(top, picked):
        np.testing.assert_allclose(ax.lines[0].get_ydata(), entry["gradients"])
        np.testing.assert_allclose(ax.lines[0].get_xdata(), np.linspace(-2, 2, 32))
    maps = fig.axes[1:10:2]
    for ax, entry in zip(maps, picked):
        if entry["covariance"] is None:
            assert inits == 1 and not ax.images
            assert "not drawn" in ax.texts[0].get_text()
        else:
            np.testing.assert_allclose(ax.images[0].get_array(), entry["covariance"])
    assert sum(e["covariance"] is None for e in picked) == (3 if inits == 1 else 0)
    ax_depth = [ax for ax in fig.axes if "against depth" in ax.get_title()][0]
    plain, res = ax_depth.lines[0], ax_depth.lines[1]
    np.testing.assert_allclose(plain.get_ydata(), [nets["plain", d]["lag1_correlation"]
                                                   for d in (2, 6)])
    np.testing.assert_allclose(res.get_ydata(), [nets["resnet", d]["lag1_correlation"]
                                                 for d in (2, 6)])
    caption = _check_words(fig, "Balduzzi et al. 2017")
    p, r = [nets["plain", d]["lag1_correlation"] for d in (2, 6)], \
        [nets["resnet", d]["lag1_correlation"] for d in (2, 6)]
    assert (f"goes from {p[0]:.2f} to {p[1]:.2f} in the feed-forward nets and from {r[0]:.2f} "
            f"to {r[1]:.2f} in the ResNets between depths 2 and 6") in caption
    assert ("the covariance maps need at least 2 initialisations (this result: 1)"
            in caption) == (inits == 1)
