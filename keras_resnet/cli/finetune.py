"""``keras-resnet finetune`` and ``recipes/finetune.py``: pretrained weights, your image folder.

Parsing, the flag checks and the folder checks import neither Keras nor
TensorFlow, so ``--help`` and bad input (one class, an empty class, a class in
val/ absent from train/, images smaller than the input) answer at once.
"""

from __future__ import annotations

import sys

from keras_resnet.cli import groups
from keras_resnet.cli.fields import Parser, add_fields, values
from keras_resnet.training.config import (ConfigError, RunDirError, TrainConfig,
                                          TrainingDiverged, preflight)
from keras_resnet.training.finetune import DEFAULTS, FinetuneConfig, check_folder, resolve

DESCRIPTION = (
    "Fine-tune a pretrained ResNet on an image folder DIR/train/<class>/ (and DIR/val/<class>/): "
    "stage 1 trains a new classifier on the frozen backbone (BatchNorm in inference mode), "
    "stage 2 unfreezes the backbone at a lower learning rate (BatchNorm frozen unless "
    "--train-bn). The input preprocessing is the one the weights were trained with; the "
    "export carries it and the class names. Rerun the same command (same --run-dir) to resume.")

CONTEXT = {"datasets": "", "dataset": "", "image_size": 224, "depth": 50, "reference": 256,
           "lr": f"{DEFAULTS['lr']}; stage 1 uses it, stage 2 x --stage2-lr",
           "batch_size": DEFAULTS["batch_size"],
           "epochs": f"{DEFAULTS['epochs']}, stage 2; stage 1: --head-epochs", "steps": "",
           "schedule": "cosine: half-cosine to 0 in each stage (default); step: lr/10 at "
                       "1/3, 2/3 and 8/9 of each stage"}


def build_parser(prog=None):
    """The argparse parser of ``recipes/finetune.py``; every flag shows its default."""
    p = Parser(prog=prog or "recipes/finetune.py", description=DESCRIPTION)
    add_fields(p.add_argument_group("data"), TrainConfig, ["data_dir", "val_split", "image_size"],
               context=CONTEXT)
    w = p.add_argument_group("pretrained weights and the two stages")
    add_fields(w, FinetuneConfig, ["weights", "preprocessing", "head_epochs", "stage2_lr",
                                   "unfreeze_from", "train_bn"])
    add_fields(p.add_argument_group("model (keras_resnet.ResNet)"), TrainConfig,
               ["depth", "width"], context=CONTEXT)
    t = p.add_argument_group("optimisation")
    add_fields(p.add_mutually_exclusive_group(), TrainConfig, groups.LENGTH, context=CONTEXT)
    add_fields(t, TrainConfig, [n for n in groups.OPTIMISATION if n != "warmup_epochs"],
               context=CONTEXT)
    add_fields(p.add_argument_group("hardware, speed and reproducibility"), TrainConfig,
               [n for n in groups.HARDWARE if n not in ("remat", "unroll")], context=CONTEXT)
    add_fields(p.add_argument_group("output"), TrainConfig,
               ["run_dir", "export", "no_export", "quiet"], context=CONTEXT)
    return p


def configs_from_args(argv=None, prog=None):
    """Parse ``argv`` into ``(TrainConfig, FinetuneConfig)`` (argparse exits 2 on syntax errors)."""
    args = build_parser(prog).parse_args(argv)
    base = TrainConfig(recipe="imagenet", **values(args, TrainConfig))
    return base, FinetuneConfig(**values(args, FinetuneConfig))


def _error(prog, message):
    print(f"{prog}: error: {message}", file=sys.stderr)


def main(argv=None, prog=None):
    """Entry point of ``recipes/finetune.py``; return the exit code.

    0: done; 1: the run failed (NaN loss, run directory not writable: the last good
    checkpoint is kept); 2: bad input, bad folder or unavailable weights (nothing trained).
    """
    prog = prog or "recipes/finetune.py"
    try:
        base, ft = configs_from_args(argv, prog)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        base, ft = resolve(base, ft)
        preflight(base)
        check_folder(base.data_dir, base.image_size, base.val_split, base.seed)
    except ConfigError as e:
        _error(prog, e)
        return 2
    from keras_resnet.training.environment import import_backend, prepare_environment

    prepare_environment(base)
    devices = import_backend()
    from keras_resnet.training import finetune_stage

    if not base.quiet:
        print(f"Devices: {devices}", flush=True)
    try:
        metrics, trainer = finetune_stage.run_stages(base, ft)
    except ConfigError as e:
        _error(prog, e)
        return 2
    except (TrainingDiverged, RunDirError) as e:
        _error(prog, e)
        return 1
    if trainer.chief:
        from keras_resnet.training.report import report

        report(trainer, metrics)
        print(f"Both stages: {metrics['run_dir']} (stage1/, stage2/; each stage's weights in "
              "final.weights.h5)")
    return 0
