"""Input data: scikit-learn's bundled digits, TFDS datasets, image folders, synthetic.

Every loader yields raw uint8 RGB images; :mod:`keras_resnet.preprocessing`
turns them into network inputs.
"""

from __future__ import annotations

import numpy as np

DIGITS_CLASSES = [str(i) for i in range(10)]


def load_digits(seed=0, test_fraction=0.2):
    """scikit-learn's 1,797 handwritten digits as uint8 RGB 8x8 images.

    Returns ``(x_train, y_train), (x_test, y_test)`` with a fixed, stratified
    split (``seed``). Pixel values 0..16 are scaled to 0..255 and the gray
    channel is repeated three times.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    digits = sk_load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(images[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels)
    return (x_train, y_train), (x_test, y_test)
