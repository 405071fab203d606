"""Scanned stages (keras_resnet.training.scan): the same step as the unrolled one.

Under JAX the engine runs each run of identical blocks as one ``jax.lax.scan``
over stacked variables. The reference is the model's own unrolled
``stateless_call`` (Keras's functional graph, every block traced): loss, every
gradient and every BatchNorm statistic after one step must agree to float
tolerance. JAX only: these tests are skipped under other backends (``make
test`` runs the multibackend tests under ``KERAS_BACKEND=jax``).
"""

import numpy as np
import pytest

import keras

pytestmark = [
    pytest.mark.multibackend,
    pytest.mark.skipif(keras.backend.backend() != "jax", reason="scanned stages are JAX's"),
]


def _model(depth, block, **kwargs):
    import keras_resnet

    keras.utils.set_random_seed(3)
    return keras_resnet.ResNet(depth=depth, block=block, input_shape=(8, 8, 3), classes=10,
                               **kwargs)


def _loss(outputs, labels):
    import jax.numpy as jnp

    picked = jnp.take_along_axis(outputs, labels[:, None], axis=-1)[:, 0]
    return -jnp.mean(jnp.log(jnp.clip(picked, 1e-7, 1.0)))


def _one_step_both_ways(model):
    """(loss, gradients, new non-trainable values) unrolled and scanned, model order."""
    import jax

    from keras_resnet.training.scan import ScanLayout

    layout = ScanLayout(model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 10, size=4).astype("int32")
    t = [v.value for v in model.trainable_variables]
    nt = [v.value for v in model.non_trainable_variables]

    def unrolled(t, nt):
        out, nt = model.stateless_call(t, nt, x, training=True)
        return _loss(out, y), nt

    def scanned(t, nt):
        out, nt = layout.forward(t, nt, x, training=True)
        return _loss(out, y), nt

    (la, nta), ga = jax.jit(jax.value_and_grad(unrolled, has_aux=True))(t, nt)
    (lb, ntb), gb = jax.jit(jax.value_and_grad(scanned, has_aux=True))(*layout.pack(t, nt))
    gb, ntb = layout.unpack(gb, ntb)
    return layout, (float(la), ga, nta), (float(lb), gb, ntb)


def _assert_same(model, a, b):
    la, ga, nta = a
    lb, gb, ntb = b
    assert lb == pytest.approx(la, rel=1e-5, abs=1e-6)
    for v, p, q in zip(model.trainable_variables, ga, gb):
        np.testing.assert_allclose(np.asarray(q), np.asarray(p), rtol=2e-4, atol=2e-5,
                                   err_msg=v.path)
    for v, p, q in zip(model.non_trainable_variables, nta, ntb):
        np.testing.assert_allclose(np.asarray(q), np.asarray(p), rtol=1e-5, atol=1e-6,
                                   err_msg=v.path)
    # The step moved the statistics (so equal values are not equal initial values).
    moved = [not np.array_equal(np.asarray(p), v.numpy())
             for v, p in zip(model.non_trainable_variables, ntb) if "moving_mean" in v.path]
    assert all(moved)


# Basic blocks at depth 20 (3 per stage) and bottlenecks at 29 (3 per stage): every
# stage has a run of identical blocks. The default suite covers every ordering, both
# block kinds, post- and pre-activation, with and without stochastic depth; the
# rest of the product runs in the slow suite.
FAST_ORDERINGS = {("basic", "post", 0.2), ("bottleneck", "bn_after_add", 0.0),
                  ("basic", "relu_before_add", 0.0), ("bottleneck", "relu_preact", 0.2),
                  ("basic", "full_preact", 0.0), ("bottleneck", "full_preact", 0.2)}
ORDERING_CASES = [
    pytest.param(block, ordering, drop,
                 marks=() if (block, ordering, drop) in FAST_ORDERINGS else pytest.mark.slow)
    for block in ("basic", "bottleneck")
    for ordering in ("post", "bn_after_add", "relu_before_add", "relu_preact", "full_preact")
    for drop in (0.0, 0.2)]


@pytest.mark.parametrize("block,ordering,drop", ORDERING_CASES)
def test_every_unit_ordering_scans_to_the_unrolled_step(block, ordering, drop):
    depth = 20 if block == "basic" else 29
    model = _model(depth, block, ordering=ordering, drop_path_rate=drop,
                   shortcut="B" if block == "basic" else None)
    layout, a, b = _one_step_both_ways(model)
    first = 1 if block == "basic" else 2     # stage 1's first basic block keeps its shape
    assert layout.describe() == [("stage1_block%d" % first, 4 - first),
                                 ("stage2_block2", 2), ("stage3_block2", 2)]
    _assert_same(model, a, b)


FAST_SKIPS = {("scaling", 0.3), ("exclusive_gating", 0.0), ("shortcut_gating", 0.3),
              ("dropout", 0.0)}
SKIP_CASES = [pytest.param(skip, drop, marks=() if (skip, drop) in FAST_SKIPS
                           else pytest.mark.slow)
              for skip in ("scaling", "exclusive_gating", "shortcut_gating", "dropout")
              for drop in (0.0, 0.3)]


