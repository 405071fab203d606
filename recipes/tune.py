"""Search ResNet width and depth with KerasTuner, every trial trained by the package's recipe.

    python recipes/tune.py --dataset digits --max-trials 12 --max-macs 2M
    python recipes/tune.py --dataset cifar10 --tuner hyperband --epochs 30 --max-params 1M

Every flag: ``python recipes/tune.py --help``. The logic lives in
:mod:`keras_resnet.tuning` (the command line in
:mod:`keras_resnet.cli.tune`; also ``keras-resnet tune``).
"""

import sys

from keras_resnet.cli.tune import main  # imports neither Keras nor TensorFlow

if __name__ == "__main__":
    sys.exit(main())
