"""He et al. 2016 (Identity Mappings), Tables 1 and 2: one model per row, one recipe.

    python recipes/identity_mappings.py --table skips --depth 110 --gpus 1   # Table 1 (+ highway)
    python recipes/identity_mappings.py --table units --depth 110,164        # Table 2
    python recipes/identity_mappings.py --table units --dataset digits       # small, on a CPU

Every flag: ``python recipes/identity_mappings.py --help``. The logic lives in
:mod:`keras_resnet.experiments`.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from keras_resnet.experiments.cli import main  # noqa: E402  (imports neither keras nor TensorFlow)

if __name__ == "__main__":
    sys.exit(main("identity_mappings"))
