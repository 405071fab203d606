"""The command line of ``recipes/tune.py``: parse and check before importing Keras.

``--help`` and bad input answer at once (exit 2, nothing written); the backend
and TensorFlow's CPU settings are fixed before Keras is imported, as for the
training recipes (:func:`keras_resnet.training.cli.prepare_environment`).
"""

from __future__ import annotations

import argparse
import logging
import sys

from keras_resnet import specs
from keras_resnet.training.cli import HelpFormatter, Parser, prepare_environment
from keras_resnet.training.config import (BACKENDS, DATASETS, PRECISIONS, SCHEDULES, ConfigError,
                                          RunDirError, TrainConfig, TrainingDiverged)
from keras_resnet.tuning.config import (DEFAULT_EPOCHS, DEFAULT_EPOCHS_OTHER, TUNERS,
                                        SearchConfig, check_search_dir, distributed_role,
                                        resolve_search)
from keras_resnet.tuning.space import DEFAULT_MAX_CIFAR_DEPTH

PROG = "recipes/tune.py"
PREACT = {"both": (False, True), "on": (True,), "off": (False,)}


def _numbers(flag, kind=float, allow_range=True):
    """argparse type: ``1,2,4`` (choices) or ``1:4`` (a (min, max) range)."""
    def parse(text):
        try:
            if allow_range and ":" in text:
                low, high = (kind(x) for x in text.split(":"))
                return (low, high)
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            form = "a comma-separated list" + (" or MIN:MAX" if allow_range else "")
            raise argparse.ArgumentTypeError(f"{text!r} is not {form} of "
                                             f"{'integers' if kind is int else 'numbers'}")
    parse.__name__ = flag
    return parse


def _number(text):
    """``1.5`` -> 1.5, ``2`` -> 2 (an int where the text is one)."""
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() \
        else value


def _count(text):
    """argparse type for budgets: ``1000000``, ``1e6``, ``1_000_000``, ``1M``, ``500K``, ``2G``."""
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}
    t = text.strip().upper().replace("_", "")
    try:
        value = float(t[:-1]) * scale[t[-1]] if t and t[-1] in scale else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (1000000, 1e6, 1M, 500K)")
    return int(value) if value.is_integer() else value


def _names(allowed):
    def parse(text):
        values = [x.strip() for x in text.split(",") if x.strip()]
        for v in values:
            if v not in allowed:
                raise argparse.ArgumentTypeError(f"{v!r} is not one of {', '.join(allowed)}")
        return values
    return parse


