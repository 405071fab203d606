"""``python -m keras_resnet.data``: see :func:`keras_resnet.data.cli.main`."""

from keras_resnet.data.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
