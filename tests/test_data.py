"""keras_resnet.data: digits, synthetic, image folders, TFDS (mocked), determinism, errors."""

import numpy as np
import pytest

from keras_resnet import data, preprocessing
from keras_resnet.serving import preprocessing as serving_prep

tf = pytest.importorskip("tensorflow")


@pytest.fixture(autouse=True)
def _scan_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_RESNET_CACHE", str(tmp_path / "cache"))


def batches(ds, n=None):
    ds = ds if n is None else ds.take(n)
    return list(ds.as_numpy_iterator())


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def check_batch(x, y, shape, num_classes, spec):
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert x.shape == shape and y.shape == shape[:1]
    assert y.min() >= 0 and y.max() < num_classes
    # normalized pixels stay within what uint8 inputs can give
    lo = (0 - np.array(spec["mean"])) / np.array(spec["std"])
    hi = (255 * spec["scale"] - np.array(spec["mean"])) / np.array(spec["std"])
    assert np.all(x >= lo.min() - 1e-5) and np.all(x <= hi.max() + 1e-5)


# ----------------------------------------------------------------------------- digits
@pytest.fixture(scope="module")
def digits():
    return data.load("digits", seed=0)


def test_digits_split_and_metadata(digits):
    assert (digits.name, digits.family, digits.num_classes) == ("digits", "cifar", 10)
    assert digits.class_names == [str(i) for i in range(10)]
    assert (digits.train_size, digits.test_size) == (1437, 360)
    assert digits.train_size + digits.test_size == 1797
    assert digits.input_shape() == (8, 8, 3)
    assert digits.skipped_files == 0 and digits.steps_per_epoch(128) == 11
    (x, y), (xt, yt) = data.load_digits(seed=0)
    spec = digits.preprocessing
    assert spec["input_size"] == [8, 8] and spec["resize"] == "stretch"
    # the mean/std are the training split's own statistics
    np.testing.assert_allclose(spec["mean"], x.reshape(-1, 3).mean(0) / 255, atol=1e-4)
    np.testing.assert_allclose(spec["std"], x.reshape(-1, 3).std(0) / 255, atol=1e-4)
    # stratified: every class in both splits in the same proportion (+-1 example)
    np.testing.assert_array_less(np.abs(np.bincount(yt) - np.bincount(y) / 4), 1.01)


def test_digits_split_depends_on_seed_only():
    (x0, y0), _ = data.load_digits(seed=0)
    (x0b, _), _ = data.load_digits(seed=0)
    (x1, _), _ = data.load_digits(seed=1)
    np.testing.assert_array_equal(x0, x0b)
    assert not np.array_equal(x0, x1)


def test_digits_test_dataset_is_exact_preprocessing(digits):
    got = batches(digits.test_dataset(100))
    assert [len(y) for _, y in got] == [100, 100, 100, 60]  # last partial batch kept
    x = np.concatenate([b[0] for b in got])
    y = np.concatenate([b[1] for b in got])
    _, (xt, yt) = data.load_digits(seed=0)
    np.testing.assert_array_equal(y, yt)
    np.testing.assert_allclose(x, preprocessing.preprocess_numpy(xt, digits.preprocessing),
                               rtol=1e-6, atol=1e-6)
    raw, raw_y = digits.raw_test_images(7)
    assert raw.dtype == np.uint8 and raw.shape == (7, 8, 8, 3)
    np.testing.assert_array_equal(raw, xt[:7])
    np.testing.assert_array_equal(raw_y, yt[:7])


def test_digits_train_batches_deterministic_per_epoch(digits):
    a = batches(digits.train_dataset(128, epoch=3))
    b = batches(digits.train_dataset(128, epoch=3))
    c = batches(digits.train_dataset(128, epoch=4))
    assert len(a) == 11  # 1437 // 128, drop_remainder
    assert_same_batches(a, b)
    assert not np.array_equal(a[0][0], c[0][0])
    assert not np.array_equal(a[0][1], c[0][1])
    for x, y in a:
        check_batch(x, y, (128, 8, 8, 3), 10, digits.preprocessing)
    # an epoch is a permutation of the training set
    labels = np.concatenate([y for _, y in a])
    (_, y_train), _ = data.load_digits(seed=0)
    assert np.all(np.bincount(labels, minlength=10) <= np.bincount(y_train))


