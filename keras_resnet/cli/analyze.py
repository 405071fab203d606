"""``keras-resnet analyze lesion|paths|shattered_gradients`` and their recipes.

Arguments are parsed before Keras (and TensorFlow) is imported, so ``--help``
and argument errors answer at once; the analyses are imported inside
:func:`main`.

Exit codes: 0 done; 2 bad input (one line on stderr, nothing written).
Outputs go to ``--out DIR`` (created if missing; it may hold other files):
``<analysis>.json``, ``<analysis>.png`` and ``<analysis>.svg``, each written
atomically. An existing output of the same analysis is not replaced unless
``--overwrite`` is given.
"""

from __future__ import annotations

import json
import os
import sys
import time

from keras_resnet.cli.fields import Parser, argument_type
from keras_resnet.specs import ORDERINGS
from keras_resnet.training.config import DATASETS as TRAINING_DATASETS
from keras_resnet.training.config import int_list

RECIPES = ("lesion", "paths", "shattered_gradients")
# The labelled datasets of the CIFAR recipe (synthetic images have nothing to analyse).
DATASETS = tuple(d for d in TRAINING_DATASETS["cifar10"] if d != "synthetic")


class UsageError(ValueError):
    """Bad command-line input found after parsing: one line on stderr, exit code 2."""


def _at_least_one(text):
    values = int_list(text)
    if not values:
        raise ValueError("expected at least one integer")
    return list(values)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected an int, got {text!r}") from None
    if value < 1:
        raise ValueError(f"expected an int >= 1, got {value}")
    return value


_int_list = argument_type(_at_least_one, "int_list")
_positive = argument_type(_positive_int, "positive_int")


def _model_and_data_flags(p, split_default):
    m = p.add_argument_group("model and data")
    m.add_argument("--model", required=True,
                   help="a .keras file keras_resnet exported (or its export directory)")
    m.add_argument("--dataset", choices=DATASETS, default=None,
                   help="evaluation data (default: the dataset named in the metadata.json "
                        "beside the model)")
    m.add_argument("--data-dir", default=None,
                   help="image folders DIR/train/<class>/ and DIR/val/<class>/ (or class "
                        "folders alone) instead of --dataset, as for recipes/cifar10.py "
                        "(default: the folders recorded in the metadata.json beside a "
                        "folder-trained model, read at its input size)")
    m.add_argument("--data-seed", type=int, default=None,
                   help="seed of the dataset's split, the training run's --seed (default: the "
                        "one in the metadata.json beside the model, else 0)")
    m.add_argument("--split", choices=("test", "train"), default=split_default,
                   help="which images to use")
    m.add_argument("--limit", type=_positive, default=None,
                   help="use at most this many images (default: all of the split)")


def _output_flags(p):
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True,
                   help="output directory (created if missing; other files in it are left alone)")
    o.add_argument("--overwrite", action="store_true",
                   help="replace this analysis's earlier outputs in --out")
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser(recipe, prog=None):
    """The argparse parser of ``recipes/<recipe>.py``."""
    if recipe == "lesion":
        p = Parser(prog=prog or "recipes/lesion.py", description=(
            "Lesion study of a trained model (Veit et al. 2016, Fig. 3-5): delete each block in "
            "turn (residual nets lose the block's residual branch and keep its shortcut; plain "
            "nets lose the whole block where its input and output shapes match), delete k "
            "random blocks, and swap k random pairs of compatible blocks, measuring test "
            "accuracy with the model's own weights. Writes lesion.json, lesion.png and "
            "lesion.svg to --out."))
        _model_and_data_flags(p, "test")
        a = p.add_argument_group("analysis")
        a.add_argument("--draws", type=_positive, default=10,
                       help="random draws for each number of deleted blocks and of swaps")
        a.add_argument("--max-delete", type=int, default=None,
                       help="largest number of blocks deleted at once (default: all deletable)")
        a.add_argument("--max-swaps", type=int, default=None,
                       help="largest number of swapped pairs (default: the number of blocks "
                            "with a compatible partner)")
        a.add_argument("--seed", type=int, default=0, help="seed of the random draws")
        a.add_argument("--batch-size", type=_positive, default=256, help="evaluation batch size")
        a.add_argument("--compare", action="append", default=[],
                       help="an earlier lesion.json to draw beside this one (e.g. the plain "
                            "twin's); repeatable")
    elif recipe == "paths":
        p = Parser(prog=prog or "recipes/paths.py", description=(
            "Paths through a trained residual net by length (Veit et al. 2016, Fig. 6): the "
            "exact number of paths of each length, the gradient magnitude one path of each "
            "length carries (Veit et al.'s sampling: backpropagate through the residual "
            "branches of k random blocks and the shortcuts of the others), and their product, "
            "with the median path length carrying the gradient. Writes paths.json, paths.png "
            "and paths.svg to --out."))
        _model_and_data_flags(p, "train")
        a = p.add_argument_group("analysis")
        a.add_argument("--samples", type=_positive, default=32,
                       help="random batches: measurements per path length")
        a.add_argument("--batch-size", type=_positive, default=16, help="examples per batch")
        a.add_argument("--seed", type=int, default=0, help="seed of the batches and paths")
    elif recipe == "shattered_gradients":
        p = Parser(prog=prog or "recipes/shattered_gradients.py", description=(
            "Shattered gradients (Balduzzi et al. 2017, Fig. 1-2): the gradient of 1-D "
            "feed-forward nets and ResNets (this package's blocks on a 1x1 input) with respect "
            "to the input, on a grid of points in [-2, 2], at initialisation; its "
            "autocorrelation and covariance, against white and brown noise. Writes "
            "shattered_gradients.json, .png and .svg to --out."))
        a = p.add_argument_group("analysis")
        a.add_argument("--depths", type=_int_list, default=[2, 6, 12, 24, 50],
                       help="depths in weighted layers, even, comma-separated "
                            "(default: 2,6,12,24,50)")
        a.add_argument("--width", type=_positive, default=200,
                       help="units per hidden layer")
        a.add_argument("--inits", type=_positive, default=8,
                       help="random initialisations per net")
        a.add_argument("--points", type=_positive, default=256,
                       help="grid points in [-2, 2] (the paper: 256)")
        a.add_argument("--ordering", choices=ORDERINGS, default="post",
                       help="unit ordering of the ResNets' blocks")
        a.add_argument("--seed", type=int, default=0, help="seed of the weights and the noise")
    else:
        raise ValueError(f"Invalid value for argument `recipe`: received {recipe!r}; expected "
                         f"one of {', '.join(RECIPES)}.")
    _output_flags(p)
    return p


