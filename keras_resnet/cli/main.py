"""``keras-resnet``: one command, one subcommand per job (also ``python -m keras_resnet``).

    keras-resnet train cifar10|imagenet [FLAGS]        recipes/cifar10.py, recipes/imagenet.py
    keras-resnet finetune --data-dir DIR --weights W   recipes/finetune.py
    keras-resnet tune [FLAGS]                          recipes/tune.py
    keras-resnet experiment degradation|identity_mappings [FLAGS]
    keras-resnet analyze lesion|paths|shattered_gradients [FLAGS]
    keras-resnet export MODEL [FLAGS]                  recipes/export.py
    keras-resnet predict MODEL IMAGES... [FLAGS]       recipes/predict.py
    keras-resnet bench --train|--inference|--build|--compile
                                                       recipes/benchmark.py
    keras-resnet data [FLAGS]                          python -m keras_resnet.data
    keras-resnet zoo [--markdown] [NAMES]; keras-resnet summary NAME

The subcommand's module is imported only once chosen, and none imports Keras
before its flags are checked, so every ``--help`` answers at once.
"""

from __future__ import annotations

import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# subcommand: (module, what it runs, the choices of its first argument or None)
COMMANDS = {
    "train": ("keras_resnet.cli.train", "train a ResNet with a paper's recipe",
              ("cifar10", "imagenet")),
    "finetune": ("keras_resnet.cli.finetune", "fine-tune pretrained weights on an image folder",
                 None),
    "tune": ("keras_resnet.cli.tune", "search depth and width with KerasTuner", None),
    "experiment": ("keras_resnet.cli.experiment", "the papers' training experiments",
                   ("degradation", "identity_mappings")),
    "analyze": ("keras_resnet.cli.analyze", "analyses of trained or random networks",
                ("lesion", "paths", "shattered_gradients")),
    "export": ("keras_resnet.cli.serve", "export a trained model (SavedModel, TFLite, ...)",
               None),
    "predict": ("keras_resnet.cli.serve", "classify image files with an exported model",
                None),
    "bench": ("keras_resnet.cli.bench", "training, inference and build benchmarks", None),
    "data": ("keras_resnet.cli.data", "load a dataset, summarise it, time its pipeline", None),
    "zoo": ("keras_resnet.cli.zoo", "the zoo table: every named model, counted", None),
    "summary": ("keras_resnet.cli.zoo", "the Keras summary of a zoo model", None),
}


def build_parser(prog="keras-resnet"):
    """The top-level parser: the command; its own flags go to the command's parser."""
    import argparse

    from keras_resnet.cli.fields import Parser

    lines = ["commands:"]
    for name, (_, text, choices) in COMMANDS.items():
        first = f" {'|'.join(choices)}" if choices else ""
        lines.append(f"  {name + first:<46} {text}")
    p = Parser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
               description="ResNets of the literature: train, search, reproduce the papers, "
                           "export, serve. COMMAND --help lists its flags.",
               epilog="\n".join(lines))
    p.add_argument("command", metavar="COMMAND", choices=tuple(COMMANDS))
    return p


def main(argv=None, prog="keras-resnet"):
    """Run ``COMMAND ARGS``; return the exit code (2 for an unknown command)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        build_parser(prog).parse_args(argv[:1] if argv and not argv[0].startswith("-")
                                      else argv)
    except SystemExit as e:   # --help, no command or an unknown one: one line, exit 2
        return int(e.code or 0)
    command, rest = argv[0], argv[1:]
    module_name, _, choices = COMMANDS[command]
    module = importlib.import_module(module_name)
    name = f"{prog} {command}"
    if choices:
        if rest and rest[0] in ("-h", "--help"):
            print(f"usage: {name} {{{','.join(choices)}}} [FLAGS]  ({name} NAME --help for "
                  "its flags)")
            return 0
        if not rest or rest[0] not in choices:
            got = f"; received {rest[0]!r}" if rest else ""
            print(f"{name}: error: expected one of {', '.join(choices)}{got} (see --help)",
                  file=sys.stderr)
            return 2
        return module.main(rest[0], rest[1:], prog=f"{name} {rest[0]}")
    if command in ("export", "predict"):
        return module.main([command, *rest])
    if command == "bench":
        return module.main(rest)
    if command in ("zoo", "summary"):
        return module.main(command, rest, prog=name)
    return module.main(rest, prog=name)


if __name__ == "__main__":
    sys.exit(main())
