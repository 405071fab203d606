"""Random-resized-crop on the accelerator, for ``numpy_train_epochs(..., crops_on_device=True)``.

Resizing a 224 x 224 crop costs the host about 2 ms per image in NumPy, so a
GPU training ResNet-50 at thousands of images per second would need most of a
16-core host for it. With ``crops_on_device=True`` the NumPy input yields the
uint8 source images with each example's crop window and flip (4x fewer bytes
to copy than float32 too), and :func:`resized_crops` (``keras.ops``, any
backend; call it inside the jitted training step) does the rest: the bilinear
resize is two batched products with per-example interpolation matrices (the
weights of ``tf.image.resize``: half-pixel centres, no antialiasing, clamped
at the crop's edges), then the flip and the normalisation.

The windows and flips are those of the ``tf.data`` pipeline; the pixels agree
with it to float32 rounding (matrix products may use reduced precision on
GPUs: TF32 rounds to about 1e-3 relative).
"""

from __future__ import annotations

import numpy as np


def _weights(start, length, out_size, in_size):
    """(B, out_size, in_size) interpolation matrices of crops [start, start+length) -> out_size."""
    from keras import ops

    start = ops.cast(ops.reshape(start, (-1, 1)), "float32")
    length = ops.cast(ops.reshape(length, (-1, 1)), "float32")
    i = ops.cast(ops.arange(out_size), "float32")[None, :]
    pos = (i + 0.5) * (length / out_size) - 0.5          # in crop coordinates, as tf.image.resize
    low = ops.floor(pos)
    lerp = pos - low
    lo = ops.maximum(low, 0.0)
    hi = ops.minimum(ops.ceil(pos), length - 1.0)
    lo = ops.cast(lo + start, "int32")
    hi = ops.cast(hi + start, "int32")
    return (ops.one_hot(lo, in_size) * (1.0 - lerp)[..., None]
            + ops.one_hot(hi, in_size) * lerp[..., None])


def resized_crops(images, boxes, flips, spec):
    """uint8 sources (B, H, W, 3), windows (B, 4) ``top, left, height, width`` and flips (B,)
    -> float32 network input (B, h, w, 3) normalised as ``spec`` says."""
    from keras import ops

    h, w = spec["input_size"]
    boxes = ops.convert_to_tensor(boxes)
    in_h, in_w = images.shape[1], images.shape[2]
    rows = _weights(boxes[:, 0], boxes[:, 2], h, in_h)            # (B, h, H)
    cols = _weights(boxes[:, 1], boxes[:, 3], w, in_w)            # (B, w, W)
    x = ops.cast(images, "float32")
    x = ops.einsum("bih,bhwc->biwc", rows, x)
    x = ops.einsum("bjw,biwc->bijc", cols, x)
    x = ops.where(ops.reshape(ops.convert_to_tensor(flips), (-1, 1, 1, 1)), ops.flip(x, axis=2), x)
    mean = np.asarray(spec["mean"], np.float32)
    std = np.asarray(spec["std"], np.float32)
    return (x * np.float32(spec["scale"]) - mean) / std
