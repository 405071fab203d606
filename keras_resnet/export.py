"""Exports for serving and devices: SavedModel, TFLite (+ quantization) and the export directory.

Every exported artifact computes what the Keras model computes:

* :func:`export_saved_model` writes a SavedModel whose ``serving_default``
  signature takes a batch of any size and returns class probabilities
  (output key ``"probabilities"``). It loads with ``tf.saved_model.load`` and
  with ``keras.layers.TFSMLayer``.
* :func:`export_tflite` writes a TFLite flatbuffer of exactly the model given,
  float32 or quantized (``"float16"``, ``"dynamic"``, ``"int8"``).
* :func:`export_model` writes the directory the recipes produce
  (``model.keras``, ``saved_model/``, ``model.tflite``, ``model_<q>.tflite``,
  ``metadata.json``) atomically, with the preprocessing inside the serving
  models so that they take raw uint8 RGB images.

How the Keras 3 pitfalls are handled:

* The old ``TFLiteConverter.from_keras_model`` path fails on Keras 3 models
  (``_get_save_spec``), and ``from_concrete_functions`` keeps the variables as
  resource variables that the interpreter never initialises (NaN outputs). The
  conversion therefore goes through a temporary SavedModel written with
  ``keras.export.ExportArchive`` and ``TFLiteConverter.from_saved_model``,
  which freezes the weights.
* The model is always called with ``training=False``: augmentation layers
  (``keras.layers.RandomFlip``, ...) are the identity at inference and
  dropout/drop-path are off, so they add no op to the exported graph.
* Shapes: the SavedModel keeps the batch dynamic. The TFLite models have a
  fixed batch of 1 (``[1, height, width, 3]``), the shape phones run and the
  one the interpreter's XNNPACK delegate plans best for; call them once per
  image.
* A model that cannot be exported (an op TFLite's builtin op set lacks, a
  layer that cannot be traced) raises ``ValueError`` naming the model, the
  format and the converter's first error line.

Quantized TFLite variants:

* ``"float16"``: float16 weights, float32 input/output and compute.
* ``"dynamic"``: int8 weights, float activations (dynamic-range quantization).
* ``"int8"``: full integer quantization calibrated on ``representative_data``.
  With the preprocessing inside (:func:`export_model`) its input is the raw
  ``uint8`` RGB pixels, exactly as for the float models (the normalisation is
  quantized inside); without it the input is ``int8``, the model's float input
  quantized as ``q = x / scale + zero_point`` (the interpreter's input details).
  Its output is ``uint8`` probabilities: ``p = scale * (q - zero_point)``, with
  ``scale`` and ``zero_point`` in the interpreter's output details and in
  ``metadata.json`` (1/256 and 0 in practice).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import os
import shutil
import tempfile

import numpy as np

QUANTIZATIONS = (None, "float16", "dynamic", "int8")
SIGNATURE = "serving_default"
INPUT_KEY = "images"
OUTPUT_KEY = "probabilities"
METADATA_FORMAT = 1
MAX_CALIBRATION_IMAGES = 500


# ----------------------------------------------------------------------------- checks


def _tf():
    import tensorflow as tf

    return tf


def _check_model(model):
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"Argument `model` must be a keras.Model; received "
                        f"{type(model).__name__}.")
    if len(model.inputs or []) != 1 or len(model.outputs or []) != 1:
        raise ValueError(f"Argument `model`: model {model.name!r} must have exactly one image "
                         f"input and one output to be exported; it has "
                         f"{len(model.inputs or [])} input(s) and {len(model.outputs or [])} "
                         "output(s).")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise ValueError(f"Argument `model`: model {model.name!r} must take a batch of images "
                         f"(N, H, W, C); its input shape is {shape}.")
    return model


def _input_hw(model, preprocessing=None):
    """(height, width) of the network input, from the model or the preprocessing spec."""
    shape = tuple(model.inputs[0].shape)
    h, w = shape[1], shape[2]
    if preprocessing is not None:
        ph, pw = preprocessing["input_size"]
        if (h is not None and h != ph) or (w is not None and w != pw):
            raise ValueError(f"Argument `preprocessing`: input_size {[ph, pw]} does not match "
                             f"the input shape {shape} of model {model.name!r}.")
        return int(ph), int(pw)
    if h is None or w is None:
        raise ValueError(f"Argument `model`: model {model.name!r} has an input of unknown "
                         f"size {shape}; pass `preprocessing` (its input_size fixes the size).")
    return int(h), int(w)


def _check_quantize(quantize):
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"Invalid value for argument `quantize`: received {quantize!r}; "
                         f"expected one of {QUANTIZATIONS}.")
    return quantize


def _check_preprocessing(preprocessing):
    from keras_resnet import preprocessing as prep

    if preprocessing is None:
        return None
    if not isinstance(preprocessing, dict):
        raise TypeError("Argument `preprocessing` must be a preprocessing spec dict "
                        f"(keras_resnet.preprocessing.make_spec); received "
                        f"{type(preprocessing).__name__}.")
    try:
        return prep.check_spec(preprocessing)
    except ValueError as e:
        raise ValueError(f"Invalid value for argument `preprocessing`: {e}") from None


def _ends_in_logits(model):
    """True when the last layer is a linear Dense/Activation (the model outputs logits)."""
    import keras

    layer = model.layers[-1]
    while isinstance(layer, keras.Model) and layer.layers:   # nested models
        layer = layer.layers[-1]
    act = getattr(layer, "activation", None)
    return act is not None and getattr(act, "__name__", "") == "linear"


# ----------------------------------------------------------------------------- serving functions


def serving_function(model, preprocessing=None, *, resize=True):
    """The function the exports serve: images -> float32 class probabilities.

    With ``preprocessing`` it takes raw uint8 RGB pixels and applies
    :func:`keras_resnet.preprocessing.preprocess` (``resize=True``: any image
    size, resized as the spec says) or only the normalisation (``resize=False``:
    images already at ``input_size``). The model is called with
    ``training=False``; a softmax is added when the model ends in logits; the
    output is cast to float32 (mixed-precision models).

    Args:
        model (keras.Model): the model.
        preprocessing (dict | None): a :mod:`keras_resnet.preprocessing` spec.
        resize (bool): resize inside (SavedModel) or expect ``input_size`` (TFLite).

    Returns:
        callable: ``fn(images) -> probabilities``.
    """
    from keras import ops

    from keras_resnet import preprocessing as prep

    softmax = _ends_in_logits(model)

    def serve(images):
        if preprocessing is not None:
            x = prep.preprocess(images, preprocessing) if resize else \
                prep.normalize(images, preprocessing)
        else:
            x = images
        y = model(x, training=False)
        y = ops.cast(y, "float32")
        if softmax:
            y = ops.softmax(y, axis=-1)
        return y

    return serve


def _write_archive(model, path, fn, input_spec, output_key=None):
    import keras

    tf = _tf()
    archive = keras.export.ExportArchive()
    archive.track(model)
    if output_key is not None:
        def endpoint(images):
            return {output_key: fn(images)}
    else:
        endpoint = fn
    archive.add_endpoint(SIGNATURE, tf.function(endpoint), input_signature=[input_spec])
    with contextlib.redirect_stdout(io.StringIO()):
        archive.write_out(path, verbose=False)


def _first_line(error):
    """The informative line of a converter error (the unsupported ops when it names them)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("Custom ops:", "Flex ops:")):
            return f"ops not in the TFLite builtin op set: {ln.split(':', 1)[1].strip()}"
    for ln in lines:
        if "error: " in ln:
            return ln.rsplit("error: ", 1)[1][:300]
    return (lines or [type(error).__name__])[0][:300]


