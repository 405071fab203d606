"""BatchNormalization for JAX with its own backward pass: one-pass statistics, recompute.

Keras 3's BatchNormalization under JAX computes the mean and then the variance
as two dependent reductions over the input, and leaves the ReLU, the residual
addition and the backward pass to autodiff, which keeps the normalised tensor
and several intermediates for the backward pass. Here (channels-last inputs,
statistics over every axis but the last):

* the statistics are computed in float32 in one pass: E[x] and E[x^2] are two
  sibling reductions of the same input, which XLA fuses into one loop over it
  (Flax computes them the same way); variance = E[x^2] - E[x]^2, clipped at 0;
* :func:`batch_norm`, :func:`batch_norm_relu` and :func:`batch_norm_add_relu`
  are ``jax.custom_vjp`` functions whose backward pass recomputes the
  normalised input from ``x`` and the saved per-channel mean and inverse
  standard deviation, and then takes one reduction (the sums of ``dy`` and
  ``dy * x_hat`` per channel, again two sibling reductions) and one elementwise
  pass (``dx``), instead of autodiff's chain of ops;
* :func:`use_jax_kernel` makes every :class:`keras_resnet.normalization.BatchNorm`
  of a model use :func:`batch_norm` under JAX (same variables, same results to
  float rounding). It is off by default: whether it is faster is a GPU
  question (``docs/gpu.md``, ``make gpu-check``); on the CPU XLA's fusions are
  not the bottleneck.

The statistics are outputs for the moving averages only: their cotangents are
ignored (the moving statistics never enter the loss), as in Keras's layer.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _axes(x):
    return tuple(range(x.ndim - 1))


def _count(x):
    return x.size // x.shape[-1]


def moments(x):
    """Per-channel mean and biased variance of ``x`` in float32, in one pass."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=_axes(x))
    mean_square = jnp.mean(jnp.square(x32), axis=_axes(x))
    return mean, jnp.maximum(mean_square - jnp.square(mean), 0.0)


def _normalise(x, mean, inv, gamma, beta):
    return (x.astype(jnp.float32) - mean) * (inv * gamma.astype(jnp.float32)) + \
        beta.astype(jnp.float32)


def _backward(x, mean, inv, gamma, dz):
    """dx, dgamma, dbeta of the normalisation for the cotangent ``dz`` (float32)."""
    axes = _axes(x)
    x_hat = (x.astype(jnp.float32) - mean) * inv
    sum_dz = jnp.sum(dz, axis=axes)
    sum_dz_x_hat = jnp.sum(dz * x_hat, axis=axes)
    n = _count(x)
    scale = gamma.astype(jnp.float32) * inv / n
    dx = scale * (n * dz - sum_dz - x_hat * sum_dz_x_hat)
    return dx.astype(x.dtype), sum_dz_x_hat.astype(gamma.dtype), sum_dz


def _stats(x, epsilon):
    mean, variance = moments(x)
    return mean, variance, jax.lax.rsqrt(variance + epsilon)


# -- BatchNorm --------------------------------------------------------------------------
@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm(x, gamma, beta, epsilon):
    """Training-mode BatchNorm over all axes but the last: ``(y, mean, variance)``."""
    mean, variance, inv = _stats(x, epsilon)
    return _normalise(x, mean, inv, gamma, beta).astype(x.dtype), mean, variance


def _bn_fwd(x, gamma, beta, epsilon):
    mean, variance, inv = _stats(x, epsilon)
    y = _normalise(x, mean, inv, gamma, beta).astype(x.dtype)
    return (y, mean, variance), (x, mean, inv, gamma, beta)


def _bn_bwd(epsilon, residuals, cotangents):
    x, mean, inv, gamma, beta = residuals
    dy = cotangents[0].astype(jnp.float32)
    dx, dgamma, dbeta = _backward(x, mean, inv, gamma, dy)
    return dx, dgamma, dbeta.astype(beta.dtype)


batch_norm.defvjp(_bn_fwd, _bn_bwd)


# -- BatchNorm + ReLU -------------------------------------------------------------------
@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_relu(x, gamma, beta, epsilon):
    """``relu(batch_norm(x))``: ``(y, mean, variance)``; the backward pass masks by ``y > 0``."""
    mean, variance, inv = _stats(x, epsilon)
    y = jnp.maximum(_normalise(x, mean, inv, gamma, beta), 0.0).astype(x.dtype)
    return y, mean, variance


