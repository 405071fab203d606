"""keras_resnet.preprocessing.read_image: one reader for training, evaluation and serving.

Every kind of file a user's folder may hold is either read to the same pixels by
the training pipeline, the evaluation pipeline and the predictor's
preprocessing, or skipped and counted with its reason.
"""

import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from keras_resnet import preprocessing as prep
from keras_resnet.serving import preprocessing as serving_prep

Image = pytest.importorskip("PIL.Image")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 16


def png16(array):
    """A 16-bit PNG (gray (H, W) or RGB (H, W, 3) uint16), written by hand: Pillow cannot."""
    h, w = array.shape[:2]
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in array)

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 16, 2 if array.ndim == 3 else 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def encode(image, fmt, **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def on_white(color, alpha):
    """The composite rule computed independently, in float64."""
    c, a = np.asarray(color, np.float64), np.asarray(alpha, np.float64)[..., None]
    return np.round((c * a + 255 * (255 - a)) / 255).astype(np.uint8)


def gray3(g):
    return np.repeat(np.asarray(g, np.uint8)[..., None], 3, axis=-1)


def cases():
    """{file name: (bytes, expected uint8 RGB or None when only approximately known, atol)}."""
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    alpha[:4] = 0                                   # real transparency: fully clear rows
    gray = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    g16 = rng.integers(0, 65536, (SIZE, SIZE), dtype=np.uint16)
    c16 = rng.integers(0, 65536, (SIZE, SIZE, 3), dtype=np.uint16)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    index = rng.integers(0, 8, (SIZE, SIZE), dtype=np.uint8)
    pal = Image.fromarray(index, "P")
    pal.putpalette(palette.ravel().tolist())
    frames = [Image.new("RGB", (SIZE, SIZE), c) for c in [(200, 10, 10), (10, 200, 10)]]
    smooth = np.broadcast_to(np.linspace(0, 255, SIZE)[None, :, None], (SIZE - 4, SIZE, 3))
    smooth = np.ascontiguousarray(smooth).astype(np.uint8)   # 12 x 16, stored rotated
    exif = Image.Exif()
    exif[0x0112] = 6                                # "rotate 90 degrees clockwise to view"
    clear = palette[index].copy()
    clear[index == 3] = 255
    return {
        "rgb.png": (encode(Image.fromarray(rgb), "PNG"), rgb, 0),
        "rgba.png": (encode(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "PNG"),
                     on_white(rgb, alpha), 0),
        "la.png": (encode(Image.fromarray(np.dstack([gray, alpha]), "LA"), "PNG"),
                   on_white(gray3(gray), alpha), 0),
        "l.png": (encode(Image.fromarray(gray, "L"), "PNG"), gray3(gray), 0),
        "p.png": (encode(pal, "PNG"), palette[index], 0),
        "p_transparent.png": (encode(pal, "PNG", transparency=3), clear, 0),
        "gray16.png": (png16(g16), gray3(g16 >> 8), 0),
        "rgb16.png": (png16(c16), (c16 >> 8).astype(np.uint8), 0),
        "cmyk.jpg": (encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=100), rgb, 3),
        "animated.gif": (encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
                         np.full((SIZE, SIZE, 3), (200, 10, 10), np.uint8), 0),
        "lossless.webp": (encode(Image.fromarray(rgb), "WEBP", lossless=True), rgb, 0),
        "rotated.jpg": (encode(Image.fromarray(smooth), "JPEG", quality=100, exif=exif.tobytes()),
                        np.rot90(smooth, k=-1), 3),
    }


BAD = {"empty.jpg": (b"", "empty file"),
       "text.jpg": (b"this is a text file named .jpg\n", "not a recognised image file")}