def export_saved_model(model, path, *, preprocessing=None):
    """Write a SavedModel whose ``serving_default`` returns class probabilities.

    The signature takes ``images`` with a dynamic batch (any number of images)
    and returns ``{"probabilities": float32 (N, classes)}``. Without
    ``preprocessing`` the images are the model's own (preprocessed) float32
    input; with it they are raw uint8 RGB pixels of any height and width,
    resized and normalised inside as the spec says.

    Args:
        model (keras.Model): the model to export (called with ``training=False``).
        path (str): the SavedModel directory to write (must not exist or be empty).
        preprocessing (dict | None): a :mod:`keras_resnet.preprocessing` spec.

    Returns:
        str: ``path``.

    Example:
        >>> import tempfile, os, keras, tensorflow as tf
        >>> from keras_resnet.export import export_saved_model
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
        ...                           keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(3, activation="softmax")])
        >>> path = export_saved_model(model, os.path.join(tempfile.mkdtemp(), "sm"))
        >>> served = tf.saved_model.load(path).signatures["serving_default"]
        >>> served(images=tf.zeros([5, 8, 8, 3]))["probabilities"].shape
        TensorShape([5, 3])
    """
    tf = _tf()
    _check_model(model)
    preprocessing = _check_preprocessing(preprocessing)
    path = _check_output_path(path, "path")
    if preprocessing is not None:
        _input_hw(model, preprocessing)
        spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_KEY)
    else:
        spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], model.inputs[0].dtype,
                             name=INPUT_KEY)
    fn = serving_function(model, preprocessing, resize=True)
    try:
        _write_archive(model, path, fn, spec, output_key=OUTPUT_KEY)
    except Exception as e:  # noqa: BLE001 - re-raised with the model's name
        shutil.rmtree(path, ignore_errors=True)
        raise ValueError(f"Argument `model`: model {model.name!r} cannot be exported as a "
                         f"SavedModel: {type(e).__name__}: {_first_line(e)}") from e
    return path


