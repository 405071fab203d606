"""He et al. 2015, Fig. 1 and Fig. 6: plain nets against their residual twins, one recipe.

    python recipes/degradation.py --dataset cifar10 --gpus 1     # the paper: 20, 32, 44, 56 (+110)
    python recipes/degradation.py --dataset digits --seeds 1,2,3  # on 2 CPU cores, no download

Every flag: ``python recipes/degradation.py --help``. The logic lives in
:mod:`keras_resnet.experiments` (the command line in
:mod:`keras_resnet.cli.experiment`; also ``keras-resnet experiment degradation``).
"""

import sys

from keras_resnet.cli.experiment import main  # imports neither Keras nor TensorFlow

if __name__ == "__main__":
    sys.exit(main("degradation"))
