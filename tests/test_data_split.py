"""Image folders without val/: a seeded, stratified held-out split, recorded with the data."""

import logging

import numpy as np
import pytest

from keras_resnet import data

pytest.importorskip("tensorflow")

COUNTS = {"ant": 10, "bee": 20, "cow": 7}    # images per class


@pytest.fixture(autouse=True)
def _scan_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_RESNET_CACHE", str(tmp_path / "cache"))


def make_folder(root, counts=COUNTS):
    """Class folders of 8x8 PNGs; pixel (0, 0) holds (class, index in the class, 7)."""
    from PIL import Image

    for c, (name, n) in enumerate(sorted(counts.items())):
        (root / name).mkdir(parents=True)
        for i in range(n):
            image = np.full((8, 8, 3), 7, np.uint8)
            image[..., 0], image[..., 1] = c, i
            Image.fromarray(image).save(root / name / f"{i:03d}.png")
    return root


def held_out(d):
    """The (class, index) of every validation image, read back from its pixels."""
    images, labels = d.raw_test_images(d.test_size)
    assert len(images) == d.test_size
    np.testing.assert_array_equal(images[:, 0, 0, 0], labels)   # the label is the folder's
    return sorted(zip(images[:, 0, 0, 0].tolist(), images[:, 0, 0, 1].tolist()))


def reference_split(counts, fraction, seed):
    """The documented recipe, rewritten: per class, the first floor(n f + 1/2) of
    default_rng([seed, 17, class]).permutation(n)."""
    out = []
    for c, n in enumerate(counts[k] for k in sorted(counts)):
        k = int(np.floor(n * fraction + 0.5))
        out += [(c, int(i)) for i in np.random.default_rng([seed, 17, c]).permutation(n)[:k]]
    return sorted(out)


def test_class_folders_alone_get_a_stratified_seeded_split(tmp_path, caplog):
    root = make_folder(tmp_path / "photos")
    with caplog.at_level(logging.WARNING, logger="keras_resnet.data"):
        d = data.load(data_dir=root, image_size=8, seed=3)
    notes = [r.getMessage() for r in caplog.records if "held out" in r.getMessage()]
    assert notes == [f"{root} has no val/ folder: 4 of its 37 images (0.1 of each class, seed 3) "
                     "are held out for validation (--val-split)."]
    assert d.class_names == ["ant", "bee", "cow"] and d.val_split == 0.1
    assert (d.train_size, d.test_size) == (33, 4)
    val = held_out(d)
    # stratified: round(10 * 0.1) = 1 ant, round(20 * 0.1) = 2 bees, round(7 * 0.1) = 1 cow
    assert [c for c, _ in val] == [0, 1, 1, 2]
    assert val == reference_split(COUNTS, 0.1, 3)
    # training lists every other image, and only those
    train = {tuple(p.split("/")[-2:]) for p in d.train_split.images}
    assert len(train) == 33 and not train & {(sorted(COUNTS)[c], f"{i:03d}.png") for c, i in val}
    # the same seed gives the same split; another seed another one
    assert held_out(data.load(data_dir=root, image_size=8, seed=3)) == val
    other = held_out(data.load(data_dir=root, image_size=8, seed=4))
    assert other != val and other == reference_split(COUNTS, 0.1, 4)


def test_train_folder_without_val_and_an_explicit_fraction(tmp_path):
    root = tmp_path / "photos"
    make_folder(root / "train")
    d = data.load(data_dir=root, image_size=8, seed=0, val_split=0.25)
    # round(2.5) = 3 (half up), round(5) = 5, round(1.75) = 2
    assert (d.train_size, d.test_size, d.val_split) == (27, 10, 0.25)
    assert held_out(d) == reference_split(COUNTS, 0.25, 0)
    described = d.describe()
    assert described["data_dir"] == str(root) and described["val_split"] == 0.25
    assert (described["seed"], described["train_size"], described["test_size"]) == (0, 27, 10)


