"""The network's first layer: the stem convolution, its BatchNorm and ReLU, the max-pool."""

from __future__ import annotations

import keras
from keras import ops

from keras_resnet import specs
from keras_resnet.architecture import BN_EPSILON, BN_MOMENTUM
from keras_resnet.validation import check_choice, check_int
from keras_resnet.building import (PACKAGE, DeferredBuild, conv_padding, kernel_initializer_for,
                                   pad_spatial, resolve_data_format)
from keras_resnet.normalization import BatchNorm


@keras.saving.register_keras_serializable(package=PACKAGE)
class Stem(DeferredBuild, keras.layers.Layer):
    """The network's first convolution, with BN/ReLU and max-pool per family.

    CIFAR: a 3x3 convolution. ImageNet: a 7x7/2 convolution followed by a 3x3/2
    max-pool (zero padding of 1, as keras.applications does). ``norm`` adds the
    BatchNorm and ``activation`` the ReLU after the convolution (both off for
    full pre-activation nets, whose first block normalises its input).
    """

    def __init__(self, filters, family="cifar", *, norm=True, activation=True,
                 use_bias=False, data_format=None, bn_momentum=BN_MOMENTUM,
                 bn_epsilon=BN_EPSILON, kernel_initializer="he_normal",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_int("filters", filters)
        self.family = check_choice("family", family, specs.FAMILIES)
        self.norm, self.activation, self.use_bias = bool(norm), bool(activation), bool(use_bias)
        self.data_format = resolve_data_format(data_format)
        self.bn_momentum, self.bn_epsilon = float(bn_momentum), float(bn_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self._channel_axis = -1 if self.data_format == "channels_last" else 1
        self._kernel, self._stride = (3, 1) if family == "cifar" else (7, 2)
        self.conv = keras.layers.Conv2D(
            filters, self._kernel, strides=self._stride, padding=conv_padding(self._stride),
            use_bias=self.use_bias,
            data_format=self.data_format,
            kernel_initializer=kernel_initializer_for(self.kernel_initializer,
                                                      f"{self.name}_conv"),
            kernel_regularizer=self.kernel_regularizer, name=f"{self.name}_conv",
            dtype=self.dtype_policy)
        self.bn = (BatchNorm(
            axis=self._channel_axis, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
            name=f"{self.name}_bn", dtype=self.dtype_policy) if self.norm else None)
        self.pool = (keras.layers.MaxPooling2D(3, 2, data_format=self.data_format,
                                               name=f"{self.name}_pool", dtype=self.dtype_policy)
                     if family == "imagenet" else None)

    def _hw(self, shape):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis in self._hw(shape):
            d = shape[axis]
            if d is not None:
                d = (d + 2 * (self._kernel // 2) - self._kernel) // self._stride + 1
                if self.pool is not None:
                    d = (d + 2 - 3) // 2 + 1
            shape[axis] = d
        shape[self._channel_axis] = self.filters
        return tuple(shape)

    def build(self, input_shape):
        shape = list(input_shape)
        pad = 0 if self.conv.padding == "same" else self._kernel // 2
        for axis in self._hw(shape):
            shape[axis] = None if shape[axis] is None else shape[axis] + 2 * pad
        self.conv.build(tuple(shape))
        out = self.conv.compute_output_shape(tuple(shape))
        if self.bn is not None:
            self.bn.build(out)
        if self.pool is not None:
            self.pool.build(out)
        self.built = True

    def call(self, inputs, training=None):
        same = self.conv.padding == "same"
        x = self.conv(inputs if same else pad_spatial(inputs, self._kernel // 2, self.data_format))
        if self.bn is not None:
            x = self.bn(x, training=training)
        if self.activation:
            x = ops.relu(x)
        if self.pool is not None:
            x = self.pool(pad_spatial(x, 1, self.data_format))
        return x

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters, "family": self.family, "norm": self.norm,
            "activation": self.activation, "use_bias": self.use_bias,
            "data_format": self.data_format, "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer is not None else None,
        })
        return config
