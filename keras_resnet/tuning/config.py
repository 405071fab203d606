"""What a search is (:class:`SearchConfig`) and its checks, without Keras.

The command line of ``recipes/tune.py`` checks its flags here before anything
heavy is imported; :func:`keras_resnet.tuning.run_search` runs a checked
configuration. A search directory holds ``search.json`` (these settings), and
rerunning with the same directory resumes the search.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re

from keras_resnet import specs
from keras_resnet.training.config import (ConfigError, TrainConfig, int_list, resolve_config,
                                          setting)
from keras_resnet.tuning import space as S

TUNERS = ("random", "bayesian", "hyperband")
# Epochs per trial (Hyperband: the most) when --epochs is not given: the digits
# reach about 97% in 10 epochs; CIFAR-sized data gets 30 (a short version of the
# papers' 160-epoch recipe, enough to rank architectures).
DEFAULT_EPOCHS = {"digits": 10}
DEFAULT_EPOCHS_OTHER = 30
# Input size and classes of each dataset, to check the space and its budgets
# before the data are loaded (image folders: 10 classes assumed until loaded).
DATASET_SHAPES = {"digits": ((8, 8, 3), 10), "cifar10": ((32, 32, 3), 10),
                  "cifar100": ((32, 32, 3), 100), "synthetic": (None, 10),
                  "folder": (None, 10)}
# Settings that may change when a search is resumed: the number of trials (a
# larger --max-trials extends a search), the final retraining, the output, and
# the hardware.
RESUME_FREE = ("max_trials", "final_epochs", "verbose", "quiet", "in_process", "export",
               "no_export", "fresh", "gpus", "backend", "xla", "deterministic",
               "steps_per_execution", "log_every")
# The hyperparameter arguments of a search and their flags.
SPACE_FLAGS = {"depths": "--depths", "widths": "--widths", "preact": "--preact",
               "blocks": "--blocks", "shortcuts": "--shortcuts",
               "learning_rates": "--learning-rates", "weight_decays": "--weight-decays",
               "max_params": "--max-params", "max_macs": "--max-macs"}


def numbers(kind=float, allow_range=True):
    """The parser of a list flag: ``1,2,4`` (choices) or ``1:4`` (a (min, max) range)."""
    def parse(text):
        if kind is int and not allow_range:
            return list(int_list(text))
        try:
            if allow_range and ":" in text:
                low, high = (kind(x) for x in text.split(":"))
                return (low, high)
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            form = "a comma-separated list" + (" or MIN:MAX" if allow_range else "")
            raise ValueError(f"{text!r} is not {form} of "
                             f"{'integers' if kind is int else 'numbers'}") from None
    parse.__name__ = "list"
    return parse


def number(text):
    """``1.5`` -> 1.5, ``2`` -> 2 (an int where the text is one)."""
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() \
        else value


def count(text):
    """A budget: ``1000000``, ``1e6``, ``1_000_000``, ``1M``, ``500K``, ``2G``."""
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}
    t = text.strip().upper().replace("_", "")
    try:
        value = float(t[:-1]) * scale[t[-1]] if t and t[-1] in scale else float(t)
    except ValueError:
        raise ValueError(f"{text!r} is not a count (1000000, 1e6, 1M, 500K)") from None
    return int(value) if value.is_integer() else value


def names(allowed):
    """The parser of a comma-separated list of names among ``allowed``."""
    def parse(text):
        values = [x.strip() for x in text.split(",") if x.strip()]
        for v in values:
            if v not in allowed:
                raise ValueError(f"{v!r} is not one of {', '.join(allowed)}")
        return values
    return parse


# --preact on the command line: search both, or fix it.
PREACT = {"both": (False, True), "on": (True,), "off": (False,)}


def preact_choice(text):
    if text not in PREACT:
        raise ValueError(f"invalid choice: {text!r} (choose from {', '.join(PREACT)})")
    return PREACT[text]


@dataclasses.dataclass
class SearchConfig:
    """Every setting of a search.

    Attributes:
        train: a :class:`~keras_resnet.training.TrainConfig`, the recipe every
            trial trains with (data, batch, schedule, hardware, precision,
            seed); its model fields come from each trial, and its ``export``,
            ``no_export`` and ``quiet`` apply to the final retraining.
        directory: str or None, the search directory (default
            ``searches/<dataset>-<tuner>``); rerunning with it resumes.
        tuner: ``"random"``, ``"bayesian"`` or ``"hyperband"``.
        max_trials: int, in-budget trials (random, bayesian; rejected
            candidates do not count).
        epochs: int or None, epochs per trial; Hyperband's most (default 10 on
            the digits, else 30).
        factor: int, Hyperband's reduction factor.
        depths, widths, preact, blocks, shortcuts, learning_rates,
            weight_decays, max_params, max_macs: the search space, as the
            arguments of :class:`~keras_resnet.tuning.ResNetHyperModel`.
            Learning rates are at batch 128, as the training recipe's ``--lr``.
        final_epochs: int or None, retrain the best configuration this long
            and export it.
        verbose: bool, show each trial's training display.
        quiet: bool, no line per trial.
        in_process: bool, train every trial in the search's process instead of a
            process of its own (faster to start; memory grows with every trial,
            see :mod:`keras_resnet.tuning.trial`).

    Each field's command-line flag is declared beside it.
    """

    train: TrainConfig = setting(help="the training recipe of every trial", factory=TrainConfig)
    directory: str | None = setting(
        help="search directory; rerunning with the same one resumes "
             "(default: searches/<dataset>-<tuner>)", flag="--dir")
    tuner: str = setting("random", help="KerasTuner oracle", choices=TUNERS)
    max_trials: int = setting(
        10, help="in-budget trials to train (random, bayesian); rejected candidates do not "
                 "count")
    epochs: int | None = setting(
        help=f"epochs per trial; Hyperband's most (default: {DEFAULT_EPOCHS['digits']} on the "
             f"digits, else {DEFAULT_EPOCHS_OTHER})")
    factor: int = setting(3, help="Hyperband's reduction factor")
    depths: list | None = setting(
        help="depths, e.g. 20,32,56 (default: every CIFAR depth, 6n+2 and 9n+2, up to "
             f"{S.DEFAULT_MAX_CIFAR_DEPTH}, that fits the budget)",
        type=numbers(int, allow_range=False))
    widths: list | tuple = setting(
        S.DEFAULT_WIDTHS, help="widening factors: a list 1,2,4 or a range MIN:MAX (integers: "
                               "every integer; decimals: continuous) (default: 1,2,4)",
        type=numbers(number))
    preact: list | tuple | bool = setting(
        (False, True), help="full pre-activation units: search both, or fix on/off (one of "
                            "both, on, off) (default: both)", type=preact_choice)
    blocks: list | None = setting(
        help="basic and/or bottleneck (default: each depth's block from the table)",
        type=names(specs.BLOCKS))
    shortcuts: list | None = setting(
        help="shortcut options among A,B,C (default: A for basic nets, B for bottlenecks)",
        type=names(specs.SHORTCUTS))
    learning_rates: list | tuple | None = setting(
        help="learning rates at batch 128 (the run uses lr x batch/128): a list, or MIN:MAX "
             "sampled on a log scale (default: 0.1)", type=numbers())
    weight_decays: list | tuple | None = setting(
        help="L2 weight decay: a list or MIN:MAX (default: 1e-4)", type=numbers())
    max_params: int | None = setting(
        help="most trainable parameters of a candidate, e.g. 1M (rejected before any weight "
             "is allocated)", type=count)
    max_macs: int | None = setting(help="most multiply-adds per image, e.g. 50M", type=count)
    final_epochs: int | None = setting(
        help="retrain the best configuration for N epochs and export it")
    verbose: bool = setting(False, help="show each trial's training display")
    quiet: bool = setting(False, help="no line per trial")
    in_process: bool = setting(
        False, help="train every trial in this process rather than one process per trial: "
                    "faster to start, but TensorFlow keeps every trial's graphs, so memory "
                    "grows trial after trial")

    def space_kwargs(self):
        return {name: getattr(self, name) for name in SPACE_FLAGS}

    def flags(self):
        """The settings as JSON-serialisable data (``search.json``), model fields left out."""
        out = dataclasses.asdict(self)
        train = out.pop("train")
        for name in ("depth", "preact", "width", "shortcut", "plain", "model_extras", "lr",
                     "weight_decay", "epochs", "steps", "run_dir", "quiet"):
            train.pop(name, None)
        out.update(train)
        for name in ("widths", "learning_rates", "weight_decays"):
            value = out[name]
            if isinstance(getattr(self, name), tuple) and len(value) == 2:
                out[name] = {"range": list(value)}   # a (min, max) range, not two choices
        return json.loads(json.dumps(out))


def distributed_role():
    """``"chief"``, ``"worker"`` or None, from KerasTuner's KERASTUNER_* variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return None
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


