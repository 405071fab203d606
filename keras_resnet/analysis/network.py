"""A trained model as a chain of named blocks, and lesioned variants that share its weights.

Every model the builders make (:func:`keras_resnet.ResNet`,
:func:`keras_resnet.WideResNet`, and their ``.keras`` exports) is a chain at
the top level: input, stem, one node per block (``stage{s}_block{b}``),
then the head. :func:`network_chain` reads that chain back from any such model;
:func:`lesioned_model` calls the same layer objects again in another order,
or with blocks removed, so the lesioned model shares every weight of the
trained one (no copy, no retraining).
"""

from __future__ import annotations

import dataclasses
import os
import re

import keras
import numpy as np

from keras_resnet import layers as blocks_lib

BLOCK_NAME = re.compile(r"^stage(\d+)_block(\d+)$")
SHORTCUT_TEXT = {
    "identity": "identity shortcut",
    "subsample": "strided identity shortcut (subsampling)",
    "pad": "option A shortcut (subsampling plus zero-padded channels)",
    "projection": "projection shortcut (1x1 convolution)",
}


class AnalysisError(ValueError):
    """A model or data set an analysis cannot use (a ``ValueError``; recipes exit with 2)."""


@dataclasses.dataclass(frozen=True)
class BlockInfo:
    """One residual unit of a chain, as the analyses describe it."""

    name: str
    position: int             # index among the blocks, 0-based
    stage: int
    index: int                # block number inside its stage, 1-based
    input_shape: tuple
    output_shape: tuple
    shortcut: str | None      # None (plain twin), "identity", "subsample", "pad", "projection"

    @property
    def residual(self):
        return self.shortcut is not None

    @property
    def downsampling(self):
        """Whether the block changes the shape (resolution or channels)."""
        return self.input_shape != self.output_shape

    @property
    def deletable(self):
        """Residual blocks always (their shortcut stays); plain ones where shapes match."""
        return self.residual or not self.downsampling

    def lesion_text(self):
        """What deleting this block means, in words (kept in the results)."""
        if self.residual:
            text = f"residual branch removed, {SHORTCUT_TEXT[self.shortcut]} kept"
            return text + (" (downsampling block)" if self.downsampling else "")
        if self.deletable:
            return "whole block removed (plain net: input and output shapes match)"
        return (f"cannot be removed: plain block whose input {list(self.input_shape[1:])} "
                f"and output {list(self.output_shape[1:])} shapes differ")

    def as_dict(self):
        return {"name": self.name, "position": self.position, "stage": self.stage,
                "index": self.index, "input_shape": list(self.input_shape[1:]),
                "output_shape": list(self.output_shape[1:]), "shortcut": self.shortcut,
                "downsampling": self.downsampling, "deletable": self.deletable,
                "lesion": self.lesion_text()}


@dataclasses.dataclass
class Chain:
    """A model's top-level layers in order; ``blocks`` index the residual units among them."""

    model: keras.Model
    layers: list              # every layer after the input, in order
    block_positions: list     # indices into ``layers`` of the residual units
    info: list                # BlockInfo per block

    @property
    def blocks(self):
        return [self.layers[i] for i in self.block_positions]

    @property
    def residual(self):
        return all(b.residual for b in self.info)

    def layers_before_blocks(self):
        return self.layers[:self.block_positions[0]]

    def layers_after_blocks(self):
        return self.layers[self.block_positions[-1] + 1:]

    def block(self, name):
        for info in self.info:
            if info.name == name:
                return info
        raise AnalysisError(f"Invalid block name {name!r}; the model's blocks are "
                            f"{', '.join(i.name for i in self.info)}.")


def _inline(layer):
    """The chain of a nested functional model, or ``[layer]``."""
    if isinstance(layer, keras.Model) and (isinstance(layer, keras.Sequential)
                                           or hasattr(layer, "_nodes_by_depth")):
        try:
            return _chain_layers(layer)
        except AnalysisError:
            return [layer]
    return [layer]


