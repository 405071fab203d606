"""Classify image files with an exported model: ``.keras``, SavedModel, ``.tflite``, ``.onnx``.

The preprocessing comes from the ``metadata.json`` written by
:func:`keras_resnet.serving.export_model` (in the export directory, beside the
model file, or in the parent of a ``saved_model/`` directory). Image files are
read with :func:`keras_resnet.preprocessing.read_image`, the reader the
training pipelines use (its rules: ``preprocessing.READER_RULES``), and then:

* SavedModel exports take the raw pixels (resize and normalisation inside);
* ``.keras`` models get :func:`keras_resnet.serving.preprocessing.preprocess`,
  the same code the SavedModel serving signature runs;
* ``.tflite`` and ``.onnx`` models take uint8 pixels at the input size: the
  image is resized as the metadata says and rounded to uint8 (the model
  normalises inside).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from keras_resnet import preprocessing as prep
from keras_resnet.preprocessing import ImageError, read_image  # noqa: F401 - public here too
from keras_resnet.serving import signature as sig
from keras_resnet.serving.metadata import read_metadata

KINDS = ("keras", "saved_model", "tflite", "onnx")


def locate(path):
    """``(kind, model file or directory)`` of what ``path`` names; ValueError otherwise.

    A directory is a SavedModel (``saved_model.pb``) or an export directory,
    which is served by its ``saved_model/``, else its ``model.onnx``, else its
    ``model.keras``.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.path.exists(path):
        raise ValueError(f"Invalid value for argument `path`: {path!r} does not exist; "
                         "expected a .keras, .tflite or .onnx file, a SavedModel directory "
                         "or an export directory.")
    path = os.fspath(path)
    if os.path.isdir(path):
        for kind, found in (("saved_model", path),
                            ("saved_model", os.path.join(path, "saved_model")),
                            ("onnx", os.path.join(path, "model.onnx")),
                            ("keras", os.path.join(path, "model.keras"))):
            marker = os.path.join(found, "saved_model.pb") if kind == "saved_model" else found
            if os.path.isfile(marker):
                return kind, found
        raise ValueError(f"Invalid value for argument `path`: directory {path!r} holds "
                         "no saved_model.pb, saved_model/, model.onnx or model.keras.")
    for kind, ext in (("keras", ".keras"), ("tflite", ".tflite"), ("onnx", ".onnx")):
        if path.endswith(ext):
            return kind, path
    raise ValueError(f"Invalid value for argument `path`: {path!r} is not a .keras file, a "
                     ".tflite file, a .onnx file or a model directory.")


