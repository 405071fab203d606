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
"""

from __future__ import annotations

import keras
import numpy as np

# Configuration keys that may differ between blocks of one scanned run: the name,
# the seed of the block's own random draws, its kernel initializer (each block
# draws its own kernels at build time) and the drop-path rate (a scanned input).
_PER_BLOCK_KEYS = ("name", "seed", "kernel_initializer", "drop_path_rate")


def _unique(variables):
    seen, out = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def _relative(block, variable):
    return variable.path.replace(block.name, "<block>")


def _signature(block):
    """What must be equal for two consecutive blocks to share one compiled body."""
    config = {k: v for k, v in block.get_config().items() if k not in _PER_BLOCK_KEYS}
    variables = tuple((_relative(block, v), tuple(v.shape), str(v.dtype), v.trainable)
                      for v in _unique(block.variables))
    return (type(block), repr(sorted(config.items())), bool(block.drop_path_rate),
            getattr(block, "_shortcut_kind", None), variables,
            getattr(block.call, "__func__", block.call).__qualname__)


def _is_block(layer):
    # The residual units (ResidualBlock, BottleneckBlock and their subclasses):
    # recognised by what scanning relies on, their branch and their drop-path rate.
    return hasattr(layer, "branch_convs") and hasattr(layer, "drop_path_rate")


def _only_input_from(block, previous):
    """True when ``block`` is called once, on ``previous``'s only output, and nothing
    else reads that output."""
    nodes = block._inbound_nodes
    if len(nodes) != 1 or len(previous._inbound_nodes) != 1:
        return False
    inputs = nodes[0].input_tensors
    if len(inputs) != 1 or inputs[0]._keras_history.operation is not previous:
        return False
    return len(previous._outbound_nodes) == 1


def stage_runs(model):
    """The runs of consecutive, identically configured blocks of ``model`` (lists, >= 2).

    A block joins the run of the block before it when it reads that block's
    output and nothing else does, has the same configuration (see
    ``_PER_BLOCK_KEYS`` for what may differ), the same variables, and keeps the
    shape of its input (so the scan's carry keeps its shape).

    Example:

    >>> import keras_resnet
    >>> m = keras_resnet.ResNet(20, input_shape=(32, 32, 3), classes=10)
    >>> [[b.name for b in run] for run in stage_runs(m)][1]
    ['stage2_block2', 'stage2_block3']
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_run_through_graph"):
        return []
    outputs = {id(t) for t in model.outputs}
    runs, current = [], []
    previous = None
    for layer in model.layers:
        if not _is_block(layer) or len(layer._inbound_nodes) != 1:
            previous, current = None, _close(runs, current)
            continue
        node = layer._inbound_nodes[0]
        same_shape = (tuple(node.input_tensors[0].shape) == tuple(node.output_tensors[0].shape)
                      and len(node.output_tensors) == 1)
        if not same_shape:
            previous, current = layer, _close(runs, current)
            continue
        if (current and previous is current[-1] and _only_input_from(layer, previous)
                and id(previous.output) not in outputs
                and _signature(layer) == _signature(current[0])):
            current.append(layer)
        else:
            current = _close(runs, current)
            current = [layer]
        previous = layer
    _close(runs, current)
    return runs


def _close(runs, current):
    if len(current) >= 2:
        runs.append(current)
    return []


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


class _Run:
    """One scanned run: its blocks, their variables' positions in the model's lists."""

    def __init__(self, blocks, t_index, nt_index):
        self.blocks = blocks
        self.template = blocks[0]
        self.t_vars = _unique(self.template.trainable_variables)
        self.nt_vars = _unique(self.template.non_trainable_variables)
        # columns[j][b]: the model index of variable j of block b.
        self.t_columns = [[t_index[id(v)] for v in _unique(b.trainable_variables)]
                          for b in blocks]
        self.t_columns = [list(c) for c in zip(*self.t_columns)]
        self.nt_columns = [[nt_index[id(v)] for v in _unique(b.non_trainable_variables)]
                           for b in blocks]
        self.nt_columns = [list(c) for c in zip(*self.nt_columns)]
        self.rates = np.asarray([b.drop_path_rate for b in blocks], "float32")
        self.dropping = bool(self.template.drop_path_rate)


class ScanLayout:
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
