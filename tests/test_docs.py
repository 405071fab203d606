"""The docs' examples run as written.

Every fenced Python block and every ``>>>`` example in README.md and docs/*.md is
found by this test. ``>>>`` examples are checked against the output the docs print
(a value's repr, or ``SomeError: message``). Fenced blocks are executed in a fresh
namespace in a temporary directory; a block that needs what this machine cannot have
(a download, a GPU, a trained model of the user's) or hours of work is listed in
``ADJUST`` with the smallest change that makes it run here (fewer epochs, a weights
file built locally) and the reason, or in ``NOT_RUN`` with the reason. A new block in
the docs that is in neither table runs as written, so a stale example fails here.

doctest itself is not used: the docs show errors as ``ValueError: ...`` lines without
doctest's traceback header, which reads better and which doctest cannot match.
"""

import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.S | re.M)

# (file, first line of the block) -> [(old, new), ...]: the smallest change that lets
# the block run offline on two cores in seconds; each with its reason.
ADJUST = {
    # The ImageNet weights are a download; the same call with a local weights file
    # is tested in tests/test_weights.py.
    ("README.md", "import keras_resnet"): [('weights="imagenet"', "weights=None")],
    ("docs/weights.md", "import keras_resnet"): [('weights="imagenet"', "weights=None")],
    # Thirty Hyperband epochs are minutes; two show the same calls.
    ("README.md", "import keras_tuner"): [("max_epochs=30", "max_epochs=2")],
    ("docs/search.md", "import keras_tuner"): [("max_epochs=30", "max_epochs=2")],
    # A model trained by the reader; small draws and widths show the same calls.
    ("docs/analyses.md", "import keras_resnet"): [
        ('"saved_models/digits_resnet20"', '"m.keras"'), ("draws=10", "draws=2"),
        ("(2, 6, 12, 24, 50), width=200, inits=8", "(2, 6), width=16, inits=2"),
        ("samples=32", "samples=4")],
    ("docs/training.md", "from keras_resnet.training import TrainConfig, Trainer, train"): [
        ("epochs=20", "epochs=1"), ("callbacks=[my_keras_callback]", "callbacks=[]")],
    ("docs/experiments.md", "from keras_resnet import experiments"): [
        ("epochs=10", "epochs=1"), ("seeds=[1, 2, 3]", "seeds=[1]"),
        ("depths=(8, 32)", "depths=(8,)"), ("depths=(20,)", "depths=(8,)"),
        ('{"depth": 20}', '{"depth": 8}'), ('{"depth": 20, "model_extras"', '{"depth": 8, "model_extras"')],
}

# (file, first line of the block) -> why it cannot run here; the test that covers it.
NOT_RUN = {
    ("docs/search.md", "ResNetHyperModel(family=\"cifar\", input_shape=None, classes=None, *, depths=None,"):
        "a signature, not code",
    ("docs/search.md", "hp = keras_tuner.HyperParameters()"):
        "a fragment of the block above it (`hypermodel` is the reader's)",
    ("docs/weights.md", "# an official keras.applications file, fetched elsewhere"):
        "needs keras.applications' files, a download; tests/test_weights.py loads locally "
        "built files of the same layout",
}

# (file, first line of the block) -> code run first: the reader's own objects.
PREAMBLE = {
    ("docs/deploy.md", "from keras_resnet import serving"): (
        "import keras, numpy as np, keras_resnet\n"
        "from keras_resnet import preprocessing\n"
        "raw_uint8_images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), np.uint8)\n"
        "images = uint8_batch = uint8_batch_at_input_size = raw_uint8_images[:4]\n"
        "image = raw_uint8_images[0]\n"
        "spec = preprocessing.make_spec((8, 8), (0.5,) * 3, (0.25,) * 3)\n"
        "names = [str(i) for i in range(10)]\n"
        "model = keras_resnet.ResNet(8, input_shape=(8, 8, 3), classes=10)\n"),
    ("docs/analyses.md", "import keras_resnet"): (
        "import keras_resnet\n"
        "keras_resnet.ResNet(depth=14, input_shape=(8, 8, 3), classes=10).save('m.keras')\n"),
}


def _blocks():
    for path in DOCS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            indent, language, body = match.groups()
            body = "\n".join(line[len(indent):] for line in body.splitlines())
            line = text[:match.start()].count("\n") + 1
            first = body.strip().splitlines()[0] if body.strip() else ""
            yield str(path.relative_to(ROOT)), line, language, body, first


def _python_blocks():
    return [b for b in _blocks() if b[2] == "python" and not b[3].lstrip().startswith(">>>")]


def _interactive_blocks():
    return [b for b in _blocks() if b[3].lstrip().startswith(">>>")]


def _examples(body):
    """(source, expected output) pairs of a `>>>` block."""
    examples, source, expected = [], None, []
    for line in body.splitlines():
        if line.startswith(">>> "):
            if source is not None:
                examples.append((source, "\n".join(expected).strip()))
            source, expected = line[4:], []
        elif source is not None:
            expected.append(line)
    if source is not None:
        examples.append((source, "\n".join(expected).strip()))
    return examples


def _id(block):
    return f"{block[0]}:{block[1]}"


def test_every_listed_block_exists():
    """The tables name only blocks the docs still have (a renamed block must not go untested)."""
    present = {(b[0], b[4]) for b in _python_blocks()}
    assert not set(ADJUST) - present, sorted(set(ADJUST) - present)
    assert not set(NOT_RUN) - present, sorted(set(NOT_RUN) - present)
    assert not set(PREAMBLE) - present, sorted(set(PREAMBLE) - present)


@pytest.mark.parametrize("block", _interactive_blocks(), ids=_id)
def test_interactive_examples(block):
    import keras_resnet

    namespace = {"keras_resnet": keras_resnet}
    for source, expected in _examples(block[3]):
        error = re.match(r"^(\w+Error): (.*)$", expected, re.S)
        if error:
            with pytest.raises(Exception) as info:
                exec(compile(source, block[0], "exec"), namespace)
            assert type(info.value).__name__ == error.group(1), source
            assert str(info.value) == error.group(2), source
        elif expected:
            assert repr(eval(compile(source, block[0], "eval"), namespace)) == expected, source
        else:
            exec(compile(source, block[0], "exec"), namespace)


@pytest.mark.parametrize("block", _python_blocks(), ids=_id)
def test_python_blocks(block, tmp_path, monkeypatch):
    path, _, _, body, first = block
    if (path, first) in NOT_RUN:
        pytest.skip(NOT_RUN[(path, first)])
    for old, new in ADJUST.get((path, first), []):
        assert old in body, f"{path}: {old!r} is no longer in the block; update ADJUST"
        body = body.replace(old, new)
    monkeypatch.chdir(tmp_path)
    body = PREAMBLE.get((path, first), "") + body
    exec(compile(body, os.path.join(ROOT, path), "exec"), {"__name__": "__docs__"})
