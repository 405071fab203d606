"""Every recipe command the README prints parses with that recipe's own parser.

The commands are taken from README.md's fenced blocks as written (an environment
assignment such as ``KERAS_BACKEND=jax`` and a ``$`` prompt stripped), so a flag
renamed or removed, or a value a parser no longer accepts, fails here. Running them
is left to the tests of each recipe: these are hours of training. Placeholders the
README uses (``DIR``, ``saved_models/<run-name>``, ``photo.jpg``) are values like any
other to a parser.
"""

import pathlib
import re
import shlex

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _commands():
    text = (ROOT / "README.md").read_text()
    found = []
    for block in re.findall(r"^```\w*\n(.*?)^```", text, re.S | re.M):
        for line in block.splitlines():
            line = line.split("  #")[0].strip().removeprefix("$ ")
            words = shlex.split(line) if "recipes/" in line else []
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]
            if len(words) >= 2 and words[0].endswith("python") and \
                    words[1].startswith("recipes/") and not line.startswith("/"):
                found.append((pathlib.Path(words[1]).stem, words[2:]))
    return found


def _parse(recipe, argv):
    if recipe in ("cifar10", "imagenet"):
        from keras_resnet.cli.train import config_from_args
        return config_from_args(recipe, argv)
    if recipe == "tune":
        from keras_resnet.cli.tune import config_from_args
        return config_from_args(argv)
    if recipe in ("degradation", "identity_mappings"):
        from keras_resnet.cli.experiment import build_parser
        return build_parser(recipe).parse_args(argv)
    if recipe in ("lesion", "paths", "shattered_gradients"):
        from keras_resnet.cli.analyze import build_parser
        return build_parser(recipe).parse_args(argv)
    if recipe == "finetune":
        from keras_resnet.cli.finetune import build_parser
        return build_parser().parse_args(argv)
    if recipe == "predict":
        from keras_resnet.cli.serve import build_predict_parser
        return build_predict_parser().parse_args(argv)
    raise AssertionError(f"README names recipes/{recipe}.py, which this test does not know")


def test_the_readme_has_recipe_commands():
    recipes = {r for r, _ in _commands()}
    assert {"cifar10", "imagenet", "tune", "finetune", "predict"} <= recipes, recipes


@pytest.mark.parametrize("recipe,argv", _commands(), ids=lambda v: v if isinstance(v, str)
                         else " ".join(v))
def test_readme_command_parses(recipe, argv):
    assert (ROOT / "recipes" / f"{recipe}.py").exists()
    assert _parse(recipe, argv) is not None
