"""The command lines of ``recipes/degradation.py`` and ``recipes/identity_mappings.py``.

As the training recipes: flags are parsed and checked without importing keras
or TensorFlow (``--help`` and bad input answer at once, exit code 2, nothing
written), then the environment is prepared and one library function runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from keras_resnet.experiments import configurations as confs
from keras_resnet.training.cli import HelpFormatter, Parser, prepare_environment
from keras_resnet.training.config import (BACKENDS, DIGITS_DEFAULTS, PRECISIONS, SCHEDULES,
                                          ConfigError, RunDirError, TrainConfig, resolve_config)

DATASETS = ("cifar10", "cifar100", "digits", "synthetic")
# Degradation on the bundled digits (He et al. 2015, Fig. 6 in miniature), chosen by the
# measurements in docs/experiments.md: over seeds 1-3 the deeper plain nets train worse
# (8 -> 44 layers: 5.0% -> 60.6% training error after 10 epochs, medians) and
# ResNet-20/32/44 better than ResNet-8; 6 min 47 s for the three seeds on 2 shared CPU
# cores. (At 20 and 56 layers the plain contrast is as large, but after 30 epochs
# ResNet-56 only ties ResNet-20, 0.14% both: the digits are too easy for depth to help
# a residual net once it fits them.)
DIGITS_DEGRADATION = {"depths": (8, 20, 32, 44), "epochs": 10, "batch_size": 128, "lr": 0.025}
# The Identity Mappings tables on the digits: small nets of each block kind
# (20: basic, the paper's ResNet-110 column; 29: bottleneck, the ResNet-164 column).
DIGITS_TABLE_DEPTHS = {"skips": (20,), "units": (20, 29)}


def _int_list(flag):
    def parse(text):
        try:
            values = tuple(int(v) for v in text.split(",") if v.strip() != "")
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag} expects comma-separated integers, e.g. 20,56; received {text!r}") from None
        return values
    return parse


def _common_flags(p, defaults_text, digits_batch, digits_lr):
    t = p.add_argument_group("the recipe every configuration shares")
    t.add_argument("--dataset", choices=DATASETS, default="cifar10",
                   help="cifar10/cifar100 through TFDS; digits: scikit-learn's bundled 8x8 "
                        "digits (no download); synthetic: random 32x32 images and labels")
    length = t.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None,
                        help=f"training epochs per configuration (default: {defaults_text})")
    length.add_argument("--steps", type=int, default=None,
                        help="training iterations per configuration instead of --epochs")
    t.add_argument("--batch-size", type=int, default=None,
                   help=f"global batch (default: 128; digits: {digits_batch})")
    t.add_argument("--lr", type=float, default=None,
                   help="learning rate at batch 128; the runs use lr x batch/128 (default: 0.1; "
                        f"digits: {digits_lr:g})")
    t.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help="step: lr/10 at 50%% and 75%% of the run; cosine (default: step; "
                        "digits: cosine)")
    t.add_argument("--weight-decay", type=float, default=1e-4, help="L2 penalty weight")
    seeds = t.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0,
                       help="seed of initialisation, data split and order (the same for every "
                            "configuration)")
    seeds.add_argument("--seeds", type=_int_list("--seeds"), default=None,
                       help="train every configuration once per seed, e.g. 1,2,3; tables show "
                            "the median, plots the mean and the range")
    r = p.add_argument_group("hardware")
    r.add_argument("--gpus", type=int, default=None,
                   help="data-parallel over N GPUs; 0: CPU (default: 1 GPU if present, else CPU)")
    r.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="mixed_bfloat16 / mixed_float16 for GPUs")
    r.add_argument("--xla", action="store_true", help="XLA-compile the steps (TensorFlow)")
    r.add_argument("--backend", choices=BACKENDS, default=None,
                   help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None,
                   help="the experiment's directory: a run directory per configuration, the "
                        "tables and the pictures; rerunning with the same --out resumes "
                        "(default: runs/<experiment>_<dataset>...)")
    o.add_argument("--quiet", action="store_true",
                   help="no progress display (the final table is still printed)")


def build_parser(experiment):
    """The argparse parser of ``recipes/<experiment>.py``.

    Args:
        experiment: ``"degradation"`` or ``"identity_mappings"``.
    """
    if experiment == "degradation":
        p = Parser(prog="recipes/degradation.py", formatter_class=HelpFormatter, description=(
            "He et al. 2015, Fig. 1 and Fig. 6: train plain nets and their residual twins at "
            "several depths with one recipe and seed; plot training and test error per epoch "
            "(DIR/degradation.png/.svg), save every number (DIR/degradation.json) and print "
            "the final errors. Rerunning with the same --out skips what finished and resumes "
            "what did not."))
        m = p.add_argument_group("what to compare")
        m.add_argument("--depths", type=_int_list("--depths"), default=None,
                       help="CIFAR depths (6n+2) trained plain and residual (default: the "
                            "paper's 20,32,44,56; digits: "
                            + ",".join(map(str, DIGITS_DEGRADATION["depths"])) + ")")
        m.add_argument("--residual-only-depths", type=_int_list("--residual-only-depths"),
                       default=None,
                       help="depths trained residual only (default: 110 on cifar10/cifar100, "
                            "as the paper's Fig. 6 right; none otherwise)")
        digits = (f"64k iterations of batch 128 (He et al. 2015); digits: "
                  f"{DIGITS_DEGRADATION['epochs']}")
    elif experiment == "identity_mappings":
        p = Parser(prog="recipes/identity_mappings.py", formatter_class=HelpFormatter,
                   description=(
                       "He et al. 2016 (Identity Mappings): train one model per row of Table 1 "
                       "(--table skips: shortcut functions, plus a highway row, Srivastava "
                       "et al. 2015) or Table 2 (--table units: unit orderings) with one "
                       "recipe and seed; write DIR/table.csv and DIR/table.md (our test error "
                       "next to the paper's), DIR/curves.png/.svg and "
                       "DIR/identity_mappings.json. Rerunning with the same --out skips what "
                       "finished and resumes what did not."))
        m = p.add_argument_group("what to compare")
        m.add_argument("--table", choices=confs.TABLES, required=True,
                       help="skips: Table 1 / Fig. 2; units: Table 2 / Fig. 4")
        m.add_argument("--depth", type=_int_list("--depth"), default=None,
                       help="CIFAR depth(s), comma-separated (default: the paper's: 110 for "
                            "skips, 110,164 for units; digits: 20 for skips, 20,29 for units)")
        m.add_argument("--highway-bias", type=float, default=confs.HIGHWAY_GATE_BIAS,
                       help="initial transform-gate bias of the highway row (skips table)")
        m.add_argument("--no-highway", action="store_true",
                       help="leave the highway row out of the skips table")
        digits = "64k iterations of batch 128 (He et al. 2016); digits: 20"
    else:
        raise ValueError(f"Invalid value for argument `experiment`: received {experiment!r}; "
                         "expected 'degradation' or 'identity_mappings'.")
    if experiment == "degradation":
        _common_flags(p, digits, DIGITS_DEGRADATION["batch_size"], DIGITS_DEGRADATION["lr"])
    else:
        _common_flags(p, digits, DIGITS_DEFAULTS["batch_size"], DIGITS_DEFAULTS["lr"])
    return p


def _base(args):
    """The TrainConfig every configuration shares (recipe cifar10, the flags' settings)."""
    digits = args.dataset == "digits"
    base = TrainConfig(recipe="cifar10", dataset=args.dataset, epochs=args.epochs,
                       steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       schedule=args.schedule, weight_decay=args.weight_decay,
                       seed=args.seeds[0] if args.seeds else args.seed, gpus=args.gpus,
                       precision=args.precision, xla=args.xla, backend=args.backend)
    return base, digits


def plan_degradation(args):
    """``run_degradation``'s arguments for the parsed flags (ValueError/ConfigError on bad ones)."""
    base, digits = _base(args)
    if digits:
        defaults = DIGITS_DEGRADATION
        base = dataclasses.replace(
            base, batch_size=base.batch_size or defaults["batch_size"],
            lr=base.lr or defaults["lr"],
            epochs=base.epochs if (base.epochs or base.steps) else defaults["epochs"])
    depths = args.depths
    if depths is None:
        depths = DIGITS_DEGRADATION["depths"] if digits else confs.PAPER_DEGRADATION_DEPTHS
    extra = args.residual_only_depths
    if extra is None:
        extra = confs.PAPER_RESIDUAL_ONLY_DEPTHS if args.dataset in ("cifar10", "cifar100") \
            else ()
    extra = tuple(d for d in extra if d not in depths)
    configurations = confs.degradation(depths, extra)   # checks the depths
    out = args.out or os.path.join("runs", f"degradation_{args.dataset}")
    return configurations, base, out, {"depths": tuple(depths), "residual_only_depths": extra}


def plan_identity_mappings(args):
    """``run_identity_mappings``'s arguments for the parsed flags."""
    base, digits = _base(args)
    depths = args.depth
    if depths is None:
        depths = DIGITS_TABLE_DEPTHS[args.table] if digits else confs.PAPER_TABLE_DEPTHS[args.table]
    highway = None if args.no_highway else args.highway_bias
    configurations = confs.identity_mappings(args.table, depths, highway_bias=highway)
    out = args.out or os.path.join(
        "runs", f"identity_mappings_{args.table}_{args.dataset}_{'-'.join(map(str, depths))}")
    return configurations, base, out, {"table": args.table, "depths": tuple(depths),
                                       "highway_bias": highway}


def _error(prog, message):
    print(f"{prog}: error: {message}", file=sys.stderr)


def main(experiment, argv=None):
    """Entry point of ``recipes/<experiment>.py``; return the exit code.

    0: done (configurations that diverged are reported, not errors); 1: a run
    directory could not be written; 2: bad input (nothing written).
    """
    prog = f"recipes/{experiment}.py"
    try:
        args = build_parser(experiment).parse_args(argv)
    except SystemExit as e:   # argparse printed its one-line error (or --help)
        return int(e.code or 0)
    plan = plan_degradation if experiment == "degradation" else plan_identity_mappings
    try:
        if args.seeds is not None and (not args.seeds or len(set(args.seeds)) != len(args.seeds)):
            raise ConfigError(f"--seeds {','.join(map(str, args.seeds))}: expected distinct "
                              "seeds, e.g. 1,2,3.")
        configurations, base, out, kwargs = plan(args)
        for seed in args.seeds or (base.seed,):
            for c in configurations:   # every flag check, before keras is imported
                resolve_config(dataclasses.replace(base, seed=seed, **c.settings))
    except (ValueError, TypeError) as e:
        _error(prog, e)
        return 2
    prepare_environment(base)
    from keras_resnet.experiments import papers

    run = papers.run_degradation if experiment == "degradation" else papers.run_identity_mappings
    try:
        run(base, out, seeds=args.seeds, verbose=not args.quiet, **kwargs)
    except ConfigError as e:
        _error(prog, e)
        return 2
    except RunDirError as e:
        _error(prog, e)
        return 1
    return 0
