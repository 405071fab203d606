"""Scanned stages: one compiled block body per run of identical blocks (JAX).

Under JAX the training step is traced and compiled by XLA as one program. A
functional ResNet unrolls every block into it, so the program (and XLA's
compile time) grows with depth: ResNet-1001 did not finish compiling. Here the
consecutive blocks of a stage that are configured identically (every block of
a stage after the first: same filters, stride 1, identity shortcut) run as one
``jax.lax.scan`` over their stacked variables, so XLA compiles one block body
per stage whatever the depth.

The user's model does not change: same layers, names, variables, ``.keras``
files and checkpoints. :class:`ScanLayout` rearranges the engine's state only:

* the *compact* state is the model's variables with each scanned run's
  variables stacked along a new leading axis (one array per variable of the
  run's first block, the *template*), and the optimizer's slot variables
  (SGD's momentum) stacked the same way;
* :meth:`ScanLayout.forward` runs the model's functional graph with the run's
  first block replaced by a scan of the template's ``__call__`` under each
  block's slice of the stacked variables (a ``keras.StatelessScope``), and the
  run's other blocks skipped; BatchNorm's moving statistics and the
  stochastic-depth seed states come back as the scan's outputs; each block's
  own drop-path rate is a scanned input;
* :meth:`ScanLayout.pack` and :meth:`ScanLayout.unpack` convert the engine's
  per-variable state to the compact state and back, where the engine builds
  its device state and where it writes it back into the Keras variables.

Why not ``keras.ops.scan`` on the layers: Keras layers own their variables;
scanning needs the blocks' variables as arrays with a leading block axis, and
the model's variables must stay per block. The stacking is ours, the block
computation is the block's own ``call``.

``ScanLayout.optimizer`` is a twin of the run's optimizer built on the compact
variables (the update is elementwise, so updating a stack updates each block);
its slot variables map to the original optimizer's by the reference variable
and slot name each was created for, recorded while both are built.

This module holds the scanned step (:class:`ScanLayout`'s forward pass and the
scan of a run's blocks); which blocks form a run is
:mod:`keras_resnet.training.scan_runs`, the stacking of the state and the
optimizer twin :mod:`keras_resnet.training.scan_state` (a mixin of
:class:`ScanLayout`).
"""

from __future__ import annotations

import keras

from keras_resnet.training.scan_runs import _Run, stage_runs
from keras_resnet.training.scan_state import StackedState


class _Rate:
    """A scanned drop-path rate standing in for the block's Python float.

    The block reads its rate three ways: ``if training and rate`` (true: every
    block of a scanned run drops), ``uniform >= rate`` and ``x / (1.0 - rate)``;
    the division is done in ``x``'s dtype, as a Python float would be.
    """

    def __init__(self, value):
        self.value = value

    def __bool__(self):
        return True

    def __le__(self, other):          # uniform >= rate
        return other >= self.value

    def __gt__(self, other):          # uniform < rate
        return other < self.value

    def __rsub__(self, other):        # 1.0 - rate
        return _Divisor(other - self.value)

    def __float__(self):
        raise TypeError("a scanned drop-path rate has no Python value")


class _Divisor:
    def __init__(self, value):
        self.value = value

    def __rtruediv__(self, other):
        return other / self.value.astype(other.dtype)


