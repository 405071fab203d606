"""keras_resnet.analysis: lesion studies, paths and shattered gradients (Veit et al. 2016;
Balduzzi et al. 2017). The tests of what depends on the backend (models, gradients) are
marked multibackend and also run under JAX; tables, statistics and plots run once."""

import itertools
import json
import math
import os

import numpy as np
import pytest

import keras
import keras_resnet
from keras_resnet import analysis
from keras_resnet.analysis import autodiff, lesion, network, paths, shattered

multibackend = pytest.mark.multibackend
# The tests that share the trained models run on one xdist worker, which trains them once.
trained = pytest.mark.xdist_group("analysis_trained_digits")


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _randomize_bn(model, seed=1):
    """Non-trivial BatchNorm statistics, so that every block computes something."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            for v in (layer.gamma, layer.beta, layer.moving_mean):
                v.assign(rng.normal(0, 0.5, size=v.shape).astype("float32")
                         + (1.0 if v is layer.gamma else 0.0))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=layer.moving_variance.shape)
                                         .astype("float32"))


def _images(n=6, size=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype("float32")


# ----------------------------------------------------------------------------- paths: counts
def test_path_length_distribution_is_exact_binomial():
    assert paths.path_length_distribution(0) == [1]
    assert paths.path_length_distribution(3) == [1, 3, 3, 1]
    for n in (1, 9, 27, 54, 200):
        counts = paths.path_length_distribution(n)
        assert all(type(c) is int for c in counts)
        assert sum(counts) == 2 ** n
        assert counts == [math.comb(n, k) for k in range(n + 1)]
    # ResNet-110 (54 blocks), Veit et al. Fig. 6a: the most common length is 27.
    counts = paths.path_length_distribution(54)
    assert counts[27] == 1946939425648112 and max(counts) == counts[27]
    assert json.loads(json.dumps(counts)) == counts        # exact through JSON
    with pytest.raises(ValueError, match="`n`.*-1"):
        paths.path_length_distribution(-1)


def test_effective_paths_median_and_interval():
    eff = paths.effective_paths([1, 4, 6, 4, 1], [1.0, 0.5, 0.25, 0.125, 0.0625])
    total = [1.0, 2.0, 1.5, 0.5, 0.0625]
    assert eff["total_gradient"] == total
    assert eff["fraction"] == pytest.approx([t / sum(total) for t in total])
    assert eff["median_length"] == 1          # cumulative 0.198, 0.593, ...
    assert eff["interval_90"] == [0, 3]


# ----------------------------------------------------------------------------- chains
@pytest.mark.parametrize("build, names, shortcuts", [
    pytest.param(lambda: keras_resnet.ResNet(14, input_shape=(8, 8, 3)),
                 ["stage1_block1", "stage1_block2", "stage2_block1", "stage2_block2",
                  "stage3_block1", "stage3_block2"],
                 ["identity", "identity", "pad", "identity", "pad", "identity"],
                 id="resnet14", marks=multibackend),
    pytest.param(lambda: keras_resnet.ResNet(14, input_shape=(8, 8, 3), residual=False), None,
                 [None] * 6, id="plain14"),
    pytest.param(lambda: keras_resnet.ResNet(11, block="bottleneck", input_shape=(8, 8, 3)),
                 None, ["projection", "projection", "projection"], id="bottleneck11",
                 marks=multibackend),
    pytest.param(lambda: keras_resnet.WideResNet(10, width=2, input_shape=(8, 8, 3)), None,
                 ["projection", "projection", "projection"], id="wrn10_2"),
    pytest.param(lambda: keras_resnet.ResNet(18, input_shape=(32, 32, 3)), None,
                 ["identity", "identity", "projection", "identity", "projection", "identity",
                  "projection", "identity"], id="imagenet18"),
])
def test_network_chain_reads_every_block(build, names, shortcuts):
    model = build()
    chain = network.network_chain(model)
    assert [i.shortcut for i in chain.info] == shortcuts
    if names:
        assert [i.name for i in chain.info] == names
    assert chain.layers[0].name == "stem" and chain.layers[-1].name == "predictions"
    for info, layer in zip(chain.info, chain.blocks):
        assert info.name == layer.name
        assert tuple(info.output_shape) == tuple(layer.compute_output_shape(info.input_shape))
    # Every deletable block deleted, and the first compatible pair swapped: the models run.
    x = _images(2, size=model.input_shape[1])
    deletable = [i.name for i in chain.info if i.deletable]
    out = _np(network.lesioned_model(model, delete=deletable)(x))
    assert out.shape == (2, model.output_shape[-1]) and np.allclose(out.sum(-1), 1, atol=1e-4)
    pairs = lesion.compatible_pairs(chain)
    if pairs:
        order = [i.name for i in chain.info]
        i, j = pairs[0]
        order[i], order[j] = order[j], order[i]
        assert _np(network.lesioned_model(model, order=order)(x)).shape == out.shape


def test_models_this_package_did_not_build_are_refused():
    seq = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                            keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(network.AnalysisError, match="not built by keras_resnet.*stage"):
        network.network_chain(seq)
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(3, 3, padding="same", name="stage1_block1")(x)
    y = keras.layers.Add()([x, y])
    branched = keras.Model(x, y)
    with pytest.raises(network.AnalysisError, match="not a chain"):
        network.network_chain(branched)
    with pytest.raises(TypeError, match="`model`.*str"):
        network.network_chain("resnet20")


# ----------------------------------------------------------------------------- lesioned models
@multibackend
def test_lesioned_model_shares_the_weights():
    model = keras_resnet.ResNet(14, input_shape=(8, 8, 3))
    _randomize_bn(model)
    x = _images()
    copy = network.lesioned_model(model)
    np.testing.assert_allclose(_np(copy(x)), _np(model(x)), rtol=1e-5, atol=1e-6)
    lesioned = network.lesioned_model(model, delete=["stage2_block2"])
    ids = {id(v) for v in model.weights}
    assert {id(v) for v in lesioned.weights} <= ids
    before = _np(lesioned(x))
    dense = model.get_layer("predictions")
    dense.kernel.assign(_np(dense.kernel) * 2.0)
    assert not np.allclose(_np(lesioned(x)), before)        # one set of weights


def _manual(chain, x, replace):
    """The chain computed by hand, ``replace`` maps a block name to a function of (block, x)."""
    for layer in chain.layers:
        fn = replace.get(layer.name)
        x = fn(layer, x) if fn else layer(x, training=False)
    return _np(x)


@multibackend
def test_deleting_a_residual_block_keeps_its_shortcut_and_a_plain_block_goes_whole():
    model = keras_resnet.ResNet(14, input_shape=(8, 8, 3), seed=3)
    _randomize_bn(model)
    chain = network.network_chain(model)
    x = _images()

    def shortcut_only(block, t):
        short, _ = block.merge_terms(t, training=False)
        return block.after_merge(short, training=False)

    for name in ("stage1_block2", "stage3_block1"):          # identity, and option A (downsampling)
        got = _np(network.lesioned_model(model, delete=[name])(x))
        np.testing.assert_allclose(got, _manual(chain, x, {name: shortcut_only}),
                                   rtol=1e-5, atol=1e-6)
        assert not np.allclose(got, _np(model(x)), atol=1e-3)
    plain = keras_resnet.ResNet(14, input_shape=(8, 8, 3), residual=False, seed=3)
    _randomize_bn(plain)
    pchain = network.network_chain(plain)
    got = _np(network.lesioned_model(plain, delete=["stage2_block2"])(x))
    np.testing.assert_allclose(got, _manual(pchain, x, {"stage2_block2": lambda b, t: t}),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(network.AnalysisError, match="stage2_block1.*cannot be removed"):
        network.lesioned_model(plain, delete=["stage2_block1"])
    with pytest.raises(network.AnalysisError, match="`delete`.*'stage9_block1'"):
        network.lesioned_model(plain, delete=["stage9_block1"])


@multibackend
def test_zero_init_blocks_can_be_deleted_without_changing_anything():
    """zero_init: every residual branch is exactly 0 at initialisation (Goyal et al. 2017)."""
    model = keras_resnet.ResNet(14, input_shape=(8, 8, 3), zero_init=True)
    x = _images()
    names = [i.name for i in network.network_chain(model).info]
    np.testing.assert_allclose(_np(network.lesioned_model(model, delete=names)(x)),
                               _np(model(x)), rtol=1e-6, atol=1e-7)


@multibackend
def test_reordering_swaps_compatible_blocks_only():
    model = keras_resnet.ResNet(20, input_shape=(8, 8, 3), seed=2)
    _randomize_bn(model)
    chain = network.network_chain(model)
    x = _images()
    order = [i.name for i in chain.info]
    order[0], order[2] = order[2], order[0]
    got = _np(network.lesioned_model(model, order=order)(x))
    blocks = {b.name: b for b in chain.blocks}
    swapped = {"stage1_block1": lambda b, t: blocks["stage1_block3"](t, training=False),
               "stage1_block3": lambda b, t: blocks["stage1_block1"](t, training=False)}
    np.testing.assert_allclose(got, _manual(chain, x, swapped), rtol=1e-5, atol=1e-6)
    pairs = lesion.compatible_pairs(chain)
    assert (0, 2) in pairs and (1, 7) not in pairs and (3, 6) not in pairs
    assert len(pairs) == 3 + 1 + 1     # 3 blocks in stage 1, 2 + 2 after the downsampling ones
    bad = [i.name for i in chain.info]
    bad[1], bad[3] = bad[3], bad[1]
    with pytest.raises(network.AnalysisError, match="`order`.*'stage2_block1'.*cannot take"):
        network.lesioned_model(model, order=bad)


def test_kendall_tau_matches_the_definition():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(0)
    for n in (2, 5, 9, 30):
        order = rng.permutation(n).tolist()
        assert lesion.kendall_tau(order) == pytest.approx(kendalltau(order, range(n))[0])
    assert lesion.kendall_tau(["b", "a", "c"], ["a", "b", "c"]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="same items"):
        lesion.kendall_tau([0, 1], [0, 2])


# ----------------------------------------------------------------------------- lesion study
@pytest.fixture(scope="module")
def trained_digits():
    """ResNet-14 and its plain twin, trained 3 epochs on the digits (about 8 s each)."""
    from keras_resnet import data
    from keras_resnet.analysis import inputs

    x_train, y_train, _ = inputs.load_arrays("digits", split="train")
    x_test, y_test, _ = inputs.load_arrays("digits", split="test")
    models = {}
    for residual in (True, False):
        keras.utils.set_random_seed(0)
        model = keras_resnet.ResNet(14, input_shape=(8, 8, 3), residual=residual, seed=0)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                      loss="sparse_categorical_crossentropy")
        model.fit(x_train, y_train, batch_size=64, epochs=3, verbose=0)
        models["resnet" if residual else "plain"] = model
    assert data.DIGITS_CLASSES == [str(i) for i in range(10)]
    return models, (x_train, y_train), (x_test, y_test)


@trained
def test_lesion_direction_resnet_survives_deleting_a_block_plain_does_not(trained_digits):
    """Veit et al. Fig. 3: one block deleted costs a ResNet little, a plain net almost all."""
    models, _, test = trained_digits
    results = {kind: lesion.lesion_study(m, test, draws=2, max_delete=2, max_swaps=1, verbose=0)
               for kind, m in models.items()}
    for kind, r in results.items():
        assert r["baseline_accuracy"] > 0.85, (kind, r["baseline_accuracy"])
        assert json.loads(json.dumps(r)) == r
    res, plain = results["resnet"], results["plain"]
    assert res["residual"] and not plain["residual"]
    inner = [b["name"] for b in res["blocks"] if not b["downsampling"]]
    assert sorted(plain["delete_single"]) == sorted(inner)     # plain: shapes must match
    assert sorted(res["delete_single"]) == sorted(b["name"] for b in res["blocks"])
    res_mean = np.mean([res["delete_single"][n] for n in inner])
    plain_mean = np.mean([plain["delete_single"][n] for n in inner])
    print(f"\nmean accuracy after deleting one non-downsampling block: ResNet-14 {res_mean:.3f}, "
          f"plain-14 {plain_mean:.3f}")
    assert res_mean > 0.5 and plain_mean < 0.4 and res_mean - plain_mean > 0.3
    kept = {b["name"]: b["lesion"] for b in res["blocks"]}
    assert "option A shortcut" in kept["stage2_block1"] and "downsampling" in kept["stage2_block1"]
    assert kept["stage1_block1"] == "residual branch removed, identity shortcut kept"
    assert res["delete_k"]["k"] == [1, 2] and len(res["delete_k"]["accuracy"][1]) == 2
    assert [p["swaps"] for p in res["reorder"]["points"]] == [1, 1]
    assert all(-1 <= p["kendall_tau"] < 1 for p in res["reorder"]["points"])


def test_lesion_study_checks_its_arguments():
    model = keras_resnet.ResNet(8, input_shape=(8, 8, 3))
    x, y = _images(4), np.arange(4)
    with pytest.raises(ValueError, match="`draws`.*0"):
        lesion.lesion_study(model, (x, y), draws=0, verbose=0)
    with pytest.raises(ValueError, match="`max_delete`.*4.*3 deletable"):
        lesion.lesion_study(model, (x, y), max_delete=4, verbose=0)
    with pytest.raises(network.AnalysisError, match="images are 16x16x3.*takes 8x8x3"):
        lesion.lesion_study(model, (_images(4, size=16), y), verbose=0)
    with pytest.raises(network.AnalysisError, match="labels go up to 12.*10 classes"):
        lesion.lesion_study(model, (x, np.array([0, 1, 2, 12])), verbose=0)
    with pytest.raises(TypeError, match="`data`"):
        lesion.lesion_study(model, x, verbose=0)
    headless = keras_resnet.ResNet(8, input_shape=(8, 8, 3), include_top=False, pooling="avg")
    with pytest.raises(network.AnalysisError, match="classifier"):
        lesion.lesion_study(headless, (x, y), verbose=0)


@multibackend
def test_lesion_study_of_a_keras_file(tmp_path):
    """A .keras file reloaded: same accuracy as the model that wrote it, same blocks."""
    model = keras_resnet.ResNet(8, input_shape=(8, 8, 3), residual=False, seed=5)
    path = str(tmp_path / "plain8.keras")
    model.save(path)
    loaded = network.load_model(path)
    x, y = _images(12, seed=2), np.arange(12) % 10
    a = lesion.lesion_study(model, (x, y), draws=1, verbose=0)
    b = lesion.lesion_study(loaded, (x, y), draws=1, verbose=0)
    assert a["delete_single"] == b["delete_single"] == {"stage1_block1": a["delete_single"][
        "stage1_block1"]}
    assert a["baseline_accuracy"] == b["baseline_accuracy"]


# ----------------------------------------------------------------------------- path gradients
def _whole_gradient(model, x, y):
    """The gradient of the summed loss at the first block's input, through the real model."""
    chain = network.network_chain(model)
    h = x
    for layer in chain.layers_before_blocks():
        h = layer(h, training=False)

    def rest(t):
        for layer in chain.layers[chain.block_positions[0]:]:
            t = layer(t, training=False)
        return keras.ops.sum(keras.losses.sparse_categorical_crossentropy(y, t))

    return _np(autodiff.grad(rest, h))


