"""``python -m keras_resnet COMMAND``: the ``keras-resnet`` command (:mod:`keras_resnet.cli.main`)."""

import sys

from keras_resnet.cli.main import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m keras_resnet"))