@dataclasses.dataclass
class Predictor:
    """A loaded model plus what it needs to classify raw images.

    Args:
        path (str): a ``.keras``, ``.tflite`` or ``.onnx`` file, a SavedModel
            directory or an export directory (see :func:`locate`).

    Example:
        >>> predictor = Predictor.load("saved_models/demo")   # doctest: +SKIP
        >>> predictor.top_k(read_image("seven.png"), k=5)      # doctest: +SKIP
    """

    path: str
    kind: str
    metadata: dict | None
    preprocessing: dict | None
    class_names: list
    _run: object = dataclasses.field(repr=False, default=None)

    @classmethod
    def load(cls, path):
        kind, model_path = locate(path)
        path = os.fspath(path)
        metadata = read_metadata(model_path if kind != "saved_model" else path)
        if metadata is None and kind == "saved_model":
            metadata = read_metadata(os.path.dirname(os.path.abspath(model_path)))
        preprocessing = (metadata or {}).get("preprocessing")
        run = _LOADERS[kind](model_path)
        if preprocessing is None and run.needs_preprocessing:
            raise ValueError(f"Invalid value for argument `path`: no metadata.json with the "
                             f"preprocessing next to {model_path!r}; export the model with "
                             "keras_resnet.serving.export_model (recipes/export.py).")
        names = (metadata or {}).get("class_names") or \
            [f"class_{i}" for i in range(run.num_classes)]
        return cls(path=model_path, kind=kind, metadata=metadata, preprocessing=preprocessing,
                   class_names=list(names), _run=run)

    def probabilities(self, image):
        """Class probabilities (float32, (classes,)) of one raw uint8 RGB image (H, W, 3)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError("Invalid value for argument `image`: expected a (H, W, 3) RGB "
                             f"array; received shape {image.shape}.")
        return np.asarray(self._run(image.astype(np.uint8), self.preprocessing), np.float32)

    def top_k(self, image, k=5):
        """The ``k`` most probable classes: ``[{"index", "class", "probability"}, ...]``."""
        probs = self.probabilities(image)
        order = np.argsort(-probs, kind="stable")[:k]
        return [{"index": int(i), "class": str(self.class_names[i]),
                 "probability": float(probs[i])} for i in order]


def _preprocess(image, spec):
    from keras_resnet.serving.preprocessing import preprocess

    return preprocess(image[None], spec)


class _KerasRunner:
    needs_preprocessing = True

    def __init__(self, path):
        import keras

        sig.register_layers()
        self.model = keras.saving.load_model(path, compile=False)
        self.num_classes = int(self.model.outputs[0].shape[-1])
        self.logits = sig.ends_in_logits(self.model)

    def __call__(self, image, spec):
        import keras

        y = self.model(_preprocess(image, spec), training=False)
        y = keras.ops.cast(y, "float32")
        if self.logits:
            y = keras.ops.softmax(y, axis=-1)
        return keras.ops.convert_to_numpy(y)[0]


class _SavedModelRunner:
    def __init__(self, path):
        import tensorflow as tf

        self.tf = tf
        fn = tf.saved_model.load(path).signatures.get(sig.SIGNATURE)
        if fn is None:
            raise ValueError(f"Invalid value for argument `path`: SavedModel {path!r} has no "
                             f"{sig.SIGNATURE!r} signature.")
        self.fn = fn
        (self.key, spec), = fn.structured_input_signature[1].items()
        self.raw = spec.dtype == tf.uint8
        self.needs_preprocessing = not self.raw
        outputs = fn.structured_outputs
        self.out_key = sig.OUTPUT_KEY if sig.OUTPUT_KEY in outputs else next(iter(outputs))
        self.num_classes = int(outputs[self.out_key].shape[-1])

    def __call__(self, image, spec):
        x = image[None] if self.raw else _preprocess(image, spec)
        return self.fn(**{self.key: self.tf.constant(x)})[self.out_key].numpy()[0]


def _float_input(image, spec):
    from keras import ops

    return ops.convert_to_numpy(_preprocess(image, spec))


class _TFLiteRunner:
    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=path)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.raw = self.inp["dtype"] == np.uint8
        self.needs_preprocessing = True   # the resize to input_size
        self.num_classes = int(self.out["shape"][-1])

    def __call__(self, image, spec):
        if self.raw:
            x = prep.resize_uint8(image, spec)[None]
        else:
            x = _float_input(image, spec)
            scale, zero = self.inp["quantization"]
            if self.inp["dtype"] != np.float32:
                x = np.clip(np.round(x / scale + zero), *_limits(self.inp["dtype"]))
        self.interp.set_tensor(self.inp["index"], x.astype(self.inp["dtype"]))
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])[0]
        if self.out["dtype"] != np.float32:
            scale, zero = self.out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y


class _OnnxRunner:
    needs_preprocessing = True   # the resize to input_size

    def __init__(self, path):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ValueError(f"Invalid value for argument `path`: running {path!r} needs "
                             "onnxruntime; install it with `pip install "
                             "keras-resnet-zoo[onnx]`.") from None
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.inp = self.session.get_inputs()[0]
        self.raw = self.inp.type == "tensor(uint8)"
        self.num_classes = int(self.session.get_outputs()[0].shape[-1])

    def __call__(self, image, spec):
        x = prep.resize_uint8(image, spec)[None] if self.raw else _float_input(image, spec)
        return self.session.run(None, {self.inp.name: x})[0][0]


def _limits(dtype):
    info = np.iinfo(dtype)
    return info.min, info.max


_LOADERS = {"keras": _KerasRunner, "saved_model": _SavedModelRunner, "tflite": _TFLiteRunner,
            "onnx": _OnnxRunner}


def classify_files(predictor, paths, k=5):
    """Classify each file; a file that cannot be read gets ``{"file", "error"}`` instead.

    Returns:
        list[dict]: ``{"file": path, "predictions": [...]}`` or ``{"file": path, "error": msg}``.
    """
    results = []
    for path in paths:
        try:
            image = read_image(path)
        except ImageError as e:
            results.append({"file": str(path), "error": e.reason})
            continue
        results.append({"file": str(path), "predictions": predictor.top_k(image, k)})
    return results


def format_results(results):
    """Human-readable lines: the file, then its top classes with probabilities."""
    lines = []
    for r in results:
        if "error" in r:
            lines.append(f"{r['file']}: error: {r['error']}")
            continue
        lines.append(f"{r['file']}:")
        for rank, p in enumerate(r["predictions"], 1):
            lines.append(f"  {rank}. {p['class']:<20} {p['probability']:.4f}")
    return "\n".join(lines)