def truncated_jpeg():
    rng = np.random.default_rng(1)
    data = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    return data[: len(data) // 2]


@pytest.mark.multibackend
@pytest.mark.parametrize("name", sorted(cases()))
def test_read_image_modes(name, tmp_path):
    data, want, atol = cases()[name]
    path = tmp_path / name
    path.write_bytes(data)
    got = prep.read_image(path)
    assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[-1] == 3
    assert got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_allclose(got.astype(int), want.astype(int), atol=atol, rtol=0)
    np.testing.assert_array_equal(prep.read_image(data), got)   # bytes read like the file


@pytest.mark.multibackend
@pytest.mark.parametrize("contents, reason", [
    (b"", "empty file"), (b"hello", "not a recognised image file"),
    (None, "cannot decode image (image file is truncated")])
def test_read_image_errors(contents, reason, tmp_path):
    path = tmp_path / "bad.jpg"
    path.write_bytes(truncated_jpeg() if contents is None else contents)
    with pytest.raises(prep.ImageError) as info:
        prep.read_image(path)
    assert info.value.reason.startswith(reason) and info.value.path == str(path)
    assert isinstance(info.value, ValueError)
    for where, why in ((tmp_path / "missing.png", "no such file"),
                       (tmp_path, "is a directory, not an image file")):
        with pytest.raises(prep.ImageError, match=why):
            prep.read_image(where)


@pytest.mark.multibackend
def test_float_images_are_refused(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.ones((4, 4), np.float32)).save(path)
    with pytest.raises(prep.ImageError, match="32-bit float samples"):
        prep.read_image(path)


def test_resize_bilinear_is_tf_image_resize():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(3)
    for (h, w), (oh, ow) in [((16, 16), (16, 16)), ((13, 29), (32, 32)), ((300, 200), (64, 48)),
                             ((7, 5), (224, 224)), ((224, 224), (256, 256))]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = tf.image.resize(tf.cast(image, tf.float32), (oh, ow), method="bilinear").numpy()
        np.testing.assert_array_equal(prep.resize_bilinear(image, oh, ow), want)


@pytest.mark.multibackend
@pytest.mark.parametrize("resize", ["stretch", "center_crop"])
def test_numpy_preprocessing_equals_the_serving_code(resize):
    """preprocess_numpy / resize_uint8 (NumPy) against preprocess (keras.ops, what serving runs)."""
    import keras

    spec = prep.make_spec((24, 24), prep.IMAGENET_MEAN, prep.IMAGENET_STD, resize=resize)
    rng = np.random.default_rng(4)
    for shape in [(24, 24), (31, 17), (100, 60)]:
        image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
        served = np.asarray(serving_prep.preprocess(image[None], spec))
        np.testing.assert_allclose(prep.preprocess_numpy(image[None], spec), served, atol=1e-5)
        resized = np.asarray(serving_prep.resize_images(image[None].astype(np.float32), spec))[0]
        want = np.clip(np.round(resized), 0, 255).astype(np.uint8)
        # TensorFlow's resize is the NumPy twin's reference; JAX's may round differently.
        atol = 0 if keras.backend.backend() == "tensorflow" else 1
        np.testing.assert_allclose(prep.resize_uint8(image, spec), want, atol=atol, rtol=0)


@pytest.mark.multibackend
def test_howto_states_the_reader_rules():
    text = prep.howto()
    for rule in prep.READER_RULES:
        assert rule in text
    assert "white" in text and "EXIF" in text and "first frame" in text and "v >> 8" in text


def test_reader_imports_neither_tensorflow_nor_keras_ops():
    """The reader and the NumPy resize work in a process where TensorFlow is never imported."""
    code = ("import sys, numpy as np; from keras_resnet import preprocessing as p\n"
            "import io; from PIL import Image; b = io.BytesIO()\n"
            "Image.new('RGBA', (9, 7), (10, 20, 30, 0)).save(b, 'PNG')\n"
            "x = p.load_image(b.getvalue(), p.make_spec((4, 4), (0,) * 3, (1,) * 3))\n"
            "assert x.shape == (4, 4, 3) and (x == 255).all(), x\n"
            "print('tensorflow' in sys.modules)")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
    import ast

    tree = ast.parse(open(prep.__file__).read())
    modules = {(n.module or "").split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom)}
    modules |= {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import)
                for a in n.names}
    assert not modules & {"keras", "tensorflow", "PIL", "jax"}, modules


