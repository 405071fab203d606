"""Lesion study of a trained model (Veit et al. 2016, Fig. 3-5): delete and reorder its blocks.

    python recipes/lesion.py --model saved_models/demo/model.keras --dataset digits --out reports/resnet20

Every flag: ``python recipes/lesion.py --help``. The logic lives in
:mod:`keras_resnet.analysis` (the command line in
:mod:`keras_resnet.cli.analyze`; also ``keras-resnet analyze lesion``).
"""

import sys

from keras_resnet.cli.analyze import main  # imports neither Keras nor TensorFlow

if __name__ == "__main__":
    sys.exit(main("lesion"))
