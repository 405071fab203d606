"""NumPy input for the JAX backend: no TensorFlow, the same batches as ``tf.data``.

For in-memory datasets (the digits, synthetic data; and CIFAR once loaded):
the order, the crops and the flips come from :mod:`~keras_resnet.data.plans`
like those of :mod:`~keras_resnet.data.tf_pipeline`, and every operation is
the NumPy twin of the TensorFlow one in float32 in the same order (the
bilinear resize is :func:`keras_resnet.preprocessing.resize_bilinear`), so the
batches are bit-identical to the ``tf.data`` ones.

Batches are made by a pool of threads, a whole batch per task, up to
``workers + 2`` batches ahead of the consumer (NumPy and the resize release
the GIL in their inner loops); memory in flight is that many batches.
"""

from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from keras_resnet import preprocessing as prep
from keras_resnet.data import plans
from keras_resnet.data.common import CIFAR_PAD, DIGITS_PAD, DataError


def check_in_memory(data, what):
    for split in (data.train_split, data.test_split):
        if split.kind != "array":
            raise DataError(f"{what} needs a dataset held in memory (digits, synthetic, "
                            f"cifar10, cifar100); {data.name!r} is read from "
                            f"{split.kind}: use the tf.data pipelines (TensorFlow).")


def normalize(images, spec):
    """NumPy twin of the pipelines' normalisation (float32, same operation order).

    Works in place on float32 input (the same IEEE operations, no temporaries).
    """
    x = images.astype(np.float32) if images.dtype != np.float32 else images
    x *= np.float32(spec["scale"])
    x -= np.asarray(spec["mean"], np.float32)
    x /= np.asarray(spec["std"], np.float32)
    return x


def pad_crop_batch(images, offsets, flips, pad):
    """Zero-pad each image by ``pad``, cut the window at ``offsets``, mirror where ``flips``."""
    n, h, w, c = images.shape
    padded = np.zeros((n, h + 2 * pad, w + 2 * pad, c), images.dtype)
    padded[:, pad:pad + h, pad:pad + w] = images
    out = np.empty_like(images)
    for i, (dy, dx) in enumerate(offsets):
        window = padded[i, dy:dy + h, dx:dx + w]
        out[i] = window[:, ::-1] if flips[i] else window
    return out


def random_resized_crops(images, boxes, flips, size):
    """Crop each image to its box, resize it to ``size`` (float32), mirror where ``flips``."""
    out = np.empty((len(images), size[0], size[1], images.shape[-1]), np.float32)
    for i, (top, left, h, w) in enumerate(boxes):
        crop = prep.resize_bilinear(images[i, top:top + h, left:left + w], size[0], size[1])
        out[i] = crop[:, ::-1] if flips[i] else crop
    return out


class _BatchMaker:
    """``(epoch, step) -> (float32 images, int32 labels)`` of one shard, NumPy only."""

    def __init__(self, data, batch_size, num_shards, shard_index, crops_on_device=False):
        self.data, self.split, self.crops_on_device = data, data.train_split, crops_on_device
        self.batch_size, self.num_shards, self.shard_index = batch_size, num_shards, shard_index
        self.orders = plans.EpochOrders(data.seed, self.split.size)

    def __call__(self, epoch, step):
        data, split, spec = self.data, self.split, self.data.preprocessing
        positions = self.shard_index + self.num_shards * (
            step * self.batch_size + np.arange(self.batch_size))
        index = self.orders.indices(epoch, positions)
        u = plans.position_uniforms(data.seed, epoch, positions)
        images = split.images[index]
        if data.augment == "imagenet":
            boxes = plans.rrc_boxes(images.shape[1], images.shape[2], u)
            if self.crops_on_device:   # keras_resnet.data.device.resized_crops does the rest
                return images, split.labels[index], boxes.astype(np.int32), plans.flips(u)
            x = random_resized_crops(images, boxes, plans.flips(u), spec["input_size"])
        else:
            offsets, flips = plans.pad_crop_params(u, data.augment)
            pad = DIGITS_PAD if data.augment == "digits" else CIFAR_PAD
            x = pad_crop_batch(images, offsets, flips, pad)
        return normalize(x, spec), split.labels[index]


def train_epochs(data, batch_size, start_epoch, steps, end_epoch=None, num_shards=1,
                 shard_index=0, workers=None, crops_on_device=False):
    """Iterator of ``(float32 images NHWC, int32 labels)``: ``steps`` batches per epoch,
    epochs ``start_epoch, start_epoch + 1, ...`` up to ``end_epoch`` (excluded) or forever.

    With ``crops_on_device`` (random-resized-crop data): ``(uint8 images, int32 labels,
    int32 boxes (B, 4), bool flips (B,))`` for :func:`keras_resnet.data.device.resized_crops`.
    """
    if crops_on_device and data.augment != "imagenet":
        raise DataError(f"Invalid value for argument `crops_on_device`: received True for "
                        f"{data.name!r}, whose augmentation is {data.augment!r}; it applies to "
                        "random-resized-crop data only (augment 'imagenet').")
    make = _BatchMaker(data, batch_size, num_shards, shard_index, crops_on_device)
    end = float("inf") if end_epoch is None else int(end_epoch)

    def jobs():
        epoch = int(start_epoch)
        while epoch < end:
            for step in range(steps):
                yield epoch, step
            epoch += 1

    return _ordered(make, jobs(), workers)


def _ordered(make, jobs, workers):
    """Run ``make(*job)`` on a thread pool, keeping a few jobs ahead; yield results in order."""
    workers = workers or min(os.cpu_count() or 1, 16)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="keras_resnet_input")
    pending = collections.deque()
    jobs = iter(jobs)
    try:
        while True:
            while len(pending) < workers + 2:
                job = next(jobs, None)
                if job is None:
                    break
                pending.append(pool.submit(make, *job))
            if not pending:
                return
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def test_batches(data, batch_size):
    """Evaluation batches in order, the last partial batch kept (NumPy twin of ``test_dataset``)."""
    split, spec = data.test_split, data.preprocessing
    for start in range(0, split.size, batch_size):
        images = split.images[start:start + batch_size]
        yield prep.preprocess_numpy(images, spec), split.labels[start:start + batch_size]
