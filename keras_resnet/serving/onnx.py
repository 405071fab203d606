"""ONNX export: ``model.onnx`` with the preprocessing inside, like the TFLite file.

The serving function (:func:`keras_resnet.serving.signature.serving_function`,
the one the SavedModel and TFLite files run) is traced as a ``tf.function``
and converted with ``tf2onnx.convert.from_function``, which freezes the
weights. That is also what Keras's own ``model.export(format="onnx")`` does
under TensorFlow; it is called directly here because Keras's exporter
converts the model alone, and the export puts the normalisation (and the
softmax of a logits model) inside the file.

The ONNX model takes ``images``: raw uint8 RGB pixels ``[N, height, width, 3]``
already at ``input_size`` (resize them as ``preprocessing["resize"]`` says,
as for TFLite; any batch size) and returns float32 probabilities
``[N, classes]``. Run it with ``onnxruntime``::

    import onnxruntime as ort
    session = ort.InferenceSession("model.onnx")
    probabilities = session.run(None, {"images": pixels})[0]

Needs ``tf2onnx`` and ``onnx`` (``pip install keras-resnet-zoo[onnx]``), and
the TensorFlow backend.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os

from keras_resnet.serving import signature as sig

ONNX_OPSET = 17   # supported by every onnxruntime release since 1.14


def check_installed():
    """Raise a one-line error naming the extra when tf2onnx or onnx is missing."""
    import importlib.util

    missing = [m for m in ("tf2onnx", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"Invalid value for argument `formats`: 'onnx' needs "
                         f"{' and '.join(missing)}; install them with "
                         "`pip install keras-resnet-zoo[onnx]`.")


def export_onnx(model, path, *, preprocessing=None, opset=ONNX_OPSET):
    """Convert ``model`` to an ONNX file whose output is class probabilities.

    Without ``preprocessing`` the input is the model's own float input
    ``[N, H, W, C]``; with it, raw uint8 RGB pixels already at ``input_size``,
    normalised inside.

    Args:
        model (keras.Model): the model (called with ``training=False``).
        path (str): the ``.onnx`` file to write.
        preprocessing (dict | None): a :mod:`keras_resnet.preprocessing` spec.
        opset (int): the ONNX opset.

    Returns:
        str: ``path``.
    """
    import tensorflow as tf

    check_installed()
    import tf2onnx

    sig.check_model(model)
    preprocessing = sig.check_preprocessing(preprocessing)
    path = sig.check_output_path(path, "path")
    h, w = sig.input_hw(model, preprocessing)
    if preprocessing is not None:
        spec = tf.TensorSpec([None, h, w, 3], tf.uint8, name=sig.INPUT_KEY)
    else:
        spec = tf.TensorSpec([None, h, w, model.inputs[0].shape[-1]], model.inputs[0].dtype,
                             name=sig.INPUT_KEY)
    serve = sig.serving_function(model, preprocessing, resize=False)
    fn = tf.function(lambda images: {sig.OUTPUT_KEY: serve(images)}, input_signature=[spec])
    tmp = path + ".tmp"
    # tf2onnx logs every rewrite at INFO and prints to stdout: keep the console quiet.
    quiet = logging.getLogger("tf2onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            tf2onnx.convert.from_function(fn, input_signature=[spec], opset=opset,
                                          output_path=tmp)
        os.replace(tmp, path)
    except Exception as e:  # noqa: BLE001 - re-raised with the model's name
        if os.path.exists(tmp):
            os.remove(tmp)
        raise ValueError(f"Argument `model`: model {model.name!r} cannot be converted to "
                         f"ONNX: {type(e).__name__}: {sig.first_line(e)}") from e
    finally:
        quiet.setLevel(level)
    return path


def onnx_io_details(path):
    """Input/output names, dtypes and shapes of an ONNX file (for metadata.json)."""
    import onnx

    graph = onnx.load(os.fspath(path), load_external_data=False).graph

    def describe(value):
        t = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        return {"key": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                "shape": shape}

    return {"input": describe(graph.input[0]), "output": describe(graph.output[0])}


def write(model, directory, request):
    """The export directory's ``model.onnx``; its ``serving`` metadata entry."""
    path = export_onnx(model, os.path.join(directory, "model.onnx"),
                       preprocessing=request.preprocessing)
    return {"model.onnx": {**onnx_io_details(path), "opset": ONNX_OPSET,
                           "note": "raw RGB uint8 images already at input_size (resize as "
                                   "preprocessing.resize says); any batch size"}}
