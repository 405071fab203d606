"""Preprocessing inside the serving graphs, in ``keras.ops`` (any backend).

The spec (:func:`keras_resnet.preprocessing.make_spec`) and its NumPy twins
(:func:`keras_resnet.preprocessing.preprocess_numpy`,
:func:`keras_resnet.preprocessing.resize_bilinear`) live with the image reader
in :mod:`keras_resnet.preprocessing`; this module holds the functions the
SavedModel, TFLite and ONNX graphs and the Keras predictor run. Resizing is
bilinear with half-pixel centres and no antialiasing, as ``tf.image.resize``.
"""

from __future__ import annotations

import numpy as np

from keras_resnet.preprocessing import check_spec


def resize_images(images, spec):
    """Resize a float batch (N, H, W, 3) as the spec says (keras.ops, any backend)."""
    import keras
    from keras import ops

    h, w = spec["input_size"]
    if spec["resize"] == "stretch":
        return ops.image.resize(images, (h, w), interpolation="bilinear", antialias=False)
    frac = spec.get("crop_fraction", 0.875)
    rh, rw = int(round(h / frac)), int(round(w / frac))
    shape = ops.shape(images)
    in_h, in_w = ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")
    # Resize the shorter side to (rh, rw), keeping the aspect ratio, then crop.
    ratio = ops.maximum(rh / in_h, rw / in_w)
    new_h = ops.cast(ops.round(in_h * ratio), "int32")
    new_w = ops.cast(ops.round(in_w * ratio), "int32")
    if isinstance(new_h, (int, np.integer)) or keras.backend.backend() != "tensorflow":
        images = ops.image.resize(images, (int(new_h), int(new_w)), interpolation="bilinear")
        top, left = (int(new_h) - h) // 2, (int(new_w) - w) // 2
        return images[:, top:top + h, left:left + w, :]
    # A symbolic size (a SavedModel taking any image size): keras.ops.image.resize
    # takes a static size only, so the dynamic resize and crop use TensorFlow.
    import tensorflow as tf

    images = tf.image.resize(images, tf.stack([new_h, new_w]), method="bilinear")
    top, left = (new_h - h) // 2, (new_w - w) // 2
    return tf.image.crop_to_bounding_box(images, top, left, h, w)


def normalize(images, spec):
    """uint8 (or float 0..255) pixels -> network input: (x * scale - mean) / std."""
    from keras import ops

    x = ops.cast(images, "float32") * spec["scale"]
    mean = ops.convert_to_tensor(np.asarray(spec["mean"], "float32"))
    std = ops.convert_to_tensor(np.asarray(spec["std"], "float32"))
    return (x - mean) / std


def preprocess(images, spec):
    """Raw uint8 RGB batch (N, H, W, 3) of any size -> float32 network input."""
    from keras import ops

    check_spec(spec)
    x = ops.cast(images, "float32")
    x = resize_images(x, spec)
    return normalize(x, spec)
