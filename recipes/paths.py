"""Paths through a trained ResNet by length and the gradient they carry (Veit et al. 2016, Fig. 6).

    python recipes/paths.py --model saved_models/demo/model.keras --dataset digits --out reports/resnet20

Every flag: ``python recipes/paths.py --help``. The logic lives in
:mod:`keras_resnet.analysis` (the command line in
:mod:`keras_resnet.cli.analyze`; also ``keras-resnet analyze paths``).
"""

import sys

from keras_resnet.cli.analyze import main  # imports neither Keras nor TensorFlow

if __name__ == "__main__":
    sys.exit(main("paths"))
