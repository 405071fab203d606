"""``keras-resnet experiment degradation|identity_mappings`` and their recipes.

As the training recipes: flags are parsed and checked without importing Keras
or TensorFlow (``--help`` and bad input answer at once, exit code 2, nothing
written), then the environment is prepared and one library function runs.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from keras_resnet.cli.fields import Parser, add_fields, argument_type, values
from keras_resnet.experiments import configurations as confs
from keras_resnet.training.config import (DATASETS, DIGITS_DEFAULTS, ConfigError, RunDirError,
                                          TrainConfig, int_list, resolve_config)
from keras_resnet.training.rundir import check_output_dir, settings_key

EXPERIMENTS = ("degradation", "identity_mappings")
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
# The training settings an experiment offers, every configuration sharing them.
SHARED = ("dataset", "epochs", "steps", "batch_size", "lr", "schedule", "weight_decay", "seed")
HARDWARE = ("gpus", "precision", "xla", "backend")
INTS = argument_type(int_list, "int_list")


def _shared_flags(p, epochs_text, digits):
    t = p.add_argument_group("the recipe every configuration shares")
    add_fields(t, TrainConfig, ("dataset",), dataset={
        "choices": DATASETS["cifar10"], "default": "cifar10",
        "help": "cifar10/cifar100 through TFDS; digits: scikit-learn's bundled 8x8 digits (no "
                "download); synthetic: random 32x32 images and labels"})
    add_fields(t.add_mutually_exclusive_group(), TrainConfig, ("epochs", "steps"),
               context={"epochs": epochs_text, "steps": ""},
               epochs={"help": f"training epochs per configuration (default: {epochs_text})"},
               steps={"help": "training iterations per configuration instead of --epochs"})
    add_fields(t, TrainConfig, ("batch_size", "lr", "schedule", "weight_decay"), context={
        "batch_size": f"128; digits: {digits['batch_size']}", "reference": 128,
        "lr": f"0.1; digits: {digits['lr']:g}",
        "schedule": "step: lr/10 at 50%% and 75%% of the run; cosine (default: step; digits: "
                    "cosine)"}, weight_decay={"help": "L2 penalty weight"})
    seeds = t.add_mutually_exclusive_group()
    add_fields(seeds, TrainConfig, ("seed",), seed={
        "help": "seed of initialisation, data split and order (the same for every "
                "configuration)"})
    seeds.add_argument("--seeds", type=INTS, default=None,
                       help="train every configuration once per seed, e.g. 1,2,3; tables show "
                            "the median, plots the mean and the range")
    add_fields(p.add_argument_group("hardware"), TrainConfig, HARDWARE,
               gpus={"help": "data-parallel over N GPUs; 0: CPU (default: 1 GPU if present, "
                             "else CPU)"},
               precision={"help": "mixed_bfloat16 / mixed_float16 for GPUs"})
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None,
                   help="the experiment's directory: a run directory per configuration, the "
                        "tables and the pictures; rerunning with the same --out resumes "
                        "(default: runs/<experiment>_<dataset>...)")
    o.add_argument("--quiet", action="store_true",
                   help="no progress display (the final table is still printed)")


def build_parser(experiment, prog=None):
    """The argparse parser of ``recipes/<experiment>.py`` (one of :data:`EXPERIMENTS`)."""
    if experiment not in EXPERIMENTS:
        raise ValueError(f"Invalid value for argument `experiment`: received {experiment!r}; "
                         "expected 'degradation' or 'identity_mappings'.")
    prog = prog or f"recipes/{experiment}.py"
    if experiment == "degradation":
        p = Parser(prog=prog, description=(
            "He et al. 2015, Fig. 1 and Fig. 6: train plain nets and their residual twins at "
            "several depths with one recipe and seed; plot training and test error per epoch "
            "(DIR/degradation.png/.svg), save every number (DIR/degradation.json) and print "
            "the final errors. Rerunning with the same --out skips what finished and resumes "
            "what did not."))
        m = p.add_argument_group("what to compare")
        m.add_argument("--depths", type=INTS, default=None,
                       help="CIFAR depths (6n+2) trained plain and residual (default: the "
                            "paper's 20,32,44,56; digits: "
                            + ",".join(map(str, DIGITS_DEGRADATION["depths"])) + ")")
        m.add_argument("--residual-only-depths", type=INTS, default=None,
                       help="depths trained residual only (default: 110 on cifar10/cifar100, "
                            "as the paper's Fig. 6 right; none otherwise)")
        _shared_flags(p, "64k iterations of batch 128 (He et al. 2015); digits: "
                      f"{DIGITS_DEGRADATION['epochs']}", DIGITS_DEGRADATION)
        return p
    p = Parser(prog=prog, description=(
        "He et al. 2016 (Identity Mappings): train one model per row of Table 1 (--table "
        "skips: shortcut functions, plus a highway row, Srivastava et al. 2015) or Table 2 "
        "(--table units: unit orderings) with one recipe and seed; write DIR/table.csv and "
        "DIR/table.md (our test error next to the paper's), DIR/curves.png/.svg and "
        "DIR/identity_mappings.json. Rerunning with the same --out skips what finished and "
        "resumes what did not."))
    m = p.add_argument_group("what to compare")
    m.add_argument("--table", choices=confs.TABLES, required=True,
                   help="skips: Table 1 / Fig. 2; units: Table 2 / Fig. 4")
    m.add_argument("--depth", type=INTS, default=None,
                   help="CIFAR depth(s), comma-separated (default: the paper's: 110 for skips, "
                        "110,164 for units; digits: 20 for skips, 20,29 for units)")
    m.add_argument("--highway-bias", type=float, default=confs.HIGHWAY_GATE_BIAS,
                   help="initial transform-gate bias of the highway row (skips table)")
    m.add_argument("--no-highway", action="store_true",
                   help="leave the highway row out of the skips table")
    _shared_flags(p, "64k iterations of batch 128 (He et al. 2016); digits: "
                  f"{DIGITS_DEFAULTS['epochs']}", DIGITS_DEFAULTS)
    return p


def _base(args):
    """The TrainConfig every configuration shares (recipe cifar10, the flags' settings)."""
    settings = values(args, TrainConfig, SHARED + HARDWARE)
    if args.seeds:
        settings["seed"] = args.seeds[0]
    return TrainConfig(recipe="cifar10", **settings)


def plan_degradation(args):
    """``run_degradation``'s arguments for the parsed flags (ValueError/ConfigError on bad ones)."""
    base = _base(args)
    digits = args.dataset == "digits"
    if digits:   # the digits defaults fill only what was not given (a given 0 is refused)
        d = DIGITS_DEGRADATION
        base = dataclasses.replace(
            base, batch_size=d["batch_size"] if base.batch_size is None else base.batch_size,
            lr=d["lr"] if base.lr is None else base.lr,
            epochs=d["epochs"] if base.epochs is None and base.steps is None else base.epochs)
    depths = args.depths
    if depths is None:
        depths = DIGITS_DEGRADATION["depths"] if digits else confs.PAPER_DEGRADATION_DEPTHS
    extra = args.residual_only_depths
    if extra is None:
        extra = confs.PAPER_RESIDUAL_ONLY_DEPTHS if args.dataset in ("cifar10", "cifar100") \
            else ()
    extra = tuple(d for d in extra if d not in depths)
    configurations = confs.degradation(depths, extra)   # checks the depths
    # The default folder is named by the settings: another --epochs is another experiment.
    out = args.out or os.path.join("runs", f"degradation_{args.dataset}_" + settings_key(
        base, depths=depths, residual_only_depths=extra, seeds=args.seeds))
    return configurations, base, out, {"depths": tuple(depths), "residual_only_depths": extra}


def plan_identity_mappings(args):
    """``run_identity_mappings``'s arguments for the parsed flags."""
    base = _base(args)
    depths = args.depth
    if depths is None:
        depths = DIGITS_TABLE_DEPTHS[args.table] if args.dataset == "digits" \
            else confs.PAPER_TABLE_DEPTHS[args.table]
    highway = None if args.no_highway else args.highway_bias
    configurations = confs.identity_mappings(args.table, depths, highway_bias=highway)
    out = args.out or os.path.join(
        "runs", f"identity_mappings_{args.table}_{args.dataset}_{'-'.join(map(str, depths))}_"
        + settings_key(base, highway_bias=highway, seeds=args.seeds))
    return configurations, base, out, {"table": args.table, "depths": tuple(depths),
                                       "highway_bias": highway}


def _error(prog, message):
    print(f"{prog}: error: {message}", file=sys.stderr)


def main(experiment, argv=None, prog=None):
    """Entry point of ``recipes/<experiment>.py``; return the exit code.

    0: done (configurations that diverged are reported, not errors); 1: a run
    directory could not be written; 2: bad input (nothing written).
    """
    prog = prog or f"recipes/{experiment}.py"
    try:
        args = build_parser(experiment, prog).parse_args(argv)
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
        check_output_dir(out, "--out")
    except (ValueError, TypeError) as e:
        _error(prog, e)
        return 2
    from keras_resnet.training.environment import import_backend, prepare_environment

    prepare_environment(base)
    devices = import_backend()
    if not args.quiet:
        print(f"Devices: {devices}", flush=True)
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
