"""The ``tf.data`` pipelines of an :class:`~keras_resnet.data.input_data.InputData`.

Training input is one dataset over many epochs (:func:`train_epochs`), each
epoch exactly ``steps`` batches, built once per process:

* in-memory images with pad-and-crop (CIFAR, the digits): one element per
  batch; a ``tf.numpy_function`` gathers the batch's uint8 images and its
  :mod:`~keras_resnet.data.plans` offsets and flips, TensorFlow pads, crops,
  flips and normalises the batch;
* image files, and in-memory images with random-resized-crop: one element per
  example; a ``tf.numpy_function`` decodes the file with
  :func:`keras_resnet.preprocessing.read_image` (Pillow releases the GIL while
  decoding, so the parallel map decodes on every core) and cuts the crop,
  TensorFlow resizes, flips and normalises it. A file that does not decode is
  recorded in the dataset's skip record and filtered out, and the epoch takes
  the next example of its stream instead (a further pass over the files), so
  that every epoch still has ``steps`` batches;
* TFDS records (ImageNet): TFDS reads and shuffles each epoch's files; the
  records are then decoded like files.

``tf.numpy_function`` keeps one decoder for training and serving (Pillow) and
one source of randomness for the TensorFlow and NumPy pipelines (NumPy).
"""

from __future__ import annotations

import numpy as np

from keras_resnet import preprocessing as prep
from keras_resnet.data import plans
from keras_resnet.data.common import CIFAR_PAD, DIGITS_PAD, DataError

FOREVER = 2**62


def finish(ds):
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def normalize(image, spec):
    """Pixels 0..255 -> (x * scale - mean) / std, as the serving graphs' ``normalize``."""
    import tensorflow as tf

    mean = tf.constant(spec["mean"], tf.float32)
    std = tf.constant(spec["std"], tf.float32)
    return (tf.cast(image, tf.float32) * spec["scale"] - mean) / std


def eval_resize(image, spec):
    """Resize one float image (H, W, 3) as ``spec`` says; TensorFlow twin of
    :func:`keras_resnet.serving.preprocessing.resize_images` (same rounding, same crop offsets)."""
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


# ----------------------------------------------------------------------------- training


def train_epochs(data, batch_size, start_epoch, steps, end_epoch, num_shards, shard_index):
    """Epochs ``start_epoch, start_epoch + 1, ...`` (to ``end_epoch``, excluded, or forever)."""
    import tensorflow as tf

    split = data.train_split
    end = FOREVER if end_epoch is None else int(end_epoch)
    if split.kind == "array" and data.augment in ("cifar", "digits"):
        ds = _array_batches(data, batch_size, start_epoch, steps, end, num_shards, shard_index)
    elif split.kind == "records":
        if end_epoch is None:
            raise DataError("Argument `end_epoch` is required for TFDS ImageNet (each epoch's "
                            "file shuffle is built ahead); received None.")
        ds = None
        for epoch in range(int(start_epoch), end):
            one = _record_epoch(data, epoch, batch_size, steps, num_shards, shard_index)
            ds = one if ds is None else ds.concatenate(one)
    else:
        fetch = _example_fetcher(data, num_shards, shard_index)

        def epoch_dataset(epoch):
            last = FOREVER if split.kind == "files" else split.size
            positions = tf.data.Dataset.range(shard_index, last, num_shards)
            return _examples_to_batches(data, positions.map(lambda p: (epoch, p)), fetch,
                                        batch_size, steps)

        ds = tf.data.Dataset.range(int(start_epoch), end).flat_map(epoch_dataset)
    return finish(ds)


def _array_batches(data, batch_size, start_epoch, steps, end, num_shards, shard_index):
    """In-memory pad-and-crop data, augmented a whole batch at a time."""
    import tensorflow as tf

    split, spec, augment = data.train_split, data.preprocessing, data.augment
    orders = plans.EpochOrders(data.seed, split.size)
    pad = DIGITS_PAD if augment == "digits" else CIFAR_PAD
    h, w = split.images.shape[1:3]
    within = np.arange(batch_size)

    def fetch(epoch, step):   # NumPy: the batch's images, labels, offsets and flips
        positions = shard_index + num_shards * (int(step) * batch_size + within)
        index = orders.indices(epoch, positions)
        u = plans.position_uniforms(data.seed, epoch, positions)
        offsets, flips = plans.pad_crop_params(u, augment)
        return split.images[index], split.labels[index], offsets, flips

    def batch(g):
        images, labels, offset, flip = tf.numpy_function(
            fetch, [g // steps, g % steps], [tf.uint8, tf.int32, tf.int32, tf.bool],
            stateful=False)
        x = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])  # uint8 until the end
        x = tf.gather(x, offset[:, :1] + tf.range(h)[None], axis=1, batch_dims=1)
        x = tf.gather(x, offset[:, 1:] + tf.range(w)[None], axis=2, batch_dims=1)
        x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
        x = tf.ensure_shape(normalize(x, spec), (batch_size, h, w, 3))
        return x, tf.ensure_shape(labels, (batch_size,))

    ds = tf.data.Dataset.range(int(start_epoch) * steps, end * steps if end < FOREVER else end)
    return ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _example_fetcher(data, num_shards, shard_index):
    """NumPy: ``(epoch, position) -> (uint8 image or crop, label, ok, flip, offsets)``."""
    split, augment = data.train_split, data.augment
    orders = plans.EpochOrders(data.seed, split.size)

    def fetch(epoch, position):
        index = int(orders.indices(epoch, [position])[0])
        source = split.images[index]
        image = read_or_none(source, data.skip_record) if split.kind == "files" else source
        return augment_params(image, split.labels[index], data.seed, epoch, position, augment)

    return fetch


