"""keras_resnet.tuning: the search space, the hypermodel, budgets, and in-budget accounting.

The oracle tests drive KerasTuner's oracles by hand (create, score and end
trials without training), so they check the accounting exactly and fast; the
last tests run every tuner KerasTuner ships on the digits with ``model.fit``.
"""

import gc
import types

import numpy as np
import pytest

import keras
import keras_tuner

import keras_resnet
from keras_resnet import counting, specs, tuning
from keras_resnet.data import load_digits
from keras_resnet.tuning import (BLOCK, DEPTH, FAMILY, HYPERPARAMETERS, LEARNING_RATE, PREACT,
                                 SHORTCUT, WEIGHT_DECAY, WIDTH, OverBudget, ResNetHyperModel,
                                 best_call, budgeted)
from keras_resnet.tuning.search import planned_epochs

DIGITS = {"input_shape": (8, 8, 3), "classes": 10}


@pytest.fixture(scope="module", autouse=True)
def frozen_imports():
    """The objects this process already holds (TensorFlow, Keras, ...) frozen (``gc.freeze``).

    Keras collects garbage in ``keras.backend.clear_session()`` (after every test, in
    tests/conftest.py, and between trials) and KerasTuner before each build; every
    collection walked the 440,000 objects of the imports, 1.6 s apiece on a loaded 2-core
    machine. Frozen, they are skipped; what the tests create is collected as before. The
    search tests' modules import this fixture too.
    """
    gc.freeze()
    yield
    gc.unfreeze()


def rule_depths(max_depth):
    """CIFAR depths by the papers' rules, written out independently of specs."""
    return [d for d in range(8, max_depth + 1) if (d - 2) % 6 == 0 or (d - 2) % 9 == 0]


def declared(hypermodel, hp=None):
    hp = hp or keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    return {h.name: h for h in hp.space}, hp


def kind(h):
    return type(h).__name__


# -- the space ----------------------------------------------------------------------------------

