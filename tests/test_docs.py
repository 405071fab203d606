"""The docs' examples run as written.

Every fenced Python block and every ``>>>`` example in README.md and docs/*.md is
found by this test. ``>>>`` examples are checked against the output the docs print
(a value's repr, or ``SomeError: message``). Fenced blocks are executed in a fresh
namespace in a temporary directory; a block that needs what this machine cannot have
(a download, a GPU, a trained model of the user's) or hours of work is listed in
``ADJUST`` (by a piece of text only that block of its file holds) with the smallest change that makes it run here (fewer epochs, a weights
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

# (file, a piece of text that only this block of the file holds) -> [(old, new), ...]:
# the smallest change that lets the block run offline on two cores in seconds; each
# with its reason.
ADJUST = {
    # The thousand-layer builds take most of a minute on two busy cores; the same
    # calls at depths 1202 and 1001 (preact) are built, run, checked against the
    # recursion limit and round-tripped by tests/test_models.py::
    # test_thousand_layer_networks. Here: the same calls, basic and preact bottleneck.
    ("docs/scale.md", "ResNet(depth=1202)"): [("depth=1202", "depth=110"),
                                              ("depth=1001", "depth=164")],
    # 500 blocks under the scope take half a minute; 20 run the same scope and layers
    # (600 blocks are built under it by tests/test_models.py::test_thousand_layer_networks).
    ("docs/scale.md", "layers.building_scope()"): [("range(500)", "range(20)")],
    # The ImageNet weights are a download; the same call with a local weights file
    # is tested in tests/test_weights.py.
    ("README.md", "WideResNet(depth=28"): [('weights="imagenet"', "weights=None")],
    ("docs/weights.md", "ResNet101V2"): [('weights="imagenet"', "weights=None")],
    # Thirty Hyperband epochs over the whole space are many minutes: one candidate
    # (ResNet-8) for one epoch shows the same calls.
    ("docs/search.md", "keras_tuner.Hyperband"): [
        ("max_epochs=30", "max_epochs=1"),
        ("max_params=1_000_000", "max_params=1_000_000, depths=[8], widths=[1]")],
    # A model trained by the reader; small draws and widths show the same calls (one
    # draw of up to 2 deleted blocks and 1 swap: 13 lesioned models instead of 41).
    ("docs/analyses.md", "import keras_resnet"): [
        ('"saved_models/digits_resnet20"', '"m.keras"'),
        ("draws=10", "draws=1, max_delete=2, max_swaps=1"),
        ("(2, 6, 12, 24, 50), width=200, inits=8", "(2, 6), width=16, inits=2"),
        ("samples=32", "samples=4")],
    ("docs/training.md", "from keras_resnet.training import TrainConfig, Trainer, train"): [
        ("depth=20", "depth=8"), ("epochs=20", "epochs=1"),
        ("callbacks=[my_keras_callback]", "callbacks=[]")],
    # Every configuration builds and traces its own model, most of its cost: one
    # epoch of the smallest depth, one seed. The skips table's 8 rows are trained
    # through the same run_identity_mappings by tests/test_experiments.py::
    # test_identity_mappings_skips_table_every_row_trains; here the 5-row units table.
    ("docs/experiments.md", "from keras_resnet import experiments"): [
        ("epochs=10", "epochs=1"), ("seeds=[1, 2, 3]", "seeds=[1]"),
        ("depths=(8, 32)", "depths=(8,)"),
        ('"skips", depths=(20,)', '"units", depths=(8,)'),
        ('{"depth": 20}', '{"depth": 8}'),
        ('{"depth": 20, "model_extras"', '{"depth": 8, "model_extras"')],
}

# (file, marker) -> why it is not run here; the test that covers it.
NOT_RUN = {
    ("README.md", "keras_tuner.Hyperband"):
        "run as written (shrunk the same way) by tests/test_tune_failures.py",
    ("docs/weights.md", "from_torch("):
        "needs torchvision's and timm's files, a download; tests/test_weights_torch.py "
        "loads locally written files of the same layout",
    ("docs/search.md", "ResNetHyperModel(family=\"cifar\", input_shape=None, classes=None, *, depths=None,"):
        "a signature, not code",
    ("docs/search.md", "hp = keras_tuner.HyperParameters()"):
        "a fragment of the block above it (`hypermodel` is the reader's)",
    ("docs/weights.md", "# an official keras.applications file, fetched elsewhere"):
        "needs keras.applications' files, a download; tests/test_weights.py loads locally "
        "built files of the same layout",
}

# (file, marker) -> code run first: the reader's own objects.
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
        "keras_resnet.ResNet(depth=20, input_shape=(8, 8, 3), classes=10).save('m.keras')\n"),
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


def _entry(table, path, body):
    keys = [k for k in table if k[0] == path and k[1] in body]
    return table[keys[0]] if keys else None


def test_every_listed_block_exists():
    """Each table entry names exactly one block the docs still have (a renamed or
    duplicated block must not go untested)."""
    blocks = _python_blocks()
    for table in (ADJUST, NOT_RUN, PREAMBLE):
        for path, marker in table:
            found = [b for b in blocks if b[0] == path and marker in b[3]]
            assert len(found) == 1, (path, marker, len(found))


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
    path, _, _, body, _ = block
    if _entry(NOT_RUN, path, body):
        pytest.skip(_entry(NOT_RUN, path, body))
    preamble = _entry(PREAMBLE, path, body) or ""
    for old, new in _entry(ADJUST, path, body) or []:
        assert old in body, f"{path}: {old!r} is no longer in the block; update ADJUST"
        body = body.replace(old, new)
    monkeypatch.chdir(tmp_path)
    body = preamble + body
    exec(compile(body, os.path.join(ROOT, path), "exec"), {"__name__": "__docs__"})