@multibackend
@pytest.mark.parametrize("kwargs", [
    pytest.param(dict(), id="post", marks=multibackend),
    pytest.param(dict(preact=True), id="preact"),
    pytest.param(dict(ordering="bn_after_add"), id="bn_after_add"),
    pytest.param(dict(skip="scaling", shortcut="B"), id="scaling"),
])
def test_the_gradients_of_all_paths_add_up_to_the_whole_gradient(kwargs):
    """Unrolled (Veit et al. Eq. 2-3), the 2^n path gradients sum to the network's gradient."""
    model = keras_resnet.ResNet(8, input_shape=(8, 8, 3), seed=4, **kwargs)
    _randomize_bn(model)
    x, y = _images(3), np.array([1, 4, 7])
    # One forward pass serves every path, as in gradient_by_path_length.
    _, g_out, pullbacks = paths._forward(network.network_chain(model), x, y)
    total = sum(_np(paths._path_gradient(g_out, pullbacks, set(through)))
                for k in range(4) for through in itertools.combinations(range(3), k))
    whole = _whole_gradient(model, x, y)
    assert np.abs(whole).max() > 0
    np.testing.assert_allclose(total, whole, rtol=1e-3, atol=1e-4 * np.abs(whole).max())


@multibackend
def test_a_path_through_zeroed_branches_carries_nothing():
    """zero_init: residual branches are 0 with zero Jacobian, so the all-shortcut path is all."""
    model = keras_resnet.ResNet(8, input_shape=(8, 8, 3), zero_init=True)
    x, y = _images(3), np.array([0, 5, 9])
    whole = _whole_gradient(model, x, y)
    np.testing.assert_allclose(paths.path_gradients(model, x, y, []), whole, rtol=1e-5,
                               atol=1e-7)
    assert not np.any(paths.path_gradients(model, x, y, [1]))
    plain = keras_resnet.ResNet(8, input_shape=(8, 8, 3), residual=False)
    with pytest.raises(network.AnalysisError, match="plain net has one path"):
        paths.gradient_by_path_length(plain, (x, y), verbose=0)


