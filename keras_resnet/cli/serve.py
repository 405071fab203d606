"""The export and predict command lines (``recipes/export.py``, ``recipes/predict.py``).

Each parser is built by its own function and answers ``--help`` without
importing Keras or TensorFlow; ``main(argv)`` runs ``keras-resnet export|predict``
style subcommands, ``export_main`` and ``predict_main`` one command each. Bad
arguments and unusable models end with one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import json
import sys

from keras_resnet.cli.fields import Parser
from keras_resnet.serving.signature import QUANTIZATIONS

FORMAT_CHOICES = ("saved_model", "tflite", "onnx")   # model.keras is always written


def build_export_parser(parser=None):
    parser = parser or Parser(prog="recipes/export.py")
    parser.description = (
        "Export a trained model (a .keras file with its metadata.json beside it, or an export "
        "directory) to a directory with model.keras, saved_model/, model.tflite, the "
        "quantized TFLite variants asked for, model.onnx if asked for, and metadata.json, "
        "written atomically.")
    parser.add_argument("model", help="the .keras file (a metadata.json must be beside it, as "
                                      "in every export directory) or an export directory "
                                      "(anything recipes/predict.py accepts that has a "
                                      "model.keras)")
    parser.add_argument("--out", required=True, help="the export directory to write")
    parser.add_argument("--quantize", action="append", default=[],
                        choices=[q for q in QUANTIZATIONS if q], metavar="{float16,dynamic,int8}",
                        help="add a quantized TFLite variant (repeatable; default: none)")
    parser.add_argument("--formats", default="saved_model,tflite", metavar="LIST",
                        help=f"comma-separated, from {', '.join(FORMAT_CHOICES)}; model.keras "
                             "is always written (default: saved_model,tflite; onnx needs "
                             "`pip install keras-resnet-zoo[onnx]`)")
    parser.add_argument("--calibration-dir", default=None,
                        help="image files for int8 calibration (default: the image folder the "
                             "model's run trained on, else the test images of the dataset "
                             "named in the model's metadata)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it exists (default: refuse)")
    return parser


def _formats(text):
    names = [f for f in text.split(",") if f]
    bad = [f for f in names if f not in FORMAT_CHOICES]
    if bad or not names:
        raise ValueError(f"Invalid value for argument `formats` (--formats): received {text!r}; "
                         f"expected a comma-separated list from {', '.join(FORMAT_CHOICES)}.")
    return ("keras", *dict.fromkeys(names))


def export_main(argv=None):
    """``recipes/export.py``: export a model; one-line errors, exit code 2."""
    args = build_export_parser().parse_args(argv)
    try:
        formats = _formats(args.formats)
        from keras_resnet.training.environment import import_backend

        import_backend()   # quietly: no native start-up chatter
        from keras_resnet.serving.directory import export_file
        from keras_resnet.serving.metadata import read_metadata

        out = export_file(args.model, args.out, quantize=tuple(args.quantize),
                          calibration_dir=args.calibration_dir, overwrite=args.overwrite,
                          formats=formats)
    except ValueError as e:
        print(f"error: {e}".splitlines()[0], file=sys.stderr)
        return 2
    meta = read_metadata(out)
    print(f"exported {args.model} to {out}")
    for name, info in meta["files"].items():
        print(f"  {name:<24} {info['bytes'] / 1e6:8.2f} MB")
    print(f"classify images with: python recipes/predict.py {out} IMAGE...")
    return 0


def build_predict_parser(parser=None):
    parser = parser or Parser(prog="recipes/predict.py")
    parser.description = ("Classify image files with an exported model and print the top "
                          "classes with their probabilities.")
    parser.epilog = ("Exit codes: 0 every image was classified; 1 some image could not be read "
                     "(the others are still classified and printed); 2 bad arguments or a "
                     "model that cannot be loaded (nothing classified).")
    parser.add_argument("model", help="an export directory, a SavedModel directory, a .keras "
                                      "file, a .tflite file or a .onnx file (the preprocessing "
                                      "comes from the metadata.json beside it)")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to show (default 5)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document instead of text")
    return parser


def predict_main(argv=None):
    """``recipes/predict.py``: classify image files; see ``--help`` for the exit codes."""
    args = build_predict_parser().parse_args(argv)
    if args.top < 1:
        print(f"error: --top must be at least 1; received {args.top}.", file=sys.stderr)
        return 2
    from keras_resnet.training.environment import import_backend

    import_backend()   # quietly: no native start-up chatter
    from keras_resnet.serving.predict import Predictor, classify_files, format_results

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


COMMANDS = {"export": (build_export_parser, export_main),
            "predict": (build_predict_parser, predict_main)}


def build_parser():
    """``export`` and ``predict`` as subcommands of one parser."""
    parser = Parser(prog="keras-resnet",
                    description="Export trained models and classify images.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (build, _) in COMMANDS.items():
        build(sub.add_parser(name))
    return parser


def main(argv=None):
    """``export ARGS`` or ``predict ARGS``: the subcommand's main on the rest of ``argv``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)   # prints the usage and exits 2
        return 2
    return COMMANDS[argv[0]][1](argv[1:])
