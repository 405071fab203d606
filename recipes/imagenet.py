"""Train an ImageNet ResNet (He et al. 2015; Goyal et al. 2017) on ImageNet, image folders or synthetic data.

    python recipes/imagenet.py --gpus 8                        # ResNet-50, TFDS imagenet2012
    python recipes/imagenet.py --data-dir /data/images --gpus 8 --precision mixed_float16

Every flag: ``python recipes/imagenet.py --help``. The logic lives in
:mod:`keras_resnet.training` (the command line in
:mod:`keras_resnet.cli.train`; also ``keras-resnet train imagenet``).
"""

import sys

from keras_resnet.cli.train import main  # imports neither Keras nor TensorFlow

if __name__ == "__main__":
    sys.exit(main("imagenet"))
