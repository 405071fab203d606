"""``InputData``: a loaded dataset and the pipelines (``tf.data`` and NumPy) that feed a network."""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_resnet import preprocessing as prep
from keras_resnet.data import numpy_pipeline, tf_pipeline
from keras_resnet.data.common import DataError, SkipRecord, Split, check_batch_size, check_int


@dataclasses.dataclass
class InputData:
    """A loaded dataset and the pipelines that feed a network.

    Attributes:
        name: ``"cifar10"``, ``"cifar100"``, ``"digits"``, ``"synthetic"``,
            ``"imagenet2012"`` or ``"folder"``.
        family: ``"cifar"`` (pad-and-crop augmentation) or ``"imagenet"``
            (random-resized-crop, resize-256 centre-crop-224 evaluation).
        num_classes: number of classes.
        class_names: one name per class (folder names for image folders).
        preprocessing: the :mod:`keras_resnet.preprocessing` spec of the
            evaluation / serving input.
        train_size: training examples per epoch (image folders: the files
            listed, undecodable ones included until they are met).
        test_size: test (or, with ``holdout``, validation) examples (idem).
        seed: seed of the split, the shuffling and the augmentation.
        holdout: whether the test set is a held-out part of the training set.
        augment: training augmentation scheme, ``"cifar"`` (pad 4, crop, flip),
            ``"digits"`` (+-1 pixel translation, no flip) or ``"imagenet"``
            (random-resized-crop, flip).
        skipped_files: image files skipped so far (read it again after an
            epoch: files are decoded, and skipped, when the pipeline meets them).
        skipped_paths: those files, in the order they were met.
        skipped: ``{path: reason}`` of those files.
        train_split, test_split: the examples of each split (a
            :class:`~keras_resnet.data.common.Split`: uint8 images, file paths
            or TFDS records, and labels), read by the pipelines.
        skip_record: the :class:`~keras_resnet.data.common.SkipRecord` the
            pipelines add undecodable files to.
        data_dir: the image folder's absolute path (None for named datasets).
        val_split: the fraction of each class held out for validation from an
            image folder without ``val/`` (None: the folder's ``val/``, or a
            named dataset's test set).

    Epoch numbers are seed components (any int >= 0): the same epoch number
    gives the same batches; the training loop numbers epochs from 1.
    """

    name: str
    family: str
    num_classes: int
    class_names: list = dataclasses.field(repr=False)
    preprocessing: dict = dataclasses.field(repr=False)
    train_size: int
    test_size: int
    seed: int = 0
    holdout: bool = False
    augment: str = "cifar"
    data_dir: str | None = None
    val_split: float | None = None
    _train: Split = dataclasses.field(default=None, repr=False)
    _test: Split = dataclasses.field(default=None, repr=False)
    _skips: SkipRecord = dataclasses.field(default_factory=SkipRecord, repr=False)

    @property
    def train_split(self):
        return self._train

    @property
    def test_split(self):
        return self._test

    @property
    def skip_record(self):
        return self._skips

    @property
    def skipped_files(self):
        return len(self._skips)

    @property
    def skipped_paths(self):
        return list(self._skips.reasons)

    @property
    def skipped(self):
        return self._skips.reasons

    def describe(self):
        """What a run records of its data (JSON): enough to load the same examples again."""
        return {"name": self.name, "data_dir": self.data_dir, "seed": self.seed,
                "holdout": self.holdout, "val_split": self.val_split,
                "train_size": self.train_size, "test_size": self.test_size,
                "classes": self.num_classes, "preprocessing": self.preprocessing}

    def input_shape(self):
        """The ``(height, width, 3)`` input the network takes."""
        h, w = self.preprocessing["input_size"]
        return (int(h), int(w), 3)

    def steps_per_epoch(self, batch_size, *, num_shards=1, shard_index=0):
        """Training batches per epoch (of one shard; the last partial batch is dropped)."""
        batch_size = check_batch_size(batch_size)
        num_shards, shard_index = self._check_shards(num_shards, shard_index)
        return len(range(shard_index, self.train_size, num_shards)) // batch_size

    # ----------------------------------------------------------------- tf.data
    def train_dataset(self, batch_size, epoch=0, *, num_shards=1, shard_index=0):
        """Shuffled, augmented, normalized training batches of one epoch (``tf.data``).

        Yields ``(float32 images (B, H, W, 3), int32 labels (B,))``, exactly
        :meth:`steps_per_epoch` batches. The order and the augmentation depend
        only on ``(seed, epoch)``: calling this twice with the same epoch gives
        the same batches.

        Args:
            batch_size: int, examples per batch (of this shard).
            epoch: int >= 0, the epoch number (a seed component; the training
                loop counts from 1).
            num_shards: int, number of input pipelines (e.g. workers) that
                split each epoch between them.
            shard_index: int, which of them this is: it gets the examples at
                positions ``shard_index, shard_index + num_shards, ...`` of the
                epoch, augmented exactly as without sharding.
        """
        steps = self._check_train(batch_size, epoch, num_shards, shard_index)
        return self.train_epochs(batch_size, epoch, steps, num_shards=num_shards,
                                 shard_index=shard_index, end_epoch=int(epoch) + 1)

    def train_epochs(self, batch_size, start_epoch, steps_per_epoch, *, num_shards=1,
                     shard_index=0, end_epoch=None):
        """One ``tf.data.Dataset`` over many epochs, to build once per process.

        Yields epoch ``start_epoch``'s batches, then epoch ``start_epoch + 1``'s,
        ... until ``end_epoch`` (excluded) or forever; each epoch is exactly
        ``steps_per_epoch`` batches, the first ``steps_per_epoch`` batches of
        ``train_dataset(batch_size, epoch=e, ...)``. A run resumed at epoch
        ``e`` therefore sees the batches an uninterrupted run saw. Prefetched.

        Args:
            batch_size: int, examples per batch (of this shard).
            start_epoch: int >= 0, the first epoch's number.
            steps_per_epoch: int, batches per epoch, at most
                ``steps_per_epoch(batch_size, num_shards=..., shard_index=...)``.
            num_shards, shard_index: as in :meth:`train_dataset`.
            end_epoch: int or None, the epoch to stop before (None: no end;
                TFDS ImageNet needs an end).
        """
        self._check_epochs(batch_size, start_epoch, steps_per_epoch, num_shards, shard_index,
                           end_epoch)
        return tf_pipeline.train_epochs(self, int(batch_size), int(start_epoch),
                                        int(steps_per_epoch), end_epoch, int(num_shards),
                                        int(shard_index))

    def test_dataset(self, batch_size):
        """Evaluation batches in a fixed order, the last partial batch kept (``tf.data``).

        Yields ``(float32 images, int32 labels)`` preprocessed as
        ``self.preprocessing`` says (ImageNet: resize-256 centre-crop-224).
        """
        return tf_pipeline.test_dataset(self, check_batch_size(batch_size))

    def raw_test_images(self, n, *, across_classes=False):
        """Up to ``n`` raw uint8 RGB test images at the input size, and their labels.

        For int8 calibration and parity tests: the images are what a user
        would send to an exported TFLite model (the evaluation resize of
        :func:`keras_resnet.preprocessing.resize_uint8`, no normalization).
        No TensorFlow except for TFDS ImageNet.

        Args:
            n: int, how many.
            across_classes: bool. False: the first ``n`` test images. True: the
                first of each class in turn (class 0's first, class 1's first,
                ..., then each class's second, ...), so that a few examples show
                several classes even where the test set is sorted by class
                (image folders). TFDS ImageNet: the first ``n`` either way.
        """
        n = min(check_int("n", n, minimum=0), self.test_size)
        split, spec = self._test, self.preprocessing
        order = (_round_robin(split.labels) if across_classes and split.labels is not None
                 else slice(None))
        if split.kind == "array":
            images, labels = split.images[order][:n], split.labels[order][:n]
            if images.shape[1:3] != self.input_shape()[:2] or spec["resize"] != "stretch":
                images = prep.resize_uint8(images, spec)
            return np.asarray(images, np.uint8), labels.copy()
        if split.kind == "records":
            images, labels = tf_pipeline.raw_test_records(self, n)
        else:
            images, labels = [], []
            for path, label in zip(split.images[order], split.labels[order]):
                if len(images) >= n:
                    break
                image = tf_pipeline.read_or_none(path, self._skips)
                if image is not None:
                    images.append(prep.resize_uint8(image, spec))
                    labels.append(label)
        shape = (0,) + self.input_shape()
        return (np.stack(images) if images else np.zeros(shape, np.uint8),
                np.asarray(labels, np.int32))

    # ----------------------------------------------------------------- NumPy (JAX)
    def numpy_train_epochs(self, batch_size, start_epoch, steps_per_epoch, *, num_shards=1,
                           shard_index=0, end_epoch=None, workers=None, crops_on_device=False):
        """NumPy twin of :meth:`train_epochs` for in-memory datasets; no TensorFlow.

        Returns a Python iterator of ``(float32 images (B, H, W, 3), int32 labels
        (B,))`` NumPy batches, bit-identical to :meth:`train_epochs`'s. Batches are
        made by ``workers`` threads (default: the CPU count, at most 16), a few
        batches ahead of the consumer.

        With ``crops_on_device=True`` (random-resized-crop data, ``augment ==
        "imagenet"``) the batches are ``(uint8 images (B, H, W, 3), int32 labels,
        int32 boxes (B, 4), bool flips (B,))`` and
        :func:`keras_resnet.data.device.resized_crops` (``keras.ops``) turns them
        into the float32 input on the accelerator: the host then only gathers.
        """
        numpy_pipeline.check_in_memory(self, "numpy_train_epochs")
        self._check_epochs(batch_size, start_epoch, steps_per_epoch, num_shards, shard_index,
                           end_epoch)
        return numpy_pipeline.train_epochs(self, int(batch_size), int(start_epoch),
                                           int(steps_per_epoch), end_epoch, int(num_shards),
                                           int(shard_index), workers, bool(crops_on_device))

    def numpy_test_batches(self, batch_size):
        """NumPy twin of :meth:`test_dataset` for in-memory datasets; no TensorFlow."""
        numpy_pipeline.check_in_memory(self, "numpy_test_batches")
        return numpy_pipeline.test_batches(self, check_batch_size(batch_size))

    # ----------------------------------------------------------------- checks
    def _check_shards(self, num_shards, shard_index):
        num_shards = check_int("num_shards", num_shards, minimum=1)
        shard_index = check_int("shard_index", shard_index, minimum=0)
        if shard_index >= num_shards:
            raise DataError(f"Invalid value for argument `shard_index`: received {shard_index}; "
                            f"expected 0..{num_shards - 1} (num_shards={num_shards}).")
        return num_shards, shard_index

    def _check_train(self, batch_size, epoch, num_shards, shard_index):
        batch_size = check_batch_size(batch_size)
        check_int("epoch", epoch, minimum=0)
        steps = self.steps_per_epoch(batch_size, num_shards=num_shards, shard_index=shard_index)
        if steps < 1:
            raise DataError(f"Invalid value for argument `batch_size`: received {batch_size}, "
                            f"larger than the {self.train_size} training examples of {self.name!r}"
                            + (f" / {num_shards} shards." if num_shards > 1 else "."))
        return steps

    def _check_epochs(self, batch_size, start_epoch, steps, num_shards, shard_index, end_epoch):
        most = self._check_train(batch_size, 0, num_shards, shard_index)
        check_int("start_epoch", start_epoch, minimum=0)
        steps = check_int("steps_per_epoch", steps, minimum=1)
        if steps > most:
            raise DataError(f"Invalid value for argument `steps_per_epoch`: received {steps}; "
                            f"an epoch of {self.name!r} has {most} batches of {batch_size}"
                            + (f" per shard ({num_shards} shards)." if num_shards > 1 else "."))
        if end_epoch is not None:
            check_int("end_epoch", end_epoch, minimum=int(start_epoch) + 1)


