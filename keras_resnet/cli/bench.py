"""``recipes/benchmark.py``: one parser, four modes (``--train``, ``--inference``, ``--build``,
``--compile``).

Each mode has its own argument group; an option of another mode is refused
with one line naming it. ``--help`` imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

import json
import sys

from keras_resnet.cli.fields import Parser
from keras_resnet.training.config import PRECISIONS

MODES = ("train", "inference", "build", "compile")
COMPILE_MODES = ("scan", "scan-remat", "scan-remat-convs", "unroll", "unroll-remat")
# keras_resnet.bench.compile_memory.MODES, without importing it
TRAIN_COMPARE = ("keras-applications", "fit", "fit-keras-applications", "torch", "unfused-bn",
                 "explicit-pad")   # keras_resnet.bench.throughput.COMPARE, without importing it
INFERENCE_MODELS = ("resnet20", "resnet50")   # keras_resnet.bench.inference.MODELS
# Which mode each option belongs to (options of every mode are not listed).
_OWNER = {"model": "train", "batch_size": "train", "precision": "train", "xla": "train",
          "steps_per_execution": "train", "image_size": "train", "compare": "train",
          "fit_steps": "train", "remat": "train", "depths": "train", "no_preact": "train",
          "models": "inference", "threads": "inference",
          "modes": "compile", "steps": "compile", "timeout": "compile",
          "memory_scheduler": "compile"}
# Options two modes share: {option: modes}.
_SHARED = {"batch_size": ("train", "compile"), "depths": ("train", "compile"),
           "no_preact": ("train", "compile")}


def build_parser():
    p = Parser(
        prog="recipes/benchmark.py",
        description="Training throughput of the package's loop with side-by-side comparisons "
                    "(--train); batch-1 inference latency and size of Keras, SavedModel and "
                    "each TFLite variant (--inference); or the build time of 1,000-layer "
                    "ResNets (--build).")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--train", dest="mode", action="store_const", const="train",
                      help="training throughput of the package's loop, with side-by-side "
                           "comparisons in the same process")
    mode.add_argument("--inference", dest="mode", action="store_const", const="inference",
                      help="batch-1 latency and size of every export format")
    mode.add_argument("--build", dest="mode", action="store_const", const="build",
                      help="build time of ResNet-1001 (pre-act) and ResNet-1202, each in a "
                           "fresh process, interleaved; median of --repeats")
    mode.add_argument("--compile", dest="mode", action="store_const", const="compile",
                      help="JAX: compile time, XLA's temporary memory, the first two steps' "
                           "time and the peak memory of deep CIFAR nets' training step, one "
                           "fresh process per measurement (docs/scale.md)")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved repetitions; the median is reported (default 5 with "
                        "--train, 15 with --inference, 3 with --build)")
    p.add_argument("--calls", type=int, default=None,
                   help="calls per case per repetition (default 2 with --train, 5 with "
                        "--inference)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="also write the results as JSON to FILE ('-': print only the JSON; "
                        "--inference and --build)")
    t = p.add_argument_group("--train")
    t.add_argument("--model", default=None,
                   help="a zoo name (python -m keras_resnet zoo) or depth:N (default: "
                        "resnet56_cifar)")
    t.add_argument("--batch-size", type=int, default=None,
                   help="global batch (default: 128 CIFAR, 32 ImageNet; 16 with --depths)")
    t.add_argument("--precision", default=None,
                   choices=PRECISIONS,
                   help="(default: float32)")
    t.add_argument("--xla", action="store_true", help="XLA on TensorFlow (JAX always compiles)")
    t.add_argument("--steps-per-execution", type=int, default=None,
                   help="steps per compiled call (default: the engine's)")
    t.add_argument("--image-size", type=int, default=None,
                   help="(default: 32 CIFAR, 224 ImageNet)")
    t.add_argument("--compare", default=None, help=f"comma-separated: {', '.join(TRAIN_COMPARE)}")
    t.add_argument("--fit-steps", type=int, default=None,
                   help="steps per model.fit call in the fit comparisons (default: 10)")
    t.add_argument("--remat", action="store_true", help="rematerialise every residual block")
    t.add_argument("--depths", default=None,
                   help="comma-separated CIFAR depths: one fresh process each, the depth table "
                        "(with --compile: default 110,164,1001,1202)")
    t.add_argument("--no-preact", action="store_true",
                   help="with --depths or --compile: post-activation nets (default: "
                        "pre-activation)")
    i = p.add_argument_group("--inference")
    i.add_argument("--models", default=None,
                   help=f"comma-separated, from {', '.join(INFERENCE_MODELS)} (default: all)")
    i.add_argument("--threads", type=int, default=None,
                   help="TFLite interpreter threads (default: all CPU cores)")
    c = p.add_argument_group("--compile (also --depths, --batch-size, --no-preact, --repeats, "
                             "--json: one JSON line per row appended)")
    c.add_argument("--modes", default=None,
                   help=f"comma-separated, from {', '.join(COMPILE_MODES)} (default: "
                        "scan,scan-remat)")
    c.add_argument("--steps", type=int, default=None, choices=(0, 1, 2),
                   help="steps run with the compiled program (default: 2; 0: compile only)")
    c.add_argument("--timeout", type=float, default=None,
                   help="seconds per measurement (default: 600)")
    c.add_argument("--memory-scheduler", action="store_true",
                   help="XLA's CPU scheduler that plans for memory instead of concurrency")
    return p


def _say(quiet):
    return None if quiet else (lambda m: print(m, flush=True))


def _emit(result, where):
    """``--json``: the result on standard output (``-``), or written to the file ``where``."""
    if where == "-":
        print(json.dumps(result, indent=2))
    elif where:
        _write_json(result, where)


def _write_json(result, path):
    with open(path, "w") as f:
        json.dump(result, f, indent=2)


def _depths(text):
    """``--depths``'s comma-separated CIFAR depths as ints; a bad item names the flag."""
    try:
        return [int(d) for d in text.split(",") if d]
    except ValueError:
        raise ValueError(f"--depths: {text!r} is not a comma-separated list of depths") from None