def test_digits_augmentation_is_small_translation_without_flip(digits):
    """Each augmented digit equals its source shifted by at most 1 pixel (zero fill)."""
    (x_train, _), _ = data.load_digits(seed=0)
    spec = digits.preprocessing
    x, _ = batches(digits.train_dataset(64, epoch=0), 1)[0]
    raw = np.round(x * np.array(spec["std"]) / spec["scale"]
                   + np.array(spec["mean"]) / spec["scale"]).astype(int)
    padded = np.pad(x_train.astype(int), [(0, 0), (1, 1), (1, 1), (0, 0)])
    shifts = [(dy, dx) for dy in range(3) for dx in range(3)]
    seen = set()
    for image in raw:
        hits = [(dy, dx) for dy, dx in shifts
                if np.any(np.all(padded[:, dy:dy + 8, dx:dx + 8] == image, axis=(1, 2, 3)))]
        assert hits, "augmented digit is not a +-1 pixel translation of a training digit"
        seen.update(hits)
    assert len(seen) > 1  # several different shifts happen


def test_digits_holdout():
    held = data.load("digits", holdout=True)
    assert held.holdout and (held.train_size, held.test_size) == (1293, 144)
    x = np.concatenate([b[0] for b in batches(held.test_dataset(500))])
    (x_train, _), _ = data.load_digits(seed=0)
    # the held-out images come from the training split
    flat = {im.tobytes() for im in x_train}
    raw, _ = held.raw_test_images(144)
    assert len(x) == 144 and all(im.tobytes() in flat for im in raw)


# -------------------------------------------------------------------------- synthetic
def test_synthetic_cifar_shape_and_determinism():
    a = data.load("synthetic", seed=3, synthetic_examples=64)
    b = data.load("synthetic", seed=3, synthetic_examples=64)
    c = data.load("synthetic", seed=4, synthetic_examples=64)
    assert (a.family, a.num_classes, a.input_shape()) == ("cifar", 10, (32, 32, 3))
    assert (a.train_size, a.test_size) == (64, 16)
    xa, ya = a.raw_test_images(16)
    xb, yb = b.raw_test_images(16)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(xa, c.raw_test_images(16)[0])
    assert_same_batches(batches(a.train_dataset(32, 1)), batches(b.train_dataset(32, 1)))
    x, y = batches(a.train_dataset(32, 1), 1)[0]
    check_batch(x, y, (32, 32, 32, 3), 10, a.preprocessing)


def test_synthetic_imagenet_size():
    s = data.load("synthetic", image_size=96, num_classes=5, synthetic_examples=8)
    assert (s.family, s.num_classes, s.input_shape()) == ("imagenet", 5, (96, 96, 3))
    assert s.preprocessing["resize"] == "center_crop"
    x, y = batches(s.train_dataset(4, 0), 1)[0]
    check_batch(x, y, (4, 96, 96, 3), 5, s.preprocessing)
    x, y = batches(s.test_dataset(8), 1)[0]
    assert x.shape == (2, 96, 96, 3)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, match", [
    ({"name": "mnist"}, r"`name` \(--dataset\): received 'mnist'; expected one of cifar10, cifar100"),
    ({"name": "digits", "image_size": 32}, r"`image_size`: received 32"),
    ({"name": "digits", "seed": -1}, r"`seed`: received -1"),
    ({"name": "synthetic", "num_classes": 1}, r"`num_classes`: received 1"),
    ({"name": "digits", "data_dir": "/tmp"}, r"Conflicting arguments: `name`='digits'"),
    ({"name": None}, r"`name` \(--dataset\): received None"),
    ({"name": "digits", "holdout": "yes"}, r"`holdout`: received 'yes'; expected a bool"),
    ({"name": "cifar10", "image_size": 64}, r"`image_size`: received 64 for cifar10"),
])
def test_load_errors(kwargs, match):
    with pytest.raises(data.DataError, match=match) as info:
        data.load(**kwargs)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_batch_size_errors(digits):
    with pytest.raises(ValueError, match=r"`batch_size`: received 0"):
        digits.train_dataset(0)
    with pytest.raises(ValueError, match=r"`batch_size`: received 5000, larger than the 1437"):
        digits.train_dataset(5000)


