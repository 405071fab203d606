"""Shattered gradients (Balduzzi et al. 2017, "The Shattered Gradients Problem: If resnets
are the answer, then what is the question?", Fig. 1-2).

Networks with a 1-D input, evaluated on a grid of points in [-2, 2]: the
gradient of the output with respect to the input, across the grid, looks like
brown noise (a random walk: neighbouring points have similar gradients) for a
shallow net, and like white noise (no correlation between neighbours) for a
deep feed-forward net; with skip connections it stays correlated. Balduzzi
et al. show that the correlation between the gradients at neighbouring inputs
decays exponentially with depth in feed-forward rectifier nets and
sublinearly in ResNets.

The nets here are made of this package's own layers on a 1x1 "image" with
one channel: the :class:`~keras_resnet.layers.Stem` (its 3x3 convolution on a
1x1 input, zero-padded, is a dense layer from 1 to ``width`` units, then
BatchNorm and ReLU: the first hidden layer, with random BatchNorm offsets so
that its units switch at different inputs) and
:class:`~keras_resnet.layers.ResidualBlock` s of ``width`` channels (each 3x3
convolution acts as a dense ``width x width`` layer), ``residual=False`` for
the feed-forward twin, then a dense layer to one output. Depth counts weighted
layers: stem + 2 per block + output.

At initialisation the BatchNorm statistics are those of the grid itself: one
training-mode pass with momentum 0 sets every BatchNorm's moving mean and
variance to the batch statistics of its input over the grid (what the first
training step normalises with), and the gradients are taken in inference mode,
so each point's gradient depends on that point only.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
from keras import ops

from keras_resnet import layers as blocks_lib
from keras_resnet import specs
from keras_resnet.analysis import autodiff
from keras_resnet.analysis.lesion import _positive_int
from keras_resnet.training.progress import Counter

DEFAULT_DEPTHS = (2, 6, 12, 24, 50)
log = logging.getLogger("keras_resnet.analysis")


def gradient_net(depth, *, residual=True, width=200, seed=0, ordering="post"):
    """A network on a 1-D input made of this package's stem and residual blocks.

    Args:
        depth: int, weighted layers: 2 (stem and output: one hidden layer), 4,
            6, ... (stem, ``(depth - 2) / 2`` blocks of two layers, output).
        residual: bool, False for the feed-forward (plain) twin.
        width: int, units (channels) of every hidden layer.
        seed: int, seed of the weights.
        ordering: the blocks' unit ordering (``keras_resnet.specs.ORDERINGS``).

    Returns:
        A ``keras.Model`` from ``(batch, 1, 1, 1)`` inputs to ``(batch, 1)`` outputs.

    Example:

    >>> from keras_resnet.analysis import gradient_net
    >>> net = gradient_net(6, width=8)
    >>> [layer.name for layer in net.layers]
    ['input', 'stem', 'stage1_block1', 'stage1_block2', 'avg_pool', 'output']
    """
    depth = _positive_int("depth", depth, minimum=2)
    if depth % 2:
        raise ValueError(f"Invalid value for argument `depth`: received {depth}; expected an "
                         "even number >= 2 (stem + 2 layers per block + output).")
    width = _positive_int("width", width)
    blocks_lib.check_choice("ordering", ordering, specs.ORDERINGS)
    init = keras.initializers.HeNormal(seed=seed)
    inputs = keras.Input((1, 1, 1), name="input")
    with blocks_lib.building_scope():
        stem = blocks_lib.Stem(width, "cifar", kernel_initializer=init, bn_momentum=0.0,
                               data_format="channels_last", name="stem")
        x = stem(inputs)
        for b in range((depth - 2) // 2):
            x = blocks_lib.ResidualBlock(width, residual=residual, ordering=ordering,
                                         shortcut="B", bn_momentum=0.0, kernel_initializer=init,
                                         data_format="channels_last",
                                         name=f"stage1_block{b + 1}")(x)
        if ordering == "full_preact":
            x = keras.layers.BatchNormalization(momentum=0.0, epsilon=blocks_lib.BN_EPSILON,
                                                name="post_bn")(x)
        if ordering in blocks_lib.PREACT_ORDERINGS:
            x = keras.layers.Activation("relu", name="post_relu")(x)
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotNormal(seed=seed),
                               name="output")(x)
    # The first layer's ReLUs must switch at different inputs: with BatchNorm's
    # beta = 0 every one of them would switch where its input crosses the grid's
    # mean, x = 0. Its offsets are drawn from a standard normal instead.
    stem.bn.beta.assign(np.random.default_rng([seed, 1]).standard_normal(width)
                        .astype("float32"))
    kind = "resnet" if residual else "plain"
    return keras.Model(inputs, x, name=f"{kind}_1d_depth{depth}")


def input_gradients(net, points):
    """d output / d input at each of ``points`` (1-D array), BatchNorm set from the points."""
    grid = np.asarray(points, "float32").reshape(-1, 1, 1, 1)
    net(grid, training=True)   # momentum 0: moving statistics := the grid's statistics
    g = autodiff.grad(lambda t: ops.sum(net(t, training=False)), grid)
    return ops.convert_to_numpy(g).reshape(-1).astype("float64")


def autocorrelation(series, max_lag=None):
    """Sample autocorrelation of a 1-D series at lags 0..max_lag (the usual biased estimator).

    ``r_k = sum_t (g_t - mean)(g_{t+k} - mean) / sum_t (g_t - mean)^2``.

    >>> [round(r, 3) for r in autocorrelation([1.0, -1.0, 1.0, -1.0], 2)]
    [1.0, -0.75, 0.5]
    """
    g = np.asarray(series, "float64").reshape(-1)
    n = len(g)
    max_lag = n - 1 if max_lag is None else min(int(max_lag), n - 1)
    g = g - g.mean()
    c0 = float(np.dot(g, g))
    if c0 == 0:
        return [1.0] + [0.0] * max_lag
    return [float(np.dot(g[:n - k], g[k:]) / c0) for k in range(max_lag + 1)]


def _standardize(g):
    g = np.asarray(g, "float64")
    std = g.std()
    return (g - g.mean()) / std if std > 0 else g - g.mean()


def _summarize(samples, max_lag, stride, keep_gradients):
    """ACF (mean and std over samples), covariance matrix (over samples, None for one), one
    example."""
    acfs = np.array([autocorrelation(g, max_lag) for g in samples])
    covariance = None
    if len(samples) > 1:   # the covariance of one sample is only its own outer product
        z = np.array([_standardize(g) for g in samples])[:, ::stride]
        covariance = np.round((z.T @ z) / len(z), 5).tolist()
    out = {"autocorrelation": acfs.mean(0).tolist(), "autocorrelation_std": acfs.std(0).tolist(),
           "lag1_correlation": float(acfs[:, 1].mean()) if acfs.shape[1] > 1 else 1.0,
           "covariance": covariance}
    if keep_gradients:
        out["gradients"] = [float(v) for v in samples[0]]
    return out


def shattered_gradients(depths=DEFAULT_DEPTHS, *, width=200, inits=8, points=256, low=-2.0,
                        high=2.0, max_lag=64, covariance_stride=4, ordering="post", seed=0,
                        verbose=1):
    """Gradients of 1-D nets across a grid: feed-forward against ResNets, at initialisation.

    For every depth, ``inits`` random initialisations of the feed-forward net
    and of the ResNet (:func:`gradient_net`); for each, the gradient of the
    output with respect to the input at ``points`` evenly spaced inputs in
    ``[low, high]``, then its autocorrelation (averaged over the
    initialisations) and the covariance of the standardised gradients between
    grid points (over the initialisations: None, with a warning, for
    ``inits=1``). White and brown noise (the
    cumulative sum of white noise) go through the same estimators for
    reference, as in Balduzzi et al.'s Fig. 1.

    Args:
        depths: even ints >= 2, weighted layers of the nets.
        width: int, units per hidden layer.
        inits: int, random initialisations per net.
        points, low, high: the grid (the paper: 256 points in [-2, 2]).
        max_lag: int, largest lag of the autocorrelation, in grid steps.
        covariance_stride: int, keep every this many grid points in the covariance matrices.
        ordering: the blocks' unit ordering.
        seed: int, base seed of the weights and the noise.
        verbose: 0 for silence, else one progress bar with an ETA.

    Returns:
        A JSON-serialisable dict: ``grid``; ``nets`` (one entry per kind and
        depth: ``kind`` ``"plain"`` or ``"resnet"``, ``depth``, ``blocks``,
        ``gradients`` of the first initialisation, ``autocorrelation`` and its
        ``autocorrelation_std``, ``lag1_correlation``, ``covariance``);
        ``references`` (``white_noise``, ``brown_noise``); ``summary``
        (lag-1 correlation per depth for each kind); the settings.

    Example:

    >>> from keras_resnet.analysis import shattered_gradients
    >>> result = shattered_gradients((2, 6), width=8, inits=2, points=16, max_lag=4,
    ...                              verbose=0)
    >>> [(n["kind"], n["depth"]) for n in result["nets"]]
    [('plain', 2), ('resnet', 2), ('plain', 6), ('resnet', 6)]
    """
    depths = [_positive_int("depths", d, minimum=2) for d in depths]
    if not depths or any(d % 2 for d in depths):
        raise ValueError(f"Invalid value for argument `depths`: received {depths!r}; expected "
                         "even numbers >= 2.")
    inits = _positive_int("inits", inits)
    if inits < 2:
        log.warning("inits=%d (--inits): the covariance of the gradients over initialisations "
                    "needs at least 2; it is left out (None) and not drawn.", inits)
    points = _positive_int("points", points, minimum=4)
    covariance_stride = _positive_int("covariance_stride", covariance_stride)
    max_lag = min(_positive_int("max_lag", max_lag), points - 1)
    if not float(low) < float(high):
        raise ValueError(f"Invalid grid: `low` ({low}) must be below `high` ({high}).")
    grid = np.linspace(float(low), float(high), points)
    # Progress in layers, not networks: a 50-layer net costs 25 times a 2-layer one,
    # and the ETA should know it.
    bar = Counter(sum(depths) * 2 * inits, "layers", enabled=bool(verbose))
    nets, done = [], 0
    for depth in depths:
        for kind in ("plain", "resnet"):
            samples = []
            for i in range(inits):
                net = gradient_net(depth, residual=kind == "resnet", width=width,
                                   seed=seed * 100_003 + depth * 1_009 + i, ordering=ordering)
                samples.append(input_gradients(net, grid))
                done += depth
                bar.update(done)
            entry = {"kind": kind, "depth": depth, "blocks": (depth - 2) // 2}
            entry.update(_summarize(samples, max_lag, covariance_stride, keep_gradients=True))
            nets.append(entry)
    rng = np.random.default_rng([seed, 17])
    white = rng.normal(size=(max(inits, 8), points))
    references = {
        "white_noise": _summarize(list(white), max_lag, covariance_stride, True),
        "brown_noise": _summarize(list(np.cumsum(white, axis=1)), max_lag, covariance_stride,
                                  True),
    }
    summary = {"depths": depths}
    for kind in ("plain", "resnet"):
        summary[f"{kind}_lag1_correlation"] = [n["lag1_correlation"] for n in nets
                                               if n["kind"] == kind]
    return {
        "analysis": "shattered_gradients",
        "reference": "Balduzzi et al. 2017, The Shattered Gradients Problem: If resnets are "
                     "the answer, then what is the question?, Fig. 1-2",
        "grid": {"points": points, "low": float(low), "high": float(high),
                 "step": float(grid[1] - grid[0]),
                 "covariance_points": list(range(0, points, covariance_stride))},
        "nets": nets,
        "references": references,
        "summary": summary,
        "settings": {"width": width, "inits": inits, "max_lag": max_lag,
                     "covariance_stride": covariance_stride, "ordering": ordering, "seed": seed,
                     "batchnorm": "statistics of the grid (one training-mode pass, momentum 0), "
                                  "gradients in inference mode",
                     "backend": keras.backend.backend()},
    }
