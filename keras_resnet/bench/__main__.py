"""``python -m keras_resnet.bench``: the benchmarks (see ``--help``)."""

import sys

from keras_resnet.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
