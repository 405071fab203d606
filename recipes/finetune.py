"""Fine-tune a pretrained ResNet on your own image folder, then export it with its class names.

    python recipes/finetune.py --data-dir DIR --depth 50 --weights imagenet
    python recipes/finetune.py --data-dir DIR --depth 18 --weights resnet18.safetensors

Every flag: ``python recipes/finetune.py --help``. The logic lives in
:mod:`keras_resnet.training.finetune` (the command line in
:mod:`keras_resnet.cli.finetune`; also ``keras-resnet finetune``).
"""

import sys

from keras_resnet.cli.finetune import main  # imports neither Keras nor TensorFlow

if __name__ == "__main__":
    sys.exit(main())