def _positive_int(flag, value, minimum=1):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{flag} must be an integer >= {minimum}; received {value!r}.")
    return value


def flag_message(error):
    """A space error in the command line's words: ``argument `depths``` -> ``--depths``."""
    text = str(error)
    for name, flag in SPACE_FLAGS.items():
        text = re.sub(rf"Invalid value for argument `{name}`|Argument `{name}`|argument `{name}`",
                      flag, text)
    return text


def resolve_search(config, input_shape=None, classes=None):
    """Check ``config`` and fill in the defaults; return ``(config, space)``. Writes nothing.

    Args:
        config: a :class:`SearchConfig`.
        input_shape, classes: the data's, once loaded (None: the dataset's
            known shape, see :data:`DATASET_SHAPES`).

    Raises:
        ConfigError: naming the flag, the value received and what is allowed.

    Example:

    >>> c, space = resolve_search(SearchConfig(TrainConfig(dataset="digits"), depths=[8, 20]))
    >>> c.directory.startswith("searches/digits-random_"), c.epochs, space.input_shape, space.depths
    (True, 10, (8, 8, 3), (8, 20))
    """
    if not isinstance(config, SearchConfig):
        raise TypeError(f"Argument `config` must be a SearchConfig; received "
                        f"{type(config).__name__}.")
    c = dataclasses.replace(config)
    if c.tuner not in TUNERS:
        raise ConfigError(f"--tuner {c.tuner!r}: expected one of {', '.join(TUNERS)}.")
    _positive_int("--max-trials", c.max_trials)
    _positive_int("--epochs", c.epochs)
    _positive_int("--factor", c.factor, minimum=2)
    _positive_int("--final-epochs", c.final_epochs)
    if c.train.recipe != "cifar10":
        raise ConfigError("recipes/tune.py searches CIFAR-family networks (recipe 'cifar10'); "
                          f"received recipe {c.train.recipe!r}.")
    if c.train.steps is not None:
        raise ConfigError("A search trains every trial for --epochs; --steps does not apply.")
    train = resolve_config(dataclasses.replace(c.train, epochs=c.epochs or 1, steps=None))
    if c.epochs is None:
        c.epochs = DEFAULT_EPOCHS.get(train.dataset, DEFAULT_EPOCHS_OTHER)
    c.train = dataclasses.replace(train, epochs=c.epochs)
    if c.directory is None:   # named by the settings: another --epochs is another search
        c.directory = os.path.join("searches", f"{train.dataset}-{c.tuner}_{search_key(c)}")
    if input_shape is None:
        input_shape, classes = DATASET_SHAPES.get(train.dataset, (None, 10))
        if input_shape is None:
            size = train.image_size or 32
            input_shape = (size, size, 3)
    try:
        space = S.resolve_space("cifar", input_shape, classes, **c.space_kwargs())
    except (ValueError, TypeError) as e:
        raise ConfigError(flag_message(e)) from None
    return c, space


