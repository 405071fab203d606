"""Classify image files with an exported model: ``.keras``, SavedModel, export dir or ``.tflite``.

The preprocessing comes from the ``metadata.json`` written by
:func:`keras_resnet.export.export_model` (in the export directory, beside the
model file, or in the parent of a ``saved_model/`` directory). Image files are
read with :func:`keras_resnet.preprocessing.read_image`, the reader the
training pipelines use (its rules: ``preprocessing.READER_RULES``), and then:

* SavedModel exports take the raw pixels (resize and normalisation inside);
* ``.keras`` models get :func:`keras_resnet.preprocessing.preprocess`, the
  same code the SavedModel serving signature runs;
* ``.tflite`` models take uint8 pixels at the input size: the image is resized
  as the metadata says and rounded to uint8 (the model normalises inside).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from keras_resnet import export as ex
from keras_resnet import preprocessing as prep
from keras_resnet.preprocessing import ImageError, read_image  # noqa: F401 - public here too

KINDS = ("keras", "saved_model", "tflite")


@dataclasses.dataclass
class Predictor:
    """A loaded model plus what it needs to classify raw images.

    Args:
        path (str): a ``.keras`` file, a ``.tflite`` file, a SavedModel
            directory or an export directory (its ``saved_model/`` is used).

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
        if not isinstance(path, (str, os.PathLike)) or not os.path.exists(path):
            raise ValueError(f"Invalid value for argument `path`: {path!r} does not exist; "
                             "expected a .keras file, a .tflite file, a SavedModel directory "
                             "or an export directory.")
        path = os.fspath(path)
        if os.path.isdir(path):
            if os.path.isfile(os.path.join(path, "saved_model.pb")):
                kind, model_path = "saved_model", path
            elif os.path.isfile(os.path.join(path, "saved_model", "saved_model.pb")):
                kind, model_path = "saved_model", os.path.join(path, "saved_model")
            elif os.path.isfile(os.path.join(path, "model.keras")):
                kind, model_path = "keras", os.path.join(path, "model.keras")
            else:
                raise ValueError(f"Invalid value for argument `path`: directory {path!r} holds "
                                 "no saved_model.pb, saved_model/ or model.keras.")
        elif path.endswith(".keras"):
            kind, model_path = "keras", path
        elif path.endswith(".tflite"):
            kind, model_path = "tflite", path
        else:
            raise ValueError(f"Invalid value for argument `path`: {path!r} is not a .keras "
                             "file, a .tflite file or a model directory.")
        metadata = ex.read_metadata(model_path if kind != "saved_model" else path)
        if metadata is None and kind == "saved_model":
            metadata = ex.read_metadata(os.path.dirname(os.path.abspath(model_path)))
        preprocessing = (metadata or {}).get("preprocessing")
        run = _LOADERS[kind](model_path)
        if preprocessing is None and run.needs_preprocessing:
            raise ValueError(f"Invalid value for argument `path`: no metadata.json with the "
                             f"preprocessing next to {model_path!r}; export the model with "
                             "keras_resnet.export.export_model (recipes/export.py).")
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
    return prep.preprocess(image[None], spec)


class _KerasRunner:
    needs_preprocessing = True

    def __init__(self, path):
        import keras

        import keras_resnet.layers  # noqa: F401 - registers the custom layers

        self.model = keras.saving.load_model(path, compile=False)
        self.num_classes = int(self.model.outputs[0].shape[-1])
        self.logits = ex._ends_in_logits(self.model)

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
        fn = tf.saved_model.load(path).signatures.get(ex.SIGNATURE)
        if fn is None:
            raise ValueError(f"Invalid value for argument `path`: SavedModel {path!r} has no "
                             f"{ex.SIGNATURE!r} signature.")
        self.fn = fn
        (self.key, spec), = fn.structured_input_signature[1].items()
        self.raw = spec.dtype == tf.uint8
        self.needs_preprocessing = not self.raw
        outputs = fn.structured_outputs
        self.out_key = ex.OUTPUT_KEY if ex.OUTPUT_KEY in outputs else next(iter(outputs))
        self.num_classes = int(outputs[self.out_key].shape[-1])

    def __call__(self, image, spec):
        x = image[None] if self.raw else _preprocess(image, spec)
        return self.fn(**{self.key: self.tf.constant(x)})[self.out_key].numpy()[0]


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
            from keras import ops

            x = ops.convert_to_numpy(_preprocess(image, spec))
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


def _limits(dtype):
    info = np.iinfo(dtype)
    return info.min, info.max


_LOADERS = {"keras": _KerasRunner, "saved_model": _SavedModelRunner, "tflite": _TFLiteRunner}


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


def main(argv=None):
    """``recipes/predict.py``: classify image files; see ``--help`` for the exit codes."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(
        prog="recipes/predict.py",
        description="Classify image files with an exported model and print the top classes "
                    "with their probabilities.",
        epilog="Exit codes: 0 every image was classified; 1 some image could not be read (the "
               "others are still classified and printed); 2 bad arguments or a model that "
               "cannot be loaded (nothing classified).")
    parser.add_argument("model", help="an export directory, a SavedModel directory, a .keras "
                                      "file or a .tflite file (the preprocessing comes from the "
                                      "metadata.json beside it)")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to show (default 5)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document instead of text")
    args = parser.parse_args(argv)
    if args.top < 1:
        print(f"error: --top must be at least 1; received {args.top}.", file=sys.stderr)
        return 2
    try:
        predictor = Predictor.load(args.model)
    except ValueError as e:
        print(f"error: {e}".splitlines()[0], file=sys.stderr)
        return 2
    results = classify_files(predictor, args.images, k=args.top)
    if args.json:
        print(json.dumps({"model": predictor.path, "kind": predictor.kind,
                          "results": results}, indent=2))
    else:
        print(format_results(results))
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"error: {r['file']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0