# ---------------------------------------------------------------------- image folders
def _save(path, array, fmt, **kw):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, fmt, **kw)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """train/{cat,dog}, val/{cat,dog}; one truncated JPEG, one text file named .jpg."""
    import io

    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rgb = lambda h, w: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noqa: E731
    expected = {}
    for i in range(3):
        _save(root / "train" / "cat" / f"c{i}.jpg", rgb(16 + 8 * i, 20), "JPEG", quality=95)
        _save(root / "train" / "dog" / f"d{i}.png", rgb(24, 16 + 4 * i), "PNG")
    _save(root / "train" / "cat" / "gray.PNG", rgb(16, 16)[..., 0], "PNG")
    buf = io.BytesIO()
    Image.fromarray(rgb(64, 64)).save(buf, "JPEG")
    (root / "train" / "cat" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "train" / "dog" / "notes.txt").write_text("not an image, not counted")
    (root / "train" / "dog" / ".hidden.png").write_bytes(b"ignored")
    # val at 16x16 so that a 16x16 "stretch" load returns the exact pixels
    gray = rgb(16, 16)[..., 0]
    rgba = np.concatenate([rgb(16, 16), rng.integers(0, 256, (16, 16, 1), dtype=np.uint8)], -1)
    plain = rgb(16, 16)
    _save(root / "val" / "cat" / "a_gray.png", gray, "PNG")
    _save(root / "val" / "dog" / "b_rgba.png", rgba, "PNG")
    _save(root / "val" / "dog" / "c_rgb.png", plain, "PNG")
    (root / "val" / "dog" / "d_text.jpg").write_text("this is a text file named .jpg\n")
    alpha = rgba[..., 3:].astype(int)   # composited onto white, as read_image does
    on_white = np.round((rgba[..., :3] * alpha + 255 * (255 - alpha)) / 255).astype(np.uint8)
    expected["val"] = [np.repeat(gray[..., None], 3, -1), on_white, plain]
    return root, expected


def test_folder_skips_undecodable_files_when_met_and_remembers_them(folder, monkeypatch):
    root, expected = folder
    d = data.load(data_dir=str(root), image_size=16)
    assert d.name == "folder" and d.family == "cifar" and d.class_names == ["cat", "dog"]
    # Nothing is decoded at load but a first good file per split: nothing skipped yet.
    assert (d.train_size, d.test_size) == (8, 4) and d.skipped_files == 0
    raw, labels = d.raw_test_images(10)
    assert raw.dtype == np.uint8 and raw.shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(labels, [0, 1, 1])
    for got, want in zip(raw, expected["val"]):
        np.testing.assert_array_equal(got, want)
    assert d.skipped_paths == [str(root / "val" / "dog" / "d_text.jpg")]
    x, y = batches(d.test_dataset(8))[0]
    np.testing.assert_allclose(x, preprocessing.preprocess_numpy(np.stack(expected["val"]),
                                                                 d.preprocessing), atol=1e-5)
    # training goes on over the 7 good files, deterministically per epoch; the truncated
    # JPEG is met, skipped and counted with its reason
    a = batches(d.train_dataset(3, epoch=2))
    assert len(a) == 2 == d.steps_per_epoch(3)
    assert_same_batches(a, batches(d.train_dataset(3, epoch=2)))
    check_batch(*a[0], (3, 16, 16, 3), 2, d.preprocessing)
    assert d.skipped_files == 2
    assert d.skipped[str(root / "train" / "cat" / "truncated.jpg")].startswith(
        "cannot decode image (image file is truncated")
    assert d.skipped[str(root / "val" / "dog" / "d_text.jpg")] == "not a recognised image file"
    # The next load of the same listing knows both at once and never decodes them again.
    known = set(d.skipped_paths)
    real_read = preprocessing.read_image

    def read(path):
        assert str(path) not in known, f"decoded {path} again"
        return real_read(path)

    monkeypatch.setattr(preprocessing, "read_image", read)
    again = data.load(data_dir=root / "train" / "..", image_size=16)  # same files, other spelling
    assert again.skipped_files == 2 and again.train_size == 8
    assert_same_batches(a, batches(again.train_dataset(3, epoch=2)))   # the same batches
    assert len(batches(again.test_dataset(8))[0][1]) == 3


