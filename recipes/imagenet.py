"""Train an ImageNet ResNet (He et al. 2015; Goyal et al. 2017) on ImageNet, image folders or synthetic data.

    python recipes/imagenet.py --gpus 8                        # ResNet-50, TFDS imagenet2012
    python recipes/imagenet.py --data-dir /data/images --gpus 8 --precision mixed_float16

Every flag: ``python recipes/imagenet.py --help``. The logic lives in
:mod:`keras_resnet.training`.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from keras_resnet.training.cli import main  # noqa: E402  (imports neither keras nor TensorFlow)

if __name__ == "__main__":
    sys.exit(main("imagenet"))
