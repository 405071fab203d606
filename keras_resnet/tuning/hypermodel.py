"""A KerasTuner hypermodel of ResNets: depth, width and the papers' choices, within budgets.

:class:`ResNetHyperModel` declares a :class:`~keras_resnet.tuning.space.Space` to
KerasTuner and maps each trial's hyperparameters to the arguments of
``keras_resnet.ResNet``, nothing else: the blocks are the package's own. A
candidate over ``max_params`` or ``max_macs`` is counted from its architecture
and rejected with :class:`OverBudget`, a ``keras_tuner.errors.FailedTrialError``,
before any weight is allocated: KerasTuner records the trial as failed (never
retried) and moves on. :func:`keras_resnet.tuning.budgeted` makes a tuner count
only in-budget trials against ``max_trials``.

It works with every tuner KerasTuner ships and ``model.fit``::

    hypermodel = ResNetHyperModel(classes=10, max_params=1_000_000)
    tuner = keras_tuner.Hyperband(hypermodel, objective="val_accuracy", max_epochs=30,
                                  directory="search")
    tuner.search(x, y, validation_data=(xv, yv))
    model = tuner.get_best_models(1)[0]
"""

from __future__ import annotations

import keras
import keras_tuner

from keras_resnet.architecture import check_bool
from keras_resnet.tuning import space as S
from keras_resnet.tuning.space import (BLOCK, DEPTH, FAMILY, LEARNING_RATE, MOMENTUM, PREACT,
                                       SHORTCUT, WEIGHT_DECAY, WIDTH, Range)


class OverBudget(keras_tuner.errors.FailedTrialError):
    """A candidate over the search's ``max_params`` / ``max_macs``, rejected before it is built.

    KerasTuner marks its trial ``FAILED`` (a ``FailedTrialError`` is never
    retried); the message names the network and its counts.
    """


def _declare(hp, name, choice, default):
    """Register one hyperparameter: a range, one fixed value, or a choice."""
    if isinstance(choice, Range):
        if choice.integer:
            return hp.Int(name, choice.low, choice.high, default=default)
        return hp.Float(name, float(choice.low), float(choice.high), default=float(default),
                        sampling="log" if choice.log else "linear")
    if len(choice) == 1:
        return hp.Fixed(name, choice[0])
    values = list(choice)
    if any(isinstance(v, float) for v in values):   # KerasTuner wants one type per choice
        values, default = [float(v) for v in values], float(default)
    return hp.Choice(name, values, default=default)


