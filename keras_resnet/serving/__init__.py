"""Serving: SavedModel, TFLite and ONNX exports, the export directory, and prediction.

Modules, one concern each:

* :mod:`~keras_resnet.serving.signature`: the function every format serves
  (raw pixels -> probabilities) and the checks on the model;
* :mod:`~keras_resnet.serving.preprocessing`: the preprocessing inside the
  serving graphs (``keras.ops``);
* :mod:`~keras_resnet.serving.savedmodel`, :mod:`~keras_resnet.serving.tflite`
  (with quantization), :mod:`~keras_resnet.serving.onnx`: one format each;
* :mod:`~keras_resnet.serving.calibration`: int8 representative images;
* :mod:`~keras_resnet.serving.metadata`: ``metadata.json``;
* :mod:`~keras_resnet.serving.directory`: the export directory (one writer per
  format, atomic) and re-exporting a saved model;
* :mod:`~keras_resnet.serving.predict`: classify images with any exported file.

The export and predict command lines are :mod:`keras_resnet.cli.serve`.

The names below load their module on first use, so ``import
keras_resnet.serving`` imports neither Keras nor TensorFlow.
"""

import importlib

_NAMES = {
    "export_model": "directory", "export_file": "directory", "FORMATS": "directory",
    "DEFAULT_FORMATS": "directory",
    "export_saved_model": "savedmodel",
    "export_tflite": "tflite", "tflite_bytes": "tflite", "tflite_io_details": "tflite",
    "export_onnx": "onnx",
    "serving_function": "signature", "QUANTIZATIONS": "signature", "SIGNATURE": "signature",
    "INPUT_KEY": "signature", "OUTPUT_KEY": "signature",
    "read_metadata": "metadata", "package_versions": "metadata",
    "calibration_from_dir": "calibration", "calibration_from_dataset": "calibration",
    "Predictor": "predict", "classify_files": "predict", "format_results": "predict",
}
__all__ = sorted(_NAMES)


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
