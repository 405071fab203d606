"""Which blocks of a model scan together, and where their variables sit.

:func:`stage_runs` finds the runs of consecutive, identically configured
residual units of a functional model (the blocks of a stage after its first);
:class:`_Run` records one run's template block, its variables, and for each of
its variables the model index of every block's copy. The JAX engine's scanned
step (:mod:`keras_resnet.training.scan`) is built on these runs.
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
