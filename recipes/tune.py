"""Search ResNet width and depth with KerasTuner, every trial trained by the package's recipe.

    python recipes/tune.py --dataset digits --max-trials 12 --max-macs 2M
    python recipes/tune.py --dataset cifar10 --tuner hyperband --epochs 30 --max-params 1M

Every flag: ``python recipes/tune.py --help``. The logic lives in
:mod:`keras_resnet.tuning`.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from keras_resnet.tuning.cli import main  # noqa: E402  (imports neither keras nor TensorFlow)

if __name__ == "__main__":
    sys.exit(main())