@trained
def test_gradient_by_path_length_result(trained_digits):
    models, train, _ = trained_digits
    result = paths.gradient_by_path_length(models["resnet"], train, samples=3, batch_size=8,
                                           seed=1, verbose=0)
    assert json.loads(json.dumps(result)) == result
    assert result["num_blocks"] == 6 and result["lengths"] == list(range(7))
    assert result["path_counts"] == [1, 6, 15, 20, 15, 6, 1] and result["total_paths"] == 64
    assert all(len(v) == 3 for v in result["measurements"].values())
    assert all(m > 0 for m in result["gradient_magnitude"])
    eff = result["effective"]
    assert sum(eff["fraction"]) == pytest.approx(1.0)
    assert eff["interval_90"][0] <= eff["median_length"] <= eff["interval_90"][1]
    assert eff["median_length_layers"] == 2 * eff["median_length"]
    again = paths.gradient_by_path_length(models["resnet"], train, samples=3, batch_size=8,
                                          seed=1, verbose=0)
    np.testing.assert_allclose(again["gradient_magnitude"], result["gradient_magnitude"],
                               rtol=1e-5)
    with pytest.raises(ValueError, match="`lengths`.*9.*6 blocks"):
        paths.gradient_by_path_length(models["resnet"], train, lengths=[9], verbose=0)


