"""``keras-resnet tune`` and ``recipes/tune.py``: parse and check before importing Keras.

``--help`` and bad input answer at once (exit 2, nothing written); the backend
and TensorFlow's CPU settings are fixed before Keras is imported, as for the
training recipes.
"""

from __future__ import annotations

import logging
import sys

from keras_resnet.cli.fields import Parser, add_fields, values
from keras_resnet.cli.train import help_context
from keras_resnet.training.config import ConfigError, RunDirError, TrainConfig, TrainingDiverged
from keras_resnet.tuning.config import (SearchConfig, check_search_dir, distributed_role,
                                        resolve_search)

PROG = "recipes/tune.py"
DESCRIPTION = (
    "Search ResNet depth and width (and pre-activation, blocks, shortcuts, learning rate, "
    "weight decay) with KerasTuner within a parameter or multiply-add budget. Every trial "
    "trains through the package's training recipe (as recipes/cifar10.py: run directory, "
    "schedule, precision, GPUs). Rerun with the same --dir to resume. Distributed: set "
    "KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT (one chief, "
    "workers 'tuner0', 'tuner1', ...).")
# The training settings a search offers (the rest come from each trial or the recipe).
TRAIN_DATA = ("dataset", "data_dir", "holdout", "image_size")
TRAIN_RECIPE = ("batch_size", "schedule", "gpus", "precision", "backend")
TRAIN_OUTPUT = ("export", "no_export")


def build_parser(prog=None):
    """The argparse parser of ``recipes/tune.py``; every flag shows its default."""
    context = help_context("cifar10")
    p = Parser(prog=prog or PROG, description=DESCRIPTION)
    add_fields(p.add_argument_group("data"), TrainConfig, TRAIN_DATA, context=context)
    s = p.add_argument_group("search")
    add_fields(s, SearchConfig, ("tuner", "max_trials", "epochs", "factor"))
    add_fields(s, TrainConfig, ("seed",),
               seed={"help": "seed of the search and of every trial's training"})
    add_fields(p.add_argument_group("search space (keras_resnet.tuning.ResNetHyperModel)"),
               SearchConfig, ("depths", "widths", "preact", "blocks", "shortcuts",
                              "learning_rates", "weight_decays", "max_params", "max_macs"),
               preact={"metavar": "{both,on,off}"})
    add_fields(p.add_argument_group("training of each trial (as recipes/cifar10.py)"),
               TrainConfig, TRAIN_RECIPE, context=context,
               gpus={"help": "data-parallel over N GPUs per trial (default: 1 GPU if present, "
                             "else the CPU); one worker per GPU: see --help's description"})
    o = p.add_argument_group("output")
    add_fields(o, SearchConfig, ("directory", "final_epochs"))
    add_fields(o, TrainConfig, TRAIN_OUTPUT,
               export={"help": "export directory of the retrained model (default: "
                               "saved_models/<dir name>_best)"},
               no_export={"help": "retrain without exporting"})
    add_fields(o, SearchConfig, ("verbose", "quiet", "in_process"))
    return p


def config_from_args(argv=None, prog=None):
    """Parse ``argv`` into a :class:`~keras_resnet.tuning.config.SearchConfig`."""
    args = build_parser(prog).parse_args(argv)
    search = values(args, SearchConfig)
    train = values(args, TrainConfig, TRAIN_DATA + TRAIN_RECIPE + TRAIN_OUTPUT + ("seed",))
    search["train"] = TrainConfig(recipe="cifar10", quiet=search["quiet"], **train)
    return SearchConfig(**search)


def _error(prog, message):
    print(f"{prog}: error: {message}", file=sys.stderr)


def main(argv=None, prog=None):
    """Entry point of ``recipes/tune.py``; return the process exit code.

    0: done; 1: the search or the final retraining failed (the records are
    kept: rerun to resume); 2: bad input (nothing written).
    """
    prog = prog or PROG
    try:
        config = config_from_args(argv, prog)
    except SystemExit as e:   # argparse printed its one-line error (or --help)
        return int(e.code or 0)
    try:
        config, _ = resolve_search(config)
        check_search_dir(config.directory, config, distributed=distributed_role() is not None)
        from keras_resnet.training.rundir import check_output_dir

        check_output_dir(config.directory, "--dir")   # at once (run_search checks again)
        if config.final_epochs and config.train.export is not None:
            check_output_dir(config.train.export, "--export")
    except ConfigError as e:
        _error(prog, e)
        return 2
    from keras_resnet.training.environment import import_backend, prepare_environment

    prepare_environment(config.train)
    devices = import_backend()
    if not config.quiet:
        print(f"Devices: {devices}", flush=True)
    # A new model per trial makes TensorFlow warn about retracing; expected here.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from keras_resnet.tuning.search import SearchFailed, run_search

    try:
        result = run_search(config)
    except ConfigError as e:
        _error(prog, e)
        return 2
    except (TrainingDiverged, RunDirError, SearchFailed) as e:
        _error(prog, str(e).splitlines()[0] if str(e) else repr(e))
        return 1
    if result is not None and result.stop_reason:
        _error(prog, f"the search stopped early: {result.stop_reason}; the errors are in "
                     f"{config.directory}/errors/ (rerun the same command to try again)")
        return 1
    return 0
