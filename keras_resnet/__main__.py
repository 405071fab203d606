"""Command line: ``python -m keras_resnet zoo`` and ``python -m keras_resnet summary NAME``."""

from __future__ import annotations

import argparse
import os
import sys


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m keras_resnet",
        description="ResNets of the literature: the zoo table and model summaries.")
    sub = parser.add_subparsers(dest="command", required=True)
    zoo = sub.add_parser("zoo", help="print every named model: depth, family, block, "
                         "trainable parameters and GMACs measured, beside the paper's values")
    zoo.add_argument("--markdown", action="store_true", help="print a Markdown table")
    zoo.add_argument("names", nargs="*", help="only these models (default: all)")
    summary = sub.add_parser("summary", help="print the Keras summary of a zoo model")
    summary.add_argument("name", help="a zoo name (see `zoo`), e.g. resnet50 or wrn_28_10")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    from keras_resnet import specs, zoo

    names = getattr(args, "names", None) or list(specs.ZOO)
    unknown = [n for n in names + ([args.name] if args.command == "summary" else [])
               if n not in specs.ZOO]
    if unknown:
        print(f"error: unknown model {unknown[0]!r}; choose from {', '.join(specs.ZOO)}",
              file=sys.stderr)
        return 2
    if args.command == "summary":
        from keras_resnet.counting import flops

        model = zoo.build(args.name)
        model.summary()
        print(f"multiply-adds per example: {flops(model):,}")
        return 0
    print(zoo.header(markdown=args.markdown))
    for name in names:
        print(zoo.format_row(zoo.row(name), markdown=args.markdown), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
