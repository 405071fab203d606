"""Labelled images for the analyses, as NumPy arrays preprocessed the way the model was trained.

The digits come straight from scikit-learn (:func:`keras_resnet.data.load_digits`)
and are normalised with NumPy, so an analysis of a digits model under JAX needs
no TensorFlow. Every other source goes through :func:`keras_resnet.data.load`
and its tf.data pipelines (TensorFlow).
"""

from __future__ import annotations

import json
import os

import numpy as np

from keras_resnet.training.config import DATASETS as TRAINING_DATASETS

SPLITS = ("test", "train")
# The labelled datasets of the CIFAR recipe (synthetic images have nothing to analyse).
DATASETS = tuple(d for d in TRAINING_DATASETS["cifar10"] if d != "synthetic")


def export_metadata(model_path):
    """The ``metadata.json`` of an export (beside the model or in its directory), or ``{}``."""
    model_path = os.fspath(model_path)
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(
        os.path.abspath(model_path))
    return _read_json(os.path.join(folder, "metadata.json"))


def _read_json(path):
    try:
        with open(path) as f:
            found = json.load(f)
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}


def _recorded_folder(meta):
    """The image folder (and its held-out fraction) a folder-trained export records, or Nones.

    Exports name it in ``data``; older ones only in their run directory's ``config.json``.
    """
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    if data.get("data_dir"):
        return str(data["data_dir"]), data.get("val_split")
    run_dir = meta.get("run_dir")
    if isinstance(run_dir, str):
        config = _read_json(os.path.join(run_dir, "config.json"))
        flags = config.get("flags") if isinstance(config.get("flags"), dict) else {}
        if flags.get("data_dir"):
            return str(flags["data_dir"]), flags.get("val_split")
    return None, None


def model_inputs(model_path, *, dataset=None, data_dir=None, seed=None, model=None):
    """Which data to analyse a model on: the flags, else what the export's metadata records.

    Args:
        model_path: the ``.keras`` file or export directory (its ``metadata.json``
            is read).
        dataset: str or None, a name of :data:`DATASETS` (``--dataset``).
        data_dir: str or None, image folders (``--data-dir``); wins over ``dataset``.
        seed: int or None, the seed of the dataset's split (``--data-seed``;
            default: the training run's seed in the metadata, else 0).
        model: the loaded model or None: its input size is used for image
            folders when the metadata records none.

    Returns:
        ``{"name", "data_dir", "seed", "image_size", "val_split"}``: the keyword
        arguments of :func:`load_arrays`. A folder-trained model is read at
        its input size (``input_size`` in the metadata) and, when its folder had
        no ``val/``, with the same held-out split as in training.

    Raises:
        ValueError: no dataset named and none usable recorded, in one line.
    """
    meta = export_metadata(model_path)
    recorded_dir, recorded_split = _recorded_folder(meta)
    if dataset is None and data_dir is None:
        named = meta.get("dataset")
        if named == "folder":
            if recorded_dir is None:
                raise ValueError("--data-dir is needed: the metadata.json beside the model says "
                                 "it was trained on image folders but does not record where")
            if not os.path.isdir(recorded_dir):
                raise ValueError(f"--data-dir is needed: the model was trained on the image "
                                 f"folders {recorded_dir!r} (its metadata.json), which do not "
                                 "exist here")
            data_dir = recorded_dir
        elif named in DATASETS:
            dataset = named
        elif not meta:
            raise ValueError("--dataset or --data-dir is needed: there is no metadata.json "
                             "beside the model")
        else:
            raise ValueError(f"--dataset or --data-dir is needed: the metadata.json beside the "
                             f"model names the dataset {named!r}; the analyses take "
                             f"{', '.join(DATASETS)} or image folders")
    if seed is None:
        seed = (meta.get("training") or {}).get("seed", 0)
        seed = seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else 0
    image_size = val_split = None
    if data_dir is not None:
        dataset = None
        size = meta.get("input_size")
        if model is not None and not (isinstance(size, list) and len(size) == 2):
            size = list(model.input_shape[1:3])
        if isinstance(size, list) and len(size) == 2 and size[0] == size[1] \
                and isinstance(size[0], int):
            image_size = size[0]
        if recorded_dir is not None and os.path.abspath(recorded_dir) == os.path.abspath(data_dir):
            val_split = recorded_split
    return {"name": dataset, "data_dir": data_dir, "seed": seed, "image_size": image_size,
            "val_split": val_split}


def load_arrays(name, *, data_dir=None, split="test", seed=0, limit=None, batch_size=500,
                image_size=None, val_split=None):
    """Preprocessed images and labels of one split of a dataset.

    Args:
        name: ``"digits"``, ``"cifar10"``, ``"cifar100"`` (or anything
            :func:`keras_resnet.data.load` takes); None with ``data_dir``.
        data_dir: image folders ``DIR/train/<class>/`` and ``DIR/val/<class>/``
            (or the class folders alone) instead of ``name`` (as
            ``recipes/cifar10.py --data-dir``).
        split: ``"test"`` (evaluation images, evaluation preprocessing) or
            ``"train"`` (training images of epoch 0, with the training augmentation
            except for the digits, which come unaugmented).
        seed: int, the seed of the dataset's split and order: the training run's
            ``--seed`` (the digits' test set depends on it).
        limit: int or None, at most this many examples (the first ones).
        batch_size: int, batch size of the tf.data pipelines.
        image_size: int or None, the input size of image folders (the model's).
        val_split: float or None, the held-out fraction of image folders
            without ``val/`` (the training run's, so that ``"test"`` is the
            images it held out).

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
    folder = {} if data_dir is None else {"image_size": image_size, "val_split": val_split}
    dataset = data_lib.load(name, data_dir=data_dir, seed=seed, **folder)
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
        info["val_split"] = dataset.val_split
    return x, y, info
