"""Input data: scikit-learn's bundled digits, TFDS datasets, image folders, synthetic.

Every source holds raw uint8 RGB images (in memory or as files);
:func:`load` wraps one in an :class:`InputData` whose ``train_dataset`` and
``test_dataset`` build ``tf.data`` pipelines that decode, augment and
normalize in parallel. The preprocessing is described by a
:mod:`keras_resnet.preprocessing` spec, the same one that goes into every
export, so serving sees exactly what evaluation saw.

Determinism: the order of the training examples and every random
augmentation are a function of ``(seed, epoch, position in the epoch)``
only (NumPy permutations and TensorFlow *stateless* random ops), so a run
that resumes at epoch ``e`` sees exactly the batches an uninterrupted run
saw.

TensorFlow is imported lazily: ``import keras_resnet.data`` is cheap, the
pipelines need TensorFlow whatever the Keras backend.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from keras_resnet import preprocessing as prep

DATASETS = ("cifar10", "cifar100", "digits", "synthetic", "imagenet2012")
TFDS_DATASETS = ("cifar10", "cifar100", "imagenet2012")
FAMILIES = ("cifar", "imagenet")
DIGITS_CLASSES = [str(i) for i in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
HOLDOUT_FRACTION = 0.1  # CIFAR: 45k/5k
CIFAR_PAD = 4
DIGITS_PAD = 1  # +-1 pixel translations of the 8x8 digits, no flips
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)


class DataError(ValueError):
    """Bad data argument or missing data (a ``ValueError``; recipes exit with code 2)."""


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


# --------------------------------------------------------------------------- sources
@dataclasses.dataclass
class _Split:
    """Examples of one split: uint8 images in memory, or image file paths.

    ``images`` is a uint8 array (N, H, W, 3) for in-memory data, or an array
    of file paths (str); ``records`` is a callable ``(seed, epoch) ->
    tf.data.Dataset`` of ``(encoded image bytes, label)`` for TFDS ImageNet.
    """

    labels: np.ndarray | None
    images: np.ndarray | None = None
    records: object = None
    size: int = 0

    def __post_init__(self):
        if self.labels is not None:
            self.labels = np.asarray(self.labels, np.int32)
            self.size = len(self.labels)

    @property
    def kind(self):
        if self.records is not None:
            return "records"
        return "files" if self.images.dtype.kind in "USO" else "array"


@dataclasses.dataclass
class InputData:
    """A loaded dataset and the tf.data pipelines that feed a network.

    Attributes:
        name: ``"cifar10"``, ``"cifar100"``, ``"digits"``, ``"synthetic"``,
            ``"imagenet2012"`` or ``"folder"``.
        family: ``"cifar"`` (pad-and-crop augmentation) or ``"imagenet"``
            (random-resized-crop, resize-256 centre-crop-224 evaluation).
        num_classes: number of classes.
        class_names: one name per class (folder names for image folders).
        preprocessing: the :mod:`keras_resnet.preprocessing` spec of the
            evaluation / serving input.
        train_size: training examples per epoch.
        test_size: test (or, with ``holdout``, validation) examples.
        skipped_files: undecodable image files skipped (image folders), else 0.
        seed: seed of the split, the shuffling and the augmentation.
        holdout: whether ``test_dataset`` is a held-out part of the training set.
        augment: training augmentation scheme, ``"cifar"`` (pad 4, crop, flip),
            ``"digits"`` (+-1 pixel translation, no flip) or ``"imagenet"``
            (random-resized-crop, flip).
        skipped_paths: the undecodable files that were skipped.
    """

    name: str
    family: str
    num_classes: int
    class_names: list = dataclasses.field(repr=False)
    preprocessing: dict = dataclasses.field(repr=False)
    train_size: int
    test_size: int
    skipped_files: int = 0
    seed: int = 0
    holdout: bool = False
    augment: str = "cifar"
    skipped_paths: list = dataclasses.field(default_factory=list, repr=False)
    _train: _Split = dataclasses.field(default=None, repr=False)
    _test: _Split = dataclasses.field(default=None, repr=False)

    def input_shape(self):
        """The ``(height, width, 3)`` input the network takes."""
        h, w = self.preprocessing["input_size"]
        return (int(h), int(w), 3)

    def steps_per_epoch(self, batch_size):
        """Training batches per epoch (the last partial batch is dropped)."""
        return self.train_size // _check_batch_size(batch_size)

    def train_dataset(self, batch_size, epoch=0, *, num_shards=1, shard_index=0):
        """Shuffled, augmented, normalized training batches of one epoch.

        Yields ``(float32 images (B, H, W, 3), int32 labels (B,))``; the last
        partial batch is dropped. The order and the augmentation depend only
        on ``(seed, epoch)``: calling this twice with the same epoch gives the
        same batches.

        Args:
            batch_size: int, examples per batch (of this shard).
            epoch: int, epoch number (0-based).
            num_shards: int, number of input pipelines (e.g. workers) that
                split each epoch between them.
            shard_index: int, which of them this is: it gets the examples at
                positions ``shard_index, shard_index + num_shards, ...`` of the
                epoch, augmented exactly as without sharding.
        """
        import tensorflow as tf

        batch_size = _check_batch_size(batch_size)
        num_shards = _check_int("num_shards", num_shards, minimum=1)
        shard_index = _check_int("shard_index", shard_index, minimum=0)
        if shard_index >= num_shards:
            raise DataError(f"Invalid value for argument `shard_index`: received {shard_index}; "
                            f"expected 0..{num_shards - 1} (num_shards={num_shards}).")
        if self.train_size // num_shards < batch_size:
            raise DataError(f"Invalid value for argument `batch_size`: received {batch_size}, "
                            f"larger than the {self.train_size} training examples of {self.name!r}"
                            + (f" / {num_shards} shards." if num_shards > 1 else "."))
        epoch_seed = _epoch_seed(self.seed, epoch)
        split = self._train
        if split.kind == "array" and self.augment in ("cifar", "digits"):
            return self._array_train_dataset(batch_size, epoch, num_shards, shard_index)
        if split.kind == "records":
            ds = split.records(self.seed, int(epoch))
        else:
            order = np.random.default_rng([self.seed, int(epoch), 7]).permutation(split.size)
            ds = _slices(split, order)
        ds = ds.enumerate()
        if num_shards > 1:
            ds = ds.shard(num_shards, shard_index)
        augment = self._augment_fn(split.kind, epoch_seed)
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=True, num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=True)
        return _finish(ds)

    def _array_train_dataset(self, batch_size, epoch, num_shards=1, shard_index=0):
        """In-memory pad-and-crop (+ flip) data, augmented a whole batch at a time.

        The per-example crop offsets and flips are drawn for the whole epoch
        from a NumPy generator seeded with ``(seed, epoch)``, so each example's
        augmentation does not depend on the batch size; applying them is a
        pair of gathers per batch instead of a dozen ops per image.
        """
        import tensorflow as tf

        split, spec = self._train, self.preprocessing
        rng = np.random.default_rng([self.seed, int(epoch), 7])
        order = rng.permutation(split.size)
        pad = DIGITS_PAD if self.augment == "digits" else CIFAR_PAD
        offsets = rng.integers(0, 2 * pad + 1, size=(split.size, 2)).astype(np.int32)
        flips = (rng.random(split.size) < 0.5) & (self.augment != "digits")
        if num_shards > 1:
            order, offsets, flips = (a[shard_index::num_shards] for a in (order, offsets, flips))
        h, w = split.images.shape[1:3]

        def augment(images, labels, offset, flip):
            x = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])  # uint8 until the end
            rows = offset[:, :1] + tf.range(h)[None]  # (B, h)
            cols = offset[:, 1:] + tf.range(w)[None]  # (B, w)
            x = tf.gather(x, rows, axis=1, batch_dims=1)
            x = tf.gather(x, cols, axis=2, batch_dims=1)
            x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
            return _normalize(x, spec), labels

        steps = len(order) // batch_size
        used = order[:steps * batch_size]
        arrays = [split.images[used], split.labels[used], offsets[:steps * batch_size],
                  flips[:steps * batch_size]]
        # (steps, batch, ...) slices: one element per batch, no per-image work in tf.data
        arrays = [a.reshape((steps, batch_size) + a.shape[1:]) for a in arrays]
        ds = tf.data.Dataset.from_tensor_slices(tuple(arrays))
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return _finish(ds)

    def test_dataset(self, batch_size):
        """Evaluation batches in a fixed order, the last partial batch kept.

        Yields ``(float32 images, int32 labels)`` preprocessed as
        ``self.preprocessing`` says (ImageNet: resize-256 centre-crop-224).
        """
        import tensorflow as tf

        batch_size = _check_batch_size(batch_size)
        split = self._test
        if split.kind == "records":
            ds = split.records(self.seed, None)
        else:
            ds = _slices(split, np.arange(split.size))
        spec = self.preprocessing
        decode = _decoder(split.kind)

        def evaluate(image, label):
            return _normalize(_eval_resize(decode(image), spec), spec), tf.cast(label, tf.int32)

        ds = ds.map(evaluate, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if split.kind == "array":
            ds = ds.cache()  # small, decoded, deterministic: keep it after the first pass
        ds = ds.batch(batch_size, drop_remainder=False)
        return _finish(ds)

    def raw_test_images(self, n):
        """Up to ``n`` raw uint8 RGB test images at the input size, and their labels.

        For int8 calibration and parity tests: the images are what a user
        would send to an exported model (evaluation resize, no normalization).
        """
        import tensorflow as tf

        n = min(int(n), self.test_size)
        split = self._test
        if split.kind == "array":
            images = split.images[:n]
            if images.shape[1:3] != self.input_shape()[:2]:
                images = [_to_uint8(_eval_resize(tf.cast(im, tf.float32), self.preprocessing))
                          for im in images]
            return np.asarray(images, np.uint8).reshape((-1,) + self.input_shape()), \
                split.labels[:n].copy()
        if split.kind == "records":
            ds = split.records(self.seed, None)
        else:
            ds = _slices(split, np.arange(n))
        decode, spec = _decoder(split.kind), self.preprocessing
        ds = ds.take(n).map(lambda im, y: (_to_uint8(_eval_resize(decode(im), spec)), y))
        images, labels = [], []
        for im, y in ds.as_numpy_iterator():
            images.append(im)
            labels.append(y)
        shape = (0,) + self.input_shape()
        return (np.stack(images) if images else np.zeros(shape, np.uint8),
                np.asarray(labels, np.int32))

    # ----------------------------------------------------------------- internals
    def _augment_fn(self, kind, epoch_seed):
        import tensorflow as tf

        decode, spec, mode = _decoder(kind), self.preprocessing, self.augment
        size = tuple(spec["input_size"])

        def augment(index, example):
            image, label = example
            seed = tf.stack([tf.constant(epoch_seed, tf.int64), tf.cast(index, tf.int64)])
            seeds = tf.random.experimental.stateless_split(seed, 3)
            if mode == "imagenet":
                image = _random_resized_crop(image, size, seeds[0], kind)
            else:
                image = decode(image)
                if kind != "array" or image.shape[0] != size[0] or image.shape[1] != size[1]:
                    image = tf.image.resize(image, size, method="bilinear")
                pad = DIGITS_PAD if mode == "digits" else CIFAR_PAD
                image = _pad_crop(tf.cast(image, tf.float32), size, pad, seeds[0])
            if mode != "digits":
                image = tf.image.stateless_random_flip_left_right(image, seeds[1])
            return _normalize(image, spec), tf.cast(label, tf.int32)

        return augment


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"Invalid value for argument `batch_size`: received {batch_size!r}; "
                        "expected a positive int.")
    return int(batch_size)


def _epoch_seed(seed, epoch):
    """One int64 stream id per (seed, epoch), well mixed."""
    ss = np.random.SeedSequence([int(seed), int(epoch), 11])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _slices(split, order):
    import tensorflow as tf

    images = split.images[order]
    labels = split.labels[order]
    return tf.data.Dataset.from_tensor_slices((images, labels))


def _finish(ds):
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _decoder(kind):
    """Function: stored example -> float32 (H, W, 3) image with values 0..255."""
    import tensorflow as tf

    if kind == "array":
        return lambda image: tf.cast(image, tf.float32)

    def decode(contents_or_path):
        contents = tf.io.read_file(contents_or_path) if kind == "files" else contents_or_path
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return tf.cast(image, tf.float32)

    return decode


def _normalize(image, spec):
    """Pixels 0..255 -> (x * scale - mean) / std, as :func:`preprocessing.normalize`."""
    import tensorflow as tf

    mean = tf.constant(spec["mean"], tf.float32)
    std = tf.constant(spec["std"], tf.float32)
    return (tf.cast(image, tf.float32) * spec["scale"] - mean) / std


def _to_uint8(image):
    import tensorflow as tf

    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _eval_resize(image, spec):
    """Resize one float image (H, W, 3) as ``spec`` says; TensorFlow twin of
    :func:`preprocessing.resize_images` (same rounding, same crop offsets)."""
    import tensorflow as tf

    h, w = spec["input_size"]
    if spec["resize"] == "stretch":
        if image.shape[0] == h and image.shape[1] == w:
            return image
        return tf.image.resize(image, (h, w), method="bilinear")
    frac = spec.get("crop_fraction", 0.875)
    rh, rw = int(round(h / frac)), int(round(w / frac))
    shape = tf.shape(image)
    in_h, in_w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    ratio = tf.maximum(rh / in_h, rw / in_w)
    new_h = tf.cast(tf.round(in_h * ratio), tf.int32)
    new_w = tf.cast(tf.round(in_w * ratio), tf.int32)
    image = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear")
    return tf.image.crop_to_bounding_box(image, (new_h - h) // 2, (new_w - w) // 2, h, w)


def _pad_crop(image, size, pad, seed):
    """Zero-pad ``pad`` pixels on each side, then a random ``size`` crop."""
    import tensorflow as tf

    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    return tf.image.stateless_random_crop(image, (size[0], size[1], 3), seed=seed)


def _random_resized_crop(image, size, seed, kind):
    """Random-resized-crop (area 8%..100%, aspect 3/4..4/3) to ``size``.

    Files and TFDS records are cropped while decoding when they are JPEG
    (``decode_and_crop_jpeg``), the others are decoded first.
    """
    import tensorflow as tf

    if kind == "array":
        shape = tf.shape(image)
        pixels = tf.cast(image, tf.float32)
    else:
        contents = tf.io.read_file(image) if kind == "files" else image
        is_jpeg = tf.io.is_jpeg(contents)
        decoded = tf.cond(is_jpeg, lambda: tf.zeros([1, 1, 3], tf.uint8),
                          lambda: _decode_any(contents))
        shape = tf.cond(is_jpeg, lambda: tf.io.extract_jpeg_shape(contents),
                        lambda: tf.shape(decoded))
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=RRC_RATIO, area_range=RRC_SCALE,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    y, x = begin[0], begin[1]
    ch, cw = crop_size[0], crop_size[1]
    if kind == "array":
        crop = tf.slice(pixels, [y, x, 0], [ch, cw, 3])
    else:
        window = tf.stack([y, x, ch, cw])
        crop = tf.cond(
            is_jpeg,
            lambda: tf.io.decode_and_crop_jpeg(contents, window, channels=3),
            lambda: tf.slice(decoded, [y, x, 0], [ch, cw, 3]))
        crop = tf.cast(crop, tf.float32)
    crop = tf.image.resize(crop, size, method="bilinear")
    crop.set_shape([size[0], size[1], 3])
    return crop


def _decode_any(contents):
    import tensorflow as tf

    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def pipeline_throughput(dataset, batches=20, warmup=2):
    """Images per second a ``tf.data`` pipeline delivers on its own (no model).

    Iterates ``warmup`` batches, then times ``batches`` more; compare with a
    training step's images per second to see whether the input is a
    bottleneck (the training loop also times its own waits on ``next()``).

    Args:
        dataset: a ``tf.data.Dataset`` of ``(images, labels)`` batches.
        batches: int, batches to time.
        warmup: int, batches to skip first (pipeline start-up, caches).

    Returns:
        dict with ``images``, ``seconds``, ``images_per_sec``.
    """
    import time

    iterator = iter(dataset)
    for _ in range(warmup):
        if next(iterator, None) is None:
            break
    images, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            x, _ = next(iterator)
        except StopIteration:
            break
        images += int(x.shape[0])
    seconds = time.perf_counter() - start
    return {"images": images, "seconds": seconds,
            "images_per_sec": images / seconds if seconds > 0 else float("inf")}


# --------------------------------------------------------------------------- loaders
def load(name="cifar10", *, data_dir=None, seed=0, holdout=False, image_size=None,
         synthetic_examples=1024, num_classes=None, tfds_data_dir=None):
    """Load a dataset by name, or image folders, for training and evaluation.

    Args:
        name: str or None, one of :data:`DATASETS`; ignored (may be None or
            ``"folder"``) when ``data_dir`` is given, except that
            ``"digits"`` and ``"synthetic"`` conflict with it.
        data_dir: str or None, a folder with ``train/<class>/`` and
            ``val/<class>/`` image files (JPEG, PNG, BMP, GIF, WebP).
            Undecodable files are skipped and counted; grayscale and RGBA
            images are converted to RGB.
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

    Returns:
        An :class:`InputData`.

    Example:

    >>> data = load("digits")
    >>> data.train_size, data.test_size, data.input_shape(), data.family
    (1437, 360, (8, 8, 3), 'cifar')
    """
    seed = _check_int("seed", seed, minimum=0)
    if image_size is not None:
        image_size = _check_int("image_size", image_size, minimum=8)
    if not isinstance(holdout, bool):
        raise DataError(f"Invalid value for argument `holdout`: received {holdout!r}; expected a bool.")
    if data_dir is not None:
        if name in ("digits", "synthetic"):
            raise DataError(f"Conflicting arguments: `name`={name!r} (--dataset) with `data_dir`="
                            f"{str(data_dir)!r} (--data-dir); pass one of them.")
        return _load_folder(data_dir, seed=seed, holdout=holdout, image_size=image_size)
    if name not in DATASETS:
        raise DataError(f"Invalid value for argument `name` (--dataset): received {name!r}; "
                        f"expected one of {', '.join(DATASETS)} (or `data_dir` / --data-dir).")
    if name == "digits":
        return _load_digits(seed=seed, holdout=holdout, image_size=image_size)
    if name == "synthetic":
        return _load_synthetic(seed=seed, holdout=holdout, image_size=image_size,
                               examples=synthetic_examples, num_classes=num_classes)
    if name in ("cifar10", "cifar100"):
        return _load_tfds_cifar(name, seed=seed, holdout=holdout, image_size=image_size,
                                tfds_data_dir=tfds_data_dir)
    return _load_tfds_imagenet(seed=seed, holdout=holdout, image_size=image_size,
                               tfds_data_dir=tfds_data_dir)


def _check_int(arg, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"Invalid value for argument `{arg}`: received {value!r}; "
                        f"expected an int >= {minimum}.")
    return int(value)


def _holdout_split(images, labels, seed):
    """(train, held-out) index arrays: a fixed 10% of the training set."""
    order = np.random.default_rng([seed, 5]).permutation(len(labels))
    n_out = int(round(len(labels) * HOLDOUT_FRACTION))
    return np.sort(order[n_out:]), np.sort(order[:n_out])


def _array_data(name, family, augment, class_names, spec, train, test, seed, holdout):
    (x, y), (xt, yt) = train, test
    if holdout:
        keep, out = _holdout_split(x, y, seed)
        (x, y), (xt, yt) = (x[keep], y[keep]), (x[out], y[out])
    return InputData(name=name, family=family, num_classes=len(class_names),
                     class_names=list(class_names), preprocessing=spec, train_size=len(y),
                     test_size=len(yt), seed=seed, holdout=holdout, augment=augment,
                     _train=_Split(labels=y, images=np.ascontiguousarray(x)),
                     _test=_Split(labels=yt, images=np.ascontiguousarray(xt)))


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
    return _array_data("digits", "cifar", "digits", DIGITS_CLASSES, spec, train, test,
                       seed, holdout)


def _load_synthetic(seed, holdout, image_size, examples, num_classes):
    size = image_size or 32
    family = "imagenet" if size >= 64 else "cifar"
    if num_classes is None:
        num_classes = 1000 if family == "imagenet" else 10
    num_classes = _check_int("num_classes", num_classes, minimum=2)
    examples = _check_int("synthetic_examples", examples, minimum=1)
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
    return _array_data("synthetic", family, family, names, spec, train, test, seed, holdout)


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


def _tfds_builder(name, tfds_data_dir, download_config=None):
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


def _tfds_records(builder, split, train):
    """Callable (seed, epoch) -> tf.data.Dataset of (encoded image, label) from TFDS."""
    import tensorflow_datasets as tfds

    def records(seed, epoch):
        if not train or epoch is None:
            return builder.as_dataset(split=split, as_supervised=True, shuffle_files=False,
                                      decoders={"image": tfds.decode.SkipDecoding()})
        mixed = _epoch_seed(seed, epoch) % (2**31 - 1)
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


def _load_tfds_cifar(name, seed, holdout, image_size, tfds_data_dir):
    if image_size not in (None, 32):
        raise DataError(f"Invalid value for argument `image_size`: received {image_size} for "
                        f"{name}; expected 32 (or None).")
    builder = _tfds_builder(name, tfds_data_dir)
    train, test = _read_all(builder, "train"), _read_all(builder, "test")
    mean, std = ((prep.CIFAR10_MEAN, prep.CIFAR10_STD) if name == "cifar10"
                 else (prep.CIFAR100_MEAN, prep.CIFAR100_STD))
    spec = prep.make_spec((32, 32), mean, std, resize="stretch")
    names = list(builder.info.features["label"].names)
    if name == "cifar10" and names == [str(i) for i in range(10)]:
        names = list(CIFAR10_CLASSES)  # TFDS without its metadata files knows no names
    return _array_data(name, "cifar", "cifar", names, spec, train, test, seed, holdout)


def _load_tfds_imagenet(seed, holdout, image_size, tfds_data_dir):
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
        builder = _tfds_builder(name, tfds_data_dir,
                                tfds.download.DownloadConfig(manual_dir=manual))
    size = image_size or 224
    spec = prep.make_spec((size, size), prep.IMAGENET_MEAN, prep.IMAGENET_STD,
                          resize="center_crop")
    train_split, test_split = ("train[1%:]", "train[:1%]") if holdout else ("train", "validation")
    train = _Split(labels=None, records=_tfds_records(builder, train_split, True))
    test = _Split(labels=None, records=_tfds_records(builder, test_split, False))
    train.size = _split_size(builder, train_split, train.records(seed, 0))
    test.size = _split_size(builder, test_split, test.records(seed, None))
    names = list(builder.info.features["label"].names)
    return InputData(name=name, family="imagenet", num_classes=len(names), class_names=names,
                     preprocessing=spec, train_size=train.size, test_size=test.size, seed=seed,
                     holdout=holdout, augment="imagenet", _train=train, _test=test)


def _folder_error(data_dir, problem):
    return DataError(f"Invalid value for argument `data_dir` (--data-dir): received {str(data_dir)!r}, "
                     f"{problem}; expected a folder with train/<class>/ and val/<class>/ image "
                     f"files ({', '.join(IMAGE_EXTENSIONS)}).")


def _list_images(folder):
    """Sorted image files (by extension, case-insensitive) under ``folder``, recursively."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files)
                     if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS))
    return found


