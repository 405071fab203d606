"""Benchmark exports: batch-1 inference latency and size of every format, side by side.

    python recipes/benchmark.py --inference                     # ResNet-20 (32x32) and ResNet-50 (224x224)
    python recipes/benchmark.py --inference --models resnet20 --json results.json

The logic lives in :mod:`keras_resnet.benchmark`.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from keras_resnet.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
