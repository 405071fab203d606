"""Analyses of a model trained on image folders: the data, input size and split from its metadata."""

import json
import shutil

import numpy as np
import pytest

from keras_resnet.cli import analyze as cli

pytest.importorskip("tensorflow")
# The tests share one trained model: one xdist worker trains it once.
pytestmark = pytest.mark.xdist_group("analysis_folder_model")
COUNTS = {"ant": 12, "bee": 16, "cow": 12}   # 40 images; 25% held out of each: 3 + 4 + 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A ResNet-8 trained for one epoch on class folders without val/, at 16x16, exported
    (as model.keras only: the SavedModel and TFLite files would cost half a minute)."""
    from PIL import Image

    from keras_resnet.serving import directory
    from keras_resnet.training import TrainConfig, train

    root = tmp_path_factory.mktemp("folder_run")
    photos = root / "photos"
    rng = np.random.default_rng(0)
    for c, (name, n) in enumerate(sorted(COUNTS.items())):
        (photos / name).mkdir(parents=True)
        for i in range(n):   # 48x40 images, each class its own colour, so the net can learn
            image = rng.integers(0, 60, (40, 48, 3)).astype(np.uint8)
            image[..., c] += 150
            Image.fromarray(image).save(photos / name / f"{i:02d}.png")
    config = TrainConfig(recipe="cifar10", data_dir=str(photos), image_size=16, depth=8,
                         epochs=1, batch_size=10, seed=2, val_split=0.25,
                         run_dir=str(root / "run"), export=str(root / "export"), quiet=True,
                         gpus=0)
    export_model = directory.export_model
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(directory, "export_model",
                      lambda *a, **k: export_model(*a, **dict(k, formats=("keras",))))
        metrics = train(config, verbose=False)
    return {"photos": photos, "export": root / "export", "run": root / "run", "metrics": metrics}


def test_the_run_and_its_export_record_the_folder_and_split(trained):
    meta = json.loads((trained["export"] / "metadata.json").read_text())
    assert meta["dataset"] == "folder" and meta["input_size"] == [16, 16]
    data = meta["data"]
    assert (data["data_dir"], data["val_split"], data["seed"]) == (str(trained["photos"]), 0.25, 2)
    assert (data["train_size"], data["test_size"]) == (30, 10)
    config = json.loads((trained["run"] / "config.json").read_text())
    assert config["dataset"] == data and config["flags"]["val_split"] == 0.25


def run(recipe, args, capsys):
    code = cli.main(recipe, args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_lesion_and_paths_run_on_the_folder_model_without_data_flags(trained, tmp_path, capsys):
    code, out, err = run("lesion", ["--model", str(trained["export"] / "model.keras"), "--out",
                                    str(tmp_path), "--draws", "1", "--max-delete", "1",
                                    "--max-swaps", "0", "--quiet"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "lesion.json").read_text())
    inputs = result["inputs"]
    assert (inputs["dataset"], inputs["data_dir"]) == ("folder", str(trained["photos"]))
    assert (inputs["split"], inputs["seed"], inputs["val_split"]) == ("test", 2, 0.25)
    assert inputs["preprocessing"]["input_size"] == [16, 16]
    # the test split is the 10 images training held out (3 + 4 + 3 of the classes), and the
    # analysis's baseline is the accuracy the training run measured on them
    assert result["examples"] == 10
    assert result["baseline_accuracy"] == pytest.approx(trained["metrics"]["test_accuracy"])
    code, out, err = run("paths", ["--model", str(trained["export"]), "--out", str(tmp_path),
                                   "--samples", "2", "--batch-size", "4", "--quiet"], capsys)
    assert code == 0, err
    paths = json.loads((tmp_path / "paths.json").read_text())
    assert paths["inputs"]["split"] == "train" and paths["inputs"]["examples"] == 30


def test_a_recorded_folder_that_is_gone_asks_for_data_dir(trained, tmp_path, capsys):
    export = tmp_path / "export"
    shutil.copytree(trained["export"], export)
    meta = json.loads((export / "metadata.json").read_text())
    meta["data"]["data_dir"] = str(tmp_path / "moved")
    (export / "metadata.json").write_text(json.dumps(meta))
    code, out, err = run("lesion", ["--model", str(export), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and err.count("\n") == 1
    assert (f"--data-dir is needed: the model was trained on the image folders "
            f"'{tmp_path / 'moved'}' (its metadata.json), which do not exist here") in err
    assert not (tmp_path / "o").exists()
    # an export that records no folder (older metadata) finds it in its run's config.json
    del meta["data"]
    (export / "metadata.json").write_text(json.dumps(meta))
    from keras_resnet.analysis import inputs

    found = inputs.model_inputs(export)
    assert found == {"name": None, "data_dir": str(trained["photos"]), "seed": 2,
                     "image_size": 16, "val_split": 0.25}
