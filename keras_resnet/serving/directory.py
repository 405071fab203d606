"""The export directory: every format written atomically, described by ``metadata.json``.

Layout (the default formats; ``formats=`` picks others)::

    directory/
      model.keras          the Keras model (float network input)
      saved_model/         serving_default: raw uint8 RGB images, any batch and size
                           -> {"probabilities": float32 (N, classes)}
      model.tflite         float32; raw uint8 RGB [1, h, w, 3] at input_size -> probabilities
      model_<q>.tflite     one per entry of `quantize` ("float16", "dynamic", "int8")
      model.onnx           with formats=(..., "onnx"): raw uint8 RGB [N, h, w, 3] at
                           input_size -> probabilities
      metadata.json        architecture, dataset, class names, input size, preprocessing,
                           metrics, package versions, files (bytes, sha256), serving I/O

Each format is one writer in :data:`WRITERS` (``writer(model, directory,
request) -> {file: serving metadata}``); a new format is one module and one
entry there.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from keras_resnet.serving import calibration, metadata as meta_lib
from keras_resnet.serving import onnx, savedmodel, tflite
from keras_resnet.serving import signature as sig


def _write_keras(model, directory, request):
    del request
    model.save(os.path.join(directory, "model.keras"))
    return {}


WRITERS = {"keras": _write_keras, "saved_model": savedmodel.write, "tflite": tflite.write,
           "onnx": onnx.write}
FORMATS = tuple(WRITERS)
DEFAULT_FORMATS = ("keras", "saved_model", "tflite")


def check_formats(formats):
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or "keras" not in formats or len(set(formats)) != len(formats):
        raise ValueError(f"Invalid value for argument `formats`: received {formats!r}; expected "
                         f"some of {FORMATS}, 'keras' included, each once.")
    return formats


def _check_export_args(model, directory, preprocessing, class_names, quantize,
                       representative_images):
    sig.check_model(model)
    if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
        raise ValueError(f"Invalid value for argument `directory`: expected a directory path; "
                         f"received {directory!r}.")
    if preprocessing is None:
        raise ValueError("Argument `preprocessing` is required: the serving models take raw "
                         "uint8 RGB images and apply it inside.")
    sig.check_preprocessing(preprocessing)
    sig.input_hw(model, preprocessing)
    if isinstance(quantize, str):
        quantize = (quantize,)
    quantize = tuple(quantize or ())
    for q in quantize:
        if q not in sig.QUANTIZATIONS[1:]:
            raise ValueError(f"Invalid value for argument `quantize`: received {q!r}; "
                             f"expected a tuple of values from {sig.QUANTIZATIONS[1:]}.")
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


def export_model(model, directory, *, preprocessing, class_names, metadata=None, quantize=(),
                 representative_images=None, overwrite=False, formats=DEFAULT_FORMATS):
    """Write a self-describing export directory, atomically (layout: the module docstring).

    Everything is written into a temporary directory next to ``directory`` and
    renamed into place at the end: a failure leaves no half-written target.

    Args:
        model (keras.Model): the trained model (its input is the preprocessed image).
        directory (str): the export directory to create.
        preprocessing (dict): the :mod:`keras_resnet.preprocessing` spec the model was trained with.
        class_names (list[str]): one name per output class.
        metadata (dict | None): extra metadata (``dataset``, ``builder``, ``metrics``,
            ``run_dir``...).
        quantize (tuple[str, ...]): quantized TFLite variants to add.
        representative_images (np.ndarray | None): raw uint8 RGB images at the input
            size (N, h, w, 3) for ``"int8"`` calibration (at most 500 are used).
        overwrite (bool): replace an existing ``directory``; otherwise it is an error.
        formats (tuple[str, ...]): which of ``"keras"``, ``"saved_model"``, ``"tflite"``,
            ``"onnx"`` to write (default: the first three). ``("keras",)`` needs no
            TensorFlow (the JAX training path exports this way); ``"onnx"`` needs
            ``tf2onnx`` (``pip install keras-resnet-zoo[onnx]``).

    Returns:
        str: the final directory path.
    """
    formats = check_formats(formats)
    quantize = _check_export_args(model, directory, preprocessing, class_names, quantize,
                                  representative_images)
    if quantize and "tflite" not in formats:
        raise ValueError(f"Argument `quantize`={quantize!r} makes TFLite variants; add 'tflite' "
                         "to `formats`.")
    if "onnx" in formats:
        onnx.check_installed()
    directory = os.path.abspath(os.fspath(directory))
    parent = os.path.dirname(directory)
    if os.path.exists(directory) and not overwrite:
        raise ValueError(f"Invalid value for argument `directory`: {directory!r} already "
                         "exists; pass overwrite=True to replace it.")
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"Invalid value for argument `directory`: {directory!r} exists and is "
                         "not a directory.")
    images = calibration.representative(representative_images) if "int8" in quantize else None
    request = sig.ExportRequest(preprocessing=preprocessing, quantize=quantize,
                                representative_images=images, formats=formats)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.tmp-", dir=parent)
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; a normal directory once renamed
    try:
        serving = write_formats(model, tmp, request)
        meta_lib.write_metadata(model, tmp, preprocessing=preprocessing,
                                class_names=class_names, metadata=metadata or {},
                                quantize=quantize, serving=serving,
                                n_calibration=0 if images is None else len(images))
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def write_formats(model, directory, request):
    """Run the writer of each requested format; return the merged ``serving`` metadata."""
    serving = {}
    for name in request.formats:
        serving.update(WRITERS[name](model, directory, request))
    return serving


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


def source_model(path):
    """The ``.keras`` file to re-export for ``path``: what ``recipes/predict.py`` accepts.

    ``path`` may be a ``.keras`` file, an export directory (its ``model.keras``),
    its ``saved_model/`` directory, or one of its ``.tflite`` / ``.onnx`` files
    (the ``model.keras`` beside them).
    """
    bad = ValueError(f"Invalid value for argument `model`: {path!r} is not an existing .keras "
                     "file or an export directory holding model.keras.")
    if not isinstance(path, (str, os.PathLike)) or not os.path.exists(path):
        raise bad
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        folder = path
        if not os.path.isfile(os.path.join(folder, "model.keras")) and \
                os.path.isfile(os.path.join(folder, "saved_model.pb")):
            folder = os.path.dirname(folder)   # export_dir/saved_model
        candidate = os.path.join(folder, "model.keras")
    elif path.endswith(".keras"):
        candidate = path
    elif path.endswith((".tflite", ".onnx")):
        candidate = os.path.join(os.path.dirname(path), "model.keras")
    else:
        raise bad
    if not os.path.isfile(candidate):
        raise bad
    return candidate


def export_file(model_path, out, *, quantize=(), calibration_dir=None, overwrite=False,
                formats=DEFAULT_FORMATS):
    """Export an existing model (with its ``metadata.json`` beside it) to ``out``.

    ``model_path`` is a ``.keras`` file or anything :func:`source_model` accepts
    (an export directory, ...). The preprocessing, class names and the rest of
    the metadata come from the ``metadata.json`` next to the ``.keras`` file.
    ``"int8"`` calibrates as :func:`keras_resnet.serving.calibration.calibration_for`
    says (``calibration_dir``, else the run's image folder, else the test images
    of the dataset the metadata names).

    Returns:
        str: the export directory.
    """
    import keras

    formats = check_formats(formats)
    model_path = source_model(model_path)
    meta = meta_lib.read_metadata(model_path)
    if meta is None or "preprocessing" not in meta or "class_names" not in meta:
        raise ValueError(f"Invalid value for argument `model`: no metadata.json with "
                         f"preprocessing and class_names beside {model_path!r}.")
    if isinstance(quantize, str):
        quantize = (quantize,)
    quantize = tuple(quantize or ())
    for q in quantize:   # checked before the slow work
        sig.check_quantize(q)
    if os.path.exists(out) and not overwrite:
        raise ValueError(f"Invalid value for argument `out`: {out!r} already exists; pass "
                         "--overwrite to replace it.")
    representative = calibration.calibration_for(meta, calibration_dir) \
        if "int8" in quantize else None
    sig.register_layers()
    model = keras.saving.load_model(model_path, compile=False)
    carried = {k: v for k, v in meta.items()
               if k in ("dataset", "data", "metrics", "run_dir", "training")}
    builder = (meta.get("architecture") or {}).get("builder")
    if builder is not None:
        carried["builder"] = builder
    carried["source"] = model_path
    return export_model(model, out, preprocessing=meta["preprocessing"],
                        class_names=meta["class_names"], metadata=carried, quantize=quantize,
                        representative_images=representative, overwrite=overwrite,
                        formats=formats)
