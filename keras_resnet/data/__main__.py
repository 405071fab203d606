"""``python -m keras_resnet.data`` (also ``keras-resnet data``): see :mod:`keras_resnet.cli.data`."""

from keras_resnet.cli.data import main

if __name__ == "__main__":
    raise SystemExit(main())
