"""Benchmarks: training throughput, export inference latency, build time, compile time and memory.

    python recipes/benchmark.py --train --model resnet56_cifar --compare fit,torch
    python recipes/benchmark.py --train --model resnet50 --batch-size 16 --compare fit,fit-keras-applications
    python recipes/benchmark.py --train --depths 20,56,110,164,1001,1202
    python recipes/benchmark.py --inference                     # ResNet-20 (32x32) and ResNet-50 (224x224)
    python recipes/benchmark.py --build
    python recipes/benchmark.py --compile --depths 164,1001 --modes scan,scan-remat   # JAX

The logic lives in :mod:`keras_resnet.bench`.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")   # see keras_resnet/training/environment.py
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from keras_resnet.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