def test_the_public_names_resolve_and_importing_the_package_stays_light():
    import subprocess
    import sys

    for name in tuning.__all__:
        assert getattr(tuning, name) is not None, name
    code = ("import sys, keras_resnet.tuning as t; t.resolve_space('cifar'); "
            "print(sorted(m for m in ('keras', 'keras_tuner', 'tensorflow', 'jax') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.multibackend
def test_default_space_offers_every_depth_the_builder_accepts():
    space, _ = declared(ResNetHyperModel())
    assert set(space) == {FAMILY, DEPTH, WIDTH, PREACT, LEARNING_RATE, WEIGHT_DECAY}
    assert set(space) <= set(HYPERPARAMETERS)
    assert list(space[DEPTH].values) == rule_depths(110)
    assert 8 in space[DEPTH].values and 11 in space[DEPTH].values
    for d in space[DEPTH].values:   # each offered depth resolves in the builder
        counting.count(d, family="cifar")
    assert kind(space[WIDTH]) == "Choice" and list(space[WIDTH].values) == [1, 2, 4]
    assert kind(space[PREACT]) == "Boolean"
    assert (kind(space[FAMILY]), space[FAMILY].value) == ("Fixed", "cifar")
    assert (space[LEARNING_RATE].value, space[WEIGHT_DECAY].value) == (0.1, 1e-4)
    imagenet, _ = declared(ResNetHyperModel("imagenet"))
    assert list(imagenet[DEPTH].values) == sorted(specs.IMAGENET_DEPTHS)
    # The default maximum widens through `depths=`.
    deep, _ = declared(ResNetHyperModel(depths=[164, 1001, 1202]))
    assert list(deep[DEPTH].values) == [164, 1001, 1202]


@pytest.mark.multibackend
def test_choices_are_narrowed_by_the_constructor():
    space, _ = declared(ResNetHyperModel(
        depths=[56, 20], widths=(1, 4), preact=True, blocks=["basic", "bottleneck"],
        shortcuts=["A", "C"], learning_rates=(0.01, 0.3), weight_decays=[0, 5e-4]))
    assert list(space[DEPTH].values) == [20, 56]
    assert (kind(space[WIDTH]), space[WIDTH].min_value, space[WIDTH].max_value) == ("Int", 1, 4)
    assert (kind(space[PREACT]), space[PREACT].value) == ("Fixed", True)
    assert list(space[BLOCK].values) == ["basic", "bottleneck"]
    assert list(space[SHORTCUT].values) == ["A", "C"]
    lr = space[LEARNING_RATE]
    assert (kind(lr), lr.min_value, lr.max_value, lr.sampling) == ("Float", 0.01, 0.3, "log")
    assert list(space[WEIGHT_DECAY].values) == [0.0, 5e-4]
    assert kind(declared(ResNetHyperModel(widths=(1.0, 2.5)))[0][WIDTH]) == "Float"
    # Both blocks: only depths with a net of each (18n+2).
    both, _ = declared(ResNetHyperModel(blocks=["basic", "bottleneck"]))
    assert list(both[DEPTH].values) == [d for d in rule_depths(110) if (d - 2) % 18 == 0]
    bottleneck, _ = declared(ResNetHyperModel(blocks=["bottleneck"]))
    assert list(bottleneck[DEPTH].values) == [d for d in range(11, 111) if (d - 2) % 9 == 0]
    basic, _ = declared(ResNetHyperModel("imagenet", blocks=["basic"]))
    assert list(basic[DEPTH].values) == [18, 34]


@pytest.mark.multibackend
@pytest.mark.parametrize("kwargs, error, fragments", [
    ({"depths": [21]}, ValueError, ["`depths`", "21", "6n+2"]),
    ({"depths": [20, 18]}, ValueError, ["`depths`", "18"]),
    ({"family": "imagenet", "depths": [20]}, ValueError, ["`depths`", "20", "18, 34, 50"]),
    ({"depths": [8], "blocks": ["bottleneck"]}, ValueError, ["`depths`", "8", "9n+2"]),
    ({"depths": []}, ValueError, ["`depths`", "empty"]),
    ({"depths": ["20"]}, TypeError, ["`depths`", "'20'"]),
    ({"widths": [0]}, ValueError, ["`widths`", "0"]),
    ({"widths": (2, 1)}, ValueError, ["`widths`", "min < max"]),
    ({"widths": "2"}, TypeError, ["`widths`", "'2'"]),
    ({"widths": [0.5]}, ValueError, ["`widths`", "0.5", "option A"]),
    ({"preact": "yes"}, TypeError, ["`preact`", "'yes'"]),
    ({"blocks": ["wide"]}, ValueError, ["`blocks`", "'wide'", "'basic'"]),
    ({"family": "imagenet", "blocks": ["basic", "bottleneck"]}, ValueError, ["`blocks`"]),
    ({"shortcuts": ["D"]}, ValueError, ["`shortcuts`", "'D'"]),
    ({"learning_rates": [-0.1]}, ValueError, ["`learning_rates`", "-0.1"]),
    ({"max_params": 0}, ValueError, ["`max_params`", "0"]),
    ({"max_params": 1000}, ValueError, ["`max_params`", "1,000", "ResNet-8", "75,290"]),
    ({"max_macs": 10**6, "input_shape": (None, None, 3)}, ValueError, ["`max_macs`", "height"]),
    ({"family": "mnist"}, ValueError, ["`family`", "'mnist'"]),
    ({"classes": 0}, ValueError, ["`classes`", "0"]),
    ({"compile": "yes"}, TypeError, ["`compile`", "'yes'"]),
    ({"depths": [20, 110], "max_params": 300_000}, ValueError,
     ["`depths`", "ResNet-110", "1,727,962", "max_params=300,000"]),
])
def test_bad_arguments_fail_at_construction_naming_them(kwargs, error, fragments):
    with pytest.raises(error) as info:
        ResNetHyperModel(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


@pytest.mark.multibackend
def test_a_budget_narrows_the_default_depths_and_the_defaults_fit_it():
    hypermodel = ResNetHyperModel(max_params=300_000)
    cheapest = {d: min(counting.count(d, family="cifar", preact=p).params for p in (False, True))
                for d in rule_depths(110)}
    assert list(hypermodel.space.depths) == [d for d, n in cheapest.items() if n <= 300_000]
    _, hp = declared(hypermodel)
    assert hypermodel.rejection(hp) is None   # KerasTuner builds the defaults first


# -- build --------------------------------------------------------------------------------------

@pytest.mark.multibackend
@pytest.mark.parametrize("values", [
    {DEPTH: 14, WIDTH: 2, PREACT: True},
    {DEPTH: 20, BLOCK: "bottleneck", WIDTH: 1, PREACT: False, SHORTCUT: "C"},
])
def test_build_is_the_builders_network(values):
    both = BLOCK in values
    hypermodel = ResNetHyperModel(**DIGITS, depths=[20] if both else [14, 20],
                                  blocks=["basic", "bottleneck"] if both else None,
                                  shortcuts=["B", "C"] if SHORTCUT in values else None)
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    model = hypermodel.build(hp)
    counts = hypermodel.counts(hp)
    assert counting.trainable_params(model) == counts.params
    assert keras_resnet.flops(model) == counts.macs
    rebuilt = eval(hypermodel.best_call(hp), {"keras_resnet": keras_resnet})
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in model.layers]
    assert counting.trainable_params(rebuilt) == counts.params


def test_user_fixed_and_widened_values_are_built():
    hp = keras_tuner.HyperParameters()
    hp.Fixed(DEPTH, 56)
    hp.Choice(WIDTH, [3])        # outside the default widths: a user widening the space
    model = ResNetHyperModel(**DIGITS).build(hp)
    assert (hp.values[DEPTH], hp.values[WIDTH]) == (56, 3)
    expected = counting.count(56, width=3, family="cifar", **DIGITS).params
    assert counting.trainable_params(model) == expected


def test_compiles_with_sgd_momentum_and_the_l2_penalty_from_the_space():
    hypermodel = ResNetHyperModel(**DIGITS, depths=[8], widths=[1], preact=False,
                                  learning_rates=[0.05], weight_decays=[2e-4])
    model = hypermodel.build(keras_tuner.HyperParameters())
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.05)
    assert model.optimizer.momentum == 0.9
    kernels = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights
               if w.name == "kernel"]
    penalty = 2e-4 / 2 * sum(float(np.sum(np.square(k.astype(np.float64)))) for k in kernels)
    losses = sum(float(keras.ops.convert_to_numpy(x)) for x in model.losses)
    assert losses == pytest.approx(penalty, rel=1e-5)
    assert len(model.losses) == len(kernels)   # every conv and dense kernel, nothing else
    plain = ResNetHyperModel(**DIGITS, depths=[8], compile=False).build(
        keras_tuner.HyperParameters())
    assert not plain.compiled


