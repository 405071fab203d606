"""Paths through a trained ResNet by length and the gradient they carry (Veit et al. 2016, Fig. 6).

    python recipes/paths.py --model saved_models/demo/model.keras --dataset digits --out reports/resnet20

Every flag: ``python recipes/paths.py --help``. The logic lives in
:mod:`keras_resnet.analysis` (the command line in :mod:`keras_resnet.analysis.cli`).
"""

import importlib.util
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)


def _cli():
    # Loaded by file path: importing keras_resnet.analysis.cli through the package
    # would import Keras and TensorFlow before the arguments are parsed, and
    # --help would take seconds. The module imports the library after parsing.
    path = os.path.join(ROOT, "keras_resnet", "analysis", "cli.py")
    spec = importlib.util.spec_from_file_location("keras_resnet_analysis_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    sys.exit(_cli().main("paths"))
