"""The one image reader, and preprocessing as data: how image files become model inputs.

Two halves, used by training, evaluation, serving, int8 calibration and
``recipes/predict.py`` alike, so that all of them see the same pixels:

1. :func:`read_image` decodes an image file (or its bytes) to a uint8 RGB
   array ``(H, W, 3)`` by the rules of :data:`READER_RULES`.
2. A *spec* (a dict, :func:`make_spec`) says how those pixels become the
   network input. The same dict travels in every export's ``metadata.json``,
   so that file alone is enough to preprocess an image correctly:

   * ``input_size``: ``[height, width]`` the network takes;
   * ``resize``: ``"stretch"`` (resize to ``input_size``) or ``"center_crop"``
     (resize the shorter side to ``input_size / crop_fraction``, then take the
     central ``input_size`` crop: the ImageNet resize-256 centre-crop-224);
   * ``crop_fraction``: float, only for ``"center_crop"`` (224 / 256 = 0.875);
   * ``scale``: multiplier applied to the uint8 pixel values (1 / 255);
   * ``mean`` and ``std``: per-channel (R, G, B) statistics of the scaled
     pixels; the input is ``(pixels * scale - mean) / std``.

   Resizing is bilinear with half-pixel centres and no antialiasing, as
   ``tf.image.resize``: :func:`resize_bilinear` here (NumPy, bit-identical to
   ``tf.image.resize`` on float32 input); the ``keras.ops`` twins that the
   serving graphs run (``resize_images``, ``normalize``, ``preprocess``) are in
   :mod:`keras_resnet.serving.preprocessing`.

This module imports NumPy only; Pillow is imported by the functions that need
it, so the JAX input path and ``--help`` stay light.
"""

from __future__ import annotations

import io
import os

import numpy as np

# Per-channel statistics of the training sets, on pixels scaled to [0, 1].
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RESIZES = ("stretch", "center_crop")

# File names the image-folder datasets and int8 calibration pick up (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# What read_image does, in order. Written once here; the docs and every export's
# metadata.json ("preprocessing_howto") quote it.
READER_RULES = (
    "decode with Pillow; an empty, truncated or unrecognised file is an error (training "
    "skips and counts it, predict reports it)",
    "animated images (GIF, WebP, APNG): the first frame",
    "EXIF orientation applied (a rotated JPEG comes out upright)",
    "transparency (RGBA, LA, palette or grayscale with a transparent colour) composited onto "
    "white: c = round((c * a + 255 * (255 - a)) / 255)",
    "16-bit samples keep their high byte (v >> 8), as Pillow does for 16-bit colour PNGs",
    "grayscale and 1-bit: the gray value in R, G and B; palette, CMYK, YCbCr and LAB: "
    "Pillow's conversion to RGB; ICC profiles ignored (no colour management)",
    "32-bit float images are not read (no agreed range)",
)


