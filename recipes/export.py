"""Export a trained .keras model: SavedModel, TFLite (+ quantized variants) and metadata.json.

    python recipes/export.py saved_models/digits_resnet20/model.keras --out /tmp/digits \
        --quantize float16 --quantize int8

The metadata.json beside the .keras file gives the preprocessing and class
names; int8 calibrates on the dataset it names or on ``--calibration-dir``.
The logic lives in :func:`keras_resnet.serving.export_file`.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from keras_resnet.cli.serve import export_main as main

if __name__ == "__main__":
    sys.exit(main())