def _error(prog, message):
    print(f"{prog}: error: {message}", file=sys.stderr)


def _outputs(recipe, out):
    return {ext: os.path.join(out, f"{recipe}.{ext}") for ext in ("json", "png", "svg")}


def _check_out(args, outputs):
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out!r} exists and is not a directory")
    existing = [p for p in outputs.values() if os.path.exists(p)]
    if existing and not args.overwrite:
        raise UsageError(f"--out {args.out!r} already holds {os.path.basename(existing[0])}; "
                         "pass --overwrite to replace it, or choose another --out")


def write_json(obj, path):
    """Write ``obj`` as JSON to ``path`` atomically (a temporary file, then a rename)."""
    from keras_resnet.analysis.files import write_atomically

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")

    write_atomically(path, write, ".json")


def _load_model_and_data(args):
    from keras_resnet import analysis
    from keras_resnet.analysis import inputs

    model = analysis.load_model(args.model)
    # The flags, else the dataset (or image folders, input size and held-out split)
    # that the metadata.json beside the model records.
    source = inputs.model_inputs(args.model, dataset=args.dataset, data_dir=args.data_dir,
                                 seed=args.data_seed, model=model)
    x, y, info = inputs.load_arrays(**source, split=args.split, limit=args.limit)
    analysis.network.check_data_fits(model, x, y, num_classes=info["num_classes"])
    info["dataset_flag"] = source["name"]
    return model, x, y, info


def _read_compare(paths):
    results = []
    for path in paths:
        try:
            with open(path) as f:
                result = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"--compare {path!r} cannot be read as JSON ({e})") from None
        if not isinstance(result, dict) or result.get("analysis") != "lesion":
            raise UsageError(f"--compare {path!r} is not a lesion.json written by "
                             "recipes/lesion.py")
        results.append(result)
    return results


def _lesion(args):
    from keras_resnet import analysis

    compare = _read_compare(args.compare)
    model, x, y, info = _load_model_and_data(args)
    analysis.network.classifier_output(model)
    deletable = sum(i.deletable for i in analysis.network_chain(model).info)
    if args.max_delete is not None and args.max_delete > deletable:
        raise UsageError(f"--max-delete {args.max_delete} is more than the model's {deletable} "
                         "deletable blocks")
    return lambda outputs: _run_lesion(args, outputs, compare, model, x, y, info)


def _run_lesion(args, outputs, compare, model, x, y, info):
    from keras_resnet import analysis

    result = analysis.lesion_study(model, (x, y), max_delete=args.max_delete, draws=args.draws,
                                   max_swaps=args.max_swaps, seed=args.seed,
                                   batch_size=args.batch_size, verbose=0 if args.quiet else 1)
    result["inputs"] = {"model": os.path.abspath(args.model), **info}
    os.makedirs(args.out, exist_ok=True)
    write_json(result, outputs["json"])
    for ext in ("png", "svg"):
        analysis.plot_lesion([result] + compare, outputs[ext])
    single = result["delete_single"]
    print(f"\n{result['model']}: baseline accuracy {result['baseline_accuracy']:.4f} on "
          f"{result['examples']} {info['dataset']} {info['split']} images "
          f"(chance {result['chance_accuracy']:.2f})")
    print("Deleting one block (accuracy):")
    for block in result["blocks"]:
        acc = single.get(block["name"])
        shown = f"{acc:.4f}" if acc is not None else "  -   "
        print(f"  {block['name']:<16} {shown}  {block['lesion']}")
    for k, mean, std in zip(result["delete_k"]["k"], result["delete_k"]["mean"],
                            result["delete_k"]["std"]):
        print(f"  {k} random blocks deleted: {mean:.4f} +- {std:.4f}")