def _bnr_fwd(x, gamma, beta, epsilon):
    out = batch_norm_relu(x, gamma, beta, epsilon)
    mean, variance = out[1], out[2]
    return out, (x, out[0], mean, jax.lax.rsqrt(variance + epsilon), gamma, beta)


def _bnr_bwd(epsilon, residuals, cotangents):
    x, y, mean, inv, gamma, beta = residuals
    dz = jnp.where(y > 0, cotangents[0].astype(jnp.float32), 0.0)
    dx, dgamma, dbeta = _backward(x, mean, inv, gamma, dz)
    return dx, dgamma, dbeta.astype(beta.dtype)


batch_norm_relu.defvjp(_bnr_fwd, _bnr_bwd)


# -- BatchNorm + add + ReLU ---------------------------------------------------------------
@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def batch_norm_add_relu(x, residual, gamma, beta, epsilon):
    """``relu(batch_norm(x) + residual)``: ``(y, mean, variance)`` (post-activation units)."""
    mean, variance, inv = _stats(x, epsilon)
    z = _normalise(x, mean, inv, gamma, beta) + residual.astype(jnp.float32)
    return jnp.maximum(z, 0.0).astype(x.dtype), mean, variance


def _bnar_fwd(x, residual, gamma, beta, epsilon):
    out = batch_norm_add_relu(x, residual, gamma, beta, epsilon)
    mean, variance = out[1], out[2]
    # An empty array of the residual's dtype: residuals must be arrays, not dtypes.
    return out, (x, out[0], mean, jax.lax.rsqrt(variance + epsilon), gamma, beta,
                 jnp.zeros((0,), residual.dtype))


def _bnar_bwd(epsilon, residuals, cotangents):
    x, y, mean, inv, gamma, beta, residual_like = residuals
    dz = jnp.where(y > 0, cotangents[0].astype(jnp.float32), 0.0)
    dx, dgamma, dbeta = _backward(x, mean, inv, gamma, dz)
    return dx, dz.astype(residual_like.dtype), dgamma, dbeta.astype(beta.dtype)


batch_norm_add_relu.defvjp(_bnar_fwd, _bnar_bwd)


# -- the Keras layer's call ----------------------------------------------------------------
def applies(layer, inputs, mask=None):
    """True when :func:`layer_call` can stand in for ``layer``'s own call."""
    axis = layer.axis if isinstance(layer.axis, int) else (
        layer.axis[0] if len(layer.axis) == 1 else None)
    return (mask is None and axis in (-1, len(inputs.shape) - 1) and layer.center
            and layer.scale and not getattr(layer, "renorm", False)
            and not getattr(layer, "synchronized", False))


def layer_call(layer, inputs, training):
    """A ``keras.layers.BatchNormalization``'s call, on :func:`batch_norm` in training.

    Updates the layer's moving statistics as Keras does
    (``moving * momentum + batch * (1 - momentum)``, biased batch variance).
    """
    x = jnp.asarray(inputs)
    gamma, beta = layer.gamma.value, layer.beta.value
    if training and layer.trainable:
        y, mean, variance = batch_norm(x, gamma, beta, float(layer.epsilon))
        m = layer.momentum
        layer.moving_mean.assign(layer.moving_mean.value * m + mean * (1.0 - m))
        layer.moving_variance.assign(layer.moving_variance.value * m + variance * (1.0 - m))
    else:
        inv = jax.lax.rsqrt(layer.moving_variance.value.astype(jnp.float32) + layer.epsilon)
        y = _normalise(x, layer.moving_mean.value.astype(jnp.float32), inv, gamma, beta)
    return y.astype(layer.compute_dtype)


def use_jax_kernel(model, enabled=True):
    """Make every ``BatchNorm`` of ``model`` use :func:`batch_norm` under JAX (or not).

    Returns the number of layers changed. Same variables and saved files: the
    switch is an attribute of the layer objects, not of their configuration.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"Argument `enabled` must be a bool (True or False); received "
                        f"{enabled!r} of type {type(enabled).__name__}.")
    count = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        # keras_resnet.normalization.BatchNorm, recognised by the switch it carries
        # (importing that module here would make the two import each other).
        if hasattr(layer, "jax_kernel"):
            layer.jax_kernel = enabled
            count += 1
    return count
