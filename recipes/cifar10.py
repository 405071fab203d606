"""Train a CIFAR ResNet (He et al. 2015, sec. 4.2) on CIFAR-10/100, the digits or synthetic data.

    python recipes/cifar10.py --depth 110             # the paper's ResNet-110 recipe
    python recipes/cifar10.py --dataset digits        # `make demo`: ResNet-20 on the digits

Every flag: ``python recipes/cifar10.py --help``. The logic lives in
:mod:`keras_resnet.training` (the command line in
:mod:`keras_resnet.cli.train`; also ``keras-resnet train cifar10``).
"""

import sys

from keras_resnet.cli.train import main  # imports neither Keras nor TensorFlow

if __name__ == "__main__":
    sys.exit(main("cifar10"))
