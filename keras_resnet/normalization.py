"""BatchNormalization on TensorFlow's fused kernel, the same layer everywhere else.

:class:`BatchNorm` is every BatchNorm of the package's networks (blocks, stem,
``post_bn``); :func:`set_fused` turns the fused kernel off (or on) across a model.
Uses only ``keras``; TensorFlow is imported only under the TensorFlow backend.
"""

from __future__ import annotations

import keras

from keras_resnet.building import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` on TensorFlow's fused kernel where it applies.

    The same arguments, variables, defaults and results (to float rounding) as
    Keras's layer; under TensorFlow, 4-D channels-last inputs without a mask,
    renormalisation or cross-replica synchronisation go through the fused
    ``FusedBatchNormV3`` op (forward and gradient), everything else through
    Keras's own ``call``. Why: Keras 3's BatchNormalization computes the moments
    and the normalisation as separate ops on TensorFlow; on the 2-core
    development machine (oneDNN on) its forward and backward pass over a
    128 x 32 x 32 x 16 batch took 10.6 ms against 3.6 ms fused, while the 3x3
    convolution next to it took 13.6 ms, so it was most of a basic block's time.

    The moving statistics are updated as Keras does: with the *biased* batch
    variance (the fused kernel's variance output is Bessel-corrected, which is
    undone here), ``moving = moving * momentum + batch * (1 - momentum)``.

    Args:
        fused: bool, use the fused kernel where it applies (default True);
            False always runs Keras's own ``call`` (to compare the two, or where
            an export or converter needs Keras's ops). The attribute ``fused``
            can be changed after construction; :func:`set_fused` sets it on every
            BatchNorm of a model.
        **kwargs: the arguments of ``keras.layers.BatchNormalization``.

    Example:

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(8, 4, 4, 3)).astype("float32")
    >>> ours, theirs = BatchNorm(), keras.layers.BatchNormalization()
    >>> a, b = ours(x, training=True), theirs(x, training=True)
    >>> bool(np.allclose(a, b, atol=1e-5)), bool(np.allclose(ours.moving_variance,
    ...                                                      theirs.moving_variance))
    (True, True)
    """

    def __init__(self, *args, fused=True, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(fused, bool):
            raise TypeError(f"Argument `fused` must be a bool (True or False); received "
                            f"{fused!r} of type {type(fused).__name__}.")
        self.fused = fused
        # The JAX kernel switch (keras_resnet.normalization_jax.use_jax_kernel): an
        # attribute of the layer object, not of its configuration or saved file.
        self.jax_kernel = False

    def _fusable(self, inputs, mask):
        return (self.fused and keras.backend.backend() == "tensorflow" and mask is None
                and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and self.center and self.scale and not self.renorm
                and not self.synchronized)

    def call(self, inputs, training=None, mask=None):
        if self.jax_kernel and keras.backend.backend() == "jax":
            # Opt-in (keras_resnet.normalization_jax.use_jax_kernel): one-pass statistics
            # and a custom backward pass under JAX.
            from keras_resnet import normalization_jax

            if normalization_jax.applies(self, inputs, mask):
                return normalization_jax.layer_call(self, inputs, training)
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.convert_to_tensor(inputs)
        if x.dtype not in (tf.float16, tf.bfloat16, tf.float32):
            x = tf.cast(x, tf.float32)
        gamma = tf.cast(self.gamma.value, tf.float32)
        beta = tf.cast(self.beta.value, tf.float32)
        if training and self.trainable:
            empty = tf.constant([], tf.float32)
            y, mean, variance = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=empty, variance=empty,
                epsilon=self.epsilon, data_format="NHWC", is_training=True)[:3]
            count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
            variance = variance * tf.maximum(count - 1.0, 0.0) / tf.maximum(count, 1.0)
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        else:
            y = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta,
                mean=tf.cast(self.moving_mean.value, tf.float32),
                variance=tf.cast(self.moving_variance.value, tf.float32),
                epsilon=self.epsilon, data_format="NHWC", is_training=False)[0]
        return tf.cast(y, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config["fused"] = self.fused
        return config


def set_fused(model, fused):
    """Set ``fused`` on every :class:`BatchNorm` of ``model`` (blocks' own included).

    ``set_fused(model, False)`` makes the whole network run Keras's unfused
    BatchNormalization (same variables and results to float rounding).
    Returns the number of BatchNorm layers changed.

    Example:

    >>> import keras_resnet
    >>> model = keras_resnet.ResNet(8, input_shape=(8, 8, 3))
    >>> set_fused(model, False)
    7
    """
    if not isinstance(fused, bool):
        raise TypeError(f"Argument `fused` must be a bool (True or False); received "
                        f"{fused!r} of type {type(fused).__name__}.")
    # Keras has no public recursive walk over nested layers; _flatten_layers is the one
    # every Keras Model uses for its own bookkeeping.
    count = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, BatchNorm):
            layer.fused = fused
            count += 1
    return count