def search_key(config):
    """Eight hex digits of the settings that change what a search trains (not RESUME_FREE)."""
    flags = {k: v for k, v in config.flags().items() if k not in RESUME_FREE + ("directory",)}
    return hashlib.sha1(json.dumps(flags, sort_keys=True, default=str).encode()).hexdigest()[:8]


def check_search_dir(directory, config, *, distributed=False):
    """Is ``directory`` new (False) or a search of the same settings to resume (True)?

    In a distributed search (``distributed``) the chief and the workers share
    the directory and start in any order: one may find it already filled.

    Raises:
        ConfigError: it is a file, a non-empty folder that is not a search
            directory, or a search with other settings (naming each flag).
    """
    path = os.path.join(directory, "search.json")
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ConfigError(f"--dir {directory} exists and is not a directory.")
    if not os.path.exists(path):
        if os.path.isdir(directory) and os.listdir(directory) and not distributed:
            raise ConfigError(f"--dir {directory} is not empty and holds no search.json: not a "
                              "search directory; choose another --dir.")
        return False
    try:
        with open(path) as f:
            saved = json.load(f)["flags"]
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"--dir {directory}: its search.json cannot be read ({e}); choose "
                          "another --dir.") from None
    new = config.flags()
    diff = [k for k in sorted(set(new) | set(saved))
            if k not in RESUME_FREE and saved.get(k) != new.get(k)]
    if diff:
        shown = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)!r} -> {new.get(k)!r}"
                          for k in diff)
        raise ConfigError(f"--dir {directory} holds a search with other settings ({shown}); "
                          "rerun with the same flags to resume it, or choose another --dir.")
    return True