# ----------------------------------------------------------------------------- shattered
def test_autocorrelation_matches_numpy():
    rng = np.random.default_rng(0)
    g = rng.normal(size=64)
    c = g - g.mean()
    expected = [np.dot(c[:64 - k], c[k:]) / np.dot(c, c) for k in range(10)]
    np.testing.assert_allclose(shattered.autocorrelation(g, 9), expected, rtol=1e-12)
    assert shattered.autocorrelation(np.ones(5), 2) == [1.0, 0.0, 0.0]


@multibackend
def test_input_gradients_match_finite_differences():
    net = shattered.gradient_net(8, width=16, seed=3)
    points = np.linspace(-2, 2, 32)
    g = shattered.input_gradients(net, points)
    # BatchNorm now holds the grid's statistics (momentum 0): inference equals training mode.
    grid = points.reshape(-1, 1, 1, 1).astype("float32")
    np.testing.assert_allclose(_np(net(grid, training=False)), _np(net(grid, training=True)),
                               rtol=1e-4, atol=1e-4)
    # The net is piecewise linear: a one-sided difference that stays on the point's own
    # linear piece equals its gradient (a ReLU may switch on the other side).
    eps = 1e-3
    for i in range(0, 32, 3):
        here = _np(net(grid[i:i + 1], training=False)).item()
        right = (_np(net(grid[i:i + 1] + eps, training=False)).item() - here) / eps
        left = (here - _np(net(grid[i:i + 1] - eps, training=False)).item()) / eps
        tol = 0.02 * abs(g[i]) + 1e-3 * np.abs(g).max()
        assert min(abs(g[i] - right), abs(g[i] - left)) < tol, (i, g[i], left, right)


