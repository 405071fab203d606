"""Shattered gradients of feed-forward nets and ResNets at initialisation (Balduzzi et al. 2017).

    python recipes/shattered_gradients.py --out reports/shattered

Every flag: ``python recipes/shattered_gradients.py --help``. The logic lives in
:mod:`keras_resnet.analysis` (the command line in
:mod:`keras_resnet.cli.analyze`; also ``keras-resnet analyze shattered_gradients``).
"""

import sys

from keras_resnet.cli.analyze import main  # imports neither Keras nor TensorFlow

if __name__ == "__main__":
    sys.exit(main("shattered_gradients"))
