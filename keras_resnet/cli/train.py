"""``keras-resnet train cifar10|imagenet``, ``recipes/cifar10.py`` and ``recipes/imagenet.py``.

Parsing and checking the flags imports neither Keras nor TensorFlow, so
``--help`` and bad input answer at once; the backend (``--backend`` or
``KERAS_BACKEND``) and TensorFlow's CPU settings are fixed before Keras is
imported.
"""

from __future__ import annotations

import sys

from keras_resnet.cli import groups
from keras_resnet.cli.fields import Parser, add_fields, values
from keras_resnet.training.config import (DATASETS, DIGITS_DEFAULTS, REFERENCE_BATCH,
                                          ConfigError, ModelExtras, RunDirError, TrainConfig,
                                          TrainingDiverged, preflight, resolve_config)

DESCRIPTIONS = {
    "cifar10": ("Train a CIFAR ResNet (He et al. 2015, sec. 4.2) with the paper's recipe: SGD "
                "momentum 0.9, weight decay 1e-4, batch 128, lr 0.1 divided by 10 at 32k and 48k "
                "iterations, 64k iterations, pad-4 crop + flip. `--dataset digits` trains on "
                "scikit-learn's bundled digits (no download)."),
    "imagenet": ("Train an ImageNet ResNet (He et al. 2015, Goyal et al. 2017): SGD momentum 0.9, "
                 "weight decay 1e-4, batch 256, lr 0.1 x batch/256, 90 epochs divided by 10 at "
                 "30/60/80 (or cosine), 5 warm-up epochs above batch 256."),
}


def help_context(recipe):
    """The recipe's defaults, as the help texts of the fields show them."""
    ref = REFERENCE_BATCH[recipe]
    if recipe == "cifar10":
        return {"datasets": ", ".join(DATASETS[recipe]), "dataset": "cifar10", "image_size": 32,
                "depth": 20, "reference": ref, "lr": "0.1",
                "batch_size": f"{ref}; digits: {DIGITS_DEFAULTS['batch_size']}",
                "epochs": "64k iterations of batch 128, i.e. --steps 64000 x 128 / batch; "
                          f"digits: {DIGITS_DEFAULTS['epochs']} epochs",
                "steps": " (default: 64000 at batch 128)",
                "schedule": "step: lr/10 at 50%% and 75%% of the run (32k, 48k of 64k); cosine: "
                            "half-cosine to 0 (default: step; digits: "
                            f"{DIGITS_DEFAULTS['schedule']}). Depth >= 110 warms up at lr/10 "
                            "for 400 iterations of batch 128"}
    return {"datasets": ", ".join(DATASETS[recipe]), "dataset": "imagenet2012",
            "image_size": 224, "depth": 50, "reference": ref, "lr": "0.1", "batch_size": ref,
            "epochs": "90", "steps": "",
            "schedule": "step: lr/10 at epochs 30, 60, 80 of 90 (scaled to --epochs); cosine: "
                        "half-cosine to 0 (default: step)"}


def build_parser(recipe, prog=None):
    """The argparse parser of ``recipes/<recipe>.py``; every flag shows its default."""
    context = help_context(recipe)
    p = Parser(prog=prog or f"recipes/{recipe}.py", description=DESCRIPTIONS[recipe])
    data = [n for n in groups.DATA if recipe == "cifar10" or n != "holdout"]
    add_fields(p.add_argument_group("data"), TrainConfig, data, context=context)
    m = p.add_argument_group("model (keras_resnet.ResNet)")
    add_fields(m, TrainConfig, ["depth", "preact", "width"], context=context)
    add_fields(m, ModelExtras, ["block"])
    add_fields(m, TrainConfig, ["shortcut"])
    add_fields(m, ModelExtras, ["ordering", "skip", "gate_bias"])
    add_fields(m, TrainConfig, ["plain", "drop_path_rate", "zero_init"], context=context)
    t = p.add_argument_group("optimisation")
    add_fields(p.add_mutually_exclusive_group(), TrainConfig, groups.LENGTH, context=context)
    optimisation = [n for n in groups.OPTIMISATION if recipe == "imagenet" or n != "warmup_epochs"]
    add_fields(t, TrainConfig, optimisation, context=context)
    add_fields(p.add_argument_group("hardware, speed and reproducibility"), TrainConfig,
               groups.HARDWARE, context=context)
    add_fields(p.add_argument_group("output"), TrainConfig, groups.OUTPUT, context=context)
    return p


def config_from_args(recipe, argv=None, prog=None):
    """Parse ``argv`` into a :class:`TrainConfig` (argparse exits 2 on syntax errors)."""
    args = build_parser(recipe, prog).parse_args(argv)
    extras = {k: v for k, v in values(args, ModelExtras).items() if v is not None}
    return TrainConfig(recipe=recipe, model_extras=extras, **values(args, TrainConfig))


def _error(prog, message):
    print(f"{prog}: error: {message}", file=sys.stderr)


def main(recipe, argv=None, prog=None):
    """Entry point of ``recipes/<recipe>.py``; return the process exit code.

    0: done; 1: the run failed (NaN loss, run directory not writable; the last good
    checkpoint is kept); 2: bad input (nothing written).
    """
    prog = prog or f"recipes/{recipe}.py"
    try:
        config = config_from_args(recipe, argv, prog)
    except SystemExit as e:   # argparse already printed its one-line error (or --help)
        return int(e.code or 0)
    try:
        # The flag checks, and what needs neither Keras nor the data, before either loads.
        preflight(resolve_config(config))
        from keras_resnet.training.rundir import check_output_dir

        for flag, path in (("--run-dir", config.run_dir), ("--export", config.export)):
            if path is not None:   # at once, before Keras loads (the trainer checks again)
                check_output_dir(path, flag)
    except ConfigError as e:
        _error(prog, e)
        return 2
    try:
        return _train(config, prog)
    except KeyboardInterrupt:   # Ctrl-C: one line that says how to resume, not a traceback
        if sys.stdout.isatty():
            print(flush=True)   # below the progress line
        _error(prog, f"interrupted; resume with the same command: {resume_command(argv)}")
        return 130


def resume_command(argv=None):
    """The command that resumes this run: the command line as typed, without ``--fresh``.

    Without ``--run-dir`` the run directory is named by the settings, so the same
    command finds the unfinished run (``--fresh`` would start over again).
    """
    from keras_resnet.training.report import shell_command

    args = list(sys.argv if argv is None else [sys.argv[0], *argv])
    return shell_command([a for a in args if a != "--fresh"])


def _train(config, prog):
    from keras_resnet.training.environment import import_backend, prepare_environment

    prepare_environment(config)
    devices = import_backend()
    from keras_resnet.training.trainer import Trainer

    try:
        trainer = Trainer(config)
    except ConfigError as e:
        _error(prog, e)
        return 2
    if trainer.chief and not config.quiet:
        print(f"Devices: {devices}", flush=True)
    try:
        metrics = trainer.run()
    except (TrainingDiverged, RunDirError) as e:
        _error(prog, e)
        return 1
    if trainer.chief:
        from keras_resnet.training.report import report

        report(trainer, metrics)
    return 0
