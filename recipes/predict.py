"""Classify image files with an exported model (.keras, SavedModel, export dir or .tflite).

    python recipes/predict.py saved_models/digits_resnet20 seven.png four.jpg
    python recipes/predict.py saved_models/digits_resnet20/model_int8.tflite seven.png --json

Prints the top-5 classes with their probabilities. Exit codes: 0 all images
classified, 1 some image could not be read (the others are still classified),
2 bad arguments or model. The logic lives in :mod:`keras_resnet.serving.predict`.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from keras_resnet.cli.serve import predict_main as main

if __name__ == "__main__":
    sys.exit(main())