# --------------------------------------------------------------------------- through the pipelines


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Every mode in val/ and (nested one level deeper) in train/, plus three bad files each."""
    root = tmp_path_factory.mktemp("modes")
    for split in ("train", "val"):
        for i, (name, (data, _, _)) in enumerate(sorted(cases().items())):
            cls = "a" if i % 2 else "b"
            where = root / split / cls / ("nested/deeper" if split == "train" else "")
            where.mkdir(parents=True, exist_ok=True)
            (where / name).write_bytes(data)
        for name, (data, _) in BAD.items():
            (root / split / "a" / name).write_bytes(data)
        (root / split / "b" / "truncated.jpg").write_bytes(truncated_jpeg())
    return root


def test_every_mode_gives_the_same_pixels_in_training_evaluation_and_serving(
        folder, tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    from keras_resnet import data as data_lib

    monkeypatch.setenv("KERAS_RESNET_CACHE", str(tmp_path / "cache"))
    d = data_lib.load(data_dir=folder, image_size=SIZE)
    spec = d.preprocessing
    good = {p: prep.read_image(p) for p in d.test_split.images if os.path.basename(p) in cases()}
    assert len(good) == len(cases()) and d.test_size == len(cases()) + 3
    assert d.class_names == ["a", "b"] and d.train_size == len(cases()) + 3   # nested files count

    # Evaluation: the test pipeline equals the .keras predictor's preprocessing of read_image.
    x, y = next(iter(d.test_dataset(64)))
    assert len(y) == len(cases())                       # the three bad files skipped
    for path, got in zip(good, x.numpy()):
        served = np.asarray(serving_prep.preprocess(good[path][None], spec))[0]   # predict.py's code
        np.testing.assert_array_equal(got, served)
    raw, labels = d.raw_test_images(64)                  # what calibration and TFLite see
    for path, got in zip(good, raw):
        np.testing.assert_array_equal(got, prep.load_image(path, spec))
    np.testing.assert_array_equal(labels, y.numpy())
    expected = {os.path.basename(p): cases()[os.path.basename(p)] for p in good}
    for path, got in zip(good, raw):
        _, want, atol = expected[os.path.basename(path)]
        if want.shape[:2] == (SIZE, SIZE):              # no resize: the reader's pixels exactly
            np.testing.assert_allclose(got.astype(int), want.astype(int), atol=atol, rtol=0)

    # Training: every example is a pad-4 crop (maybe mirrored) of the reader's pixels.
    def normalized(x):
        x = x.astype(np.float32) * np.float32(spec["scale"])
        return (x - np.float32(spec["mean"])) / np.float32(spec["std"])

    sources = [normalized(np.pad(prep.resize_numpy(prep.read_image(p), spec),
                                 [(4, 4), (4, 4), (0, 0)]))
               for p in d.train_split.images if os.path.basename(p) in cases()]
    batch = next(iter(d.train_dataset(len(cases()), epoch=0)))[0].numpy()
    for example in batch:
        assert any(np.array_equal(s[dy:dy + SIZE, dx:dx + SIZE][:, ::f], example)
                   for s in sources for dy in range(9) for dx in range(9) for f in (1, -1))

    # Each bad file is skipped and counted once, with its reason, in both splits.
    reasons = {os.path.relpath(p, folder): r for p, r in d.skipped.items()}
    assert d.skipped_files == 6 and sorted(d.skipped_paths) == sorted(d.skipped)
    for split in ("train", "val"):
        assert reasons[f"{split}/a/empty.jpg"] == "empty file"
        assert reasons[f"{split}/a/text.jpg"] == "not a recognised image file"
        assert reasons[f"{split}/b/truncated.jpg"].startswith("cannot decode image")


def test_calibration_reads_like_the_pipelines(folder):
    from keras_resnet.serving import calibration as ex

    spec = prep.make_spec((SIZE, SIZE), prep.IMAGENET_MEAN, prep.IMAGENET_STD)
    calib = ex.calibration_from_dir(str(folder / "val"), spec)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(folder / "val") for f in fs
                   if f in cases())
    assert calib.shape == (len(cases()), SIZE, SIZE, 3) and calib.dtype == np.uint8
    for got, path in zip(calib, files):
        np.testing.assert_array_equal(got, prep.load_image(path, spec))
