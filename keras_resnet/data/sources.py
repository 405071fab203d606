"""``load``: a dataset by name (digits, synthetic, TFDS) or image folders, as an ``InputData``."""

from __future__ import annotations

import os

import numpy as np

from keras_resnet import preprocessing as prep
from keras_resnet.data import folders, tfds_sources
from keras_resnet.data.common import DATASETS, DataError, check_int
from keras_resnet.data.input_data import make_input_data

DIGITS_CLASSES = [str(i) for i in range(10)]


def load(name="cifar10", *, data_dir=None, seed=0, holdout=False, image_size=None,
         synthetic_examples=1024, num_classes=None, tfds_data_dir=None, val_split=None):
    """Load a dataset by name, or image folders, for training and evaluation.

    Args:
        name: str or None, one of :data:`DATASETS`; ignored (may be None or
            ``"folder"``) when ``data_dir`` is given, except that
            ``"digits"`` and ``"synthetic"`` conflict with it.
        data_dir: str or None, a folder with ``train/<class>/`` and
            ``val/<class>/`` image files (JPEG, PNG, BMP, GIF, WebP, TIFF, at
            any depth below the class folder), read with
            :func:`keras_resnet.preprocessing.read_image` when the pipeline
            reaches them; undecodable files are skipped and counted then.
            Without ``val/`` (``train/<class>/`` alone, or the class folders
            directly in ``data_dir``), ``val_split`` of each class is held out
            for validation.
        seed: int, seed of the split, the shuffling and the augmentation.
        holdout: bool, hold out 10% of the training set (CIFAR: 45k/5k) and
            evaluate on it instead of the test set.
        image_size: int or None, the square input size: 32 for CIFAR, 8 for
            the digits, 224 for ImageNet, image folders and synthetic data
            default to 224 and 32. Below 64 the CIFAR augmentation is used,
            otherwise the ImageNet one.
        synthetic_examples: int, training examples of ``"synthetic"`` (the
            test set has a quarter as many).
        num_classes: int or None, classes of ``"synthetic"`` (default 10, or
            1000 at ImageNet sizes).
        tfds_data_dir: str or None, TFDS data directory (default: TFDS's,
            ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
        val_split: float in (0, 1) or None, the fraction of each class of a
            ``data_dir`` without ``val/`` held out for validation (None: 0.1;
            seeded by ``seed``, see :func:`keras_resnet.data.folders.split_by_class`).
            Only for such a folder.

    Returns:
        An :class:`~keras_resnet.data.InputData`. The digits and synthetic data
        load without TensorFlow.

    Example:

    >>> data = load("digits")
    >>> data.train_size, data.test_size, data.input_shape(), data.family
    (1437, 360, (8, 8, 3), 'cifar')
    """
    seed = check_int("seed", seed, minimum=0)
    if image_size is not None:
        image_size = check_int("image_size", image_size, minimum=8)
    if not isinstance(holdout, bool):
        raise DataError(f"Invalid value for argument `holdout`: received {holdout!r}; expected a bool.")
    if data_dir is not None:
        if name in ("digits", "synthetic"):
            raise DataError(f"Conflicting arguments: `name`={name!r} (--dataset) with `data_dir`="
                            f"{str(data_dir)!r} (--data-dir); pass one of them.")
        return _load_folder(data_dir, seed=seed, holdout=holdout, image_size=image_size,
                            val_split=val_split)
    if val_split is not None:
        raise DataError(f"Invalid value for argument `val_split` (--val-split): received "
                        f"{val_split!r} for `name`={name!r}; it applies to `data_dir` "
                        f"(--data-dir) without val/.")
    if name not in DATASETS:
        raise DataError(f"Invalid value for argument `name` (--dataset): received {name!r}; "
                        f"expected one of {', '.join(DATASETS)} (or `data_dir` / --data-dir).")
    if name == "digits":
        return _load_digits(seed=seed, holdout=holdout, image_size=image_size)
    if name == "synthetic":
        return _load_synthetic(seed=seed, holdout=holdout, image_size=image_size,
                               examples=synthetic_examples, num_classes=num_classes)
    if name in ("cifar10", "cifar100"):
        return tfds_sources.load_cifar(name, seed=seed, holdout=holdout, image_size=image_size,
                                       tfds_data_dir=tfds_data_dir)
    return tfds_sources.load_imagenet(seed=seed, holdout=holdout, image_size=image_size,
                                      tfds_data_dir=tfds_data_dir)


def load_digits(seed=0, test_fraction=0.2):
    """scikit-learn's 1,797 handwritten digits as uint8 RGB 8x8 images.

    Returns ``(x_train, y_train), (x_test, y_test)`` with a fixed, stratified
    split (``seed``). Pixel values 0..16 are scaled to 0..255 and the gray
    channel is repeated three times.

    Example:

    >>> (x, y), (xt, yt) = load_digits(seed=0)
    >>> x.shape, x.dtype, xt.shape
    ((1437, 8, 8, 3), dtype('uint8'), (360, 8, 8, 3))
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    digits = sk_load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(images[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels)
    return (x_train, y_train), (x_test, y_test)


def _channel_stats(images):
    x = images.reshape(-1, 3).astype(np.float64) / 255.0
    return tuple(np.round(x.mean(0), 4)), tuple(np.round(x.std(0), 4))


def _load_digits(seed, holdout, image_size):
    if image_size not in (None, 8):
        raise DataError(f"Invalid value for argument `image_size`: received {image_size} for "
                        "the digits; expected 8 (or None).")
    train, test = load_digits(seed=seed)
    mean, std = _channel_stats(train[0])
    spec = prep.make_spec((8, 8), mean, std, resize="stretch")
    return make_input_data("digits", "cifar", "digits", DIGITS_CLASSES, spec, train, test,
                           seed, holdout)


def _load_synthetic(seed, holdout, image_size, examples, num_classes):
    size = image_size or 32
    family = "imagenet" if size >= 64 else "cifar"
    if num_classes is None:
        num_classes = 1000 if family == "imagenet" else 10
    num_classes = check_int("num_classes", num_classes, minimum=2)
    examples = check_int("synthetic_examples", examples, minimum=1)
    rng = np.random.default_rng([seed, 3])
    n_test = max(1, examples // 4)
    images = rng.integers(0, 256, size=(examples + n_test, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=examples + n_test).astype(np.int32)
    if family == "imagenet":
        spec = prep.make_spec((size, size), prep.IMAGENET_MEAN, prep.IMAGENET_STD,
                              resize="center_crop")
    else:
        spec = prep.make_spec((size, size), prep.CIFAR10_MEAN, prep.CIFAR10_STD)
    names = [f"class_{i}" for i in range(num_classes)]
    train = (images[:examples], labels[:examples])
    test = (images[examples:], labels[examples:])
    return make_input_data("synthetic", family, family, names, spec, train, test, seed, holdout)


def _load_folder(data_dir, seed, holdout, image_size, val_split):
    f = folders.load_folder(data_dir, image_size, val_split=val_split, seed=seed)
    return make_input_data("folder", f.family, f.family, f.class_names, f.spec,
                           (f.train.images, f.train.labels), (f.val.images, f.val.labels), seed,
                           holdout, skips=f.skips, data_dir=os.path.abspath(data_dir),
                           val_split=f.val_split)