def test_holdout_works_without_val(tmp_path):
    root = make_folder(tmp_path / "photos")
    d = data.load(data_dir=root, image_size=8, seed=0, holdout=True)
    # --holdout evaluates on 10% of the 33 training images; the held-out validation
    # images are used by neither
    assert (d.train_size, d.test_size, d.holdout) == (30, 3, True)
    images, _ = d.raw_test_images(3)
    val = reference_split(COUNTS, 0.1, 0)
    assert not set(zip(images[:, 0, 0, 0].tolist(), images[:, 0, 0, 1].tolist())) & set(val)


def test_a_folder_with_val_keeps_it(tmp_path):
    root = tmp_path / "photos"
    make_folder(root / "train")
    make_folder(root / "val", {"ant": 2, "bee": 1, "cow": 1})
    d = data.load(data_dir=root, image_size=8)
    assert (d.train_size, d.test_size, d.val_split) == (37, 4, None)
    with pytest.raises(data.DataError, match=r"Conflicting arguments: `val_split` \(--val-split\) "
                                             r"0.2 .* has val/; drop one of them\."):
        data.load(data_dir=root, image_size=8, val_split=0.2)


@pytest.mark.parametrize("kwargs, match", [
    ({"val_split": 0.0}, r"`val_split` \(--val-split\): received 0.0; expected a fraction "
                         r"between 0 and 1 \(exclusive\)"),
    ({"val_split": 1}, r"received 1; expected a fraction"),
    ({"val_split": True}, r"received True; expected a fraction"),
    ({"val_split": 0.01}, r"holding out 0.01 of each class of its 37 images leaves no "
                          r"validation images"),
    ({"val_split": 0.99}, r"leaves no training images"),
])
def test_split_errors(tmp_path, kwargs, match):
    root = make_folder(tmp_path / "photos")
    with pytest.raises(data.DataError, match=match):
        data.load(data_dir=root, image_size=8, **kwargs)


def test_layout_errors(tmp_path):
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(data.DataError, match="it has val/ but no train/ sub-folder"):
        data.load(data_dir=tmp_path)
    with pytest.raises(data.DataError, match="no train/ sub-folder and no class folders"):
        data.load(data_dir=tmp_path / "val" / "cat")
    with pytest.raises(data.DataError, match=r"`val_split` \(--val-split\): received 0.2 for "
                                             r"`name`='digits'"):
        data.load("digits", val_split=0.2)


def test_training_checks_val_split_before_loading(tmp_path):
    """What a run records of the split: tests/test_analysis_folder.py (it trains one)."""
    from keras_resnet.training import TrainConfig, train
    from keras_resnet.training.config import ConfigError

    with pytest.raises(ConfigError, match=r"--val-split applies to --data-dir; received "
                                          r"--dataset digits\."):
        train(TrainConfig(recipe="cifar10", dataset="digits", val_split=0.1))
    with pytest.raises(ConfigError, match=r"--val-split must be between 0 and 1 \(exclusive\); "
                                          r"received 1.5\."):
        train(TrainConfig(recipe="cifar10", data_dir=str(tmp_path), val_split=1.5))


def test_the_examples_a_run_saves_show_several_classes(tmp_path):
    """A folder's test set is sorted by class: the saved examples take each class in turn."""
    import os

    from keras_resnet.training.report import write_examples

    root = tmp_path / "photos"
    make_folder(root / "train")
    make_folder(root / "val", {"ant": 3, "bee": 2, "cow": 1})
    d = data.load(data_dir=root, image_size=8)
    images, labels = d.raw_test_images(5, across_classes=True)
    assert labels.tolist() == [0, 1, 2, 0, 1]
    # pixel (0, 0) holds (class, index in the class): each class's own images, in order
    assert images[:, 0, 0, :2].tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1]]
    assert d.raw_test_images(5)[1].tolist() == [0, 0, 0, 1, 1]     # the first five
    paths = write_examples(d, str(tmp_path / "examples"))
    assert [os.path.basename(p) for p in paths] == ["0_ant.png", "1_bee.png", "2_cow.png",
                                                    "3_ant.png", "4_bee.png"]