def build_parser():
    """The argparse parser of ``recipes/tune.py``; every flag shows its default."""
    p = Parser(prog=PROG, formatter_class=HelpFormatter, description=(
        "Search ResNet depth and width (and pre-activation, blocks, shortcuts, learning rate, "
        "weight decay) with KerasTuner within a parameter or multiply-add budget. Every trial "
        "trains through the package's training recipe (as recipes/cifar10.py: run directory, "
        "schedule, precision, GPUs). Rerun with the same --dir to resume. Distributed: set "
        "KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT (one chief, "
        "workers 'tuner0', 'tuner1', ...)."))
    d = p.add_argument_group("data")
    d.add_argument("--dataset", default=None,
                   help=f"one of {', '.join(DATASETS['cifar10'])} (default: cifar10)")
    d.add_argument("--data-dir", default=None,
                   help="search on image folders DIR/train/<class>/ and DIR/val/<class>/")
    d.add_argument("--holdout", action="store_true",
                   help="select on 10%% of the training images held out (He et al.'s 45k/5k "
                        "split) instead of the test set")
    d.add_argument("--image-size", type=int, default=None,
                   help="input size for --dataset synthetic and --data-dir (default: 32)")
    s = p.add_argument_group("search")
    s.add_argument("--tuner", choices=TUNERS, default="random", help="KerasTuner oracle")
    s.add_argument("--max-trials", type=int, default=10,
                   help="in-budget trials to train (random, bayesian); rejected candidates "
                        "do not count")
    s.add_argument("--epochs", type=int, default=None,
                   help=f"epochs per trial; Hyperband's most (default: "
                        f"{DEFAULT_EPOCHS['digits']} on the digits, else {DEFAULT_EPOCHS_OTHER})")
    s.add_argument("--factor", type=int, default=3, help="Hyperband's reduction factor")
    s.add_argument("--seed", type=int, default=0,
                   help="seed of the search and of every trial's training")
    sp = p.add_argument_group("search space (keras_resnet.tuning.ResNetHyperModel)")
    sp.add_argument("--depths", type=_numbers("--depths", int, allow_range=False), default=None,
                    help="depths, e.g. 20,32,56 (default: every CIFAR depth, 6n+2 and 9n+2, up "
                         f"to {DEFAULT_MAX_CIFAR_DEPTH}, that fits the budget)")
    sp.add_argument("--widths", type=_numbers("--widths", _number), default=[1, 2, 4],
                    help="widening factors: a list 1,2,4 or a range MIN:MAX (integers: every "
                         "integer; decimals: continuous) (default: 1,2,4)")
    sp.add_argument("--preact", choices=tuple(PREACT), default="both",
                    help="full pre-activation units: search both, or fix on/off")
    sp.add_argument("--blocks", type=_names(specs.BLOCKS), default=None,
                    help="basic and/or bottleneck (default: each depth's block from the table)")
    sp.add_argument("--shortcuts", type=_names(specs.SHORTCUTS), default=None,
                    help="shortcut options among A,B,C (default: A for basic nets, B for "
                         "bottlenecks)")
    sp.add_argument("--learning-rates", type=_numbers("--learning-rates"), default=None,
                    help="learning rates at batch 128 (the run uses lr x batch/128): a list, or "
                         "MIN:MAX sampled on a log scale (default: 0.1)")
    sp.add_argument("--weight-decays", type=_numbers("--weight-decays"), default=None,
                    help="L2 weight decay: a list or MIN:MAX (default: 1e-4)")
    sp.add_argument("--max-params", type=_count, default=None,
                    help="most trainable parameters of a candidate, e.g. 1M (rejected before "
                         "any weight is allocated)")
    sp.add_argument("--max-macs", type=_count, default=None,
                    help="most multiply-adds per image, e.g. 50M")
    t = p.add_argument_group("training of each trial (as recipes/cifar10.py)")
    t.add_argument("--batch-size", type=int, default=None,
                   help="global batch (default: 128; digits: 64)")
    t.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help="learning-rate schedule of each trial (default: step; digits: cosine)")
    t.add_argument("--gpus", type=int, default=None,
                   help="data-parallel over N GPUs per trial (default: 1 GPU if present, else "
                        "the CPU); one worker per GPU: see --help's description")
    t.add_argument("--precision", choices=PRECISIONS, default="float32", help="training precision")
    t.add_argument("--backend", choices=BACKENDS, default=None,
                   help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    o = p.add_argument_group("output")
    o.add_argument("--dir", default=None,
                   help="search directory; rerunning with the same one resumes "
                        "(default: searches/<dataset>-<tuner>)")
    o.add_argument("--final-epochs", type=int, default=None,
                   help="retrain the best configuration for N epochs and export it")
    o.add_argument("--export", default=None,
                   help="export directory of the retrained model (default: "
                        "saved_models/<dir name>_best)")
    o.add_argument("--no-export", action="store_true", help="retrain without exporting")
    o.add_argument("--verbose", action="store_true", help="show each trial's training display")
    o.add_argument("--quiet", action="store_true", help="no line per trial")
    o.add_argument("--in-process", action="store_true",
                   help="train every trial in this process rather than one process per trial: "
                        "faster to start, but TensorFlow keeps every trial's graphs, so memory "
                        "grows trial after trial")
    return p


def config_from_args(argv=None):
    """Parse ``argv`` into a :class:`~keras_resnet.tuning.config.SearchConfig`."""
    a = build_parser().parse_args(argv)
    train = TrainConfig(recipe="cifar10", dataset=a.dataset, data_dir=a.data_dir,
                        holdout=a.holdout, image_size=a.image_size, batch_size=a.batch_size,
                        schedule=a.schedule, gpus=a.gpus, precision=a.precision,
                        backend=a.backend, seed=a.seed, export=a.export,
                        no_export=a.no_export, quiet=a.quiet)
    return SearchConfig(
        train=train, directory=a.dir, tuner=a.tuner, max_trials=a.max_trials, epochs=a.epochs,
        factor=a.factor, depths=a.depths, widths=a.widths, preact=PREACT[a.preact],
        blocks=a.blocks, shortcuts=a.shortcuts, learning_rates=a.learning_rates,
        weight_decays=a.weight_decays, max_params=a.max_params, max_macs=a.max_macs,
        final_epochs=a.final_epochs, verbose=a.verbose, quiet=a.quiet,
        in_process=a.in_process)


def _error(message):
    print(f"{PROG}: error: {message}", file=sys.stderr)


def main(argv=None):
    """Entry point of ``recipes/tune.py``; return the process exit code.

    0: done; 1: the search or the final retraining failed (the records are
    kept: rerun to resume); 2: bad input (nothing written).
    """
    try:
        config = config_from_args(argv)
    except SystemExit as e:   # argparse printed its one-line error (or --help)
        return int(e.code or 0)
    try:
        config, _ = resolve_search(config)
        check_search_dir(config.directory, config, distributed=distributed_role() is not None)
    except ConfigError as e:
        _error(e)
        return 2
    prepare_environment(config.train)
    # A new model per trial makes TensorFlow warn about retracing; expected here.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from keras_resnet.tuning.search import run_search

    try:
        result = run_search(config)
    except ConfigError as e:
        _error(e)
        return 2
    except (TrainingDiverged, RunDirError) as e:
        _error(str(e).splitlines()[0] if str(e) else repr(e))
        return 1
    if result is not None and result.stop_reason:
        _error(f"the search stopped early: {result.stop_reason}; the errors are in "
               f"{config.directory}/errors/ (rerun the same command to try again)")
        return 1
    return 0