def _chain_layers(model):
    if isinstance(model, keras.Sequential):
        return [x for layer in model.layers for x in _inline(layer)
                if not isinstance(x, keras.layers.InputLayer)]
    # The graph's nodes by depth (private to Keras, but the only record of the
    # model's own connectivity: the public `layer.input` raises as soon as a
    # layer has been called again, which is what lesioned models do).
    by_depth = getattr(model, "_nodes_by_depth", None)
    if not by_depth:
        raise AnalysisError(f"model {model.name!r} is not a functional Keras model")
    ordered = []
    previous = None
    for depth in sorted(by_depth, reverse=True):
        nodes = by_depth[depth]
        if len(nodes) != 1:
            raise AnalysisError(f"model {model.name!r} is not a chain of layers "
                                f"({len(nodes)} layers at one depth)")
        node = nodes[0]
        inputs = [t._keras_history.operation for t in node.input_tensors]
        if previous is None:
            if inputs:
                raise AnalysisError(f"model {model.name!r} does not start at its input")
        elif len(inputs) != 1 or inputs[0] is not previous:
            raise AnalysisError(f"model {model.name!r} is not a chain of layers "
                                f"(layer {node.operation.name!r} has {len(inputs)} inputs)")
        previous = node.operation
        if not isinstance(node.operation, keras.layers.InputLayer):
            ordered.extend(_inline(node.operation))
    return ordered


