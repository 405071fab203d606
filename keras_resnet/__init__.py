"""keras_resnet: residual networks of the literature as Keras 3 models.

>>> import keras_resnet
>>> model = keras_resnet.ResNet(depth=56, preact=True)

``import keras_resnet`` is cheap: it imports neither Keras nor a backend. The
names below load their module on first use (PEP 562), so command lines and
light modules (``keras_resnet.specs``, ``keras_resnet.architecture``,
``keras_resnet.counting``) answer without TensorFlow. The custom layers register
with Keras (for ``keras.saving.load_model``) when :mod:`keras_resnet.layers` is
imported: by any builder, by ``import keras_resnet.layers``, or by
``import keras_resnet`` itself when Keras is already imported.
"""

import sys

__version__ = "0.1.0"
__all__ = ["ResNet", "WideResNet", "features", "flops", "freeze", "from_keras_applications",
           "layers", "specs", "__version__"]

_SUBMODULES = ("architecture", "backbone", "blocks", "building", "convert", "counting", "layers",
               "models", "normalization", "replicas", "specs", "stem", "weights", "zoo")


def __getattr__(name):
    # Each branch imports what it names; the import system caches the modules.
    if name in ("ResNet", "WideResNet"):
        from keras_resnet import models

        value = getattr(models, name)
    elif name in ("features", "freeze"):
        from keras_resnet import backbone

        value = getattr(backbone, name)
    elif name == "flops":
        from keras_resnet.counting import flops as value
    elif name == "from_keras_applications":
        from keras_resnet.convert import from_keras_applications as value
    elif name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))


if "keras" in sys.modules:  # Keras is loaded already: registering the layers is cheap
    from keras_resnet import layers  # noqa: F401
