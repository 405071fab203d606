"""The compact state of scanned stages: per-block values stacked and back, and the
optimizer twin on the stacked variables.

:class:`StackedState` is a mixin of :class:`~keras_resnet.training.scan.ScanLayout`.
The compact order is the variables outside any scanned run (model order), then
for each run one array per variable of its template block, stacked along a new
leading block axis. ``columns`` says which model indices each compact variable
holds; :meth:`StackedState.pack` and :meth:`StackedState.unpack` convert values
between the two orders. The optimizer twin is a copy of the run's optimizer
built on the compact variables; its slot variables map to the original's by
the reference variable and slot name each was created for (:func:`_recorded_build`).

The mixin reads the layout's ``model``, ``runs``, ``rest_t``, ``rest_nt``,
``rest_t_vars`` and ``optimizer_source``.
"""

from __future__ import annotations

import keras
import numpy as np


class StackedState:
    """Per-variable (model order) <-> compact (stacked) values, and the optimizer twin."""

    # -- the compact order ------------------------------------------------------------------
    def columns(self, trainable=True):
        """For each compact variable, the model indices it holds (one, or one per block)."""
        rest = self.rest_t if trainable else self.rest_nt
        cols = [[i] for i in rest]
        for r in self.runs:
            cols += r.t_columns if trainable else r.nt_columns
        return cols

    def compact_mask(self, mask):
        """A per-variable flag list (model order) in compact order (e.g. the L2 mask)."""
        return [mask[col[0]] for col in self.columns(True)]

    # -- state conversion -------------------------------------------------------------------
    @staticmethod
    def _pack(values, columns, stacked_from):
        import jax.numpy as jnp

        out = []
        for k, col in enumerate(columns):
            if k < stacked_from:
                out.append(values[col[0]])
            else:
                out.append(jnp.stack([values[i] for i in col]))
        return out

    @staticmethod
    def _unpack(compact, columns, stacked_from, size):
        full = [None] * size
        for k, (value, col) in enumerate(zip(compact, columns)):
            if k < stacked_from:
                full[col[0]] = value
            else:
                host = np.asarray(value)        # one transfer, then host slices
                for b, i in enumerate(col):
                    full[i] = host[b]
        return full

    def pack(self, trainable, non_trainable):
        """Per-variable values (model order) -> compact values."""
        return (self._pack(trainable, self.columns(True), len(self.rest_t)),
                self._pack(non_trainable, self.columns(False), len(self.rest_nt)))

    def unpack(self, trainable, non_trainable):
        """Compact values -> per-variable values (model order)."""
        return (self._unpack(trainable, self.columns(True), len(self.rest_t),
                             len(self.model.trainable_variables)),
                self._unpack(non_trainable, self.columns(False), len(self.rest_nt),
                             len(self.model.non_trainable_variables)))

    def pack_state(self, state):
        """The engine's (trainable, non-trainable, optimizer) values, model order -> compact."""
        trainable, non_trainable, opt = state
        return (*self.pack(trainable, non_trainable), self.pack_optimizer(opt))

    def unpack_state(self, state):
        """Compact (trainable, non-trainable, optimizer) values -> model order."""
        trainable, non_trainable, opt = state
        return (*self.unpack(trainable, non_trainable), self.unpack_optimizer(opt))

    def pack_optimizer(self, values):
        return self._pack(values, self._opt_columns, self._opt_stacked_from)

    def unpack_optimizer(self, values):
        return self._unpack(values, self._opt_columns, self._opt_stacked_from,
                            len(self.optimizer_source.variables))

    # -- the optimizer on the compact variables -------------------------------------------
    def _build_optimizer(self, optimizer):
        tvars = self.model.trainable_variables
        compact = list(self.rest_t_vars)
        for r in self.runs:
            for j, v in enumerate(r.t_vars):
                compact.append(keras.Variable(
                    initializer="zeros", shape=(len(r.blocks),) + tuple(v.shape),
                    dtype=v.dtype, trainable=True, name=f"{v.name}_stack{j}"))
        self.compact_variables = compact
        full, full_refs = _recorded_build(optimizer, tvars)
        if [tuple(v.shape) for v in full.variables] != \
                [tuple(v.shape) for v in optimizer.variables]:
            raise ValueError("The optimizer's variables do not follow its build order; "
                             "train with --unroll.")
        twin, twin_refs = _recorded_build(optimizer, compact)
        t_pos = {id(v): i for i, v in enumerate(tvars)}
        c_pos = {id(v): i for i, v in enumerate(compact)}
        slot_of = {(t_pos[id_ref], name): k for k, (id_ref, name) in enumerate(full_refs)
                   if id_ref is not None}
        shared_full = [k for k, (id_ref, _) in enumerate(full_refs) if id_ref is None]
        shared_twin = [k for k, (id_ref, _) in enumerate(twin_refs) if id_ref is None]
        columns_t = self.columns(True)
        shared, stacked = [], []
        for k, (id_ref, name) in enumerate(twin_refs):
            if id_ref is None:
                shared.append((k, [shared_full[shared_twin.index(k)]]))
            else:
                c = c_pos[id_ref]
                cols = [slot_of[(i, name)] for i in columns_t[c]]
                (shared if c < len(self.rest_t) else stacked).append((k, cols))
        # The twin's variable order, with its per-block slots after the others.
        order = shared + stacked
        self._opt_order = [k for k, _ in order]
        self._opt_columns = [cols for _, cols in order]
        self._opt_stacked_from = len(shared)
        self.optimizer = twin

    def apply(self, opt_values, grads, trainable):
        """``optimizer.stateless_apply`` on compact values (opt values in our order)."""
        n = len(self._opt_order)
        twin_order = [None] * n
        for pos, k in enumerate(self._opt_order):
            twin_order[k] = opt_values[pos]
        trainable, new = self.optimizer.stateless_apply(twin_order, grads, trainable)
        return trainable, [new[k] for k in self._opt_order]


def _recorded_build(optimizer, variables):
    """A fresh copy of ``optimizer`` built on ``variables``, and for each of its
    variables ``(id(reference variable), slot name)`` or ``(None, None)``."""
    config = optimizer.get_config()
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule) or (
            callable(schedule) and not isinstance(schedule, keras.Variable)):
        config["learning_rate"] = schedule
    twin = optimizer.__class__.from_config(config)
    created = {}
    original = twin.add_variable_from_reference

    def recording(reference_variable, name=None, *args, **kwargs):
        v = original(reference_variable, name, *args, **kwargs)
        created[id(v)] = (id(reference_variable), name)
        return v

    twin.add_variable_from_reference = recording
    try:
        twin.build(variables)
    finally:
        del twin.add_variable_from_reference
    return twin, [created.get(id(v), (None, None)) for v in twin.variables]
