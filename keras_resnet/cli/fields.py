"""Command-line flags generated from the configuration dataclasses' fields.

Each field of :class:`~keras_resnet.training.config.TrainConfig` (and of the
other configuration records) carries its help text, allowed values and
parser next to it (:func:`keras_resnet.training.config.setting`). A command
composes argument groups from those fields with :func:`add_fields` and reads
the parsed values back with :func:`values`; nothing here imports Keras.
"""

from __future__ import annotations

import argparse
import dataclasses

from keras_resnet.training.config import flag


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: ...)`` unless the help text already names the default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text:
            return text
        if action.required:
            return f"{text} (required)"
        if action.default is None:
            return f"{text} (default: none)"
        if action.default is False or action.const is False:
            return f"{text} (default: off)"
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump), exit code 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def argument_type(parse, name=None):
    """An argparse ``type`` from ``parse(text)``: its ValueError message becomes the error.

    (argparse shows ``invalid <type> value`` for a plain ValueError; our parsers
    say what is wrong in the user's words, so their message is kept.)
    """
    def convert(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = name or getattr(parse, "__name__", "value")
    return convert


_TYPES = {"int": int, "float": float, "str": None}


def _base_type(field):
    """int, float, str (None) or bool from the field's annotation (a string here)."""
    annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    for part in annotation.replace(" ", "").split("|"):
        if part == "bool":
            return bool
        if part in _TYPES:
            return _TYPES[part]
    return None


def fields_of(cls):
    """``{name: dataclasses.Field}`` of a configuration dataclass."""
    return {f.name: f for f in dataclasses.fields(cls)}


def add_fields(group, cls, names, *, context=None, **overrides):
    """Add the flags of ``cls``'s fields ``names`` to ``group`` (a parser or a group).

    Args:
        group: an ``argparse`` parser, argument group or mutually exclusive group.
        cls: the configuration dataclass that declares the fields.
        names: the fields to offer, in the order shown.
        context: values for the ``{placeholders}`` of the help texts.
        **overrides: per field, a dict of ``add_argument`` keywords that differ
            for this command (e.g. ``dataset={"choices": ..., "default": ...}``).
    """
    known = fields_of(cls)
    for name in names:
        field = known[name]
        meta = dict(field.metadata)
        kwargs = {"help": meta["help"], "default": field.default, "dest": name}
        if kwargs["default"] is dataclasses.MISSING:
            kwargs["default"] = None
        kind = _base_type(field)
        negative = meta.get("negative")
        if negative:   # a tri-state bool | None: one flag for True, another for False
            exclusive = group.add_mutually_exclusive_group()
            kwargs.update(overrides.get(name, {}))
            kwargs["help"] = _fill(kwargs["help"], context)
            exclusive.add_argument(meta.get("flag") or flag(name), action="store_const",
                                   const=True, **kwargs)
            exclusive.add_argument(negative[0], dest=name, action="store_const", const=False,
                                   help=_fill(negative[1], context))
            continue
        if kind is bool and not meta.get("type"):
            kwargs["action"] = "store_true"
        else:
            parse = meta.get("type") or kind
            if parse is not None:
                kwargs["type"] = argument_type(parse) if meta.get("type") else parse
            if meta.get("choices") is not None:
                kwargs["choices"] = meta["choices"]
        kwargs.update(overrides.get(name, {}))
        kwargs["help"] = _fill(kwargs["help"], context)
        group.add_argument(meta.get("flag") or flag(name), **kwargs)


def _fill(text, context):
    return text.format_map(context) if context and "{" in text else text


def values(namespace, cls, names=None):
    """The parsed values of ``cls``'s fields that the namespace holds, as keywords."""
    parsed = vars(namespace)
    return {name: parsed[name] for name in (names or fields_of(cls)) if name in parsed}