def read_or_none(path, skips, name=None):
    """Pillow-decoded pixels of a file (or record bytes), or None after recording why not."""
    if not isinstance(path, bytes) and path in skips:
        return None
    try:
        return prep.read_image(path)
    except prep.ImageError as e:
        skips.add(name or path, e.reason)
        return None


def augment_params(image, label, seed, epoch, position, augment):
    """The example at ``position`` of ``epoch``: its crop (random-resized-crop) or image,
    label, whether it decoded, its flip and its pad-and-crop offsets."""
    u = plans.uniforms(seed, epoch, position, 1)
    if image is None:
        return (np.zeros((1, 1, 3), np.uint8), np.int32(label), False, False,
                np.zeros(2, np.int32))
    if augment == "imagenet":
        top, left, h, w = plans.rrc_boxes(image.shape[0], image.shape[1], u)[0]
        crop = np.ascontiguousarray(image[top:top + h, left:left + w])
        return crop, np.int32(label), True, bool(plans.flips(u)[0]), np.zeros(2, np.int32)
    offsets, flips = plans.pad_crop_params(u, augment)
    return image, np.int32(label), True, bool(flips[0]), offsets[0]


def _examples_to_batches(data, examples, fetch, batch_size, steps):
    """``(epoch, position)`` (or ``(epoch, position, record)``) elements -> ``steps`` batches."""
    import tensorflow as tf

    spec, augment = data.preprocessing, data.augment
    size = tuple(spec["input_size"])
    pad = DIGITS_PAD if augment == "digits" else CIFAR_PAD

    def example(*args):
        image, label, ok, flip, offset = tf.numpy_function(
            fetch, list(args), [tf.uint8, tf.int32, tf.bool, tf.bool, tf.int32], stateful=False)
        image.set_shape([None, None, 3])
        x = tf.cast(image, tf.float32)
        if augment == "imagenet":
            x = tf.image.resize(x, size, method="bilinear")
        else:
            x = tf.cond(tf.reduce_all(tf.equal(tf.shape(x)[:2], size)), lambda: x,
                        lambda: tf.image.resize(x, size, method="bilinear"))
            x = tf.pad(x, [[pad, pad], [pad, pad], [0, 0]])
            x = tf.slice(x, [offset[0], offset[1], 0], [size[0], size[1], 3])
        x = tf.cond(flip, lambda: tf.reverse(x, axis=[1]), lambda: x)
        x = tf.ensure_shape(normalize(x, spec), size + (3,))
        return x, tf.ensure_shape(label, ()), ok

    ds = examples.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _drop_failed(ds).batch(batch_size, drop_remainder=True).take(steps)


def _drop_failed(ds):
    """``(x, y, ok)`` elements -> the ``(x, y)`` of those that decoded."""
    def decoded(x, y, ok):
        return ok

    def strip(x, y, ok):
        return x, y

    return ds.filter(decoded).map(strip)


def _record_epoch(data, epoch, batch_size, steps, num_shards, shard_index):
    """One epoch of TFDS records: TFDS's shuffle, then decoded and augmented like files."""
    import tensorflow as tf

    ds = data.train_split.records(data.seed, epoch).enumerate()
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)

    def fetch(position, contents, label):
        name = f"{data.name} train record {int(position)} of epoch {epoch}"
        image = read_or_none(bytes(contents), data.skip_record, name=name)
        return augment_params(image, label, data.seed, epoch, position, data.augment)

    examples = ds.map(lambda p, record: (p, record[0], tf.cast(record[1], tf.int32)))
    return _examples_to_batches(data, examples, fetch, batch_size, steps)


# ----------------------------------------------------------------------------- evaluation


def test_dataset(data, batch_size):
    """Evaluation batches in a fixed order, the last partial batch kept."""
    import tensorflow as tf

    split, spec = data.test_split, data.preprocessing
    if split.kind == "array":
        ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
        ds = ds.map(lambda im, y: (normalize(eval_resize(tf.cast(im, tf.float32), spec), spec), y),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.cache()  # small, decoded, deterministic: keep it after the first pass
        return finish(ds.batch(batch_size, drop_remainder=False))
    if split.kind == "records":
        def read(position, contents, label):
            name = f"{data.name} test record {int(position)}"
            image = read_or_none(bytes(contents), data.skip_record, name=name)
            return (np.zeros((1, 1, 3), np.uint8) if image is None else image), label, \
                image is not None

        ds = split.records(data.seed, None).enumerate().map(
            lambda p, r: (p, r[0], tf.cast(r[1], tf.int32)))
    else:
        def read(index):
            image = read_or_none(split.images[index], data.skip_record)
            return (np.zeros((1, 1, 3), np.uint8) if image is None else image), \
                split.labels[index], image is not None

        ds = tf.data.Dataset.range(split.size)

    def decode(*args):
        image, label, ok = tf.numpy_function(read, list(args), [tf.uint8, tf.int32, tf.bool],
                                             stateful=False)
        image.set_shape([None, None, 3])
        x = normalize(eval_resize(tf.cast(image, tf.float32), spec), spec)
        return tf.ensure_shape(x, tuple(spec["input_size"]) + (3,)), tf.ensure_shape(label, ()), ok

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return finish(_drop_failed(ds).batch(batch_size, drop_remainder=False))


def raw_test_records(data, n):
    """Up to ``n`` TFDS test records decoded and resized to uint8 at the input size."""
    images, labels = [], []
    for contents, label in data.test_split.records(data.seed, None).as_numpy_iterator():
        if len(images) >= n:
            break
        image = read_or_none(contents, data.skip_record, name=f"{data.name} test record")
        if image is not None:
            images.append(prep.resize_uint8(image, data.preprocessing))
            labels.append(label)
    return images, labels
