"""Rematerialisation per residual block: keep block inputs, recompute the rest.

The activations saved for the backward pass grow with depth (a 1,000-layer
network at batch 128 keeps tens of GB). With rematerialisation each block
stores only its input; its inner activations are recomputed during the
backward pass, about one extra forward pass of compute.

Why not ``keras.RematScope``: it wraps a layer's ``call`` so that
``training`` becomes a traced argument (the blocks branch on it in Python,
which fails), and BatchNorm's moving-statistics updates inside a
``jax.checkpoint`` would leak tracers. Here each block runs its own
``stateless_call`` inside ``jax.checkpoint`` with every input and every state
update explicit. JAX backend only (TensorFlow's ``tf.recompute_grad`` would
apply the BatchNorm updates twice, once more while recomputing).
"""

from __future__ import annotations

import keras


# What each block keeps for its backward pass besides its input and variables:
# "nothing" recomputes the whole block (the least memory, about one more forward
# pass); "convs" keeps every convolution's output and recomputes only BatchNorm,
# ReLU and the additions (more memory, less recomputation). Measured on the
# pre-activation ResNet-1001 step (docs/scale.md), hence the default.
POLICIES = ("nothing", "convs")


def _policy(name):
    import jax

    if name == "nothing":
        return None     # jax.checkpoint's default: save nothing but the arguments

    def save_convolutions(primitive, *args, **params):
        return primitive is jax.lax.conv_general_dilated_p

    return save_convolutions


def rematerialize_blocks(model, policy="nothing"):
    """Make every residual block of ``model`` recompute its activations in the backward pass.

    Returns the number of blocks changed. Outputs and gradients are unchanged
    (up to floating-point reassociation); only memory and time differ. Under
    the JAX engine's scanned stages (:mod:`keras_resnet.training.scan`) the
    recomputation happens inside the scan body, one block at a time.

    Args:
        model: a ``keras_resnet`` model.
        policy: ``"nothing"`` (recompute the whole block) or ``"convs"`` (keep
            the convolutions' outputs); see ``POLICIES``.
    """
    if policy not in POLICIES:
        raise ValueError(f"Invalid value for argument `policy`: received {policy!r}; "
                         f"expected one of {POLICIES}.")
    if keras.backend.backend() != "jax":
        raise ValueError("Rematerialisation (--remat) runs under the JAX backend; "
                         f"Keras runs {keras.backend.backend()!r}.")
    import jax

    from keras_resnet.layers import BottleneckBlock, ResidualBlock

    saved = _policy(policy)
    changed = 0
    for layer in model.layers:
        if not isinstance(layer, (ResidualBlock, BottleneckBlock)):
            continue
        original = layer.call

        def call(inputs, training=None, _layer=layer, _call=original):
            if not training:
                return _call(inputs, training=training)
            trainable = [v.value for v in _layer.trainable_variables]
            non_trainable = [v.value for v in _layer.non_trainable_variables]

            def run(trainable, non_trainable, x):
                # The original call under the block's own variables, state returned.
                mapping = list(zip(_layer.trainable_variables, trainable)) + \
                    list(zip(_layer.non_trainable_variables, non_trainable))
                with keras.StatelessScope(state_mapping=mapping) as scope:
                    y = _call(x, training=True)
                updated = [scope.get_current_value(v) for v in _layer.non_trainable_variables]
                updated = [old if new is None else new for old, new in zip(non_trainable, updated)]
                return y, updated

            y, updated = jax.checkpoint(run, policy=saved)(trainable, non_trainable, inputs)
            for v, value in zip(_layer.non_trainable_variables, updated):
                v.assign(value)
            return y

        layer.call = call
        changed += 1
    return changed