class ImageError(ValueError):
    """An image file that cannot be read or decoded (``path`` and ``reason``)."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


# ----------------------------------------------------------------------------- the reader


def read_image(source):
    """Decode an image file to uint8 RGB pixels ``(H, W, 3)`` by :data:`READER_RULES`.

    The folder datasets (training and evaluation), ``recipes/predict.py`` and
    int8 calibration all read images with this function.

    Args:
        source: a file path (str or ``os.PathLike``) or the file's bytes.

    Returns:
        np.ndarray: uint8, ``(height, width, 3)``, C-contiguous (may be read-only:
        copy it before writing into it).

    Raises:
        ImageError: the file is missing, empty, not an image, truncated or of
            an unsupported kind; ``reason`` says which.

    Example:

    >>> import io
    >>> from PIL import Image
    >>> buf = io.BytesIO()
    >>> Image.new("LA", (3, 2), (0, 0)).save(buf, "PNG")  # black, fully transparent
    >>> read_image(buf.getvalue())[0, 0]
    array([255, 255, 255], dtype=uint8)
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, (bytes, bytearray, memoryview)):
        name, fp = "<bytes>", io.BytesIO(bytes(source))
        if not fp.getbuffer().nbytes:
            raise ImageError(name, "empty file")
    else:
        name = fp = os.fspath(source)
        if os.path.isdir(fp):
            raise ImageError(name, "is a directory, not an image file")
        if os.path.isfile(fp) and os.path.getsize(fp) == 0:
            raise ImageError(name, "empty file")
    try:
        with Image.open(fp) as img:
            img.load()   # the first frame of an animation; raises on truncated data
            return _to_rgb(_upright(img))
    except FileNotFoundError:
        raise ImageError(name, "no such file") from None
    except UnidentifiedImageError:
        raise ImageError(name, "not a recognised image file") from None
    except Image.DecompressionBombError as e:
        raise ImageError(name, f"image too large ({e})") from None
    except _Unsupported as e:
        raise ImageError(name, str(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        raise ImageError(name, f"cannot decode image ({e})") from None


class _Unsupported(Exception):
    pass


def _upright(img):
    """Apply the EXIF orientation in place; an unreadable EXIF block counts as no orientation."""
    from PIL import ImageOps

    try:
        ImageOps.exif_transpose(img, in_place=True)   # in place: no copy when upright
    except Exception:  # noqa: BLE001 - corrupt EXIF: the pixels are still good
        pass
    return img


def _to_rgb(img):
    mode = img.mode
    if mode == "F":
        raise _Unsupported("unsupported image: 32-bit float samples (mode F)")
    if mode == "I" or mode.startswith("I;16"):
        # Pillow's own convert("L") clips 16-bit values at 255; keep the high byte instead.
        gray = (np.clip(np.asarray(img, np.int64), 0, 65535) >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        return composite_on_white(np.asarray(img.convert("RGBA")))
    # np.asarray over Pillow's packed bytes: one copy (the array is read-only).
    return np.asarray(img if mode == "RGB" else img.convert("RGB"))


def composite_on_white(rgba):
    """uint8 RGBA ``(..., 4)`` -> uint8 RGB over a white background, exactly rounded."""
    rgba = np.asarray(rgba, np.uint8)
    color = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:].astype(np.uint32)
    # (c*a + 255*(255-a)) / 255 never ends in exactly .5, so +127 then floor rounds it.
    return ((color * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def load_image(source, spec):
    """An image file as a model's uint8 input: :func:`read_image`, then :func:`resize_uint8`.

    This is what int8 calibration uses and what a TFLite export takes.
    """
    return resize_uint8(read_image(source), spec)


def howto(spec=None):
    """One paragraph that says how an image file becomes the network input (metadata.json)."""
    del spec  # the paragraph is the same for every spec; the spec's own fields follow it
    rules = "; ".join(READER_RULES)
    return (
        f"Image file -> RGB uint8 pixels (keras_resnet.preprocessing.read_image: {rules}) -> "
        "resize to input_size ('stretch': bilinear, half-pixel centres, no antialiasing, as "
        "tf.image.resize; 'center_crop': resize the shorter side to input_size / crop_fraction "
        "keeping the aspect ratio, the new size rounded half to even, then take the central "
        "crop, offsets rounded down) -> x = (pixels * scale - mean) / std per RGB channel. "
        "model.keras takes x; the SavedModel takes the pixels of any size and does the rest "
        "inside; the TFLite models take the pixels already resized to input_size and rounded "
        "to uint8, and normalise inside.")


# ----------------------------------------------------------------------------- the spec


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


def resized_shape(height, width, spec):
    """``(new_h, new_w, top, left)`` of the spec's resize of a ``height x width`` image.

    For ``"stretch"`` it is the input size and no crop. For ``"center_crop"`` the
    shorter side goes to ``input_size / crop_fraction`` (float32 arithmetic, rounded
    half to even, as the serving graphs compute it), then the central crop.
    """
    h, w = spec["input_size"]
    if spec["resize"] == "stretch":
        return h, w, 0, 0
    frac = spec.get("crop_fraction", 0.875)
    rh, rw = int(round(h / frac)), int(round(w / frac))
    in_h, in_w = np.float32(height), np.float32(width)
    ratio = max(np.float32(rh) / in_h, np.float32(rw) / in_w)
    new_h, new_w = int(np.round(in_h * ratio)), int(np.round(in_w * ratio))
    return new_h, new_w, (new_h - h) // 2, (new_w - w) // 2


def resize_uint8(images, spec):
    """Resize uint8 RGB pixels as the spec says and round back to uint8 (the TFLite input).

    Takes one image ``(H, W, 3)`` or a batch ``(N, H, W, 3)`` and returns the same
    rank at ``input_size``. The resize is :func:`resize_numpy`, bit-identical to the
    ``tf.image.resize`` the SavedModel runs inside; rounding is half to even.
    """
    images = np.asarray(images)
    batch = images[None] if images.ndim == 3 else images
    out = np.stack([np.clip(np.round(resize_numpy(im, spec)), 0, 255).astype(np.uint8)
                    for im in batch]) if len(batch) else \
        np.zeros((0, *spec["input_size"], batch.shape[-1]), np.uint8)
    return out[0] if images.ndim == 3 else out


def preprocess_numpy(images, spec):
    """NumPy twin of the serving ``preprocess``: a batch (N, H, W, 3) or one image -> float32.

    Images already at ``input_size`` are only normalised (float32 operations in
    the order of :func:`keras_resnet.serving.preprocessing.normalize`, so the
    result is bit-identical to the ``tf.data`` pipelines'); others are resized
    with :func:`resize_bilinear`.
    """
    x = np.asarray(images)
    h, w = spec["input_size"]
    if x.shape[-3:-1] != (h, w) or spec["resize"] != "stretch":
        batch = x.reshape((-1,) + x.shape[-3:])
        x = np.stack([resize_numpy(im, spec) for im in batch]).reshape(
            x.shape[:-3] + (h, w, x.shape[-1]))
    x = x.astype(np.float32) * np.float32(spec["scale"])
    return (x - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)


def resize_numpy(image, spec):
    """One image (H, W, 3) -> float32 (h, w, 3) resized as the spec says (NumPy)."""
    h, w = spec["input_size"]
    new_h, new_w, top, left = resized_shape(image.shape[0], image.shape[1], spec)
    if spec["resize"] == "stretch" and image.shape[:2] == (h, w):
        return np.asarray(image, np.float32)
    return resize_bilinear(image, new_h, new_w, rows=(top, top + h), cols=(left, left + w))


def _axis(in_size, out_size, keep):
    """Source indices and weights of one axis, as tf.image.resize (half-pixel) computes them."""
    scale = np.float32(in_size) / np.float32(out_size)
    pos = (np.arange(keep[0], keep[1], dtype=np.float32) + np.float32(0.5)) * scale \
        - np.float32(0.5)
    low = np.floor(pos)
    lo = np.maximum(low, 0).astype(np.intp)
    hi = np.minimum(np.ceil(pos), in_size - 1).astype(np.intp)
    return lo, hi, (pos - low).astype(np.float32)


def resize_bilinear(image, height, width, rows=None, cols=None):
    """Bilinear resize of one image (H, W, C) to (height, width), float32, NumPy.

    Half-pixel centres, no antialiasing, clamped at the edges, computed in the
    order ``tf.image.resize`` uses (columns, then rows, ``a + (b - a) * t`` in
    float32): the result is bit-identical to
    ``tf.image.resize(tf.cast(image, tf.float32), (height, width))``.
    ``rows`` / ``cols`` (``(start, stop)``) compute only that window of the
    output (a crop of the resized image) without computing the rest.
    """
    image = np.asarray(image)
    rows, cols = rows or (0, height), cols or (0, width)
    ylo, yhi, ylerp = _axis(image.shape[0], height, rows)
    xlo, xhi, xlerp = _axis(image.shape[1], width, cols)
    # Interpolate along x only the source rows that some output row uses (at most two
    # per output row, fewer when enlarging), then between those rows along y.
    needed, where = np.unique(np.concatenate([ylo, yhi]), return_inverse=True)
    picked = image[needed].astype(np.float32)
    left = np.take(picked, xlo, axis=1)
    right = np.take(picked, xhi, axis=1)
    right -= left
    right *= xlerp[:, None]
    left += right                       # each needed source row interpolated along x
    top = np.take(left, where[:len(ylo)], axis=0)
    bottom = np.take(left, where[len(ylo):], axis=0)
    bottom -= top
    bottom *= ylerp[:, None, None]
    top += bottom
    return top
