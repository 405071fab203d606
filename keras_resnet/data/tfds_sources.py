"""TensorFlow Datasets sources: CIFAR-10/100 (read into memory) and ImageNet (records).

The loading code is the real one; it is tested offline under
``tfds.testing.mock_data``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.parse

import numpy as np

from keras_resnet import preprocessing as prep
from keras_resnet.data import plans
from keras_resnet.data.common import DataError, Split
from keras_resnet.data.input_data import InputData, make_input_data

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
# TFDS first looks for a prepared copy on Google Cloud Storage, then downloads from the source.
TFDS_GCS_HOST = "storage.googleapis.com"
REACH_TIMEOUT_S = 3.0


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


def reachable(hosts, port=443, timeout=REACH_TIMEOUT_S):
    """The hosts among ``hosts`` that open a TCP connection on ``port`` within ``timeout`` s.

    All hosts are tried at once, each in a daemon thread, so that neither a
    silent DNS server nor several hosts stretch the wait past ``timeout``
    (``socket.create_connection`` bounds the connect, not the name lookup).
    """
    answered = set()

    def connect(host):
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answered.add(host)
        except OSError:
            pass

    threads = [threading.Thread(target=connect, args=(h,), daemon=True) for h in hosts]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return set(answered)


def _downloaded(builder, root, url):
    """Whether TFDS's download cache under ``root`` already holds ``url`` (checksum known)."""
    from etils import epath
    from tensorflow_datasets.core.download import resource as resource_lib

    info = builder.url_infos.get(url)
    if info is None:
        return False
    fname = resource_lib.get_dl_fname(url, info.checksum)
    downloads = os.path.join(root, "downloads")
    return any(resource_lib.is_locally_cached(epath.Path(folder) / fname)
               for folder in (os.path.join(downloads, builder.name), downloads))


def offline_reason(builder, root, timeout=REACH_TIMEOUT_S):
    """Why TFDS cannot fetch ``builder``'s data now, in a few words; None when it can.

    TFDS retries an unreachable host for minutes before it gives up; this
    answers within ``timeout`` seconds. The data can be fetched when every
    archive is in the download cache, or the source hosts or TFDS's Cloud
    Storage copy answer.
    """
    urls = sorted(builder.url_infos or {})
    if not urls or all(_downloaded(builder, root, url) for url in urls):
        return None
    hosts = sorted({urllib.parse.urlsplit(url).hostname for url in urls})
    answered = reachable(hosts + [TFDS_GCS_HOST], timeout=timeout)
    if TFDS_GCS_HOST in answered or answered.issuperset(hosts):
        return None
    return (f"offline: {', '.join(hosts)} and {TFDS_GCS_HOST} not reachable within "
            f"{timeout:g} s, and {os.path.join(root, 'downloads')} holds no download of it")


def _not_fetched(name, root, reason):
    return DataError(
        f"Could not download and prepare `name`={name!r} (--dataset) with TensorFlow Datasets "
        f"into {root} ({reason}); check the network and disk, set `tfds_data_dir`/"
        f"$TFDS_DATA_DIR, or use --dataset digits|synthetic or --data-dir.")


def _builder(name, tfds_data_dir, download_config=None, check_network=True):
    """A prepared TFDS builder (downloads and prepares when needed)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise DataError(f"`name`={name!r} (--dataset) needs tensorflow-datasets: {_one_line(e)}")
    root = tfds_root(tfds_data_dir)
    builder = tfds.builder(name, data_dir=root)
    if not builder.is_prepared():
        # tfds.testing.mock_data places the builder in its own folder and fakes the
        # download: there is nothing to fetch then.
        fetches = check_network and os.path.abspath(builder.data_dir).startswith(root + os.sep)
        reason = offline_reason(builder, root) if fetches else None
        if reason is not None:
            raise _not_fetched(name, root, reason)
        try:
            builder.download_and_prepare(download_config=download_config)
        except Exception as e:  # network, disk, corrupt archive: one clear line
            raise _not_fetched(name, root, _one_line(e)) from e
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
        # Prepared from the manual archives: no network needed.
        builder = _builder(name, tfds_data_dir, tfds.download.DownloadConfig(manual_dir=manual),
                           check_network=False)
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