def _round_robin(labels):
    """Indices of ``labels`` taking each class in turn: every class's first, then second, ...

    >>> _round_robin(np.array([0, 0, 0, 1, 1, 2])).tolist()
    [0, 3, 5, 1, 4, 2]
    """
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    rank = np.empty(len(labels), np.int64)
    for indices in members:
        rank[indices] = np.arange(len(indices))
    return np.lexsort((labels, rank))


def holdout_split(size, seed, fraction):
    """(kept, held-out) sorted index arrays: a fixed ``fraction`` of ``size`` examples."""
    order = np.random.default_rng([seed, 5]).permutation(size)
    n_out = int(round(size * fraction))
    return np.sort(order[n_out:]), np.sort(order[:n_out])


def make_input_data(name, family, augment, class_names, spec, train, test, seed, holdout,
                    skips=None, data_dir=None, val_split=None):
    """An :class:`InputData` of ``(images, labels)`` pairs (uint8 arrays or file paths).

    With ``holdout`` the test set is a fixed 10% of the training set instead.
    """
    from keras_resnet.data.common import HOLDOUT_FRACTION

    (x, y), (xt, yt) = train, test
    if holdout:
        keep, out = holdout_split(len(y), seed, HOLDOUT_FRACTION)
        (x, y), (xt, yt) = (x[keep], y[keep]), (x[out], y[out])
    return InputData(name=name, family=family, num_classes=len(class_names),
                     class_names=list(class_names), preprocessing=spec, train_size=len(y),
                     test_size=len(yt), seed=seed, holdout=holdout, augment=augment,
                     data_dir=data_dir, val_split=val_split,
                     _train=Split(labels=y, images=np.ascontiguousarray(x)),
                     _test=Split(labels=yt, images=np.ascontiguousarray(xt)),
                     _skips=skips if skips is not None else SkipRecord())
