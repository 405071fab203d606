"""The engine interface and the objective both engines share (keras_resnet.training.engine).

The loss, the L2 penalty, the accuracy and the evaluation sums are checked
against a NumPy rewrite written here from their definitions, under whichever
backend runs the suite (``make test`` runs these under TensorFlow and JAX).
"""

import inspect

import keras
import numpy as np
import pytest

from keras_resnet.training import engine

pytestmark = pytest.mark.multibackend

EPS = 1e-7   # keras.config.epsilon(): Keras clips probabilities to [EPS, 1 - EPS]


# -- the NumPy rewrite -----------------------------------------------------------------------
def np_targets(labels, classes, smoothing):
    onehot = np.eye(classes)[labels]
    return onehot * (1 - smoothing) + smoothing / classes


def np_cross_entropy(outputs, labels, classes, smoothing, from_logits):
    outputs = outputs.astype(np.float64)
    if from_logits:
        shifted = outputs - outputs.max(-1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    else:
        p = outputs / outputs.sum(-1, keepdims=True)
        log_p = np.log(np.clip(p, EPS, 1 - EPS))
    return -(np_targets(labels, classes, smoothing) * log_p).sum(-1)


def np_l2(weights, weight_decay):
    return weight_decay * sum(0.5 * (np.asarray(w, np.float64) ** 2).sum() for w in weights)


def np_correct(outputs, labels):
    return float((outputs.argmax(-1) == labels).sum())


def _case(seed=0, batch=12, classes=7):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (batch, classes)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    probs[0] = 0.0
    probs[0, 3] = 1.0                  # a certain prediction: the clip matters
    labels = rng.integers(0, classes, batch).astype(np.int32)
    labels[0] = 2                      # ... and it is wrong (log of a clipped 0)
    logits[0] = logits[0] - 30.0 * (np.arange(classes) != 3)   # the same row, as logits
    return logits, probs.astype(np.float32), labels, classes


def _np(x):
    return keras.ops.convert_to_numpy(x)


# -- the objective -----------------------------------------------------------------------------
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_equals_the_numpy_rewrite(from_logits, smoothing):
    logits, probs, labels, classes = _case()
    outputs = logits if from_logits else probs
    got = _np(engine.cross_entropy(outputs, labels, classes=classes, label_smoothing=smoothing,
                                   from_logits=from_logits))
    want = np_cross_entropy(outputs, labels, classes, smoothing, from_logits)
    assert got.dtype == np.float32 and got.shape == (len(labels),)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    # The clipped wrong certainty costs -log(EPS) (about 16.1) without smoothing.
    if not smoothing and not from_logits:
        assert got[0] == pytest.approx(-np.log(EPS), rel=1e-4)


def test_cross_entropy_matches_keras_losses():
    """The same numbers as keras.losses, which the TensorFlow engine used before."""
    _, probs, labels, classes = _case(1)
    sparse = keras.losses.sparse_categorical_crossentropy(labels, probs)
    np.testing.assert_allclose(_np(engine.cross_entropy(probs, labels, classes=classes)),
                               _np(sparse), rtol=1e-6)
    smooth = keras.losses.categorical_crossentropy(np.eye(classes)[labels], probs,
                                                   label_smoothing=0.1)
    np.testing.assert_allclose(_np(engine.cross_entropy(probs, labels, classes=classes,
                                                        label_smoothing=0.1)),
                               _np(smooth), rtol=1e-6)


def test_l2_penalty_and_accuracy_equal_the_numpy_rewrite():
    rng = np.random.default_rng(3)
    weights = [rng.normal(size=s).astype(np.float32) for s in [(3, 3, 3, 8), (8, 10), (5,)]]
    np.testing.assert_allclose(float(_np(engine.l2_penalty(weights, 1e-4))),
                               np_l2(weights, 1e-4), rtol=1e-6)
    assert float(_np(engine.l2_penalty([], 5e-4))) == 0.0
    half = [keras.ops.cast(w, "float16") for w in weights]     # computed in float32
    assert _np(engine.l2_penalty(half, 1.0)).dtype == np.float32
    logits, probs, labels, _ = _case(4, batch=50)
    assert float(_np(engine.count_correct(probs, labels))) == np_correct(probs, labels)
    assert float(_np(engine.count_correct(logits, labels))) == np_correct(logits, labels)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_train_objective_splits_over_replicas_as_the_global_mean(from_logits, smoothing):
    """Two replicas' (loss, l2) sum to the global batch's mean loss plus the penalty once."""
    logits, probs, labels, classes = _case(5, batch=16)
    outputs = logits if from_logits else probs
    weights = [np.random.default_rng(6).normal(size=(4, 4)).astype(np.float32)]
    kw = dict(classes=classes, weight_decay=5e-4, label_smoothing=smoothing,
              global_batch=16, from_logits=from_logits)
    whole = [float(_np(v)) for v in engine.train_objective(outputs, labels, weights, **kw)]
    halves = [[float(_np(v)) for v in engine.train_objective(outputs[i:i + 8], labels[i:i + 8],
                                                             weights, replicas=2, **kw)]
              for i in (0, 8)]
    want_loss = np_cross_entropy(outputs, labels, classes, smoothing, from_logits).mean()
    np.testing.assert_allclose(whole, [want_loss, np_l2(weights, 5e-4),
                                       np_correct(outputs, labels)], rtol=2e-5)
    np.testing.assert_allclose(np.sum(halves, axis=0), whole, rtol=2e-5)


@pytest.mark.parametrize("from_logits", [False, True])
def test_evaluation_sums_ignore_padding(from_logits):
    logits, probs, labels, classes = _case(7, batch=10)
    outputs = logits if from_logits else probs
    padded = labels.copy()
    padded[-3:] = -1
    got = _np(engine.evaluation_sums(outputs, padded, classes=classes, from_logits=from_logits))
    keep = slice(0, 7)
    want = [np_cross_entropy(outputs[keep], labels[keep], classes, 0.0, from_logits).sum(),
            np_correct(outputs[keep], labels[keep]), 7.0]
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_outputs_are_logits_reads_the_classifier_activation():
    import keras_resnet

    kw = dict(input_shape=(8, 8, 3), classes=10)
    assert not engine.outputs_are_logits(keras_resnet.ResNet(8, **kw))
    assert engine.outputs_are_logits(keras_resnet.ResNet(8, classifier_activation=None, **kw))


# -- the interface -----------------------------------------------------------------------------
def _engine_class():
    if keras.backend.backend() == "tensorflow":
        from keras_resnet.training.engine_tf import TFEngine

        return TFEngine
    from keras_resnet.training.engine_jax import JaxEngine

    return JaxEngine


def test_the_backends_engine_implements_the_whole_interface():
    cls = _engine_class()
    assert issubclass(cls, engine.Engine) and not inspect.isabstract(cls)
    assert cls.backend == keras.backend.backend()
    with pytest.raises(TypeError):
        engine.Engine(None, name="x", chief=True, replicas=1, gpu=False)


def test_an_engine_step_reports_the_numpy_objective_of_its_batch(tmp_path):
    """One compiled train step (TF or JAX engine) returns the NumPy loss, penalty and
    correct count of the model's training-mode outputs on that batch."""
    from keras_resnet import data as data_lib
    from keras_resnet.training import TrainConfig, Trainer

    data = data_lib.load("digits")
    config = TrainConfig(dataset="digits", depth=8, batch_size=32, epochs=1,
                         label_smoothing=0.1, weight_decay=1e-3, quiet=True,
                         no_export=True, run_dir=str(tmp_path / "run"))
    trainer = Trainer(config, data=data)
    assert isinstance(trainer.engine, engine.Engine) and trainer.engine.gpu is False
    trainer.build()
    images, labels = next(iter(data.numpy_train_epochs(32, 1, 1, workers=1)))
    outputs = _np(trainer.model(images, training=True))
    decayed = [_np(v.value) for v in trainer.decayed]
    loss, l2, correct = trainer.train_step((images, labels))
    want = np_cross_entropy(outputs, labels, 10, 0.1, False).mean()
    assert loss == pytest.approx(want, rel=1e-4)
    assert l2 == pytest.approx(np_l2(decayed, 1e-3), rel=1e-5)
    assert correct == np_correct(outputs, labels)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the JAX engine's step")
def test_jax_step_adds_the_penalty_gradient_as_autodiff_of_the_penalty_would(tmp_path):
    """The JAX step adds ``weight_decay * w`` to the gradients instead of differentiating
    the penalty. Its weights after one step (ResNet-14: stage 1 runs as a scan) equal
    those of a step that differentiates ``loss + weight_decay / 2 * sum(w ** 2)`` with
    ``jax.grad`` (written here) to float rounding, which is far below the penalty's own
    effect on the step."""
    import jax

    from keras_resnet import data as data_lib
    from keras_resnet.training import TrainConfig, Trainer

    data = data_lib.load("digits")
    # A large decay (0.5) makes the penalty's effect on the step stand well above the
    # float rounding of a 14-layer BatchNorm network's gradients.
    config = TrainConfig(dataset="digits", depth=14, batch_size=32, epochs=1, lr=0.1,
                         weight_decay=0.5, quiet=True, no_export=True,
                         run_dir=str(tmp_path / "run"))
    trainer = Trainer(config, data=data)
    trainer.build()
    model, optimizer = trainer.model, trainer.optimizer
    images, labels = next(iter(data.numpy_train_epochs(32, 1, 1, workers=1)))
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    decayed = {id(v) for v in trainer.decayed}
    keep = [id(v) in decayed for v in model.trainable_variables]
    opt_vars = [v.value for v in optimizer.variables]

    @jax.jit
    def reference_step(tr, penalty):
        def loss(tr):
            outputs, _ = model.stateless_call(tr, non_trainable, images, training=True)
            ce = engine.cross_entropy(outputs, labels, classes=10)
            l2 = sum(0.5 * jax.numpy.sum(w ** 2) for w, k in zip(tr, keep) if k)
            return jax.numpy.mean(ce) + penalty * 0.5 * l2
        return optimizer.stateless_apply(opt_vars, jax.grad(loss)(tr), tr)[0]

    want = [np.asarray(w) for w in reference_step(trainable, 1.0)]
    without = [np.asarray(w) for w in reference_step(trainable, 0.0)]
    trainer.train_step((images, labels))
    trainer.engine.finish_state()
    assert trainer.engine._scan is not None and sum(keep) > 10
    got = [_np(v.value) for v in model.trainable_variables]
    error = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    effect = max(float(np.abs(w0 - w).max()) for w0, w in zip(without, want))
    assert error < 0.05 * effect, (error, effect)
    for v, g, w in zip(model.trainable_variables, got, want):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4, err_msg=v.path)
