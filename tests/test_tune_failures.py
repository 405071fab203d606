"""Searches that train nothing say so: every trial failed raises, best_call refuses (issue 18.2).

The README's KerasTuner snippet runs as written (at tiny settings).
"""

import io
import os
import re

import pytest

from tests.conftest import requires_tensorflow

keras_tuner = pytest.importorskip("keras_tuner")

from tests.test_tuning import frozen_imports  # noqa: E402,F401 - a fixture (autouse)

from keras_resnet.data import load_digits  # noqa: E402
from keras_resnet.training import TrainConfig  # noqa: E402
from keras_resnet.tuning import ResNetHyperModel, best_call, budgeted  # noqa: E402
from keras_resnet.tuning import results as R  # noqa: E402
from keras_resnet.tuning.config import SearchConfig  # noqa: E402
from keras_resnet.tuning.oracles import SearchFailed  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_search_snippet():
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (snippet,) = [b for b in blocks if "keras_tuner.Hyperband" in b]
    return snippet


@requires_tensorflow
def test_readme_search_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README's snippet, with only its sizes made tiny, searches and prints a call.

    Run in this process in a namespace of its own (its own imports only), as
    tests/test_docs.py runs the docs' blocks: a process of its own cost a TensorFlow start-up.
    """
    code = _readme_search_snippet()
    # Tiny: one candidate (ResNet-8, width 1), one epoch.
    for old, new in (("max_epochs=30", "max_epochs=1"),
                     ("max_params=1_000_000", "max_params=1_000_000, depths=[8], widths=[1]")):
        assert code.count(old) == 1, old   # the sizes this test shrinks are still there
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, os.path.join(REPO, "README.md"), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"keras_resnet\.ResNet\(depth=8(, preact=True)?\)", last), out[-2000:]
    assert os.path.isdir(tmp_path / "search")


@pytest.fixture(scope="module")
def digits():
    (x, y), (xt, yt) = load_digits()
    return (x.astype("float32") / 255.0, y), (xt.astype("float32") / 255.0, yt)


@requires_tensorflow
def test_a_search_whose_every_trial_failed_raises_and_best_call_refuses(tmp_path, digits):
    """The README's old snippet: no input_shape, so every trial on 8x8 digits fails."""
    (x, y), (xt, yt) = digits
    hypermodel = ResNetHyperModel(classes=10, depths=[8], widths=[1], preact=[False, True])
    tuner = budgeted(keras_tuner.RandomSearch(hypermodel, objective="val_accuracy",
                                              max_trials=3, seed=1, directory=str(tmp_path)))
    with pytest.raises(SearchFailed) as error:
        tuner.search(x, y, validation_data=(xt, yt), epochs=1, batch_size=128, verbose=0)
    trials = list(tuner.oracle.trials.values())
    failed = [t for t in trials if t.status in ("FAILED", "INVALID")]
    assert failed and len(failed) == len(trials)
    first = [line for line in failed[0].message.splitlines() if line.strip()][-1].strip()
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"all {len(failed)} trained trial")
    assert message.endswith(f"the first: {first}")
    hp = tuner.get_best_hyperparameters()[0]   # KerasTuner still offers a failed trial's
    with pytest.raises(ValueError, match=f"trial {failed[0].trial_id}, which never trained "
                                         "to completion"):
        best_call(hp)


@requires_tensorflow
def test_the_recipes_search_raises_when_every_trial_failed(tmp_path):
    """run_search writes the records, then raises one line: how many, the first reason."""
    from keras_resnet.tuning.search import run_search

    config = SearchConfig(TrainConfig(dataset="digits", batch_size=128),
                          directory=str(tmp_path / "s"), depths=[8], widths=[1], preact=False,
                          learning_rates=[1e9], max_trials=2, epochs=1, in_process=True)
    with pytest.raises(SearchFailed) as error:
        run_search(config, out=io.StringIO())
    rows = R.read_results(tmp_path / "s" / "results.csv")
    assert rows and {r["status"] for r in rows} == {"failed"}
    message = str(error.value)
    assert message.startswith(f"all {len(rows)} trained trial")
    assert message.endswith(f"the first: {rows[0]['error']}")
    assert rows[0]["error"].startswith("TrainingDiverged: the training loss became")
