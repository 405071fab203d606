"""Train a CIFAR ResNet (He et al. 2015, sec. 4.2) on CIFAR-10/100, the digits or synthetic data.

    python recipes/cifar10.py --depth 110             # the paper's ResNet-110 recipe
    python recipes/cifar10.py --dataset digits        # `make demo`: ResNet-20 on the digits

Every flag: ``python recipes/cifar10.py --help``. The logic lives in
:mod:`keras_resnet.training`.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from keras_resnet.training.cli import main  # noqa: E402  (imports neither keras nor TensorFlow)

if __name__ == "__main__":
    sys.exit(main("cifar10"))