@multibackend
def test_deep_plain_gradients_shatter_faster_than_resnet_gradients():
    """Balduzzi et al. Fig. 2: at equal depth the feed-forward net's gradient decorrelates."""
    result = shattered.shattered_gradients((2, 20), width=32, inits=2, max_lag=8, verbose=0)
    s = result["summary"]
    print(f"\nlag-1 correlation at depth 20: feed-forward {s['plain_lag1_correlation'][1]:.3f}, "
          f"ResNet {s['resnet_lag1_correlation'][1]:.3f}")
    assert s["resnet_lag1_correlation"][1] - s["plain_lag1_correlation"][1] > 0.2
    assert abs(s["plain_lag1_correlation"][1]) < 0.25            # close to white noise
    assert s["plain_lag1_correlation"][0] > 0.8                  # one hidden layer: brown-like
    refs = result["references"]
    assert refs["brown_noise"]["lag1_correlation"] > 0.8
    assert abs(refs["white_noise"]["lag1_correlation"]) < 0.2
    assert json.loads(json.dumps(result)) == result
    net = result["nets"][3]
    assert (net["kind"], net["depth"], net["blocks"]) == ("resnet", 20, 9)
    assert len(net["gradients"]) == 256 and len(net["autocorrelation"]) == 9
    assert np.asarray(net["covariance"]).shape == (64, 64)