def test_over_budget_candidates_are_rejected_before_any_weight_is_allocated(monkeypatch):
    hypermodel = ResNetHyperModel(**DIGITS, depths=[8, 14], widths=[1, 2, 4], max_params=300_000,
                                  max_macs=1_700_000)
    built = []
    real = keras_resnet.ResNet
    monkeypatch.setattr(keras_resnet, "ResNet", lambda *a, **k: built.append(k) or real(*a, **k))
    for width, depth, limit in ((4, 8, "max_params=300,000"), (2, 8, "max_macs=1,700,000")):
        hp = keras_tuner.HyperParameters()
        hp.Fixed(WIDTH, width)
        hp.Fixed(DEPTH, depth)
        hp.Fixed(PREACT, False)
        with pytest.raises(OverBudget) as info:
            hypermodel.build(hp)
        counts = counting.count(depth, width=width, family="cifar", **DIGITS)
        assert limit in str(info.value)
        assert f"{counts.params:,}" in str(info.value) or f"{counts.macs:,}" in str(info.value)
        assert isinstance(info.value, keras_tuner.errors.FailedTrialError)
    assert built == []
    model = hypermodel.build(keras_tuner.HyperParameters())   # the cheapest default fits
    assert len(built) == 1 and counting.trainable_params(model) <= 300_000