def network_chain(model):
    """Read a model this package built back as a :class:`Chain` of blocks.

    Raises:
        AnalysisError: ``model`` is not a chain of layers with residual units
            named ``stage{s}_block{b}`` (a model keras_resnet did not build).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Argument `model` must be a keras.Model built by keras_resnet; "
                        f"received {type(model).__name__}.")
    try:
        layers = _chain_layers(model)
    except AnalysisError as e:
        raise AnalysisError(f"Argument `model` was not built by keras_resnet: {e}.") from None
    positions, info = [], []
    shape = tuple(model.input_shape)
    for i, layer in enumerate(layers):
        out = tuple(layer.compute_output_shape(shape))
        match = BLOCK_NAME.match(layer.name)
        if isinstance(layer, blocks_lib._ResidualUnit) and match:
            info.append(BlockInfo(name=layer.name, position=len(positions),
                                  stage=int(match.group(1)), index=int(match.group(2)),
                                  input_shape=shape, output_shape=out,
                                  shortcut=layer._shortcut_kind))
            positions.append(i)
        shape = out
    if not positions:
        raise AnalysisError(f"Argument `model` ({model.name!r}) was not built by keras_resnet: "
                            "it has no residual units named stage{s}_block{b} "
                            "(keras_resnet.ResNet, keras_resnet.WideResNet).")
    return Chain(model=model, layers=layers, block_positions=positions, info=info)


class _BranchRemoved(keras.layers.Layer):
    """A residual unit with its residual branch removed: ``after_merge(shortcut term)``.

    Holds the trained block, so it uses (and shares) the block's weights.
    Lesioned models are for evaluation; they are not meant to be saved.
    """

    def __init__(self, block, **kwargs):
        super().__init__(name=f"{block.name}_branch_removed", dtype=block.dtype_policy, **kwargs)
        self.block = block
        self.built = True

    def call(self, inputs, training=None):
        short, _ = self.block.merge_terms(inputs, training=training)
        return self.block.after_merge(short, training=training)

    def compute_output_shape(self, input_shape):
        return self.block.compute_output_shape(input_shape)


def _check_names(chain, names, arg):
    known = {i.name for i in chain.info}
    if isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise AnalysisError(f"Invalid value for argument `{arg}`: {unknown[0]!r} is not a block "
                            f"of the model; its blocks are {', '.join(sorted(known))}.")
    return names


def lesioned_model(model, delete=(), order=None, *, chain=None):
    """A model made of ``model``'s own layers with blocks deleted or reordered.

    Args:
        model: a ``keras.Model`` built by keras_resnet (or loaded from its ``.keras`` file).
        delete: block names (``"stage2_block3"``, ...) to delete. A residual
            block keeps its shortcut and loses its residual branch (Veit et
            al. 2016); a plain block (``residual=False``) is removed whole,
            which only works where its input and output shapes match.
        order: None, or every block name in the order the blocks are to run
            (a permutation; blocks can only trade places with blocks of the
            same input and output shapes).
        chain: the model's :class:`Chain` if already read (saves reading it again).

    Returns:
        A functional ``keras.Model`` sharing ``model``'s weights: assigning to
        one changes the other. For evaluation only (it is not meant to be saved).

    Example:

    >>> import keras_resnet
    >>> from keras_resnet.analysis import lesioned_model
    >>> model = keras_resnet.ResNet(20, input_shape=(8, 8, 3))
    >>> lesioned = lesioned_model(model, delete=["stage1_block2"])
    >>> [layer.name for layer in lesioned.layers][2:5]
    ['stage1_block1', 'stage1_block2_branch_removed', 'stage1_block3']
    """
    chain = chain or network_chain(model)
    delete = set(_check_names(chain, delete, "delete"))
    names = [i.name for i in chain.info]
    if order is None:
        order = names
    else:
        order = _check_names(chain, order, "order")
        if sorted(order) != sorted(names):
            raise AnalysisError("Invalid value for argument `order`: expected every block name "
                                f"once ({len(names)} names); received {len(order)} names.")
    for name in delete:
        info = chain.block(name)
        if not info.deletable:
            raise AnalysisError(f"Invalid value for argument `delete`: block {name!r} "
                                f"{info.lesion_text()}.")
    by_name = {i.name: (i, chain.layers[p]) for i, p in zip(chain.info, chain.block_positions)}
    for slot, name in zip(chain.info, order):
        info = by_name[name][0]
        if (info.input_shape, info.output_shape) != (slot.input_shape, slot.output_shape):
            raise AnalysisError(f"Invalid value for argument `order`: block {name!r} (input "
                                f"{list(info.input_shape[1:])}, output {list(info.output_shape[1:])}"
                                f") cannot take the place of {slot.name!r} (input "
                                f"{list(slot.input_shape[1:])}, output "
                                f"{list(slot.output_shape[1:])}).")
    inputs = keras.Input(batch_shape=tuple(model.input_shape), dtype=model.inputs[0].dtype,
                         name="input")
    x = inputs
    for layer in chain.layers_before_blocks():
        x = layer(x)
    for name in order:
        info, layer = by_name[name]
        if name in delete:
            x = _BranchRemoved(layer)(x) if info.residual else x
        else:
            x = layer(x)
    for layer in chain.layers_after_blocks():
        x = layer(x)
    suffix = "_lesioned" if delete else ""
    suffix += "_reordered" if order != names else ""
    return keras.Model(inputs, x, name=f"{model.name}{suffix or '_copy'}")


def load_model(path):
    """Load a ``.keras`` file (or an export directory holding ``model.keras``) for analysis.

    Raises:
        AnalysisError: the path does not exist, is not a Keras model file, or
            holds a model keras_resnet did not build.
    """
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "model.keras")):
        path = os.path.join(path, "model.keras")
    if not os.path.exists(path):
        raise AnalysisError(f"Invalid value for argument `model` (--model): {path!r} does not "
                            "exist; expected a .keras file or an export directory.")
    if os.path.isdir(path):
        raise AnalysisError(f"Invalid value for argument `model` (--model): directory {path!r} "
                            "holds no model.keras.")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - any failure to read means "not a model file"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if len(reason) > 160:
            reason = reason[:157] + "..."
        raise AnalysisError(f"Invalid value for argument `model` (--model): {path!r} is not a "
                            f"Keras model file keras_resnet can read ({reason}).") from None
    network_chain(model)
    return model


def classifier_output(model):
    """``"probabilities"`` or ``"logits"`` from the model's last layer; AnalysisError if neither."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Dense):
        if activation is keras.activations.softmax:
            return "probabilities"
        if activation is keras.activations.linear:
            return "logits"
    raise AnalysisError(f"Argument `model` ({model.name!r}) must end in its classifier "
                        "(include_top=True, classifier_activation 'softmax' or None); its last "
                        f"layer is {last.name!r}.")


def check_data_fits(model, x, y, num_classes=None):
    """AnalysisError unless images ``x``, labels ``y`` (and ``num_classes``) fit the model."""
    expected = tuple(model.input_shape[1:])
    got = tuple(x.shape[1:])
    if len(expected) != len(got) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise AnalysisError(f"The data does not fit the model: its images are "
                            f"{'x'.join(map(str, got))}, the model {model.name!r} takes "
                            f"{'x'.join('?' if d is None else str(d) for d in expected)}.")
    classes = int(model.output_shape[-1])
    if num_classes is not None and int(num_classes) != classes:
        raise AnalysisError(f"The data does not fit the model: it has {num_classes} classes, "
                            f"the model {model.name!r} {classes}.")
    top = int(np.max(y)) if len(y) else 0
    if top >= classes or (len(y) and int(np.min(y)) < 0):
        raise AnalysisError(f"The data does not fit the model: its labels go up to {top}, the "
                            f"model {model.name!r} has {classes} classes.")
