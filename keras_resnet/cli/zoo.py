"""``keras-resnet zoo`` (the zoo table) and ``keras-resnet summary NAME`` (a model's summary)."""

from __future__ import annotations

import sys

from keras_resnet.cli.fields import Parser


def build_parser(command, prog=None):
    """The parser of ``zoo`` or ``summary``."""
    if command == "zoo":
        p = Parser(prog=prog or "keras-resnet zoo", description=(
            "Print every named model: depth, family, block, trainable parameters and GMACs "
            "measured, beside the paper's values."))
        p.add_argument("--markdown", action="store_true", help="print a Markdown table")
        p.add_argument("names", nargs="*", help="only these models (default: all)")
        return p
    p = Parser(prog=prog or "keras-resnet summary",
               description="Print the Keras summary of a zoo model.")
    p.add_argument("name", help="a zoo name (see `zoo`), e.g. resnet50 or wrn_28_10")
    return p


def main(command, argv=None, prog=None):
    """``zoo [--markdown] [NAMES]`` or ``summary NAME``; return the exit code."""
    try:
        args = build_parser(command, prog).parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    from keras_resnet import specs, zoo

    names = getattr(args, "names", None) or list(specs.ZOO)
    unknown = [n for n in names + ([args.name] if command == "summary" else [])
               if n not in specs.ZOO]
    if unknown:
        print(f"error: unknown model {unknown[0]!r}; choose from {', '.join(specs.ZOO)}",
              file=sys.stderr)
        return 2
    if command == "summary":
        from keras_resnet.counting import flops
        from keras_resnet.training.environment import import_backend

        import_backend()
        model = zoo.build(args.name)
        model.summary()
        print(f"multiply-adds per example: {flops(model):,}")
        return 0
    print(zoo.header(markdown=args.markdown))
    for name in names:
        print(zoo.format_row(zoo.row(name), markdown=args.markdown), flush=True)
    return 0
