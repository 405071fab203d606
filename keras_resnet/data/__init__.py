"""Input data: scikit-learn's bundled digits, TFDS datasets, image folders, synthetic.

:func:`load` returns an :class:`InputData`: the dataset's metadata, its
preprocessing spec (the one every export carries) and its pipelines:

* ``tf.data``: :meth:`InputData.train_epochs` (one dataset over many epochs,
  built once per process), :meth:`InputData.train_dataset` (one epoch) and
  :meth:`InputData.test_dataset`;
* NumPy, for the JAX backend without TensorFlow (in-memory datasets):
  :meth:`InputData.numpy_train_epochs` and :meth:`InputData.numpy_test_batches`,
  bit-identical to the ``tf.data`` batches.

Determinism: the order of the training examples and every random
augmentation are a function of ``(seed, epoch, position in the epoch)`` only
(:mod:`keras_resnet.data.plans`), so a run that resumes at epoch ``e`` sees
exactly the batches an uninterrupted run saw.

Where things are: :mod:`~keras_resnet.data.sources` (``load``, the digits,
synthetic data), :mod:`~keras_resnet.data.tfds_sources` (CIFAR, ImageNet),
:mod:`~keras_resnet.data.folders` (image folders, the scan cache),
:mod:`~keras_resnet.data.plans` (epoch order and augmentation draws),
:mod:`~keras_resnet.data.tf_pipeline`, :mod:`~keras_resnet.data.numpy_pipeline`,
:mod:`~keras_resnet.data.input_data` (``InputData``),
:mod:`~keras_resnet.data.throughput`; the command line is :mod:`keras_resnet.cli.data`.
Importing this package does not import TensorFlow.
"""

from keras_resnet.data.common import (CIFAR_PAD, DATASETS, DIGITS_PAD, FAMILIES, HOLDOUT_FRACTION,
                                      RRC_RATIO, RRC_SCALE, TFDS_DATASETS, DataError)
from keras_resnet.data.folders import cache_dir
from keras_resnet.data.input_data import InputData
from keras_resnet.data.sources import DIGITS_CLASSES, load, load_digits
from keras_resnet.data.throughput import pipeline_throughput
from keras_resnet.data.tfds_sources import (CIFAR10_CLASSES, IMAGENET_MANUAL_FILES,
                                            imagenet_manual_dir, tfds_root)

__all__ = ["CIFAR10_CLASSES", "CIFAR_PAD", "DATASETS", "DIGITS_CLASSES", "DIGITS_PAD", "DataError",
           "FAMILIES", "HOLDOUT_FRACTION", "IMAGENET_MANUAL_FILES", "InputData", "RRC_RATIO",
           "RRC_SCALE", "TFDS_DATASETS", "cache_dir", "imagenet_manual_dir", "load", "load_digits",
           "pipeline_throughput", "tfds_root"]
