"""Shared test configuration.

The backend is chosen by KERAS_BACKEND before keras is imported (the Makefile
runs the suite under tensorflow, then the `multibackend` tests under jax).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


def trainable_count(model):
    """Trainable parameters (Keras's count_params() also counts BN statistics)."""
    from keras_resnet.zoo import trainable_params

    return trainable_params(model)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()


def backend():
    return keras.backend.backend()


requires_tensorflow = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="needs the TensorFlow backend")