def run_train(args):
    from keras_resnet.bench.machine import machine

    if args.depths:
        from keras_resnet.bench.depths import depth_table

        depths = _depths(args.depths)
        rows = depth_table(depths, batch_size=args.batch_size or 16,
                           precision=args.precision or "float32", preact=not args.no_preact,
                           repeats=args.repeats or 5, remat=args.remat)
        result = {"machine": machine(), "depth_table": rows}
    else:
        from keras_resnet.bench.throughput import compare

        model = args.model or "resnet56_cifar"
        result = compare(model, batch_size=args.batch_size or (
            32 if model in ("resnet50", "resnet101", "resnet152") else 128),
            precision=args.precision or "float32", xla=args.xla,
            steps_per_execution=args.steps_per_execution, size=args.image_size,
            comparisons=tuple(c for c in (args.compare or "").split(",") if c),
            repeats=args.repeats or 5, calls=args.calls or 2, remat=args.remat,
            fit_steps=10 if args.fit_steps is None else args.fit_steps)
        print(f"\n{'case':<46} {'img/s':>9} {'ratio':>6} {'s/call':>8}  whole call (s)")
        for r in result["results"]:
            call = r.get("call_seconds_median")
            print(f"{r['label']:<46} {r['images_per_sec']:>9.1f} "
                  f"{r['ratio_to_keras_resnet']:>6.2f} {r['seconds_per_call_median']:>8.3f}"
                  + (f"  {call:.3f}" if call is not None else ""))
    _emit(result, args.json)
    return 0


def run_build(args):
    from keras_resnet.bench.build import build_benchmark

    quiet = args.json == "-"
    result = build_benchmark(repeats=3 if args.repeats is None else args.repeats,
                             log=_say(quiet))
    if not quiet:
        print(f"\n{'model':<20} {'backend':<11} {'top-level layers':>16} "
              f"{'median build (s)':>17}  recursion limit")
        for m, r in result.items():
            print(f"{m:<20} {r['backend']:<11} {r['top_level_layers']:>16} "
                  f"{r['build_s_median']:>17.2f}  {r['recursion_limit']} (untouched)")
    _emit(result, args.json)
    return 0


def run_inference(args):
    from keras_resnet.bench.inference import format_table, inference_benchmark

    quiet = args.json == "-"
    result = inference_benchmark(tuple(m for m in (args.models or ",".join(INFERENCE_MODELS))
                                       .split(",") if m),
                                 repeats=15 if args.repeats is None else args.repeats,
                                 calls=5 if args.calls is None else args.calls,
                                 threads=args.threads, log=_say(quiet))
    if quiet:
        print(json.dumps(result, indent=2))
        return 0
    s = result["settings"]
    print(f"\n{result['machine']['cpus']} CPUs ({result['machine']['processor']}), batch 1, "
          f"median of {s['repeats']} interleaved repetitions of {s['calls']} calls, "
          f"TFLite threads {s['tflite_threads']}\n")
    print(format_table(result))
    if args.json:
        _write_json(result, args.json)
        print(f"\nwrote {args.json}")
    return 0


def run_compile(args):
    from keras_resnet.bench.compile_memory import HEADER, measure_isolated, row_text

    depths = _depths(args.depths or "110,164,1001,1202")
    modes = [m for m in (args.modes or "scan,scan-remat").split(",") if m]
    bad = [m for m in modes if m not in COMPILE_MODES]
    if bad:
        raise ValueError(f"--modes: {bad[0]!r} is not one of {', '.join(COMPILE_MODES)}")
    if args.json:   # checked writable before any measurement
        open(args.json, "a").close()
    print(HEADER, flush=True)
    for _ in range(args.repeats or 1):
        for depth in depths:
            for mode in modes:
                r = measure_isolated(depth, mode=mode, timeout=args.timeout or 600,
                                     memory_scheduler=args.memory_scheduler,
                                     batch_size=args.batch_size or 16,
                                     steps=2 if args.steps is None else args.steps,
                                     preact=not args.no_preact)
                r["memory_scheduler"] = args.memory_scheduler
                print(row_text(r), flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(r) + "\n")
    return 0


RUNNERS = {"train": run_train, "inference": run_inference, "build": run_build,
           "compile": run_compile}


def main(argv=None):
    """Parse ``argv`` and run the mode; bad values end in one ``error:`` line, exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = [k for k, owner in _OWNER.items()
             if args.mode not in _SHARED.get(k, (owner,)) and getattr(args, k) not in (None, False)]
    if given:
        option = "--" + given[0].replace("_", "-")
        owners = " or ".join(f"--{m}" for m in _SHARED.get(given[0], (_OWNER[given[0]],)))
        parser.error(f"{option} belongs to {owners}, not --{args.mode}")
    try:
        return RUNNERS[args.mode](args)
    except ValueError as e:
        print(f"error: {e}".splitlines()[0], file=sys.stderr)
        return 2