def test_folder_cache_is_keyed_by_the_listing(folder, tmp_path):
    """Touching a file changes the key: what was learned is not reused for changed files."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(folder[0], root)
    d = data.load(data_dir=root, image_size=16)
    batches(d.test_dataset(8))
    assert d.skipped_files == 1
    assert data.load(data_dir=root, image_size=16).skipped_files == 1
    bad = root / "val" / "dog" / "d_text.jpg"
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(bad, "JPEG")   # fixed in place
    fixed = data.load(data_dir=root, image_size=16)
    assert fixed.skipped_files == 0
    assert len(batches(fixed.test_dataset(8))[0][1]) == 4 and fixed.skipped_files == 0


def test_folder_imagenet_family(folder):
    root, expected = folder
    d = data.load("imagenet2012", data_dir=root, image_size=64, seed=1)  # --data-dir wins
    spec = d.preprocessing
    assert d.family == "imagenet" and spec["resize"] == "center_crop" and d.input_shape() == (64, 64, 3)
    a = batches(d.train_dataset(7, epoch=0))
    assert len(a) == 1 and d.skipped_files == 1   # the truncated JPEG, met and skipped
    check_batch(*a[0], (7, 64, 64, 3), 2, spec)  # JPEG and PNG, random-resized-crop
    assert_same_batches(a, batches(d.train_dataset(7, epoch=0)))
    assert not np.array_equal(a[0][0], batches(d.train_dataset(7, epoch=1))[0][0])
    # evaluation = the serving preprocess (resize shorter side to 64/0.875, centre crop)
    x, _ = batches(d.test_dataset(3))[0]
    want = serving_prep.preprocess(np.stack(expected["val"]), spec)
    np.testing.assert_allclose(x, np.asarray(want), atol=1e-4)


def test_folder_holdout(folder):
    d = data.load(data_dir=folder[0], image_size=16, holdout=True)
    assert (d.train_size, d.test_size) == (7, 1)


def test_folder_errors(tmp_path):
    def err(path, match):
        with pytest.raises(data.DataError, match=match) as info:
            data.load(data_dir=str(path))
        assert "`data_dir` (--data-dir)" in str(info.value) and "\n" not in str(info.value)

    err(tmp_path / "nope", "not an existing directory")
    err(tmp_path, "it has no train/ sub-folder and no class folders")
    (tmp_path / "train").mkdir()
    err(tmp_path, "train/ has no class folders")   # without val/, part of train/ is held out
    (tmp_path / "val").mkdir()
    err(tmp_path, "train/ has no class folders")
    (tmp_path / "train" / "cat").mkdir()
    (tmp_path / "train" / "cat" / "readme.txt").write_text("x")
    err(tmp_path, "train/ has no image files")
    (tmp_path / "train" / "cat" / "bad.jpg").write_text("x")
    (tmp_path / "val" / "cat").mkdir()
    (tmp_path / "val" / "cat" / "ok.png").write_bytes(b"")
    err(tmp_path, "none of the image files in train/ can be decoded")
    (tmp_path / "val" / "fish").mkdir()
    err(tmp_path, r"val/ has classes not in train/: \['fish'\]")


# ------------------------------------------------------------------ TFDS (mock_data)
@pytest.fixture(scope="module")
def tfds():
    return pytest.importorskip("tensorflow_datasets")


@pytest.mark.parametrize("name, classes, first_class", [
    ("cifar10", 10, "airplane"), ("cifar100", 100, None)])
def test_tfds_cifar_mocked(tfds, tmp_path, name, classes, first_class):
    with tfds.testing.mock_data(num_examples=40):
        d = data.load(name, tfds_data_dir=str(tmp_path), seed=2)
        held = data.load(name, tfds_data_dir=str(tmp_path), holdout=True)
        a = batches(d.train_dataset(16, epoch=3))
        b = batches(d.train_dataset(16, epoch=3))
        test = batches(d.test_dataset(32))
        raw, labels = d.raw_test_images(5)
    assert (d.name, d.family, d.num_classes) == (name, "cifar", classes)
    assert len(d.class_names) == classes
    if first_class:
        assert d.class_names[0] == first_class
    assert (d.train_size, d.test_size) == (40, 40)
    assert (held.train_size, held.test_size) == (36, 4)
    mean = preprocessing.CIFAR10_MEAN if name == "cifar10" else preprocessing.CIFAR100_MEAN
    assert d.preprocessing["mean"] == list(mean) and d.input_shape() == (32, 32, 3)
    assert len(a) == 2
    assert_same_batches(a, b)
    check_batch(*a[0], (16, 32, 32, 3), classes, d.preprocessing)
    assert [len(y) for _, y in test] == [32, 8]
    assert raw.shape == (5, 32, 32, 3) and raw.dtype == np.uint8
    np.testing.assert_allclose(test[0][0][:5], preprocessing.preprocess_numpy(raw, d.preprocessing),
                               atol=1e-5)
    np.testing.assert_array_equal(test[0][1][:5], labels)


def test_cifar_augmentation_is_pad4_crop_and_flip(tfds, tmp_path):
    """Every augmented CIFAR image is a (possibly flipped) 32x32 window of the zero-padded source."""
    with tfds.testing.mock_data(num_examples=16):
        d = data.load("cifar10", tfds_data_dir=str(tmp_path))
        x, y = batches(d.train_dataset(16, epoch=0), 1)[0]
    spec = d.preprocessing
    raw = np.round((x * np.array(spec["std"]) + np.array(spec["mean"])) / spec["scale"]).astype(int)
    sources = np.pad(d.train_split.images.astype(int), [(0, 0), (4, 4), (4, 4), (0, 0)])
    flips = 0
    for image in raw:
        found = None
        for src in sources:
            for flip in (False, True):
                s = src[:, ::-1] if flip else src
                for dy in range(9):
                    for dx in range(9):
                        if np.array_equal(s[dy:dy + 32, dx:dx + 32], image):
                            found = flip
        assert found is not None
        flips += found
    assert 0 < flips < 16


def test_tfds_imagenet_missing_manual_download(tfds, tmp_path):
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(data.DataError) as info:
            data.load("imagenet2012", tfds_data_dir=str(tmp_path))
    msg = str(info.value)
    manual = str(tmp_path / "downloads" / "manual")
    assert "`name`='imagenet2012' (--dataset) needs the manual download" in msg
    assert "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar" in msg and manual in msg
    assert "\n" not in msg and data.imagenet_manual_dir(str(tmp_path)) == manual


def test_tfds_imagenet_mocked(tfds, tmp_path):
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    for f in data.IMAGENET_MANUAL_FILES:
        (manual / f).write_bytes(b"")  # present; preparing is mocked
    with tfds.testing.mock_data(num_examples=6):
        d = data.load("imagenet2012", tfds_data_dir=str(tmp_path), image_size=64)
        a = batches(d.train_dataset(3, epoch=5))
        b = batches(d.train_dataset(3, epoch=5))
        c = batches(d.train_dataset(3, epoch=6))
        test = batches(d.test_dataset(4))
        raw, labels = d.raw_test_images(3)
        records = list(d.test_split.records(0, None).take(3).as_numpy_iterator())
        held = data.load("imagenet2012", tfds_data_dir=str(tmp_path), holdout=True)
    assert (d.family, d.num_classes, d.input_shape()) == ("imagenet", 1000, (64, 64, 3))
    assert d.class_names[0] == "n01440764" and d.preprocessing["resize"] == "center_crop"
    assert (d.train_size, d.test_size) == (6, 6) and held.holdout
    assert len(a) == 2
    assert_same_batches(a, b)
    assert not np.array_equal(a[0][0], c[0][0])
    check_batch(*a[0], (3, 64, 64, 3), 1000, d.preprocessing)
    assert [len(y) for _, y in test] == [4, 2]
    # evaluation = the serving preprocess of the decoded JPEG (resize + centre crop)
    for (contents, label), x, y in zip(records, test[0][0], test[0][1]):
        image = preprocessing.read_image(contents)[None]     # the one reader, as in serving
        want = np.asarray(serving_prep.preprocess(image, d.preprocessing))[0]
        np.testing.assert_allclose(x, want, atol=1e-4)
        assert y == label
    assert raw.shape == (3, 64, 64, 3) and raw.dtype == np.uint8
    np.testing.assert_array_equal(labels, [r[1] for r in records])


def test_random_resized_crop_geometry():
    """Crops cover 8%..100% of the area with aspect 3/4..4/3, lie inside, vary with the draws."""
    from keras_resnet.data import plans

    for h, w in [(120, 90), (32, 32), (500, 375), (10, 200)]:
        u = plans.uniforms(seed=0, epoch=1, start=0, count=2000)
        boxes = plans.rrc_boxes(h, w, u)
        top, left, ch, cw = boxes.T
        assert (top >= 0).all() and (left >= 0).all()
        assert (top + ch <= h).all() and (left + cw <= w).all() and (ch > 0).all()
        area, ratio = ch * cw / (h * w), cw / ch
        sampled = (area >= 0.08 * 0.8) & (ratio >= 0.75 * 0.8) & (ratio <= 4 / 3 * 1.25)
        if h * w >= 32 * 32 and max(h, w) / min(h, w) < 4 / 3:
            assert sampled.all()
            assert area.min() < 0.15 and area.max() > 0.9       # the range is used
            assert len({tuple(b) for b in boxes}) > 1000
        assert (area <= 1).all()
    # Too elongated for any attempt: the centred crop of allowed aspect ratio.
    np.testing.assert_array_equal(plans.rrc_boxes(10, 200, np.full((1, plans.DRAWS), 0.999)),
                                  [[0, 93, 10, 13]])


def test_epoch_draws_do_not_depend_on_how_they_are_taken():
    from keras_resnet.data import plans

    whole = plans.uniforms(3, 2, 0, 40)
    np.testing.assert_array_equal(plans.uniforms(3, 2, 17, 5), whole[17:22])
    np.testing.assert_array_equal(plans.position_uniforms(3, 2, [30, 4, 9]), whole[[30, 4, 9]])
    assert not np.array_equal(plans.uniforms(3, 3, 0, 40), whole)
    orders = plans.EpochOrders(seed=3, size=10)
    np.testing.assert_array_equal(orders.indices(2, np.arange(10)), plans.order(3, 2, 10))
    # positions past the end continue with a further pass in another order
    np.testing.assert_array_equal(orders.indices(2, np.arange(10, 20)), plans.order(3, 2, 10, 1))
    assert sorted(orders.indices(2, np.arange(10, 20))) == list(range(10))


def test_pipeline_throughput(digits):
    result = data.pipeline_throughput(digits.train_dataset(64, epoch=0), batches=5)
    assert result["images"] == 320 and result["images_per_sec"] > 0
    # an epoch shorter than warm-up + timed batches: times what is left
    assert data.pipeline_throughput(digits.train_dataset(128, epoch=0), batches=50)["images"] == 9 * 128


def test_cli(capsys):
    from keras_resnet.cli.data import main

    assert main(["--dataset", "digits", "--batches", "3"]) == 0
    out = capsys.readouterr().out
    assert '"train_size": 1437' in out and "train pipeline (tf): 384 images" in out
    assert main(["--dataset", "mnist"]) == 2
    assert "error: Invalid value for argument `name` (--dataset): received 'mnist'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def clean_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(5)
    for split, n in (("train", 5), ("val", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                _save(root / split / cls / f"{i}.png", rng.integers(0, 256, (12, 12, 3), np.uint8),
                      "PNG")
    return root


@pytest.mark.parametrize("source", ["digits", "folder", "synthetic224"])
def test_shards_split_the_same_epoch(source, digits, clean_folder):
    """Two shards see disjoint halves of the epoch, each example augmented as unsharded."""
    d = {"digits": lambda: digits,
         "folder": lambda: data.load(data_dir=clean_folder, image_size=16),
         "synthetic224": lambda: data.load("synthetic", image_size=64, synthetic_examples=12),
         }[source]()
    bs = 8 if source == "digits" else 1
    full = batches(d.train_dataset(1, epoch=2))
    full_x = np.concatenate([x for x, _ in full])
    for index in (0, 1):
        n = len(range(index, d.train_size, 2)) // bs * bs
        part = batches(d.train_dataset(bs, epoch=2, num_shards=2, shard_index=index))
        x = np.concatenate([b[0] for b in part])
        y = np.concatenate([b[1] for b in part])
        assert len(y) == n == d.steps_per_epoch(bs, num_shards=2, shard_index=index) * bs
        np.testing.assert_array_equal(x, full_x[index::2][:n])
        np.testing.assert_array_equal(y, np.concatenate([b[1] for b in full])[index::2][:n])
    with pytest.raises(ValueError, match=r"`shard_index`: received 2; expected 0..1"):
        d.train_dataset(bs, num_shards=2, shard_index=2)


# ------------------------------------------------------- one input over many epochs
@pytest.mark.parametrize("source", ["digits", "folder", "synthetic224"])
def test_train_epochs_is_train_dataset_epoch_after_epoch(source, digits, clean_folder):
    d = {"digits": lambda: digits,
         "folder": lambda: data.load(data_dir=clean_folder, image_size=16),
         "synthetic224": lambda: data.load("synthetic", image_size=64, synthetic_examples=12),
         }[source]()
    bs = 64 if source == "digits" else 4
    steps = d.steps_per_epoch(bs) - 1          # a shorter epoch takes the first batches
    stream = batches(d.train_epochs(bs, 1, steps, end_epoch=4))
    assert len(stream) == 3 * steps
    for k, epoch in enumerate((1, 2, 3)):
        assert_same_batches(stream[k * steps:(k + 1) * steps],
                            batches(d.train_dataset(bs, epoch=epoch), steps))
    # resumed at epoch 3: exactly what the uninterrupted stream gave from there
    assert_same_batches(batches(d.train_epochs(bs, 3, steps), steps), stream[2 * steps:])
    # without an end it goes on
    assert len(batches(d.train_epochs(bs, 1, steps), 5 * steps)) == 5 * steps


def test_a_bad_file_leaves_every_epoch_its_full_number_of_batches(tmp_path):
    """The epoch takes the next examples of a further pass instead of the skipped files."""
    rng = np.random.default_rng(2)
    for i in range(6):
        _save(tmp_path / "train" / "a" / f"{i}.png", rng.integers(0, 256, (8, 8, 3), np.uint8),
              "PNG")
    (tmp_path / "train" / "a" / "3.png").write_bytes(b"broken")
    (tmp_path / "train" / "a" / "4.png").write_bytes(b"")
    _save(tmp_path / "val" / "a" / "0.png", np.zeros((8, 8, 3), np.uint8), "PNG")
    d = data.load(data_dir=tmp_path, image_size=8)
    assert d.steps_per_epoch(2) == 3 and d.train_size == 6
    for epoch in range(4):
        got = batches(d.train_dataset(2, epoch=epoch))
        assert [len(y) for _, y in got] == [2, 2, 2]
    assert d.skipped_files == 2
    stream = batches(d.train_epochs(2, 0, 3, end_epoch=4))
    assert len(stream) == 12


@pytest.mark.parametrize("kwargs, match", [
    ({"steps_per_epoch": 12}, r"`steps_per_epoch`: received 12; an epoch of 'digits' has 11"),
    ({"steps_per_epoch": 0}, r"`steps_per_epoch`: received 0"),
    ({"start_epoch": -1}, r"`start_epoch`: received -1"),
    ({"end_epoch": 2}, r"`end_epoch`: received 2; expected an int >= 3"),
    ({"batch_size": 0}, r"`batch_size`: received 0"),
])
def test_train_epochs_errors(digits, kwargs, match):
    args = dict(batch_size=128, start_epoch=2, steps_per_epoch=11)
    args.update(kwargs)
    for method in (digits.train_epochs, digits.numpy_train_epochs):
        with pytest.raises(data.DataError, match=match):
            method(args["batch_size"], args["start_epoch"], args["steps_per_epoch"],
                   end_epoch=args.get("end_epoch"))


# --------------------------------------------- the NumPy input equals the tf.data input
@pytest.mark.parametrize("name, kwargs, batch_size", [
    ("digits", {}, 128), ("digits", {"holdout": True}, 100),
    ("synthetic", {"synthetic_examples": 96}, 32),
    ("synthetic", {"image_size": 64, "synthetic_examples": 40, "num_classes": 7}, 8)])
def test_numpy_batches_are_bit_identical_to_tf_data(name, kwargs, batch_size):
    d = data.load(name, seed=3, **kwargs)
    steps = d.steps_per_epoch(batch_size)
    want = batches(d.train_epochs(batch_size, 2, steps, end_epoch=4))
    got = list(d.numpy_train_epochs(batch_size, 2, steps, end_epoch=4, workers=3))
    assert len(got) == len(want) == 2 * steps
    for (x, y), (xt, yt) in zip(got, want):
        assert x.dtype == np.float32 and y.dtype == np.int32
        np.testing.assert_array_equal(x, xt)
        np.testing.assert_array_equal(y, yt)
    shard = list(d.numpy_train_epochs(batch_size // 2, 2, 1, num_shards=2, shard_index=1,
                                      end_epoch=3))
    assert_same_batches(shard, batches(d.train_dataset(batch_size // 2, 2, num_shards=2,
                                                       shard_index=1), 1))
    test = list(d.numpy_test_batches(batch_size))
    assert_same_batches(test, batches(d.test_dataset(batch_size)))


def test_numpy_input_refuses_files(clean_folder):
    d = data.load(data_dir=clean_folder, image_size=16)
    with pytest.raises(data.DataError, match="numpy_train_epochs needs a dataset held in memory"):
        d.numpy_train_epochs(2, 0, 1)
