"""Random masks under tf.distribute: one draw per replica.

Used by the blocks' stochastic depth, the dropout skip function and the dropout
of Wide ResNets. Under other backends, and with one replica, the masks are
Keras's own draws. TensorFlow is imported only under the TensorFlow backend.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_resnet.building import PACKAGE

# -- random masks under tf.distribute ---------------------------------------------------
#
# Under a tf.distribute strategy every replica runs the same step with the same
# (mirrored) seed-generator state, so Keras's random ops would draw the same mask on
# every replica: with identical inputs, replicas would drop the same examples. The
# replica id is folded into the seed (TensorFlow's own stateless_fold_in) so that each
# replica draws its own mask. With one replica, and on other backends (JAX with
# keras.distribution draws one mask over the global batch), masks are drawn exactly as
# before. The seed generators stay ordinary variables, so a resumed run continues
# the same streams.


def replica_seed(seed_generator):
    """The next seed of ``seed_generator`` with the replica id folded in, or None.

    None where nothing needs folding (not TensorFlow, or one replica in sync): the
    caller then draws with ``seed=seed_generator`` as usual. Otherwise a (2,) int32
    seed for TensorFlow's stateless random ops, distinct per replica.
    """
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    seed = tf.random.experimental.stateless_fold_in(
        tf.cast(seed_generator.next(), "int64"), context.replica_id_in_sync_group)
    # int32, as Keras casts its seeds (XLA's stateless ops take int32 seeds).
    return tf.cast(tf.math.floormod(seed, tf.int32.max - 1), "int32")


@keras.saving.register_keras_serializable(package=PACKAGE, name="ReplicaDropout")
class _ReplicaDropout(keras.layers.Dropout):
    """``keras.layers.Dropout`` that draws its own mask on every tf.distribute replica.

    Same name, variables and config as the Keras layer; see :func:`replica_seed`.
    """

    def call(self, inputs, training=False):
        seed = replica_seed(self.seed_generator) if training and self.rate > 0 else None
        if seed is None:
            return super().call(inputs, training=training)
        import tensorflow as tf

        return tf.nn.experimental.stateless_dropout(inputs, rate=self.rate, seed=seed,
                                                    noise_shape=self.noise_shape)


def keep_mask(x, rate, seed_generator):
    """Per-example Bernoulli(1 - ``rate``) mask, broadcastable to the 4-D ``x``; one per replica.

    Drawn from ``seed_generator`` (a ``keras.random.SeedGenerator``), with the
    replica id folded in under a tf.distribute strategy (:func:`replica_seed`).
    """
    shape = (ops.shape(x)[0], 1, 1, 1)
    seed = replica_seed(seed_generator)
    if seed is None:
        keep = keras.random.uniform(shape, seed=seed_generator) >= rate
    else:
        import tensorflow as tf

        keep = tf.random.stateless_uniform(shape, seed=seed) >= rate
    return ops.cast(keep, x.dtype)