def _check_output_path(path, name):
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"Invalid value for argument `{name}`: expected a file path; "
                         f"received {path!r}.")
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"Invalid value for argument `{name}`: the parent directory "
                         f"{parent!r} does not exist.")
    if os.path.isdir(path) and os.listdir(path):
        raise ValueError(f"Invalid value for argument `{name}`: {path!r} already exists and "
                         "is not empty.")
    return path


def _representative(data, limit=MAX_CALIBRATION_IMAGES):
    """Normalise representative data to a list of single-image arrays."""
    if data is None:
        return None
    if callable(data):
        data = data()
    images = []
    for batch in data:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        batch = np.asarray(batch)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4:
            raise ValueError("Invalid value for argument `representative_data`: expected "
                             "images of shape (N, H, W, C) or (H, W, C); received an array of "
                             f"shape {batch.shape}.")
        images.extend(batch[i:i + 1] for i in range(len(batch)))
        if len(images) >= limit:
            break
    if not images:
        raise ValueError("Invalid value for argument `representative_data`: it holds no images.")
    return images[:limit]


def export_tflite(model, path, quantize=None, representative_data=None, *, preprocessing=None):
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
        representative_data: for ``"int8"``: an array ``(N, H, W, 3)`` or an
            iterable of such batches, of what the TFLite input takes (raw uint8
            images with ``preprocessing``); at most 500 images are used.
        preprocessing (dict | None): a :mod:`keras_resnet.preprocessing` spec.

    Returns:
        str: ``path``.

    Example:
        >>> import tempfile, os, keras
        >>> from keras_resnet.export import export_tflite
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
        ...                           keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(3, activation="softmax")])
        >>> path = export_tflite(model, os.path.join(tempfile.mkdtemp(), "m.tflite"),
        ...                      quantize="float16")
        >>> os.path.getsize(path) > 1_000
        True
    """
    _check_model(model)
    _check_quantize(quantize)
    preprocessing = _check_preprocessing(preprocessing)
    path = _check_output_path(path, "path")
    if quantize == "int8" and representative_data is None:
        raise ValueError("Argument `representative_data` is required for quantize='int8' "
                         "(full integer quantization calibrates on it); received None.")
    data = _representative(representative_data) if quantize == "int8" else None
    content = tflite_bytes(model, quantize, data, preprocessing=preprocessing)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(content)
    os.replace(tmp, path)
    return path


def tflite_bytes(model, quantize=None, representative_images=None, *, preprocessing=None,
                 saved_model_dir=None):
    """Convert ``model`` and return the flatbuffer bytes (see :func:`export_tflite`).

    ``saved_model_dir`` reuses a SavedModel written by an earlier call (its
    path is the second return value of :func:`tflite_saved_model`).
    """
    tf = _tf()
    h, w = _input_hw(model, preprocessing)
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
                raise ValueError("Argument `representative_data` is required for "
                                 "quantize='int8'; received None.")
            images = _representative(representative_images)
            dtype = np.uint8 if preprocessing is not None else np.float32
            for img in images:
                if img.shape[1:3] != (h, w):
                    raise ValueError("Invalid value for argument `representative_data`: images "
                                     f"must be {h}x{w} (the model input); received "
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
                             f"{type(e).__name__}: {_first_line(e)}") from e
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def tflite_saved_model(model, path, *, preprocessing=None):
    """Write the fixed-shape (batch 1) SavedModel the TFLite converter reads; return its path."""
    tf = _tf()
    h, w = _input_hw(model, preprocessing)
    if preprocessing is not None:
        spec = tf.TensorSpec([1, h, w, 3], tf.uint8, name=INPUT_KEY)
    else:
        spec = tf.TensorSpec([1, h, w, model.inputs[0].shape[-1]], model.inputs[0].dtype,
                             name=INPUT_KEY)
    fn = serving_function(model, preprocessing, resize=False)
    try:
        _write_archive(model, path, fn, spec)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"Argument `model`: model {model.name!r} cannot be traced for TFLite "
                         f"conversion: {type(e).__name__}: {_first_line(e)}") from e
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


# ----------------------------------------------------------------------------- export directory


def package_versions():
    """Versions of the packages an export depends on."""
    import platform
    from importlib import metadata as md

    versions = {"python": platform.python_version()}
    for name in ("keras", "tensorflow", "numpy", "ai-edge-litert", "keras-resnet-zoo"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return versions


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: repr(o)))


def _check_export_args(model, directory, preprocessing, class_names, quantize,
                       representative_images):
    _check_model(model)
    if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
        raise ValueError(f"Invalid value for argument `directory`: expected a directory path; "
                         f"received {directory!r}.")
    if preprocessing is None:
        raise ValueError("Argument `preprocessing` is required: the serving models take raw "
                         "uint8 RGB images and apply it inside.")
    _check_preprocessing(preprocessing)
    _input_hw(model, preprocessing)
    if isinstance(quantize, str):
        quantize = (quantize,)
    quantize = tuple(quantize or ())
    for q in quantize:
        if q not in QUANTIZATIONS[1:]:
            raise ValueError(f"Invalid value for argument `quantize`: received {q!r}; "
                             f"expected a tuple of values from {QUANTIZATIONS[1:]}.")
    if len(set(quantize)) != len(quantize):
        raise ValueError(f"Invalid value for argument `quantize`: {quantize} repeats a value.")
    if "int8" in quantize and representative_images is None:
        raise ValueError("Argument `representative_images` is required when `quantize` "
                         "contains 'int8' (raw uint8 RGB images at the input size); "
                         "received None.")
    classes = int(model.outputs[0].shape[-1])
    if class_names is None or len(class_names) != classes:
        raise ValueError(f"Invalid value for argument `class_names`: model {model.name!r} has "
                         f"{classes} classes; received "
                         f"{None if class_names is None else len(class_names)} names.")
    return quantize


FORMATS = ("keras", "saved_model", "tflite")


def export_model(model, directory, *, preprocessing, class_names, metadata=None, quantize=(),
                 representative_images=None, overwrite=False, formats=FORMATS):
    """Write a self-describing export directory, atomically.

    Layout::

        directory/
          model.keras          the Keras model (float network input)
          saved_model/         serving_default: raw uint8 RGB images, any batch and size
                               -> {"probabilities": float32 (N, classes)}
          model.tflite         float32; raw uint8 RGB [1, h, w, 3] at input_size -> probabilities
          model_<q>.tflite     one per entry of `quantize` ("float16", "dynamic", "int8")
          metadata.json        architecture, dataset, class names, input size, preprocessing,
                               metrics, package versions, files (bytes, sha256), serving I/O

    Everything is written into a temporary directory next to ``directory`` and
    renamed into place at the end: a failure leaves no half-written target.

    Args:
        model (keras.Model): the trained model (its input is the preprocessed image).
        directory (str): the export directory to create.
        preprocessing (dict): the :mod:`keras_resnet.preprocessing` spec the model was trained with.
        class_names (list[str]): one name per output class.
        metadata (dict | None): extra metadata (``dataset``, ``builder``, ``metrics``, ``run_dir``...).
        quantize (tuple[str, ...]): quantized TFLite variants to add.
        representative_images (np.ndarray | None): raw uint8 RGB images at the input
            size (N, h, w, 3) for ``"int8"`` calibration (at most 500 are used).
        overwrite (bool): replace an existing ``directory``; otherwise it is an error.
        formats (tuple[str, ...]): which of ``"keras"``, ``"saved_model"``, ``"tflite"``
            to write (default: all). ``("keras",)`` needs no TensorFlow (the JAX
            training path exports this way).

    Returns:
        str: the final directory path.
    """
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or "keras" not in formats:
        raise ValueError(f"Invalid value for argument `formats`: received {formats!r}; expected "
                         f"some of {FORMATS}, 'keras' included.")
    quantize = _check_export_args(model, directory, preprocessing, class_names, quantize,
                                  representative_images)
    if quantize and "tflite" not in formats:
        raise ValueError(f"Argument `quantize`={quantize!r} makes TFLite variants; add 'tflite' "
                         "to `formats`.")
    directory = os.path.abspath(os.fspath(directory))
    parent = os.path.dirname(directory)
    if os.path.exists(directory) and not overwrite:
        raise ValueError(f"Invalid value for argument `directory`: {directory!r} already "
                         "exists; pass overwrite=True to replace it.")
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"Invalid value for argument `directory`: {directory!r} exists and is "
                         "not a directory.")
    metadata = dict(metadata or {})
    calibration = _representative(representative_images) if "int8" in quantize else None
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.tmp-", dir=parent)
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; a normal directory once renamed
    try:
        serving = _write_export(model, tmp, preprocessing, quantize, calibration, formats)
        _write_metadata(model, tmp, preprocessing, class_names, metadata, quantize, serving,
                        n_calibration=0 if calibration is None else len(calibration))
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _write_export(model, tmp, preprocessing, quantize, calibration, formats=FORMATS):
    model.save(os.path.join(tmp, "model.keras"))
    serving = {}
    if "saved_model" not in formats and "tflite" not in formats:
        return serving
    export_saved_model(model, os.path.join(tmp, "saved_model"), preprocessing=preprocessing)
    serving = {"saved_model": {"signature": SIGNATURE, "input": {
        "key": INPUT_KEY, "dtype": "uint8", "shape": [None, None, None, 3],
        "note": "raw RGB images of any size; resized and normalised inside"},
        "output": {"key": OUTPUT_KEY, "dtype": "float32",
                   "shape": [None, int(model.outputs[0].shape[-1])]}}}
    if "tflite" not in formats:
        return serving
    sm_tmp = tempfile.mkdtemp(prefix="tflite_", dir=tmp)
    try:
        sm = tflite_saved_model(model, os.path.join(sm_tmp, "sm"), preprocessing=preprocessing)
        for q in (None, *quantize):
            name = "model.tflite" if q is None else f"model_{q}.tflite"
            content = tflite_bytes(model, q, calibration, preprocessing=preprocessing,
                                   saved_model_dir=sm)
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(content)
            serving[name] = {"quantize": q or "float32", **tflite_io_details(content),
                             "note": "raw RGB uint8 image already at input_size "
                                     "(resize as preprocessing.resize says); batch fixed to 1"}
    finally:
        shutil.rmtree(sm_tmp, ignore_errors=True)
    if "saved_model" not in formats:   # written only to convert from
        shutil.rmtree(os.path.join(tmp, "saved_model"), ignore_errors=True)
        serving.pop("saved_model")
    return serving


def _write_metadata(model, tmp, preprocessing, class_names, metadata, quantize, serving,
                    n_calibration):
    from keras_resnet import preprocessing as prep

    h, w = preprocessing["input_size"]
    files = {}
    for name in sorted(os.listdir(tmp)):
        path = os.path.join(tmp, name)
        files[name] = {"bytes": _size(path)}
        if os.path.isfile(path):
            files[name]["sha256"] = _sha256(path)
    try:
        keras_config = _jsonable(model.get_config())
    except Exception:  # noqa: BLE001 - subclassed models may not have a config
        keras_config = None
    meta = {
        "format_version": METADATA_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model_name": model.name,
        "architecture": {"builder": metadata.pop("builder", None),
                         "parameters": int(model.count_params()),
                         "input_shape": [None, *model.inputs[0].shape[1:]],
                         "keras_config": keras_config},
        "dataset": metadata.pop("dataset", None),
        "class_names": [str(c) for c in class_names],
        "num_classes": len(class_names),
        "input_size": [int(h), int(w)],
        "preprocessing": dict(preprocessing),
        "preprocessing_howto": prep.howto(preprocessing),
        "metrics": metadata.pop("metrics", {}),
        "quantize": list(quantize),
        "calibration_images": n_calibration,
        "serving": serving,
        "versions": package_versions(),
        "files": files,
    }
    for key, value in metadata.items():
        meta.setdefault(key, _jsonable(value))
    with open(os.path.join(tmp, "metadata.json"), "w") as f:
        json.dump(_jsonable(meta), f, indent=2)
        f.write("\n")


def _replace_dir(tmp, directory):
    if os.path.exists(directory):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.old-",
                               dir=os.path.dirname(directory))
        os.rmdir(old)
        os.replace(directory, old)
        try:
            os.replace(tmp, directory)
        except BaseException:
            os.replace(old, directory)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)


def read_metadata(path):
    """Return the ``metadata.json`` of an export directory or of the directory holding ``path``.

    Looks in ``path`` (a directory), beside ``path`` (a file) and, for a
    ``saved_model/`` directory, in its parent. Returns None if there is none.
    """
    path = os.path.abspath(os.fspath(path))
    candidates = [os.path.join(path, "metadata.json")] if os.path.isdir(path) else []
    candidates.append(os.path.join(os.path.dirname(path), "metadata.json"))
    for c in candidates:
        if os.path.isfile(c):
            with open(c) as f:
                return json.load(f)
    return None


# ----------------------------------------------------------------------------- command line

CALIBRATION_IMAGES = 200


def calibration_from_dir(directory, preprocessing, limit=CALIBRATION_IMAGES):
    """Raw uint8 RGB images at the input size from the image files under ``directory``.

    Files are taken in sorted order (recursively) and read with
    :func:`keras_resnet.preprocessing.load_image` (the reader the training
    pipelines and ``recipes/predict.py`` use, then the spec's resize rounded to
    uint8: what the TFLite model takes); undecodable ones are skipped.
    """
    from keras_resnet import preprocessing as prep

    if not os.path.isdir(directory):
        raise ValueError(f"Invalid value for argument `calibration_dir`: {directory!r} is not a "
                         "directory.")
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(directory) for f in fs
                   if f.lower().endswith(prep.IMAGE_EXTENSIONS))
    images = []
    for path in files:
        try:
            images.append(prep.load_image(path, preprocessing))
        except prep.ImageError:
            continue
        if len(images) >= limit:
            break
    if not images:
        raise ValueError(f"Invalid value for argument `calibration_dir`: no readable image "
                         f"files ({', '.join(prep.IMAGE_EXTENSIONS)}) under {directory!r}.")
    return np.stack(images)


def calibration_from_dataset(name, limit=CALIBRATION_IMAGES):
    """Up to ``limit`` raw uint8 test images of a :mod:`keras_resnet.data` dataset."""
    from keras_resnet import data

    images, _ = data.load(name).raw_test_images(limit)
    return images


def export_file(model_path, out, *, quantize=(), calibration_dir=None, overwrite=False):
    """Export an existing ``.keras`` model (with its ``metadata.json`` beside it) to ``out``.

    The preprocessing, class names and the rest of the metadata come from the
    ``metadata.json`` next to ``model_path``. ``"int8"`` calibrates on the image
    files under ``calibration_dir`` or, without it, on the test images of the
    dataset the metadata names.

    Returns:
        str: the export directory.
    """
    import keras

    import keras_resnet.layers  # noqa: F401 - registers the custom layers

    if not str(model_path).endswith(".keras") or not os.path.isfile(model_path):
        raise ValueError(f"Invalid value for argument `model`: {model_path!r} is not an "
                         "existing .keras file.")
    meta = read_metadata(model_path)
    if meta is None or "preprocessing" not in meta or "class_names" not in meta:
        raise ValueError(f"Invalid value for argument `model`: no metadata.json with "
                         f"preprocessing and class_names beside {model_path!r}.")
    if isinstance(quantize, str):
        quantize = (quantize,)
    quantize = tuple(quantize or ())
    for q in quantize:   # checked before the slow work
        _check_quantize(q)
    if os.path.exists(out) and not overwrite:
        raise ValueError(f"Invalid value for argument `out`: {out!r} already exists; pass "
                         "--overwrite to replace it.")
    representative = None
    if "int8" in quantize:
        if calibration_dir is not None:
            representative = calibration_from_dir(calibration_dir, meta["preprocessing"])
        else:
            dataset = meta.get("dataset")
            if isinstance(dataset, dict):
                dataset = dataset.get("name")
            if dataset in (None, "folder"):
                raise ValueError("Argument `calibration_dir` is needed for int8: the model's "
                                 f"metadata names no loadable dataset (dataset={dataset!r}).")
            representative = calibration_from_dataset(dataset)
    model = keras.saving.load_model(model_path, compile=False)
    carried = {k: v for k, v in meta.items() if k in ("dataset", "metrics", "run_dir", "training")}
    builder = (meta.get("architecture") or {}).get("builder")
    if builder is not None:
        carried["builder"] = builder
    carried["source"] = os.path.abspath(model_path)
    return export_model(model, out, preprocessing=meta["preprocessing"],
                        class_names=meta["class_names"], metadata=carried, quantize=quantize,
                        representative_images=representative, overwrite=overwrite)


def main(argv=None):
    """``recipes/export.py``: export a .keras model; one-line errors, exit code 2."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="recipes/export.py",
        description="Export a trained .keras model (with its metadata.json beside it) to a "
                    "directory with model.keras, saved_model/, model.tflite, the quantized "
                    "TFLite variants asked for and metadata.json, written atomically.")
    parser.add_argument("model", help="the .keras file (a metadata.json must be beside it, as "
                                      "in every export directory)")
    parser.add_argument("--out", required=True, help="the export directory to write")
    parser.add_argument("--quantize", action="append", default=[],
                        choices=[q for q in QUANTIZATIONS if q], metavar="{float16,dynamic,int8}",
                        help="add a quantized TFLite variant (repeatable; default: none)")
    parser.add_argument("--calibration-dir", default=None,
                        help="image files for int8 calibration (default: the test images of "
                             "the dataset named in the model's metadata)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it exists (default: refuse)")
    args = parser.parse_args(argv)
    try:
        out = export_file(args.model, args.out, quantize=tuple(args.quantize),
                          calibration_dir=args.calibration_dir, overwrite=args.overwrite)
    except ValueError as e:
        print(f"error: {e}".splitlines()[0], file=sys.stderr)
        return 2
    meta = read_metadata(out)
    print(f"exported {args.model} to {out}")
    for name, info in meta["files"].items():
        print(f"  {name:<24} {info['bytes'] / 1e6:8.2f} MB")
    print(f"classify images with: python recipes/predict.py {out} IMAGE...")
    return 0
