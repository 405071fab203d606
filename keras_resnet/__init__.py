"""keras_resnet: residual networks of the literature as Keras 3 models.

>>> import keras_resnet
>>> model = keras_resnet.ResNet(depth=56, preact=True)
"""

from keras_resnet import layers, specs
from keras_resnet.flops import flops
from keras_resnet.models import ResNet, WideResNet

__version__ = "0.1.0"
__all__ = ["ResNet", "WideResNet", "flops", "layers", "specs", "__version__"]
