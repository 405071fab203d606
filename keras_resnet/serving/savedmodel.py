"""SavedModel export: a ``serving_default`` signature returning class probabilities.

The signature takes a batch of any size and returns ``{"probabilities":
float32 (N, classes)}``; it loads with ``tf.saved_model.load`` and with
``keras.layers.TFSMLayer``. The archive is written with Keras's own
``keras.export.ExportArchive`` (the TFLite and ONNX conversions read such an
archive too, see :func:`write_archive`).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil

from keras_resnet.serving import signature as sig


def write_archive(model, path, fn, input_spec, output_key=None):
    """Write ``fn`` (tracked with ``model``'s variables) as a SavedModel with one signature."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    if output_key is not None:
        def endpoint(images):
            return {output_key: fn(images)}
    else:
        endpoint = fn
    archive.add_endpoint(sig.SIGNATURE, tf.function(endpoint), input_signature=[input_spec])
    with contextlib.redirect_stdout(io.StringIO()):
        archive.write_out(path, verbose=False)


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
        >>> from keras_resnet.serving import export_saved_model
        >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
        ...                           keras.layers.GlobalAveragePooling2D(),
        ...                           keras.layers.Dense(3, activation="softmax")])
        >>> path = export_saved_model(model, os.path.join(tempfile.mkdtemp(), "sm"))
        >>> served = tf.saved_model.load(path).signatures["serving_default"]
        >>> served(images=tf.zeros([5, 8, 8, 3]))["probabilities"].shape
        TensorShape([5, 3])
    """
    import tensorflow as tf

    sig.check_model(model)
    preprocessing = sig.check_preprocessing(preprocessing)
    path = sig.check_output_path(path, "path")
    if preprocessing is not None:
        sig.input_hw(model, preprocessing)
        spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name=sig.INPUT_KEY)
    else:
        spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], model.inputs[0].dtype,
                             name=sig.INPUT_KEY)
    fn = sig.serving_function(model, preprocessing, resize=True)
    try:
        write_archive(model, path, fn, spec, output_key=sig.OUTPUT_KEY)
    except Exception as e:  # noqa: BLE001 - re-raised with the model's name
        shutil.rmtree(path, ignore_errors=True)
        raise ValueError(f"Argument `model`: model {model.name!r} cannot be exported as a "
                         f"SavedModel: {type(e).__name__}: {sig.first_line(e)}") from e
    return path


def write(model, directory, request):
    """The export directory's ``saved_model/``; returns its ``serving`` metadata entry."""
    export_saved_model(model, os.path.join(directory, "saved_model"),
                       preprocessing=request.preprocessing)
    return {"saved_model": {
        "signature": sig.SIGNATURE,
        "input": {"key": sig.INPUT_KEY, "dtype": "uint8", "shape": [None, None, None, 3],
                  "note": "raw RGB images of any size; resized and normalised inside"},
        "output": {"key": sig.OUTPUT_KEY, "dtype": "float32",
                   "shape": [None, int(model.outputs[0].shape[-1])]}}}
