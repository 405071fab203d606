"""Vector-Jacobian products on the current Keras backend.

``keras.ops`` has no gradient operation, so the analyses that need one
(gradients by path length, gradients with respect to the input) go through
this one function, written once per backend: ``tf.GradientTape`` under
TensorFlow, ``jax.vjp`` under JAX, ``torch.autograd`` under PyTorch.
"""

from __future__ import annotations

import keras
from keras import ops


def vjp(fn, x):
    """Return ``(fn(x), pullback)``, where ``pullback(g)`` is ``g`` times the Jacobian of fn at x.

    ``fn`` may return one tensor or a tuple of tensors; ``pullback`` then takes a
    cotangent of the same structure (None for a part that gets no gradient).
    The pullback can be called many times.

    Example:

    >>> import numpy as np
    >>> from keras import ops
    >>> y, pullback = vjp(lambda t: ops.square(t), np.array([1.0, 3.0], "float32"))
    >>> ops.convert_to_numpy(pullback(np.ones(2, "float32"))).tolist()
    [2.0, 6.0]
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(x)
            y = fn(x)

        def pullback(g):
            if isinstance(y, (tuple, list)):
                pairs = [(t, c) for t, c in zip(y, g) if c is not None]
                return tape.gradient([t for t, _ in pairs], x,
                                     output_gradients=[c for _, c in pairs])
            return tape.gradient(y, x, output_gradients=g)

        return y, pullback
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        y, jax_pullback = jax.vjp(fn, jnp.asarray(x))

        def pullback(g):
            if isinstance(y, (tuple, list)):
                g = type(y)(jnp.zeros_like(t) if c is None else jnp.asarray(c)
                            for t, c in zip(y, g))
            return jax_pullback(g)[0]

        return y, pullback
    if backend == "torch":
        import torch

        x = ops.convert_to_tensor(x).detach().requires_grad_(True)
        y = fn(x)

        def pullback(g):
            if isinstance(y, (tuple, list)):
                pairs = [(t, ops.convert_to_tensor(c)) for t, c in zip(y, g) if c is not None]
                return torch.autograd.grad([t for t, _ in pairs], x,
                                           grad_outputs=[c for _, c in pairs],
                                           retain_graph=True)[0]
            return torch.autograd.grad(y, x, grad_outputs=ops.convert_to_tensor(g),
                                       retain_graph=True)[0]

        return y, pullback
    raise NotImplementedError(f"Gradients are not implemented for the {backend!r} backend; "
                              "use tensorflow, jax or torch.")


def grad(fn, x):
    """The gradient of the scalar ``fn(x)`` with respect to ``x``."""
    y, pullback = vjp(fn, x)
    return pullback(ops.ones_like(y))
