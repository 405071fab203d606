"""Fine-tuning end to end, offline: random ImageNet-shaped weights saved to a file, a
generated image folder, both stages, and what each stage may and may not change.

The weights are *random* (not pretrained): the tests check the mechanics (which
variables each stage moves, the preprocessing, resumption across the stage
boundary, the export's class names), not accuracy.
"""

import json
import os
import shutil

import keras
import numpy as np
import pytest

import keras_resnet
from keras_resnet import preprocessing as prep
from keras_resnet.training.config import ConfigError, TrainConfig
from keras_resnet.training.finetune import FinetuneConfig, check_folder, finetune, resolve

pytestmark = [pytest.mark.xdist_group("finetune")]
CLASSES = ("cat", "dog", "emu")
SIZE = 32


def write_folder(root, per_class=(8, 3), size=40, seed=0):
    """DIR/train/<class>/ and DIR/val/<class>/ PNGs, each class its own colour range."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "val"), per_class):
        for c, name in enumerate(CLASSES):
            os.makedirs(root / split / name, exist_ok=True)
            for i in range(n):
                pixels = rng.uniform(0, 90, (size, size, 3)) + 80 * c
                Image.fromarray(pixels.astype("uint8")).save(root / split / name / f"{i}.png")
    return root


def random_backbone(path, seed=0):
    """A headless ResNet-18 (ImageNet layout) with random kernels and BatchNorm statistics."""
    model = keras_resnet.ResNet(depth=18, include_top=False, family="imagenet",
                                input_shape=(SIZE, SIZE, 3), seed=seed)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for sub in layer._flatten_layers(include_self=True, recursive=True):
            if isinstance(sub, keras.layers.BatchNormalization):
                gamma, beta, mean, var = sub.get_weights()
                sub.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                                 rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    model.save_weights(path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    return (write_folder(root / "images"), random_backbone(str(root / "r18.weights.h5")),
            root)


def classifier(path=None):
    model = keras_resnet.ResNet(depth=18, family="imagenet", input_shape=(SIZE, SIZE, 3),
                                classes=len(CLASSES))
    if path is not None:
        model.load_weights(path)
    return model


def variables(model, include_head=False):
    """{(layer, variable path): value} of the backbone (and the classifier)."""
    out = {}
    for layer in model.layers:
        if layer.name == "predictions" and not include_head:
            continue
        for v in layer.weights:
            out[v.path] = keras.ops.convert_to_numpy(v)
    return out


def is_bn(path):
    return "_bn" in path.rsplit("/", 2)[-2] or path.split("/")[-2].startswith("bn")


def run(images, weights, run_dir, **ft):
    base = TrainConfig(data_dir=str(images), depth=18, image_size=SIZE, epochs=1, batch_size=8,
                       run_dir=str(run_dir), no_export=True, quiet=True, lr=0.4)
    return finetune(base, FinetuneConfig(weights=weights, head_epochs=1, **ft), verbose=False)


def test_stage1_moves_only_the_head_stage2_the_backbone_and_bn_when_asked(setup):
    images, weights, root = setup
    metrics = run(images, weights, root / "run")
    assert metrics["stage1"]["epochs_completed"] == 1 and metrics["epochs_completed"] == 1
    # Our own weights file declares nothing: torchvision's normalisation; the pipeline
    # trained with it (config.json records the spec the export also receives).
    for stage in ("stage1", "stage2"):
        recorded = json.loads((root / "run" / stage / "config.json").read_text())
        assert recorded["dataset"]["preprocessing"]["mean"] == list(prep.IMAGENET_MEAN)
        assert recorded["dataset"]["classes"] == len(CLASSES)
    source = keras_resnet.ResNet(depth=18, include_top=False, family="imagenet",
                                 input_shape=(SIZE, SIZE, 3))
    source.load_weights(weights)
    start = variables(source)
    one = classifier(root / "run" / "stage1" / "final.weights.h5")
    two = classifier(root / "run" / "stage2" / "final.weights.h5")
    after1, after2 = variables(one), variables(two)
    # ResNet-18: stem conv + 16 branch convs + 3 projections, each with a BatchNorm of
    # four variables: 20 + 20 x 4.
    assert after1.keys() == start.keys() and len(start) == 100
    for path, value in start.items():   # stage 1: no backbone weight, no BN statistic moved
        np.testing.assert_array_equal(after1[path], value, err_msg=path)
    head1 = one.get_layer("predictions").get_weights()[0]
    head2 = two.get_layer("predictions").get_weights()[0]
    assert not np.array_equal(head1, head2)
    moved = {p for p in start if not np.array_equal(after2[p], after1[p])}
    # Stage 2 (unfreeze_from=1, BatchNorm frozen): every block's kernels moved; the stem
    # and every BatchNorm variable (statistics, gamma, beta) did not.
    kernels = {p for p in start if p.endswith("kernel") and p.startswith("stage")}
    assert kernels and kernels <= moved
    assert not {p for p in moved if p.startswith("stem") or is_bn(p)}

    # Resume across the stage boundary: stage 1 done, stage 2 of another run starts from
    # its final weights; from stage 3 on, BatchNorm adapting.
    shutil.copytree(root / "run" / "stage1", root / "run_bn" / "stage1")
    again = run(images, weights, root / "run_bn", unfreeze_from=3, train_bn=True)
    assert again["stage1"] is None
    after3 = variables(classifier(root / "run_bn" / "stage2" / "final.weights.h5"))
    moved = {p for p in start if not np.array_equal(after3[p], after1[p])}
    assert not {p for p in moved if not p.startswith(("stage3", "stage4"))}
    stats = {p for p in moved if p.endswith(("moving_mean", "moving_variance"))}
    assert {p.split("/")[0] for p in stats} == {f"stage{s}_block{b}" for s in (3, 4)
                                                 for b in (1, 2)}


def test_caffe_weights_are_fed_rgb_with_the_means_subtracted(tmp_path):
    """keras.applications' ResNet50 weights expect BGR minus the caffe means: the
    fine-tuning model takes RGB (stem channels reversed), and its features equal
    keras.applications' on ``preprocess_input`` of the same pixels."""
    from keras_resnet.training.finetune_stage import load_pretrained, preprocessing_spec
    from keras_resnet.weights import declared_preprocessing
    from tests.test_weights import official_source, write_official_h5

    source = official_source("ResNet50", include_top=False, pooling="avg",
                             input_shape=(SIZE, SIZE, 3))
    path = str(write_official_h5(source, tmp_path / "resnet50_notop.h5"))
    assert declared_preprocessing(path) == "caffe"
    builder = {"depth": 50, "family": "imagenet", "input_shape": (SIZE, SIZE, 3), "classes": 3}
    model = keras_resnet.ResNet(**builder)
    load_pretrained(model, builder, path, "caffe")
    spec = preprocessing_spec(prep.make_spec((SIZE, SIZE), prep.IMAGENET_MEAN, prep.IMAGENET_STD),
                              "caffe")
    assert spec["scale"] == 1.0 and spec["std"] == [1.0, 1.0, 1.0]
    pixels = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3)).astype("uint8")
    features = keras.Model(model.input, model.get_layer("avg_pool").output)
    ours = keras.ops.convert_to_numpy(features(prep.preprocess_numpy(pixels, spec)))
    reference = keras.applications.resnet.preprocess_input(pixels.astype("float32"))
    expected = keras.ops.convert_to_numpy(source(reference, training=False))
    assert np.max(np.abs(ours - expected)) / np.max(np.abs(expected)) <= 1e-4


