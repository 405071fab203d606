"""Preprocessing as data: one dict describes how raw uint8 RGB images become model inputs.

The same description travels in every export's ``metadata.json``, so that file
alone is enough to preprocess an image correctly, and the same code applies it
in the tf.data pipelines, in the exported serving signatures and in
``recipes/predict.py``.

A spec is a dict with:

* ``input_size``: ``[height, width]`` the network takes;
* ``resize``: ``"stretch"`` (resize to ``input_size``) or ``"center_crop"``
  (resize the shorter side to ``input_size / crop_fraction``, then take the
  central ``input_size`` crop: the ImageNet resize-256 centre-crop-224);
* ``crop_fraction``: float, only for ``"center_crop"`` (224 / 256 = 0.875);
* ``scale``: multiplier applied to the uint8 pixel values (1 / 255);
* ``mean`` and ``std``: per-channel (R, G, B) statistics of the scaled pixels;
  the input is ``(pixels * scale - mean) / std``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

# Per-channel statistics of the training sets, on pixels scaled to [0, 1].
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RESIZES = ("stretch", "center_crop")


def make_spec(input_size, mean, std, resize="stretch", crop_fraction=0.875, scale=1 / 255):
    """Return a preprocessing spec dict (see the module docstring)."""
    if resize not in RESIZES:
        raise ValueError(f"Invalid value for argument `resize`: received {resize!r}; "
                         f"expected one of {RESIZES}.")
    spec = {"input_size": [int(input_size[0]), int(input_size[1])], "resize": resize,
            "scale": float(scale), "mean": [float(m) for m in mean],
            "std": [float(s) for s in std], "color": "RGB", "dtype": "uint8"}
    if resize == "center_crop":
        spec["crop_fraction"] = float(crop_fraction)
    return spec


def check_spec(spec):
    missing = {"input_size", "resize", "scale", "mean", "std"} - set(spec or {})
    if missing:
        raise ValueError(f"Preprocessing spec is missing {sorted(missing)}; received {spec!r}.")
    if spec["resize"] not in RESIZES:
        raise ValueError(f"Preprocessing spec has resize={spec['resize']!r}; expected one of {RESIZES}.")
    return spec


def resize_images(images, spec):
    """Resize a float batch (N, H, W, 3) as the spec says (keras.ops, any backend)."""
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
    import tensorflow as tf

    images = tf.image.resize(images, tf.stack([new_h, new_w]), method="bilinear")
    top, left = (new_h - h) // 2, (new_w - w) // 2
    return tf.image.crop_to_bounding_box(images, top, left, h, w)


def normalize(images, spec):
    """uint8 (or float 0..255) pixels -> network input: (x * scale - mean) / std."""
    x = ops.cast(images, "float32") * spec["scale"]
    mean = ops.convert_to_tensor(np.asarray(spec["mean"], "float32"))
    std = ops.convert_to_tensor(np.asarray(spec["std"], "float32"))
    return (x - mean) / std


def preprocess(images, spec):
    """Raw uint8 RGB batch (N, H, W, 3) of any size -> float32 network input."""
    check_spec(spec)
    x = ops.cast(images, "float32")
    x = resize_images(x, spec)
    return normalize(x, spec)


def preprocess_numpy(images, spec):
    """NumPy reference of :func:`preprocess` for inputs already of ``input_size``."""
    x = np.asarray(images, np.float32) * spec["scale"]
    return (x - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