def _class_folders(split_dir):
    return sorted(e.name for e in os.scandir(split_dir)
                  if e.is_dir() and not e.name.startswith("."))


def cache_dir():
    """Where folder scans are cached: ``$KERAS_RESNET_CACHE`` or ``~/.cache/keras_resnet``."""
    return os.environ.get("KERAS_RESNET_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "keras_resnet"))


def _scan_key(paths):
    import hashlib

    digest = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        digest.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def find_undecodable(paths):
    """The subset of ``paths`` that TensorFlow cannot decode as images.

    Every file is read and fully decoded once, in parallel, by the decoder the
    pipelines use (``tf.io.decode_image``, 3 channels); truncated JPEGs,
    text files named ``.jpg``, empty files and unsupported formats fail. The
    answer is cached in :func:`cache_dir` under a key made of the paths,
    sizes and modification times, so a second load of the same folder does
    not decode it again.

    Args:
        paths: list of str, image file paths.

    Returns:
        list of str, the undecodable paths, in the order given.
    """
    import json

    paths = [str(p) for p in paths]
    if not paths:
        return []
    cache_file = os.path.join(cache_dir(), "folder_scans", _scan_key(paths) + ".json")
    try:
        with open(cache_file) as f:
            return [paths[i] for i in json.load(f)["undecodable_indices"]]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass
    bad = _decode_pass(paths)
    try:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        tmp = f"{cache_file}.{os.getpid()}.tmp"
        index = {p: i for i, p in enumerate(paths)}
        with open(tmp, "w") as f:
            json.dump({"files": len(paths), "undecodable_indices": [index[p] for p in bad],
                       "undecodable": bad}, f)
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only home only costs a new scan next time
    return bad


def _decode_pass(paths):
    import tensorflow as tf

    def try_decode(index, path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return index, tf.reduce_min(tf.shape(image)[:2])

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), np.asarray(paths)))
    ds = ds.map(try_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.ignore_errors()
    good = {int(i) for i, side in ds.as_numpy_iterator() if side > 0}
    return [p for i, p in enumerate(paths) if i not in good]


def _load_folder(data_dir, seed, holdout, image_size):
    import logging

    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise _folder_error(data_dir, "not an existing directory")
    for sub in ("train", "val"):
        if not os.path.isdir(os.path.join(data_dir, sub)):
            raise _folder_error(data_dir, f"it has no {sub}/ sub-folder")
    class_names = _class_folders(os.path.join(data_dir, "train"))
    if not class_names:
        raise _folder_error(data_dir, "train/ has no class folders")
    extra = sorted(set(_class_folders(os.path.join(data_dir, "val"))) - set(class_names))
    if extra:
        raise _folder_error(data_dir, f"val/ has classes not in train/: {extra[:5]}")
    splits, skipped = {}, []
    for sub in ("train", "val"):
        paths, labels = [], []
        for label, cls in enumerate(class_names):
            files = _list_images(os.path.join(data_dir, sub, cls))
            paths += files
            labels += [label] * len(files)
        if not paths:
            raise _folder_error(data_dir, f"{sub}/ has no image files")
        bad = set(find_undecodable(paths))
        if bad:
            skipped += [p for p in paths if p in bad]
            kept = [i for i, p in enumerate(paths) if p not in bad]
            paths, labels = [paths[i] for i in kept], [labels[i] for i in kept]
        if not paths:
            raise _folder_error(data_dir, f"none of the image files in {sub}/ can be decoded")
        splits[sub] = (np.asarray(paths, dtype=object).astype(str), np.asarray(labels, np.int32))
    if skipped:
        logging.getLogger(__name__).warning(
            "Skipped %d undecodable image file(s) in %s, e.g. %s", len(skipped), data_dir,
            skipped[0])
    size = image_size or 224
    family = "imagenet" if size >= 64 else "cifar"
    spec = prep.make_spec((size, size), prep.IMAGENET_MEAN, prep.IMAGENET_STD,
                          resize="center_crop" if family == "imagenet" else "stretch")
    result = _array_data("folder", family, family, class_names, spec, splits["train"],
                         splits["val"], seed, holdout)
    result.skipped_files, result.skipped_paths = len(skipped), skipped
    return result


# --------------------------------------------------------------------------- command line
def main(argv=None):
    """``python -m keras_resnet.data``: load a dataset, print a summary and the input speed."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m keras_resnet.data",
        description="Load a dataset as the recipes do; print its summary and how fast the "
                    "input pipeline alone delivers training batches.")
    parser.add_argument("--dataset", default=None,
                        help=f"one of {', '.join(DATASETS)} (default: digits, or the image "
                             "folders of --data-dir)")
    parser.add_argument("--data-dir", default=None,
                        help="image folders DIR/train/<class>/ and DIR/val/<class>/ (default: none)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="square input size (default: the dataset's)")
    parser.add_argument("--holdout", action="store_true",
                        help="evaluate on 10%% held out of the training set (default: off)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    parser.add_argument("--batches", type=int, default=20,
                        help="batches to time, 0 to skip timing (default: 20)")
    parser.add_argument("--synthetic-examples", type=int, default=1024,
                        help="training examples of --dataset synthetic (default: 1024)")
    args = parser.parse_args(argv)
    try:
        name = args.dataset or (None if args.data_dir else "digits")
        data = load(name, data_dir=args.data_dir, seed=args.seed, holdout=args.holdout,
                    image_size=args.image_size, synthetic_examples=args.synthetic_examples)
        summary = {"name": data.name, "family": data.family, "num_classes": data.num_classes,
                   "class_names": data.class_names[:5] + (["..."] if data.num_classes > 5 else []),
                   "input_shape": list(data.input_shape()), "train_size": data.train_size,
                   "test_size": data.test_size, "skipped_files": data.skipped_files,
                   "preprocessing": data.preprocessing}
        print(json.dumps(summary))
        if args.batches > 0:
            steps = data.steps_per_epoch(args.batch_size)
            warmup = min(2, steps - 1)
            speed = pipeline_throughput(data.train_dataset(args.batch_size, epoch=0),
                                        batches=min(args.batches, steps - warmup), warmup=warmup)
            print(f"train pipeline: {speed['images']} images in {speed['seconds']:.2f} s = "
                  f"{speed['images_per_sec']:.0f} images/s (batch {args.batch_size})")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