@pytest.mark.multibackend
def test_best_call_names_only_what_differs_and_rebuilds_the_architecture():
    assert best_call({DEPTH: 56, WIDTH: 1, PREACT: False, FAMILY: "cifar"}) == \
        "keras_resnet.ResNet(depth=56)"
    assert best_call({DEPTH: 20, WIDTH: 2.0, PREACT: True, FAMILY: "cifar", BLOCK: "bottleneck",
                      SHORTCUT: "C"}) == \
        "keras_resnet.ResNet(depth=20, preact=True, block='bottleneck', width=2, shortcut='C')"
    # 50 is a depth of both families: the call says which.
    call = best_call({DEPTH: 50, WIDTH: 1, PREACT: False, FAMILY: "cifar"})
    assert call == "keras_resnet.ResNet(depth=50, family='cifar')"
    # ResNet-56's 853,018 (REFERENCE) less one basic block per stage:
    # 2 x (9 x 16^2 + 2 x 16) + 2 x (9 x 32^2 + 2 x 32) + 2 x (9 x 64^2 + 2 x 64) = 97,216.
    assert counting.count(50, family="cifar").params == 853_018 - 97_216 == \
        counting.trainable_params(eval(call, {"keras_resnet": keras_resnet}))
    with pytest.raises(TypeError, match="`hp`"):
        best_call({"width": 2})


# -- in-budget accounting (KerasTuner's oracles, driven by hand) ---------------------------------

def _drive(tuner, score=lambda values: 0.5, fail=lambda values: False, limit=500):
    """Run a search's oracle to the end without training; return the trials by status."""
    oracle = tuner.oracle
    for _ in range(limit):
        trial = oracle.create_trial("tuner0")
        if trial.status == "STOPPED":
            break
        if trial.status == "IDLE":
            continue
        values = trial.hyperparameters.values
        if tuner.hypermodel.rejection(values) is not None:
            trial.status, trial.message = "FAILED", "OverBudget: over budget"
        elif fail(values):
            trial.status, trial.message = "FAILED", "ResourceExhaustedError: OOM"
        else:
            oracle.update_trial(trial.trial_id, {"val_accuracy": score(values)})
            trial.status = "COMPLETED"
        oracle.end_trial(trial)
    trials = list(oracle.trials.values())
    return {status: [t for t in trials if t.status == status] for status in
            ("COMPLETED", "FAILED")}, trials


TIGHT = dict(**DIGITS, depths=[8, 14, 20], widths=[1, 2, 4, 8], max_params=300_000)


def test_budgeted_search_trains_max_trials_in_budget_models(tmp_path):
    hypermodel = ResNetHyperModel(**TIGHT)
    tuner = budgeted(keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=6,
                                              seed=3, directory=str(tmp_path), project_name="b"))
    by_status, trials = _drive(tuner)
    assert len(by_status["COMPLETED"]) == 6
    rejected = by_status["FAILED"]
    assert rejected and all(hypermodel.rejection(t.hyperparameters) for t in rejected)
    assert len(trials) == 6 + len(rejected)
    assert tuner.oracle.stop_reason is None
    # KerasTuner alone counts rejections as trials and stops after 3 in a row.
    plain = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=6, seed=3,
                                     directory=str(tmp_path), project_name="p")
    try:
        by_status, _ = _drive(plain)
        assert len(by_status["COMPLETED"]) < 6
    except RuntimeError as e:
        assert "consecutive failures" in str(e)


