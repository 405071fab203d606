"""He et al. 2016 (Identity Mappings), Tables 1 and 2: one model per row, one recipe.

    python recipes/identity_mappings.py --table skips --depth 110 --gpus 1   # Table 1 (+ highway)
    python recipes/identity_mappings.py --table units --depth 110,164        # Table 2
    python recipes/identity_mappings.py --table units --dataset digits       # small, on a CPU

Every flag: ``python recipes/identity_mappings.py --help``. The logic lives in
:mod:`keras_resnet.experiments` (the command line in
:mod:`keras_resnet.cli.experiment`; also ``keras-resnet experiment identity_mappings``).
"""

import sys

from keras_resnet.cli.experiment import main  # imports neither Keras nor TensorFlow

if __name__ == "__main__":
    sys.exit(main("identity_mappings"))