class ResNetHyperModel(keras_tuner.HyperModel):
    """Search ResNet depth, width and the papers' other choices with KerasTuner.

    Args:
        family: ``"cifar"`` or ``"imagenet"``.
        input_shape: tuple or None (the family's: 32x32x3 or 224x224x3), in
            Keras's ``image_data_format``.
        classes: int or None (the family's: 10 or 1000).
        depths: list of ints or None: every depth the builder accepts for the
            family (and for each of ``blocks``): CIFAR 6n+2 and 9n+2 up to
            :data:`~keras_resnet.tuning.space.DEFAULT_MAX_CIFAR_DEPTH`
            (110), ImageNet 18 to 200. With a budget, the default list stops at
            the depths that can fit it. A depth the family does not have, or one
            that can never fit the budget, is an error.
        widths: the widening factor k: a list of choices, or a ``(min, max)``
            tuple (ints: every integer; floats: continuous).
        preact: bool or list of bools, full pre-activation units (He et al. 2016).
        blocks: None (each depth's block from the table) or a list of
            ``"basic"``/``"bottleneck"``: only depths that have a net of every
            listed block are offered (CIFAR, both: 20, 38, 56, ...).
        shortcuts: None (the family's default: A for CIFAR basic nets, else B)
            or a list of ``"A"``, ``"B"``, ``"C"``.
        learning_rates: None (0.1, He et al. 2015), a list, or a ``(min, max)``
            tuple sampled on a log scale.
        weight_decays: None (1e-4), a list, or a ``(min, max)`` tuple: the L2
            penalty ``weight_decay / 2 * sum(w ** 2)`` over convolution and dense
            kernels (``kernel_regularizer=keras.regularizers.L2(weight_decay / 2)``).
        max_params: int or None, most trainable parameters of a candidate.
        max_macs: int or None, most multiply-adds per example (as
            ``keras_resnet.flops``).
        compile: bool, compile the model with SGD, momentum 0.9, the trial's
            learning rate, sparse categorical cross-entropy and accuracy.
        name: str or None, the hypermodel's name.

    Every hyperparameter is named by a constant of :mod:`keras_resnet.tuning`
    (``DEPTH``, ``WIDTH``, ``PREACT``, ``BLOCK``, ``SHORTCUT``, ``LEARNING_RATE``,
    ``WEIGHT_DECAY``; ``FAMILY`` is fixed). Fix one with ``hp.Fixed`` in the
    tuner's ``hyperparameters``, or narrow it with these arguments. The
    defaults are the cheapest candidate of the space, so the model KerasTuner
    builds when it creates a tuner fits the budget.

    Raises:
        ValueError, TypeError: naming the argument, at construction.

    Example:

    >>> hypermodel = ResNetHyperModel(input_shape=(8, 8, 3), classes=10, depths=[8, 14],
    ...                               widths=[1, 2], max_params=200_000)
    >>> hp = keras_tuner.HyperParameters()
    >>> model = hypermodel.build(hp)
    >>> model.name, hp.values[DEPTH], hp.values[WIDTH]
    ('resnet8', 8, 1)
    >>> hp.values[WIDTH] = 2
    >>> hypermodel.rejection({**hp.values, DEPTH: 14})
    'over budget: ResNet-14 width 2 has 680,922 trainable parameters > max_params=200,000'
    """

    def __init__(self, family="cifar", input_shape=None, classes=None, *, depths=None,
                 widths=S.DEFAULT_WIDTHS, preact=(False, True), blocks=None, shortcuts=None,
                 learning_rates=None, weight_decays=None, max_params=None, max_macs=None,
                 compile=True, name=None):
        super().__init__(name=name)
        self.compile = check_bool("compile", compile)
        self.space = S.resolve_space(
            family, input_shape, classes, depths=depths, widths=widths, preact=preact,
            blocks=blocks, shortcuts=shortcuts, learning_rates=learning_rates,
            weight_decays=weight_decays, max_params=max_params, max_macs=max_macs,
            data_format=keras.config.image_data_format())

    # -- the space -------------------------------------------------------------------------
    def values(self, hp):
        """Declare every hyperparameter in ``hp``; return the trial's values by name."""
        space, d = self.space, self.space.defaults
        values = {FAMILY: hp.Fixed(FAMILY, space.family),
                  DEPTH: _declare(hp, DEPTH, space.depths, d[DEPTH])}
        if space.blocks is not None:
            values[BLOCK] = _declare(hp, BLOCK, space.blocks, d[BLOCK])
        values[WIDTH] = _declare(hp, WIDTH, space.widths, d[WIDTH])
        if len(space.preact) == 2:
            values[PREACT] = hp.Boolean(PREACT, default=d[PREACT])
        else:
            values[PREACT] = hp.Fixed(PREACT, space.preact[0])
        if space.shortcuts is not None:
            values[SHORTCUT] = _declare(hp, SHORTCUT, space.shortcuts, d[SHORTCUT])
        values[LEARNING_RATE] = _declare(hp, LEARNING_RATE, space.learning_rates,
                                         d[LEARNING_RATE])
        values[WEIGHT_DECAY] = _declare(hp, WEIGHT_DECAY, space.weight_decays, d[WEIGHT_DECAY])
        return values

    def declare_hyperparameters(self, hp):
        self.values(hp)

    def builder_kwargs(self, hp):
        """The ``keras_resnet.ResNet`` arguments of a trial (``hp`` or its values)."""
        return {**self.space.builder_kwargs(S._values(hp)),
                "input_shape": self.space.input_shape, "classes": self.space.classes}

    def counts(self, hp):
        """Trainable parameters and multiply-adds of a trial, counted without building it."""
        return self.space.counts(S._values(hp))

    def rejection(self, hp):
        """Why a trial is over budget (one line), or None when it fits."""
        return self.space.rejection(S._values(hp))

    def best_call(self, hp):
        """The ``keras_resnet.ResNet(...)`` call of a trial, with its input shape and classes."""
        return S.best_call(hp, input_shape=self.space.input_shape, classes=self.space.classes)

    # -- KerasTuner ------------------------------------------------------------------------
    def build(self, hp):
        """Build (and compile) a trial's ResNet; :class:`OverBudget` first if it is too big."""
        import keras_resnet

        values = self.values(hp)
        reason = self.space.rejection(values)
        if reason is not None:
            raise OverBudget(reason)
        lr, weight_decay = self.space.training_values(values)
        regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
        model = keras_resnet.ResNet(kernel_regularizer=regularizer, **self.builder_kwargs(values))
        if self.compile:
            model.compile(optimizer=keras.optimizers.SGD(lr, momentum=MOMENTUM),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model