def _paths(args):
    from keras_resnet import analysis
    from keras_resnet.analysis import paths

    model, x, y, info = _load_model_and_data(args)
    analysis.network.classifier_output(model)
    paths.check_residual(analysis.network_chain(model))
    return lambda outputs: _run_paths(args, outputs, model, x, y, info)


def _run_paths(args, outputs, model, x, y, info):
    from keras_resnet import analysis

    result = analysis.gradient_by_path_length(model, (x, y), samples=args.samples,
                                              batch_size=args.batch_size, seed=args.seed,
                                              verbose=0 if args.quiet else 1)
    result["inputs"] = {"model": os.path.abspath(args.model), **info}
    os.makedirs(args.out, exist_ok=True)
    write_json(result, outputs["json"])
    for ext in ("png", "svg"):
        analysis.plot_paths(result, outputs[ext])
    eff = result["effective"]
    print(f"\n{result['model']}: {result['num_blocks']} blocks, {result['total_paths']:,} paths")
    width = max(5, len(f"{max(result['path_counts']):,}"))
    print(f"  length  {'paths':>{width}}  gradient per path  share of the gradient")
    for k, c, m, s in zip(result["lengths"], result["path_counts"],
                          result["gradient_magnitude"], eff["fraction"]):
        print(f"  {k:>6}  {c:>{width},}  {m:>17.4g}  {s:>21.3f}")
    decay = result["decay_per_block"]
    print(f"Gradient per path falls x{decay:.3g} per block; the median of the gradient is at "
          f"length {eff['median_length']} ({eff['median_length_layers']} layers), 90% between "
          f"{eff['interval_90'][0]} and {eff['interval_90'][1]} blocks.")


def _shattered(args):
    return lambda outputs: _run_shattered(args, outputs)


def _run_shattered(args, outputs):
    from keras_resnet import analysis

    result = analysis.shattered_gradients(args.depths, width=args.width, inits=args.inits,
                                          points=args.points, ordering=args.ordering,
                                          seed=args.seed, verbose=0 if args.quiet else 1)
    os.makedirs(args.out, exist_ok=True)
    write_json(result, outputs["json"])
    for ext in ("png", "svg"):
        analysis.plot_shattered(result, outputs[ext])
    s = result["summary"]
    print("\nCorrelation of the gradients at neighbouring inputs (lag 1):")
    print("  depth  feed-forward  ResNet")
    for d, p, r in zip(s["depths"], s["plain_lag1_correlation"], s["resnet_lag1_correlation"]):
        print(f"  {d:>5}  {p:>12.3f}  {r:>6.3f}")
    refs = result["references"]
    print(f"  brown noise {refs['brown_noise']['lag1_correlation']:.3f}, white noise "
          f"{refs['white_noise']['lag1_correlation']:.3f}")


def _check_args(recipe, args):
    if recipe == "shattered_gradients":
        bad = [d for d in args.depths if d < 2 or d % 2]
        if bad:
            raise UsageError(f"--depths {bad[0]} is not an even number >= 2")
        if args.points < 4:
            raise UsageError(f"--points {args.points} is too few (at least 4)")
        return
    if not os.path.exists(args.model):
        raise UsageError(f"--model {args.model!r} does not exist")
    for name in ("max_delete", "max_swaps"):
        value = getattr(args, name, None)
        if value is not None and value < 0:
            raise UsageError(f"--{name.replace('_', '-')} {value} is negative")


def main(recipe, argv=None, prog=None):
    """Entry point of ``recipes/<recipe>.py``; returns the exit code (0 done, 2 bad input)."""
    prog = prog or f"recipes/{recipe}.py"
    try:
        args = build_parser(recipe, prog).parse_args(argv)
    except SystemExit as e:     # argparse printed its one-line error, or --help
        return int(e.code or 0)
    outputs = _outputs(recipe, args.out)
    try:
        _check_args(recipe, args)
        _check_out(args, outputs)
    except UsageError as e:
        _error(prog, e)
        return 2
    start = time.time()
    from keras_resnet.training.environment import import_backend

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_backend()
    try:
        # Everything that can be wrong with the input shows here, before any output.
        job = {"lesion": _lesion, "paths": _paths, "shattered_gradients": _shattered}[recipe](args)
    except ValueError as e:     # UsageError, AnalysisError, DataError
        message = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        _error(prog, message)
        return 2
    job(outputs)
    print(f"Wrote {outputs['json']}, {outputs['png']} and {outputs['svg']} "
          f"({time.time() - start:.0f} s)")
    return 0
