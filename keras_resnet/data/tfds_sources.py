"""TensorFlow Datasets sources: CIFAR-10/100 (read into memory) and ImageNet (records).

The loading code is the real one; it is tested offline under
``tfds.testing.mock_data``.
"""

from __future__ import annotations

import os

import numpy as np

from keras_resnet import preprocessing as prep
from keras_resnet.data import plans
from keras_resnet.data.common import DataError, Split
from keras_resnet.data.input_data import InputData, make_input_data

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


def tfds_root(tfds_data_dir=None):
    """The TFDS data directory: ``tfds_data_dir``, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
    root = tfds_data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets")
    return os.path.abspath(os.path.expanduser(os.fspath(root)))


def imagenet_manual_dir(tfds_data_dir=None):
    """Where TFDS expects the ImageNet archives: ``<tfds data dir>/downloads/manual``."""
    return os.path.join(tfds_root(tfds_data_dir), "downloads", "manual")


def _one_line(error):
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


def _builder(name, tfds_data_dir, download_config=None):
    """A prepared TFDS builder (downloads and prepares when needed)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise DataError(f"`name`={name!r} (--dataset) needs tensorflow-datasets: {_one_line(e)}")
    root = tfds_root(tfds_data_dir)
    builder = tfds.builder(name, data_dir=root)
    if not builder.is_prepared():
        try:
            builder.download_and_prepare(download_config=download_config)
        except Exception as e:  # network, disk, corrupt archive: one clear line
            raise DataError(
                f"Could not download and prepare `name`={name!r} (--dataset) with TensorFlow "
                f"Datasets into {root} ({_one_line(e)}); check the network and disk, set "
                f"`tfds_data_dir`/$TFDS_DATA_DIR, or use --dataset digits|synthetic or --data-dir."
            ) from e
    return builder


def _records(builder, split, train):
    """Callable (seed, epoch) -> tf.data.Dataset of (encoded image, label) from TFDS."""
    import tensorflow_datasets as tfds

    def records(seed, epoch):
        if not train or epoch is None:
            return builder.as_dataset(split=split, as_supervised=True, shuffle_files=False,
                                      decoders={"image": tfds.decode.SkipDecoding()})
        mixed = plans.epoch_seed(seed, epoch) % (2**31 - 1)
        config = tfds.ReadConfig(shuffle_seed=mixed, interleave_cycle_length=16,
                                 interleave_block_length=1)
        ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=True,
                                decoders={"image": tfds.decode.SkipDecoding()},
                                read_config=config)
        return ds.shuffle(10_000, seed=mixed, reshuffle_each_iteration=False)

    return records


def _read_all(builder, split):
    """A whole (small) TFDS split as uint8 images and int32 labels, in file order."""
    images, labels = [], []
    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    for x, y in ds.batch(10_000).as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels).astype(np.int32)


def _split_size(builder, split, ds):
    size = int(ds.cardinality())
    return size if size >= 0 else int(builder.info.splits[split].num_examples)


def load_cifar(name, seed, holdout, image_size, tfds_data_dir):
    if image_size not in (None, 32):
        raise DataError(f"Invalid value for argument `image_size`: received {image_size} for "
                        f"{name}; expected 32 (or None).")
    builder = _builder(name, tfds_data_dir)
    train, test = _read_all(builder, "train"), _read_all(builder, "test")
    mean, std = ((prep.CIFAR10_MEAN, prep.CIFAR10_STD) if name == "cifar10"
                 else (prep.CIFAR100_MEAN, prep.CIFAR100_STD))
    spec = prep.make_spec((32, 32), mean, std, resize="stretch")
    names = list(builder.info.features["label"].names)
    if name == "cifar10" and names == [str(i) for i in range(10)]:
        names = list(CIFAR10_CLASSES)  # TFDS without its metadata files knows no names
    return make_input_data(name, "cifar", "cifar", names, spec, train, test, seed, holdout)


def load_imagenet(seed, holdout, image_size, tfds_data_dir):
    import tensorflow_datasets as tfds

    name = "imagenet2012"
    manual = imagenet_manual_dir(tfds_data_dir)
    builder = tfds.builder(name, data_dir=tfds_root(tfds_data_dir))
    if not builder.is_prepared():
        missing = [f for f in IMAGENET_MANUAL_FILES if not os.path.isfile(os.path.join(manual, f))]
        if missing:
            raise DataError(
                f"`name`='imagenet2012' (--dataset) needs the manual download: "
                f"{' and '.join(missing)} (ILSVRC2012, from https://image-net.org/download-images "
                f"after registering) must be in {manual} (TFDS's manual dir; set "
                f"`tfds_data_dir`/$TFDS_DATA_DIR to move it), or use --data-dir DIR with "
                f"train/<class>/ and val/<class>/ image folders.")
        builder = _builder(name, tfds_data_dir, tfds.download.DownloadConfig(manual_dir=manual))
    size = image_size or 224
    spec = prep.make_spec((size, size), prep.IMAGENET_MEAN, prep.IMAGENET_STD,
                          resize="center_crop")
    train_split, test_split = ("train[1%:]", "train[:1%]") if holdout else ("train", "validation")
    train = Split(labels=None, records=_records(builder, train_split, True))
    test = Split(labels=None, records=_records(builder, test_split, False))
    train.size = _split_size(builder, train_split, train.records(seed, 0))
    test.size = _split_size(builder, test_split, test.records(seed, None))
    names = list(builder.info.features["label"].names)
    return InputData(name=name, family="imagenet", num_classes=len(names), class_names=names,
                     preprocessing=spec, train_size=train.size, test_size=test.size, seed=seed,
                     holdout=holdout, augment="imagenet", _train=train, _test=test)