def test_shattered_arguments():
    with pytest.raises(ValueError, match="`depth`.*5.*even"):
        shattered.gradient_net(5)
    with pytest.raises(ValueError, match="`depths`"):
        shattered.shattered_gradients((2, 3), verbose=0)
    with pytest.raises(ValueError, match="`ordering`.*'sideways'"):
        shattered.gradient_net(4, ordering="sideways")


# ----------------------------------------------------------------------------- plots
def _lesion_result():
    model = keras_resnet.ResNet(8, input_shape=(8, 8, 3))
    return lesion.lesion_study(model, (_images(8), np.arange(8)), draws=2, max_delete=2,
                               max_swaps=1, verbose=0)


def test_plots_write_png_and_svg(tmp_path):
    from PIL import Image

    lesion_result = _lesion_result()
    model = keras_resnet.ResNet(8, input_shape=(8, 8, 3))
    paths_result = paths.gradient_by_path_length(model, (_images(4), np.arange(4)), samples=2,
                                                 batch_size=2, verbose=0)
    shattered_result = shattered.shattered_gradients((2, 4), width=8, inits=1, points=32,
                                                     max_lag=8, verbose=0)
    for name, fn, result in (("lesion", analysis.plot_lesion, [lesion_result, lesion_result]),
                             ("paths", analysis.plot_paths, paths_result),
                             ("shattered", analysis.plot_shattered, shattered_result)):
        for ext in ("png", "svg"):
            path = tmp_path / f"{name}.{ext}"
            fig = fn(result, str(path))
            assert path.stat().st_size > 1000
            if ext == "png":
                with Image.open(path) as image:
                    assert image.size[0] > 1000
            else:
                assert path.read_text().lstrip().startswith("<?xml")
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert titles and all(ax.get_xlabel() for ax in fig.axes if ax.get_title())
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
    with pytest.raises(ValueError, match="`path`.*'x.jpg'.*png"):
        analysis.plot_lesion(lesion_result, "x.jpg")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data pipelines")
def test_load_arrays_through_the_tf_data_pipelines():
    """Everything but the digits comes through keras_resnet.data's pipelines (TensorFlow)."""
    from keras_resnet import data
    from keras_resnet.analysis import inputs

    x, y, info = inputs.load_arrays("synthetic", split="test", limit=70, batch_size=32)
    assert x.shape == (70, 32, 32, 3) and x.dtype == np.float32 and y.shape == (70,)
    assert (info["dataset"], info["num_classes"], info["examples"]) == ("synthetic", 10, 70)
    reference = next(data.load("synthetic").test_dataset(32).as_numpy_iterator())
    np.testing.assert_array_equal(x[:32], reference[0])
    np.testing.assert_array_equal(y[:32], reference[1])
    x, y, info = inputs.load_arrays("synthetic", split="train", limit=40, batch_size=16)
    assert x.shape == (40, 32, 32, 3) and info["split"] == "train"
    digits_x, digits_y, _ = inputs.load_arrays("digits", seed=1, limit=5)
    ds = data.load("digits", seed=1).test_dataset(5)
    np.testing.assert_allclose(digits_x, next(ds.as_numpy_iterator())[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="`split`.*'val'"):
        inputs.load_arrays("digits", split="val")


def test_analysis_imports_flow_one_way():
    """analysis builds on the core, data and preprocessing, and of training only on its
    backend-free table of datasets and its progress display; no import cycle."""
    import ast

    folder = os.path.dirname(analysis.__file__)
    graph = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        module = "keras_resnet.analysis" + ("" if name == "__init__.py" else f".{name[:-3]}")
        found = set()
        with open(os.path.join(folder, name)) as f:
            for node in ast.walk(ast.parse(f.read())):          # imports at any depth
                if isinstance(node, ast.Import):
                    found |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module:
                    found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[module] = {m for m in found if m.startswith("keras_resnet")}
    allowed = ("keras_resnet.analysis", "keras_resnet.layers", "keras_resnet.specs",
               "keras_resnet.data", "keras_resnet.preprocessing",
               "keras_resnet.training.config", "keras_resnet.training.progress")
    for module, targets in graph.items():
        bad = [t for t in targets if t != "keras_resnet" and not t.startswith(allowed)]
        assert not bad, (module, bad)

    def reaches(start, goal, seen=()):
        return any(t == goal or (t in graph and t not in seen and reaches(t, goal, seen + (t,)))
                   for t in graph[start] if t != "keras_resnet.analysis")

    for module in graph:
        if module != "keras_resnet.analysis":
            assert not reaches(module, module), module