class ScanLayout(StackedState):
    """The compact (stacked) state of a model's scanned runs, and the step on it.

    Args:
        model: a functional ``keras.Model`` (``keras_resnet.ResNet``), built.
        optimizer: its optimizer, built on ``model.trainable_variables``, or None.

    ``enabled`` is False when the model has no run of two identical blocks; the
    engine then keeps its per-variable state.
    """

    def __init__(self, model, optimizer=None):
        self.model = model
        self.optimizer_source = optimizer
        tvars, ntvars = model.trainable_variables, model.non_trainable_variables
        t_index = {id(v): i for i, v in enumerate(tvars)}
        nt_index = {id(v): i for i, v in enumerate(ntvars)}
        self.runs = [_Run(blocks, t_index, nt_index) for blocks in stage_runs(model)]
        self.enabled = bool(self.runs)
        in_runs_t = {i for r in self.runs for col in r.t_columns for i in col}
        in_runs_nt = {i for r in self.runs for col in r.nt_columns for i in col}
        self.rest_t = [i for i in range(len(tvars)) if i not in in_runs_t]
        self.rest_nt = [i for i in range(len(ntvars)) if i not in in_runs_nt]
        self.rest_t_vars = [tvars[i] for i in self.rest_t]
        self.rest_nt_vars = [ntvars[i] for i in self.rest_nt]
        self._heads = {id(r.blocks[0]): k for k, r in enumerate(self.runs)}
        self._skipped = {id(b) for r in self.runs for b in r.blocks[1:]}
        self.compact_variables = None
        self.optimizer = None
        if optimizer is not None and self.enabled:
            self._build_optimizer(optimizer)

    # -- describing ---------------------------------------------------------------------
    def describe(self):
        """``[(first block name, number of blocks), ...]`` of the scanned runs."""
        return [(r.template.name, len(r.blocks)) for r in self.runs]

    # -- the forward pass ------------------------------------------------------------------
    def forward(self, trainable, non_trainable, inputs, training=True):
        """The model's output and its new non-trainable values, on compact values."""
        from keras.src.models.functional import operation_fn as with_context

        n_t, n_nt = len(self.rest_t), len(self.rest_nt)
        stacked_t, stacked_nt = trainable[n_t:], non_trainable[n_nt:]
        t_at, nt_at = [], []
        for r in self.runs:
            t_at.append(stacked_t[:len(r.t_vars)])
            stacked_t = stacked_t[len(r.t_vars):]
            nt_at.append(stacked_nt[:len(r.nt_vars)])
            stacked_nt = stacked_nt[len(r.nt_vars):]
        new_nt = [None] * len(self.runs)

        def operation(op):
            k = self._heads.get(id(op))
            if k is not None:
                def scanned(x, *args, **kwargs):
                    y, new_nt[k] = self._scan(self.runs[k], x, t_at[k], nt_at[k], training)
                    return y
                return scanned
            if id(op) in self._skipped:
                return lambda x, *args, **kwargs: x
            return with_context(op, training=training)

        mapping = list(zip(self.rest_t_vars, trainable[:n_t])) + \
            list(zip(self.rest_nt_vars, non_trainable[:n_nt]))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            x = self.model._standardize_inputs(inputs)
            outputs = self.model._run_through_graph(x, operation_fn=operation)
        if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
            outputs = outputs[0]
        rest = []
        for v, old in zip(self.rest_nt_vars, non_trainable[:n_nt]):
            new = scope.get_current_value(v)
            rest.append(old if new is None else new)
        return outputs, rest + [v for run in new_nt for v in run]

    @staticmethod
    def _scan(run, x, stacked_t, stacked_nt, training):
        import jax

        template = run.template

        def body(carry, xs):
            t, nt, rate = xs
            mapping = list(zip(run.t_vars, t)) + list(zip(run.nt_vars, nt))
            kept = template.drop_path_rate
            if run.dropping:
                template.drop_path_rate = _Rate(rate)
            try:
                with keras.StatelessScope(state_mapping=mapping) as scope:
                    y = template(carry, training=training)
            finally:
                template.drop_path_rate = kept
            updated = []
            for v, old in zip(run.nt_vars, nt):
                new = scope.get_current_value(v)
                updated.append(old if new is None else new)
            return y, updated

        y, new_nt = jax.lax.scan(body, x, (list(stacked_t), list(stacked_nt), run.rates))
        return y, list(new_nt)


def scan_layout(model, optimizer, unroll=False):
    """The :class:`ScanLayout` the JAX engine steps with, or None (unrolled).

    None under ``unroll=True``, for models with no run of identical blocks, and
    for optimizers this cannot mirror (wrapped ones, such as loss scaling).
    """
    if unroll or keras.backend.backend() != "jax":
        return None
    if optimizer is not None and not hasattr(optimizer, "add_variable_from_reference"):
        return None
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return None
    layout = ScanLayout(model, optimizer)
    return layout if layout.enabled else None