@pytest.mark.parametrize("skip,drop", SKIP_CASES)
def test_every_skip_function_scans_to_the_unrolled_step(skip, drop):
    model = _model(20, "basic", skip=skip, drop_path_rate=drop, shortcut="B")
    layout, a, b = _one_step_both_ways(model)
    assert [n for _, n in layout.describe()] == [3, 2, 2]
    _assert_same(model, a, b)


def test_stochastic_depth_draws_each_blocks_own_masks():
    """With stochastic depth each block keeps its own rate and seed state: the
    scanned step drops exactly the residual branches the unrolled one drops (a
    rate high enough that some are dropped), and advances every seed state."""
    model = _model(29, "bottleneck", preact=True, drop_path_rate=0.9)
    _, a, b = _one_step_both_ways(model)
    _assert_same(model, a, b)
    seeds = [(v, p) for v, p in zip(model.non_trainable_variables, b[2]) if "seed" in v.path]
    assert seeds and all(not np.array_equal(np.asarray(p), v.numpy()) for v, p in seeds)


def _hlo_size(depth, unroll):
    import jax

    from keras_resnet.training.scan import ScanLayout

    model = _model(depth, "basic")
    x = np.zeros((2, 8, 8, 3), "float32")
    t = [v.value for v in model.trainable_variables]
    nt = [v.value for v in model.non_trainable_variables]
    if unroll:
        def f(t, nt):
            out, _ = model.stateless_call(t, nt, x, training=True)
            return keras.ops.sum(out)
    else:
        layout = ScanLayout(model)
        t, nt = layout.pack(t, nt)

        def f(t, nt):
            out, _ = layout.forward(t, nt, x, training=True)
            return keras.ops.sum(out)
    text = jax.jit(jax.grad(f)).lower(t, nt).as_text()
    return sum(1 for line in text.splitlines() if " = " in line)


def test_the_compiled_step_does_not_grow_with_depth():
    """The lowered gradient program of a 56-layer net (9 blocks a stage) has the
    same number of operations as a 20-layer net's (3 a stage) when scanned; unrolled,
    it grows with the blocks (the comparison that shows the count measures them)."""
    scanned = [_hlo_size(d, unroll=False) for d in (20, 56)]
    unrolled = [_hlo_size(d, unroll=True) for d in (20, 56)]
    assert scanned[1] == scanned[0]
    assert unrolled[1] > 2 * unrolled[0]


def test_the_engine_steps_the_same_scanned_and_unrolled_and_writes_back_per_block():
    """Two SGD steps through the JAX engine with and without --unroll: the same
    weights, optimizer momenta and statistics in the Keras variables afterwards."""
    from keras_resnet.training.config import TrainConfig
    from keras_resnet.training.engine_jax import JaxEngine

    results = []
    for unroll in (True, False):
        model = _model(20, "basic", drop_path_rate=0.2)
        optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        optimizer.build(model.trainable_variables)
        engine = JaxEngine(TrainConfig(unroll=unroll, gpus=0, seed=0))
        engine.compile(model, optimizer, [v for v in model.trainable_variables
                                          if v.name == "kernel"],
                       classes=10, weight_decay=1e-4, label_smoothing=0.0, global_batch=4)
        assert (engine._scan is None) == unroll
        rng = np.random.default_rng(1)
        batch = (rng.normal(size=(4, 8, 8, 3)).astype("float32"),
                 rng.integers(0, 10, size=4).astype("int32"))
        sums = engine.run_steps(engine.repeat_batch(*batch), 2)
        engine.finish_state()
        results.append((np.asarray(sums), [v.numpy() for v in model.variables],
                        [v.numpy() for v in optimizer.variables]))
    (sa, va, oa), (sb, vb, ob) = results
    np.testing.assert_allclose(sb, sa, rtol=1e-5)
    for p, q in zip(va + oa, vb + ob):
        np.testing.assert_allclose(q, p, rtol=1e-4, atol=1e-5)
    assert int(ob[0]) == 2     # the optimizer's iterations, once per step


def test_resume_is_exact_with_scanned_stages(tmp_path):
    """Stopped after epoch 1 and resumed: the same weights, optimizer state and seed
    states as an uninterrupted run, with the stages scanned (depth 14: stage 1 scans)."""
    from keras_resnet.training import TrainConfig, train
    from keras_resnet.training import checkpoints as ckpt

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    def config(name):
        return TrainConfig(dataset="synthetic", synthetic_examples=64, image_size=8, depth=14,
                           batch_size=32, epochs=2, seed=4, drop_path_rate=0.2, quiet=True,
                           no_export=True, steps_per_execution=1, run_dir=str(tmp_path / name))

    straight = train(config("straight"))
    first = train(config("resumed"), callbacks=[Stop()])
    second = train(config("resumed"))
    assert first["epochs_completed"] == 1 and second["resumed_from_epoch"] == 1
    assert straight["steps_completed"] == second["steps_completed"]
    a = ckpt.CheckpointStore(str(tmp_path / "straight" / "checkpoints"))
    b = ckpt.CheckpointStore(str(tmp_path / "resumed" / "checkpoints"))
    sa, sb = a.load(a.latest()[1]), b.load(b.latest()[1])
    assert sorted(sa) == sorted(sb)
    for k in sa:
        np.testing.assert_array_equal(sb[k], sa[k], err_msg=k)