def test_failures_stop_the_search_gracefully_and_rejections_are_not_failures(tmp_path):
    hypermodel = ResNetHyperModel(**TIGHT)
    tuner = budgeted(keras_tuner.RandomSearch(hypermodel, objective="val_accuracy",
                                              max_trials=50, seed=1, directory=str(tmp_path)))
    by_status, trials = _drive(tuner, fail=lambda values: True)
    failed = [t for t in by_status["FAILED"] if not hypermodel.rejection(t.hyperparameters)]
    assert len(failed) == 3 and by_status["COMPLETED"] == []
    assert "3 trials in a row failed" in tuner.oracle.stop_reason
    assert "ResourceExhaustedError: OOM" in tuner.oracle.stop_reason


def test_bayesian_optimisation_is_kept_within_the_budget(tmp_path):
    hypermodel = ResNetHyperModel(**TIGHT)
    tuner = budgeted(keras_tuner.BayesianOptimization(
        hypermodel, objective="val_accuracy", max_trials=10, num_initial_points=3, seed=2,
        directory=str(tmp_path)))
    # Accuracy rises with the network's size: the Gaussian process is drawn towards the
    # over-budget corner, which it never sees (KerasTuner fits it to completed trials).
    by_status, _ = _drive(tuner, score=lambda v: v[DEPTH] * v[WIDTH] / 160)
    assert len(by_status["COMPLETED"]) == 10
    assert len(by_status["FAILED"]) < 40
    assert tuner.oracle.stop_reason is None


def test_a_run_of_rejections_ends_the_search(tmp_path):
    hypermodel = ResNetHyperModel(**TIGHT)
    tuner = budgeted(keras_tuner.RandomSearch(hypermodel, objective="val_accuracy",
                                              max_trials=20, seed=5, directory=str(tmp_path)),
                     max_consecutive_rejections=2)
    by_status, trials = _drive(tuner)
    assert "the last 2 candidates were all over budget" in tuner.oracle.stop_reason
    assert [hypermodel.rejection(t.hyperparameters) is not None for t in trials[-2:]] == \
        [True, True]
    assert len(by_status["COMPLETED"]) < 20


def test_budgeted_needs_a_resnet_hypermodel(tmp_path):
    tuner = keras_tuner.RandomSearch(lambda hp: keras.Sequential([keras.Input((1,)),
                                                                  keras.layers.Dense(1)]),
                                     objective="val_loss", max_trials=1, directory=str(tmp_path))
    with pytest.raises(TypeError, match="`tuner`"):
        budgeted(tuner)
    tuner = keras_tuner.RandomSearch(ResNetHyperModel(**DIGITS, depths=[8]),
                                     objective="val_loss", max_trials=1, directory=str(tmp_path),
                                     project_name="r")
    with pytest.raises(ValueError, match="`max_consecutive_rejections`"):
        budgeted(tuner, max_consecutive_rejections=0)


@pytest.mark.parametrize("max_epochs, factor", [(9, 3), (8, 2), (30, 3)])
def test_planned_epochs_of_hyperband_are_what_its_oracle_schedules(tmp_path, max_epochs, factor):
    """The search's ETA counts Hyperband's epochs as its oracle schedules them."""
    hypermodel = ResNetHyperModel(**DIGITS, depths=[8, 14, 20, 26, 32], widths=(1, 64))
    oracle = keras_tuner.oracles.HyperbandOracle(objective=keras_tuner.Objective(
        "val_accuracy", "max"), max_epochs=max_epochs, factor=factor, seed=1)
    tuner = types.SimpleNamespace(oracle=oracle, hypermodel=hypermodel)
    oracle._set_project_dir(str(tmp_path), "h")
    hp = oracle.get_space()
    hypermodel.declare_hyperparameters(hp)
    oracle.update_space(hp)
    _, trials = _drive(tuner, score=lambda v: v[WIDTH] / 64)
    trained = sum(t.hyperparameters.values["tuner/epochs"] for t in trials)
    assert planned_epochs("hyperband", oracle, None, max_epochs) == trained
    assert planned_epochs("random", oracle, 7, 3) == 21


