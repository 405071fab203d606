"""Lesion studies of trained networks (Veit et al. 2016, "Residual Networks Behave Like
Ensembles of Relatively Shallow Networks", section 4, Fig. 3-5).

Three experiments on a trained model and a labelled evaluation set, all with the
model's own weights (see :func:`keras_resnet.analysis.lesioned_model`):

* delete each block in turn (Fig. 3, 4): in a residual net the block's residual
  branch goes and its shortcut stays; in a plain net (``residual=False``) the
  whole block goes, where its input and output shapes match;
* delete k random blocks, several draws for each k (Fig. 5a);
* swap k random pairs of compatible blocks (same input and output shapes) and
  relate the accuracy to Kendall's tau between the new and the original order
  (Fig. 5b).
"""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np

from keras_resnet.analysis import network as nw
from keras_resnet.training.progress import Counter


def kendall_tau(order, reference=None):
    """Kendall's rank correlation between a permutation and ``reference`` (default: sorted).

    1.0 for the same order, -1.0 for the reverse. Written here for permutations
    (no ties), which is all the reorder experiment needs: ``(concordant -
    discordant) / (n (n - 1) / 2)``.

    >>> kendall_tau([0, 1, 2, 3]), kendall_tau([3, 2, 1, 0]), kendall_tau([1, 0, 2, 3])
    (1.0, -1.0, 0.6666666666666666)
    """
    order = list(order)
    reference = sorted(order) if reference is None else list(reference)
    if sorted(order) != sorted(reference):
        raise ValueError("Arguments `order` and `reference` must hold the same items; "
                         f"received {order!r} and {reference!r}.")
    n = len(order)
    if n < 2:
        return 1.0
    rank = {item: i for i, item in enumerate(reference)}
    ranks = [rank[item] for item in order]
    score = sum(1 if ranks[i] < ranks[j] else -1 for i, j in itertools.combinations(range(n), 2))
    return score / (n * (n - 1) / 2)


def accuracy(model, x, y, batch_size=256):
    """Top-1 accuracy of ``model`` on images ``x`` and labels ``y`` (inference mode).

    Runs the model eagerly batch by batch: each lesioned model runs once, so
    compiling it (``model.predict``) would cost more than it saves.
    """
    correct = 0
    for start in range(0, len(x), batch_size):
        probs = model(x[start:start + batch_size], training=False)
        predicted = np.argmax(keras.ops.convert_to_numpy(probs), axis=-1)
        correct += int(np.sum(predicted == y[start:start + batch_size]))
    return correct / max(1, len(x))


def compatible_pairs(chain):
    """Pairs of block positions (i < j) that can trade places: same input and output shapes."""
    info = chain.info
    return [(i, j) for i, j in itertools.combinations(range(len(info)), 2)
            if (info[i].input_shape, info[i].output_shape)
            == (info[j].input_shape, info[j].output_shape)]


def _progress(total, verbose):
    return Counter(total, "evaluations", enabled=bool(verbose))


