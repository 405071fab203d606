"""Labelled images for the analyses, as NumPy arrays preprocessed the way the model was trained.

The digits come straight from scikit-learn (:func:`keras_resnet.data.load_digits`)
and are normalised with NumPy, so an analysis of a digits model under JAX needs
no TensorFlow. Every other source goes through :func:`keras_resnet.data.load`
and its tf.data pipelines (TensorFlow).
"""

from __future__ import annotations

import numpy as np

SPLITS = ("test", "train")


def load_arrays(name, *, data_dir=None, split="test", seed=0, limit=None, batch_size=500):
    """Preprocessed images and labels of one split of a dataset.

    Args:
        name: ``"digits"``, ``"cifar10"``, ``"cifar100"`` (or anything
            :func:`keras_resnet.data.load` takes); None with ``data_dir``.
        data_dir: image folders ``DIR/train/<class>/`` and ``DIR/val/<class>/``
            instead of ``name`` (as ``recipes/cifar10.py --data-dir``).
        split: ``"test"`` (evaluation images, evaluation preprocessing) or
            ``"train"`` (training images of epoch 0, with the training augmentation
            except for the digits, which come unaugmented).
        seed: int, the seed of the dataset's split and order: the training run's
            ``--seed`` (the digits' test set depends on it).
        limit: int or None, at most this many examples (the first ones).
        batch_size: int, batch size of the tf.data pipelines.

    Returns:
        ``(images float32 (N, H, W, 3), labels int64 (N,), info dict)``; ``info``
        names the dataset, split, seed, number of examples and of classes, and
        the preprocessing spec.

    Raises:
        ValueError (``keras_resnet.data.DataError``): unknown dataset, missing files.
    """
    from keras_resnet import data as data_lib
    from keras_resnet import preprocessing as prep

    if split not in SPLITS:
        raise ValueError(f"Invalid value for argument `split`: received {split!r}; expected one "
                         f"of {', '.join(SPLITS)}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"Invalid value for argument `limit`: received {limit!r}; expected an "
                         "int >= 1 or None.")
    dataset = data_lib.load(name, data_dir=data_dir, seed=seed)
    if dataset.name == "digits":
        train, test = data_lib.load_digits(seed=seed)
        images, labels = train if split == "train" else test
        images, labels = images[:limit], labels[:limit]
        x = prep.preprocess_numpy(images, dataset.preprocessing).astype("float32")
        y = np.asarray(labels, "int64")
    else:
        if split == "test":
            ds = dataset.test_dataset(batch_size)
        else:
            ds = dataset.train_dataset(min(batch_size, dataset.train_size), epoch=0)
        xs, ys, count = [], [], 0
        for images, labels in ds.as_numpy_iterator():
            xs.append(images)
            ys.append(labels)
            count += len(labels)
            if limit is not None and count >= limit:
                break
        x = np.concatenate(xs)[:limit].astype("float32")
        y = np.concatenate(ys)[:limit].astype("int64")
    info = {"dataset": dataset.name, "split": split, "seed": seed, "examples": int(len(y)),
            "num_classes": dataset.num_classes, "preprocessing": dataset.preprocessing}
    if data_dir is not None:
        info["data_dir"] = str(data_dir)
    return x, y, info
