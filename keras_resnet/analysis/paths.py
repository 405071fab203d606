"""Paths through a residual network and the gradient they carry (Veit et al. 2016,
"Residual Networks Behave Like Ensembles of Relatively Shallow Networks", section 5, Fig. 6).

Unrolled, a chain of n residual blocks is a collection of 2^n paths: each path
goes through the residual branch of some k blocks and through the shortcut of
the others, so C(n, k) paths have length k (Binomial(n, 1/2) lengths).
Veit et al. measure the gradient each path length carries by sampling: feed
a batch forward through the whole network, then in the backward pass pick k
blocks at random and propagate only through their residual branches (and only
through the shortcuts of the other blocks). The gradient magnitude reaching the
input falls exponentially with k; multiplied by the number of paths of each
length it shows which lengths carry the gradient: in their 110-layer ResNet
(54 blocks), paths of 5 to 17 blocks (10 to 34 layers) carry almost all of it.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from keras_resnet import layers as blocks_lib
from keras_resnet import specs
from keras_resnet.analysis import autodiff
from keras_resnet.analysis import network as nw
from keras_resnet.analysis.lesion import _check_data, _positive_int
from keras_resnet.training.progress import Counter


def path_length_distribution(n):
    """The number of paths of each length 0..n through ``n`` residual blocks: C(n, k).

    Exact Python integers; they sum to 2^n.

    >>> path_length_distribution(4)
    [1, 4, 6, 4, 1]
    >>> sum(path_length_distribution(54)) == 2 ** 54
    True
    """
    n = _positive_int("n", n, minimum=0)
    return [math.comb(n, k) for k in range(n + 1)]


def effective_paths(counts, magnitudes, lengths=None):
    """How much of the gradient each path length carries: paths of length k x gradient per path.

    Args:
        counts: number of paths of each length (``path_length_distribution``).
        magnitudes: gradient magnitude of one path of each length.
        lengths: the path lengths of ``counts`` and ``magnitudes`` (default 0, 1, ...).

    Returns:
        A dict: ``total_gradient`` (counts x magnitudes), ``fraction`` (of
        their sum), ``median_length`` (the length at which the cumulative
        fraction reaches one half), ``interval_90`` (the lengths between the
        5% and 95% points of the cumulative fraction).

    >>> effective = effective_paths([1, 3, 3, 1], [0.5, 0.5, 0.5, 0.5])
    >>> effective["fraction"], effective["median_length"], effective["interval_90"]
    ([0.125, 0.375, 0.375, 0.125], 1, [0, 3])
    """
    lengths = list(range(len(counts))) if lengths is None else [int(k) for k in lengths]
    if not len(counts) == len(magnitudes) == len(lengths):
        raise ValueError("Arguments `counts`, `magnitudes` and `lengths` must have the same "
                         f"length; received {len(counts)}, {len(magnitudes)}, {len(lengths)}.")
    total = [float(c) * float(m) for c, m in zip(counts, magnitudes)]
    norm = sum(total)
    fraction = [t / norm if norm > 0 else 0.0 for t in total]
    cumulative = np.cumsum(fraction)

    def quantile(q):
        return lengths[min(int(np.searchsorted(cumulative, q - 1e-12)), len(lengths) - 1)]

    return {"lengths": lengths, "total_gradient": total, "fraction": fraction,
            "median_length": quantile(0.5), "interval_90": [quantile(0.05), quantile(0.95)]}


def _loss_fn(model, labels):
    output = nw.classifier_output(model)

    def loss(predictions):
        return ops.sum(keras.losses.sparse_categorical_crossentropy(
            labels, predictions, from_logits=output == "logits"))

    return loss


def _forward(chain, x, y):
    """One forward pass; per block the pullbacks of its two terms and of its merge.

    Returns ``(h0, head_pullback_value, block_pullbacks)``: ``h0`` is the
    input of the first block, the gradient of the summed loss with respect to
    the last block's output, and for each block ``(terms_pullback,
    merge_pullback)``.
    """
    h = x
    for layer in chain.layers_before_blocks():
        h = layer(h, training=False)
    h0 = h
    pullbacks = []
    for block in chain.blocks:
        terms, terms_pb = autodiff.vjp(lambda t, b=block: b.merge_terms(t, training=False), h)
        h, merge_pb = autodiff.vjp(lambda t, b=block: b.after_merge(t, training=False),
                                   terms[0] + terms[1])
        pullbacks.append((terms_pb, merge_pb))
    loss = _loss_fn(chain.model, y)

    def head(t):
        for layer in chain.layers_after_blocks():
            t = layer(t, training=False)
        return loss(t)

    g_out = autodiff.grad(head, h)
    return h0, g_out, pullbacks


def _path_gradient(g_out, pullbacks, through):
    """Backpropagate ``g_out`` along one path: residual branches of ``through``, else shortcuts."""
    g = g_out
    for i in reversed(range(len(pullbacks))):
        terms_pb, merge_pb = pullbacks[i]
        g = merge_pb(g)
        g = terms_pb((None, g) if i in through else (g, None))
    return g


def _per_example_norm(g):
    g = ops.convert_to_numpy(g)
    return np.sqrt(np.sum(np.square(g.reshape(len(g), -1)), axis=1))


def path_gradients(model, x, y, through):
    """The gradient of the summed loss at the first block's input along one path.

    ``through`` is the set of block positions (0-based) whose residual branch
    the path goes through; it takes the shortcut of every other block. The
    gradients of the 2^n paths add up to the gradient of the whole network.
    Returns a NumPy array shaped like the first block's input.
    """
    chain = nw.network_chain(model)
    check_residual(chain)
    _, g_out, pullbacks = _forward(chain, np.asarray(x, "float32"), np.asarray(y))
    return ops.convert_to_numpy(_path_gradient(g_out, pullbacks, set(through)))


def check_residual(chain):
    """AnalysisError unless every block of the :class:`Chain` has a shortcut."""
    plain = [i.name for i in chain.info if not i.residual]
    if plain:
        raise nw.AnalysisError(f"Argument `model` ({chain.model.name!r}) has blocks without a "
                               f"shortcut ({plain[0]}, ...): a plain net has one path, so "
                               "gradients by path length need a residual net.")


def gradient_by_path_length(model, data, *, samples=32, batch_size=16, lengths=None, seed=0,
                            verbose=1):
    """Gradient magnitude by path length, with Veit et al.'s sampling method.

    For each of ``samples`` random batches: one forward pass through the whole
    network, then for every path length k one random set of k blocks: the
    gradient of the summed cross-entropy goes back through the residual
    branches of those blocks and the shortcuts of the others, down to the
    input of the first block; its L2 norm per example, averaged over the batch,
    is one measurement. Projection and option A shortcuts count as length 0.

    Args:
        model: a trained residual ``keras.Model`` built by keras_resnet, ending
            in its classifier.
        data: ``(images, labels)`` NumPy arrays (preprocessed images); Veit et
            al. sample batches of the training set.
        samples: int, random batches (measurements per path length).
        batch_size: int, examples per batch.
        lengths: path lengths to measure (default every length 0..n).
        seed: int, seed of the batches and of the blocks each path goes through.
        verbose: 0 for silence, else one progress bar with an ETA.

    Returns:
        A JSON-serialisable dict: ``num_blocks`` n, ``lengths``,
        ``path_counts`` (exact C(n, k)), ``gradient_magnitude`` (mean per
        length), its ``gradient_magnitude_std`` and standard error ``_sem``, ``decay_per_block`` (the factor
        by which the magnitude falls per extra block, from a least-squares fit
        of its logarithm), ``effective`` (see :func:`effective_paths`), with
        ``median_length`` and ``interval_90`` also in layers.

    Example:

    >>> import numpy as np, keras_resnet
    >>> from keras_resnet.analysis import gradient_by_path_length
    >>> model = keras_resnet.ResNet(8, input_shape=(8, 8, 3))
    >>> x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    >>> result = gradient_by_path_length(model, (x, np.arange(4)), samples=1, batch_size=2,
    ...                                  verbose=0)
    >>> result["num_blocks"], result["path_counts"]
    (3, [1, 3, 3, 1])
    """
    x, y = _check_data(model, data)
    samples = _positive_int("samples", samples)
    batch_size = min(_positive_int("batch_size", batch_size), len(x))
    chain = nw.network_chain(model)
    check_residual(chain)
    nw.classifier_output(model)
    n = len(chain.info)
    if lengths is None:
        lengths = list(range(n + 1))
    else:
        lengths = sorted({_positive_int("lengths", int(k), minimum=0) for k in lengths})
        if lengths[-1] > n:
            raise ValueError(f"Invalid value for argument `lengths`: received {lengths[-1]}; "
                             f"the model has {n} blocks (lengths 0..{n}).")
    rng = np.random.default_rng(seed)
    measured = {k: [] for k in lengths}
    bar = Counter(samples, "batches", enabled=bool(verbose))
    for s in range(samples):
        idx = np.sort(rng.choice(len(x), size=batch_size, replace=False))
        _, g_out, pullbacks = _forward(chain, x[idx], y[idx])
        for k in lengths:
            through = set(rng.choice(n, size=k, replace=False).tolist())
            g = _path_gradient(g_out, pullbacks, through)
            measured[k].append(float(np.mean(_per_example_norm(g))))
        bar.update(s + 1)
    counts_all = path_length_distribution(n)
    counts = [counts_all[k] for k in lengths]
    mean = [float(np.mean(measured[k])) for k in lengths]
    std = [float(np.std(measured[k])) for k in lengths]
    sem = [s / math.sqrt(samples) for s in std]
    positive = [(k, m) for k, m in zip(lengths, mean) if m > 0]
    decay = None
    if len(positive) >= 2:
        slope = np.polyfit([k for k, _ in positive], np.log([m for _, m in positive]), 1)[0]
        decay = float(np.exp(slope))
    effective = effective_paths(counts, mean, lengths)
    per_block = specs.LAYERS_PER_BLOCK[
        "bottleneck" if isinstance(chain.blocks[0], blocks_lib.BottleneckBlock) else "basic"]
    effective["layers_per_block"] = per_block
    effective["median_length_layers"] = effective["median_length"] * per_block
    effective["interval_90_layers"] = [k * per_block for k in effective["interval_90"]]
    return {
        "analysis": "paths",
        "reference": "Veit, Wilber and Belongie 2016, Residual Networks Behave Like Ensembles "
                     "of Relatively Shallow Networks, Fig. 6",
        "model": model.name,
        "num_blocks": n,
        "total_paths": 2 ** n,
        "lengths": lengths,
        "path_counts": counts,
        "gradient_magnitude": mean,
        "gradient_magnitude_std": std,
        "gradient_magnitude_sem": sem,
        "measurements": {str(k): measured[k] for k in lengths},
        "decay_per_block": decay,
        "effective": effective,
        "settings": {"samples": samples, "batch_size": batch_size, "seed": seed,
                     "examples": int(len(x)), "backend": keras.backend.backend(),
                     "magnitude": "L2 norm per example of the gradient of the summed "
                                  "cross-entropy at the first block's input, batch mean"},
    }