@pytest.mark.parametrize("layout, message", [
    ({"train/a": 2}, r"found 1 class folder \(a\)"),
    ({"train/a": 2, "train/b": 0}, r"class folder .*train/b holds no image files"),
    ({"train/a": 2, "train/b": 2, "val/a": 1, "val/c": 1}, r"val/ has class folders that "
                                                           r"train/ lacks: c"),
    ({"train/a": 2, "train/b": 2, "val/a": 1, "val/b": 1, "val/b/small": 1},
     r"1 image\(s\) are smaller than the input size 32x32, e.g. .*small.*\(30x20\)"),
])
def test_folder_errors_are_one_line(tmp_path, layout, message):
    from PIL import Image

    for folder, n in layout.items():
        os.makedirs(tmp_path / folder, exist_ok=True)
        size = (30, 20) if folder.endswith("small") else (40, 40)
        for i in range(n):
            Image.new("RGB", size).save(tmp_path / folder / f"{i}.png")
    with pytest.raises(ConfigError, match=message) as info:
        check_folder(str(tmp_path), SIZE)
    assert "\n" not in str(info.value)


def test_bad_settings_are_refused_before_anything_loads(setup, tmp_path):
    images, weights, _ = setup
    base = TrainConfig(data_dir=str(images), depth=18)
    with pytest.raises(ConfigError, match="--weights is required"):
        resolve(base, FinetuneConfig())
    with pytest.raises(ConfigError, match="--weights .*missing.pth: no such file"):
        resolve(base, FinetuneConfig(weights=str(tmp_path / "missing.pth")))
    with pytest.raises(ConfigError, match="--data-dir is required"):
        resolve(TrainConfig(depth=18), FinetuneConfig(weights=weights))
    with pytest.raises(ConfigError, match="--stage2-lr"):
        resolve(base, FinetuneConfig(weights=weights, stage2_lr=2.0))
    resolved, _ = resolve(base, FinetuneConfig(weights=weights))
    assert (resolved.batch_size, resolved.schedule, resolved.epochs, resolved.image_size,
            resolved.zero_init) == (32, "cosine", 10, 224, "off")