def lesion_study(model, data, *, max_delete=None, draws=10, max_swaps=None, seed=0,
                 batch_size=256, verbose=1):
    """Veit et al.'s lesion study of a trained model.

    Args:
        model: a trained ``keras.Model`` built by keras_resnet (or loaded from
            its ``.keras`` file), ending in its classifier.
        data: ``(images, labels)``: preprocessed float images as the model
            takes them and integer labels (NumPy arrays).
        max_delete: int or None, the largest number of random blocks deleted
            at once (default: every deletable block).
        draws: int >= 1, random draws for each number of deleted blocks (every
            subset once where there are no more than ``draws``) and of swaps.
        max_swaps: int or None, the largest number of swapped pairs (default:
            the number of blocks that have a compatible partner).
        seed: int, seed of the random draws.
        batch_size: int, evaluation batch size.
        verbose: 0 for silence, else one progress bar with an ETA.

    Returns:
        A JSON-serialisable dict: ``baseline_accuracy``; ``delete_single``
        (block name -> accuracy, for every deletable block); ``delete_k``
        (``k``, ``accuracy`` per draw, ``mean``, ``std``, ``deleted`` names);
        ``reorder`` (``points``: swaps, Kendall's tau, accuracy, order);
        ``blocks`` (per block: shapes, shortcut, whether it downsamples and
        what deleting it means); ``chance_accuracy``; and the settings.

    Example:

    >>> import numpy as np, keras_resnet
    >>> from keras_resnet.analysis import lesion_study
    >>> model = keras_resnet.ResNet(20, input_shape=(8, 8, 3))
    >>> x = np.zeros((4, 8, 8, 3), "float32"); y = np.arange(4)
    >>> result = lesion_study(model, (x, y), draws=1, max_delete=1, max_swaps=1, verbose=0)
    >>> sorted(result["delete_single"])[:2], result["residual"]
    (['stage1_block1', 'stage1_block2'], True)
    """
    x, y = _check_data(model, data)
    draws = _positive_int("draws", draws)
    batch_size = _positive_int("batch_size", batch_size)
    chain = nw.network_chain(model)
    nw.classifier_output(model)
    names = [i.name for i in chain.info]
    deletable = [i.name for i in chain.info if i.deletable]
    max_delete = len(deletable) if max_delete is None else _positive_int(
        "max_delete", max_delete, minimum=0)
    if max_delete > len(deletable):
        raise ValueError(f"Invalid value for argument `max_delete`: received {max_delete}; the "
                         f"model has {len(deletable)} deletable blocks.")
    pairs = compatible_pairs(chain)
    swappable = len({p for pair in pairs for p in pair})
    max_swaps = swappable if max_swaps is None else _positive_int("max_swaps", max_swaps,
                                                                 minimum=0)
    if not pairs:
        max_swaps = 0
    rng = np.random.default_rng(seed)

    total = 1 + len(deletable) + sum(min(draws, math.comb(len(deletable), k))
                                     for k in range(1, max_delete + 1)) + max_swaps * draws
    bar = _progress(total, verbose)
    done = [0]

    def evaluate(delete=(), order=None):
        m = model if not delete and order is None else nw.lesioned_model(
            model, delete=delete, order=order, chain=chain)
        acc = accuracy(m, x, y, batch_size)
        done[0] += 1
        bar.update(done[0])
        return acc

    baseline = evaluate()
    delete_single = {name: evaluate([name]) for name in deletable}

    delete_k = {"k": [], "accuracy": [], "mean": [], "std": [], "deleted": []}
    for k in range(1, max_delete + 1):
        accs, deleted = [], []
        for chosen in _draw_subsets(rng, len(deletable), k, draws):
            chosen = [deletable[i] for i in chosen]
            accs.append(evaluate(chosen))
            deleted.append(chosen)
        delete_k["k"].append(k)
        delete_k["accuracy"].append(accs)
        delete_k["mean"].append(float(np.mean(accs)))
        delete_k["std"].append(float(np.std(accs)))
        delete_k["deleted"].append(deleted)

    points = []
    for swaps in range(1, max_swaps + 1):
        for _ in range(draws):
            order = list(range(len(names)))
            for _ in range(swaps):
                i, j = pairs[int(rng.integers(len(pairs)))]
                order[i], order[j] = order[j], order[i]
            new = [names[p] for p in order]
            points.append({"swaps": swaps, "kendall_tau": kendall_tau(order),
                           "accuracy": evaluate(order=new), "order": new})

    return {
        "analysis": "lesion",
        "reference": "Veit, Wilber and Belongie 2016, Residual Networks Behave Like Ensembles "
                     "of Relatively Shallow Networks, Fig. 3-5",
        "model": model.name,
        "residual": chain.residual,
        "num_blocks": len(names),
        "examples": int(len(x)),
        "chance_accuracy": 1.0 / int(model.output_shape[-1]),
        "baseline_accuracy": baseline,
        "delete_single": delete_single,
        "delete_k": delete_k,
        "reorder": {"compatible_pairs": [[names[i], names[j]] for i, j in pairs],
                    "points": points},
        "blocks": [i.as_dict() for i in chain.info],
        "settings": {"draws": draws, "max_delete": max_delete, "max_swaps": max_swaps,
                     "seed": seed, "batch_size": batch_size,
                     "backend": keras.backend.backend()},
    }


def _draw_subsets(rng, n, k, draws):
    """``draws`` random k-subsets of range(n); every subset once if there are no more than that."""
    if math.comb(n, k) <= draws:
        return [list(c) for c in itertools.combinations(range(n), k)]
    return [sorted(rng.choice(n, size=k, replace=False).tolist()) for _ in range(draws)]


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Invalid value for argument `{name}`: received {value!r}; expected an "
                         f"int >= {minimum}.")
    return int(value)


def _check_data(model, data):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError("Argument `data` must be a pair (images, labels) of arrays; received "
                        f"{type(data).__name__}.")
    x, y = np.asarray(data[0], dtype="float32"), np.asarray(data[1]).astype("int64").reshape(-1)
    if len(x) != len(y) or not len(x):
        raise ValueError(f"Argument `data` must hold as many labels as images (at least one); "
                         f"received {len(x)} images and {len(y)} labels.")
    nw.check_data_fits(model, x, y)
    return x, y
