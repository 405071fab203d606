"""TFLite export: float32 and quantized flatbuffers (``float16``, ``dynamic``, ``int8``).

How the Keras 3 pitfalls are handled: the old
``TFLiteConverter.from_keras_model`` path fails on Keras 3 models
(``_get_save_spec``), and ``from_concrete_functions`` keeps the variables as
resource variables that the interpreter never initialises (NaN outputs). The
conversion therefore goes through a temporary SavedModel written with
``keras.export.ExportArchive`` and ``TFLiteConverter.from_saved_model``, which
freezes the weights.

Shapes: the TFLite models have a fixed batch of 1 (``[1, height, width, 3]``),
the shape phones run and the one the interpreter's XNNPACK delegate plans best
for; call them once per image. A model that cannot be converted (an op
TFLite's builtin op set lacks) raises ``ValueError`` naming the model, the
format and the converter's first error line.

Quantized variants:

* ``"float16"``: float16 weights, float32 input/output and compute.
* ``"dynamic"``: int8 weights, float activations (dynamic-range quantization).
* ``"int8"``: full integer quantization calibrated on ``representative_images``.
  With the preprocessing inside its input is the raw ``uint8`` RGB pixels,
  exactly as for the float models (the normalisation is quantized inside);
  without it the input is ``int8``, the model's float input quantized as
  ``q = x / scale + zero_point`` (the interpreter's input details). Its output
  is ``uint8`` probabilities: ``p = scale * (q - zero_point)``, with ``scale``
  and ``zero_point`` in the interpreter's output details and in
  ``metadata.json`` (1/256 and 0 in practice).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile

import numpy as np

from keras_resnet.serving import calibration
from keras_resnet.serving import signature as sig
from keras_resnet.serving.savedmodel import write_archive


def export_tflite(model, path, quantize=None, representative_images=None, *,
                  preprocessing=None):
    """Convert ``model`` to a TFLite flatbuffer (float32 or quantized) and write it.

    The TFLite model takes one image ``[1, height, width, 3]`` (batch fixed to
    1) and returns float32 probabilities ``[1, classes]`` (``uint8`` for
    ``"int8"``, see the module docstring). Without ``preprocessing`` the input
    is the model's own float32 input; with it, raw uint8 RGB pixels already at
    ``input_size`` (resize them as ``preprocessing["resize"]`` says), the
    scaling and normalisation being inside.

    Args:
        model (keras.Model): the model to convert (called with ``training=False``).
        path (str): the ``.tflite`` file to write.
        quantize (str | None): ``None`` (float32), ``"float16"``, ``"dynamic"`` or ``"int8"``.
        representative_images: for ``"int8"``: an array ``(N, H, W, 3)`` or an
            iterable of such batches, of what the TFLite input takes (raw uint8
            images with ``preprocessing``); at most 500 images are used.
        preprocessing (dict | None): a :mod:`keras_resnet.preprocessing` spec.

    Returns:
        str: ``path``.

    Example:
        >>> import tempfile, os, keras
        >>> from keras_resnet.serving import export_tflite
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
        ...                           keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(3, activation="softmax")])
        >>> path = export_tflite(model, os.path.join(tempfile.mkdtemp(), "m.tflite"),
        ...                      quantize="float16")
        >>> os.path.getsize(path) > 1_000
        True
    """
    sig.check_model(model)
    sig.check_quantize(quantize)
    preprocessing = sig.check_preprocessing(preprocessing)
    path = sig.check_output_path(path, "path")
    if quantize == "int8" and representative_images is None:
        raise ValueError("Argument `representative_images` is required for quantize='int8' "
                         "(full integer quantization calibrates on it); received None.")
    images = calibration.representative(representative_images) if quantize == "int8" else None
    content = tflite_bytes(model, quantize, images, preprocessing=preprocessing)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(content)
    os.replace(tmp, path)
    return path


def tflite_bytes(model, quantize=None, representative_images=None, *, preprocessing=None,
                 saved_model_dir=None):
    """Convert ``model`` and return the flatbuffer bytes (see :func:`export_tflite`).

    ``saved_model_dir`` reuses a SavedModel written by :func:`tflite_saved_model`.
    """
    import tensorflow as tf

    h, w = sig.input_hw(model, preprocessing)
    tmpdir = None
    try:
        if saved_model_dir is None:
            tmpdir = tempfile.mkdtemp(prefix="keras_resnet_tflite_")
            saved_model_dir = tflite_saved_model(model, os.path.join(tmpdir, "sm"),
                                                 preprocessing=preprocessing)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantize == "int8":
            if representative_images is None:
                raise ValueError("Argument `representative_images` is required for "
                                 "quantize='int8'; received None.")
            images = calibration.representative(representative_images)
            dtype = np.uint8 if preprocessing is not None else np.float32
            for img in images:
                if img.shape[1:3] != (h, w):
                    raise ValueError("Invalid value for argument `representative_images`: "
                                     f"images must be {h}x{w} (the model input); received "
                                     f"{img.shape[1]}x{img.shape[2]}.")
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([img.astype(dtype)] for img in images)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8 if preprocessing is not None else tf.int8
            converter.inference_output_type = tf.uint8
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return converter.convert()
        except Exception as e:  # noqa: BLE001 - re-raised with the model's name
            raise ValueError(f"Argument `model`: model {model.name!r} cannot be converted to "
                             f"TFLite (quantize={quantize!r}) with the builtin op set: "
                             f"{type(e).__name__}: {sig.first_line(e)}") from e
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def tflite_saved_model(model, path, *, preprocessing=None):
    """Write the fixed-shape (batch 1) SavedModel the TFLite converter reads; return its path."""
    import tensorflow as tf

    h, w = sig.input_hw(model, preprocessing)
    if preprocessing is not None:
        spec = tf.TensorSpec([1, h, w, 3], tf.uint8, name=sig.INPUT_KEY)
    else:
        spec = tf.TensorSpec([1, h, w, model.inputs[0].shape[-1]], model.inputs[0].dtype,
                             name=sig.INPUT_KEY)
    fn = sig.serving_function(model, preprocessing, resize=False)
    try:
        write_archive(model, path, fn, spec)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"Argument `model`: model {model.name!r} cannot be traced for TFLite "
                         f"conversion: {type(e).__name__}: {sig.first_line(e)}") from e
    return path


def tflite_io_details(content_or_path):
    """Input/output dtype, shape and quantization of a TFLite model (for metadata.json)."""
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(content_or_path, (bytes, bytearray)):
        interp = Interpreter(model_content=bytes(content_or_path))
    else:
        interp = Interpreter(model_path=os.fspath(content_or_path))

    def describe(d):
        scale, zero = d["quantization"]
        out = {"dtype": np.dtype(d["dtype"]).name, "shape": [int(s) for s in d["shape"]]}
        if scale:
            out["quantization"] = {"scale": float(scale), "zero_point": int(zero)}
        return out

    return {"input": describe(interp.get_input_details()[0]),
            "output": describe(interp.get_output_details()[0])}


def write(model, directory, request):
    """The export directory's ``model.tflite`` and ``model_<q>.tflite``; their metadata."""
    serving = {}
    sm_tmp = tempfile.mkdtemp(prefix="tflite_", dir=directory)
    try:
        sm = tflite_saved_model(model, os.path.join(sm_tmp, "sm"),
                                preprocessing=request.preprocessing)
        for q in (None, *request.quantize):
            name = "model.tflite" if q is None else f"model_{q}.tflite"
            content = tflite_bytes(model, q, request.representative_images,
                                   preprocessing=request.preprocessing, saved_model_dir=sm)
            with open(os.path.join(directory, name), "wb") as f:
                f.write(content)
            serving[name] = {"quantize": q or "float32", **tflite_io_details(content),
                             "note": "raw RGB uint8 image already at input_size "
                                     "(resize as preprocessing.resize says); batch fixed to 1"}
    finally:
        shutil.rmtree(sm_tmp, ignore_errors=True)
    return serving