# -- every tuner KerasTuner ships, with model.fit -------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    """Two batches of 128 digits to train on and two to validate on (each step runs eagerly)."""
    (x, y), (xt, yt) = load_digits()
    n = 2 * 128
    return (x[:n].astype("float32") / 255.0, y[:n]), (xt[:n].astype("float32") / 255.0, yt[:n])


class EagerStepsHyperModel(ResNetHyperModel):
    """The hypermodel, whose models run their training and validation steps eagerly.

    Tracing each new model's steps into TensorFlow graphs was three quarters of a trial's
    time here (about 17 s of 23 s on a loaded 2-core machine). What these tests check is
    the tuners' search over the hypermodel (trials, budgets, the best model and its
    score), not TensorFlow's graphs: the README snippet's search (test_tune_failures.py)
    and the recipe's trials (test_tune_recipe.py) train in graph mode.
    """

    def fit(self, hp, model, *args, **kwargs):
        model.run_eagerly = True
        return super().fit(hp, model, *args, **kwargs)


@pytest.mark.parametrize("tuner_class, kwargs", [
    (keras_tuner.RandomSearch, {"max_trials": 2}),
    (keras_tuner.BayesianOptimization, {"max_trials": 2, "num_initial_points": 1}),
    (keras_tuner.Hyperband, {"max_epochs": 2, "factor": 2}),
    (keras_tuner.GridSearch, {}),
], ids=["random", "bayesian", "hyperband", "grid"])
def test_every_keras_tuner_searches_the_hypermodel_with_model_fit(tmp_path, digits, tuner_class,
                                                                  kwargs):
    (x, y), (xt, yt) = digits
    hypermodel = EagerStepsHyperModel(**DIGITS, depths=[8], widths=[1, 4], max_params=300_000)
    tuner = budgeted(tuner_class(hypermodel, objective="val_accuracy", seed=1,
                                 directory=str(tmp_path), **kwargs))
    fit = {} if tuner_class is keras_tuner.Hyperband else {"epochs": 1}
    tuner.search(x, y, validation_data=(xt, yt), batch_size=128, verbose=0, **fit)
    trials = list(tuner.oracle.trials.values())
    completed = [t for t in trials if t.status == "COMPLETED"]
    failed = [t for t in trials if t.status != "COMPLETED"]
    assert completed and all(t.hyperparameters.values[WIDTH] in (1, 4) for t in trials)
    assert all(hypermodel.rejection(t.hyperparameters) is None for t in completed)
    assert all(hypermodel.rejection(t.hyperparameters) is not None for t in failed)
    if tuner_class is keras_tuner.GridSearch:   # every combination, in order: width 4 rejected
        assert [(t.hyperparameters.values[WIDTH], t.hyperparameters.values[PREACT], t.status)
                for t in trials] == [(1, False, "COMPLETED"), (1, True, "COMPLETED"),
                                     (4, False, "FAILED"), (4, True, "FAILED")]
    if "max_trials" in kwargs:
        assert len(completed) == kwargs["max_trials"]
    best = tuner.get_best_hyperparameters(1)[0]
    model = tuner.get_best_models(1)[0]
    model.run_eagerly = True
    _, accuracy = model.evaluate(xt, yt, batch_size=128, verbose=0)
    assert accuracy == pytest.approx(tuner.oracle.get_best_trials(1)[0].score, abs=1e-6)
    assert best_call(best) == "keras_resnet.ResNet(depth=8" + \
        (", preact=True" if best.values[PREACT] else "") + ")"
