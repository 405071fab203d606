"""The package's Keras layers, in one public place.

``keras_resnet.layers`` is the documented import path of every custom layer and
of the helpers that come with them; each lives in the module of its concern:

* :mod:`keras_resnet.blocks`: :class:`ResidualBlock` and :class:`BottleneckBlock`,
  one residual-unit body with every variant of the literature as a flag;
* :mod:`keras_resnet.stem`: :class:`Stem`, the first convolution (and max-pool);
* :mod:`keras_resnet.normalization`: :class:`BatchNorm` (TensorFlow's fused kernel
  where it applies) and :func:`set_fused`;
* :mod:`keras_resnet.building`: :func:`building_scope`, :class:`NumpyVarianceScaling`,
  :func:`kernel_initializer_for` and the layer settings every layer shares;
* :mod:`keras_resnet.replicas`: random masks drawn per tf.distribute replica.

Importing this module registers every layer with Keras (for
``keras.saving.load_model``); the registered names (``keras_resnet>ResidualBlock``,
...) do not depend on the module a class lives in, so ``.keras`` files saved
before the split load unchanged.
"""

from keras_resnet.architecture import BN_EPSILON, BN_MOMENTUM, shortcut_kind  # noqa: F401
from keras_resnet.specs import PREACT_ORDERINGS, UNIT_ORDERINGS  # noqa: F401
from keras_resnet.validation import check_choice  # noqa: F401
from keras_resnet.blocks import (  # noqa: F401
    BLOCK_CLASSES, BottleneckBlock, ResidualBlock, _ResidualUnit)
from keras_resnet.building import (  # noqa: F401
    PACKAGE, NumpyVarianceScaling, _fans, building_scope, conv_padding, kernel_initializer_for,
    pad_spatial, resolve_data_format)
from keras_resnet.normalization import BatchNorm, set_fused  # noqa: F401
from keras_resnet.replicas import _ReplicaDropout, keep_mask, replica_seed  # noqa: F401
from keras_resnet.stem import Stem  # noqa: F401

__all__ = ["BatchNorm", "BottleneckBlock", "NumpyVarianceScaling", "ResidualBlock", "Stem",
           "BLOCK_CLASSES", "building_scope", "kernel_initializer_for", "set_fused"]
