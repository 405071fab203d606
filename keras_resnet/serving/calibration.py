"""Representative images for int8 quantization: what the calibration sees, from where.

One name throughout the package: ``representative_images`` (raw uint8 RGB
images at the input size when the preprocessing is inside the model, the
model's own input otherwise).
"""

from __future__ import annotations

import json
import os

import numpy as np

MAX_CALIBRATION_IMAGES = 500   # at most this many images are used by one conversion
CALIBRATION_IMAGES = 200       # what the command line reads from a folder or a dataset


def representative(images, limit=MAX_CALIBRATION_IMAGES):
    """Normalise ``representative_images`` to a list of single-image arrays ``(1, H, W, C)``.

    Accepts an array ``(N, H, W, C)``, one image ``(H, W, C)``, an iterable of
    such batches (or of ``(images, labels)`` tuples) or a callable returning one.
    """
    if images is None:
        return None
    if callable(images):
        images = images()
    out = []
    for batch in images:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        batch = np.asarray(batch)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4:
            raise ValueError("Invalid value for argument `representative_images`: expected "
                             "images of shape (N, H, W, C) or (H, W, C); received an array of "
                             f"shape {batch.shape}.")
        out.extend(batch[i:i + 1] for i in range(len(batch)))
        if len(out) >= limit:
            break
    if not out:
        raise ValueError("Invalid value for argument `representative_images`: it holds no "
                         "images.")
    return out[:limit]


def calibration_from_dir(directory, preprocessing, limit=CALIBRATION_IMAGES):
    """Raw uint8 RGB images at the input size from the image files under ``directory``.

    Files are taken in sorted order (recursively) and read with
    :func:`keras_resnet.preprocessing.load_image` (the reader the training
    pipelines and ``recipes/predict.py`` use, then the spec's resize rounded to
    uint8: what the TFLite model takes); undecodable ones are skipped.
    """
    from keras_resnet import preprocessing as prep

    if not os.path.isdir(directory):
        raise ValueError(f"Invalid value for argument `calibration_dir`: {directory!r} is not a "
                         "directory.")
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(directory) for f in fs
                   if f.lower().endswith(prep.IMAGE_EXTENSIONS))
    images = []
    for path in files:
        try:
            images.append(prep.load_image(path, preprocessing))
        except prep.ImageError:
            continue
        if len(images) >= limit:
            break
    if not images:
        raise ValueError(f"Invalid value for argument `calibration_dir`: no readable image "
                         f"files ({', '.join(prep.IMAGE_EXTENSIONS)}) under {directory!r}.")
    return np.stack(images)


def calibration_from_dataset(name, limit=CALIBRATION_IMAGES):
    """Up to ``limit`` raw uint8 test images of a :mod:`keras_resnet.data` dataset."""
    from keras_resnet import data

    images, _ = data.load(name).raw_test_images(limit)
    return images


def recorded_data_dir(metadata):
    """The image folder a run trained on, from an export's metadata; None if unknown.

    The trainer's export records the data it trained on (``metadata["data"]``,
    :meth:`keras_resnet.data.InputData.describe`); older exports only name their
    run directory, whose ``config.json`` holds the ``--data-dir`` flag.
    """
    recorded = (metadata.get("data") or {}).get("data_dir")
    if recorded:
        return recorded
    run_dir = metadata.get("run_dir")
    if not run_dir:
        return None
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return (config.get("flags") or {}).get("data_dir") or \
        (config.get("dataset") or {}).get("data_dir")


def calibration_for(metadata, calibration_dir=None):
    """The int8 representative images for a model exported with ``metadata``.

    In order: the image files under ``calibration_dir``; for an image-folder
    model, the folder its run trained on (``val/`` when it has one, else
    ``train/``); otherwise the test images of the dataset the metadata names.
    """
    spec = metadata["preprocessing"]
    if calibration_dir is not None:
        return calibration_from_dir(calibration_dir, spec)
    dataset = metadata.get("dataset")
    if isinstance(dataset, dict):
        dataset = dataset.get("name")
    if dataset == "folder":
        folder = recorded_data_dir(metadata)
        if folder is None or not os.path.isdir(folder):
            raise ValueError("Argument `calibration_dir` is needed for int8: the model was "
                             "trained on an image folder that its metadata does not record "
                             f"or that no longer exists ({folder!r}).")
        for split in ("val", "train"):
            if os.path.isdir(os.path.join(folder, split)):
                return calibration_from_dir(os.path.join(folder, split), spec)
        return calibration_from_dir(folder, spec)
    if dataset is None:
        raise ValueError("Argument `calibration_dir` is needed for int8: the model's "
                         f"metadata names no loadable dataset (dataset={dataset!r}).")
    return calibration_from_dataset(dataset)