@pytest.mark.slow  # about 40-90 s here: the export writes the Keras, SavedModel and TFLite files
def test_recipe_exports_class_names_and_the_weights_preprocessing(setup, capsys):
    """The command line end to end: export with class names and the declared (torch)
    preprocessing, and predict printing class names."""
    from keras_resnet.cli.finetune import main as finetune_main
    from keras_resnet.cli.serve import predict_main

    images, weights, root = setup
    export = root / "export"
    code = finetune_main(["--data-dir", str(images), "--weights", weights, "--depth", "18",
                          "--image-size", str(SIZE), "--epochs", "1", "--head-epochs", "1",
                          "--batch-size", "8", "--run-dir", str(root / "cli_run"),
                          "--export", str(export), "--quiet"])
    assert code == 0
    metadata = json.loads((export / "metadata.json").read_text())
    assert metadata["class_names"] == list(CLASSES)
    assert metadata["preprocessing"]["mean"] == list(prep.IMAGENET_MEAN)
    assert metadata["finetune"]["preprocessing"] == "torch"
    capsys.readouterr()
    assert predict_main([str(export), str(images / "val" / "dog" / "0.png")]) == 0
    assert any(name in capsys.readouterr().out for name in CLASSES)


def test_a_trained_keras_model_gives_every_layer_but_its_classifier(tmp_path):
    from keras_resnet.training.finetune_stage import load_pretrained

    trained = keras_resnet.ResNet(depth=18, family="imagenet", input_shape=(SIZE, SIZE, 3),
                                  classes=10, seed=3)
    path = str(tmp_path / "model.keras")
    trained.save(path)
    builder = {"depth": 18, "family": "imagenet", "input_shape": (SIZE, SIZE, 3),
               "classes": len(CLASSES)}
    model = keras_resnet.ResNet(**builder)
    load_pretrained(model, builder, path, "torch")
    expected = variables(trained)
    got = variables(model)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert model.get_layer("predictions").units == len(CLASSES)
