"""What an epoch is: the order of the examples and every random augmentation, from NumPy.

Both input pipelines (``tf.data`` and NumPy) take these from here, so they see
the same examples in the same order with the same crops and flips:

* the order of epoch ``e`` is a permutation of the split drawn from
  ``numpy.random.default_rng([seed, e, 7])`` (a further pass over the files,
  needed only when undecodable files leave an epoch short, uses
  ``[seed, e, 7, pass]``);
* the example at position ``p`` of epoch ``e`` gets :data:`DRAWS` uniform numbers
  from a counter-based generator (Philox keyed by ``(seed, e)``, counter from
  ``p``): they do not depend on the batch size, on sharding or on which other
  examples were decoded, and any position is reached without drawing the ones
  before it.

The epoch number is only a seed component: any int >= 0 (the training loop
numbers epochs from 1).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from keras_resnet.data.common import CIFAR_PAD, DIGITS_PAD, RRC_RATIO, RRC_SCALE

DRAWS = 24          # uniforms per position; a multiple of 4 (Philox gives 4 words a step)
RRC_ATTEMPTS = 10
# Where each draw goes: 0 flip; 1, 2 crop offsets (pad-and-crop) or crop position
# (random-resized-crop); 3..12 area fractions; 13..22 log aspect ratios; 23 unused.
_FLIP, _POS, _AREA, _RATIO = 0, slice(1, 3), slice(3, 13), slice(13, 23)


def epoch_seed(seed, epoch):
    """One int64 stream id per (seed, epoch), well mixed (TFDS's file shuffle uses it)."""
    ss = np.random.SeedSequence([int(seed), int(epoch), 11])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def order(seed, epoch, size, pass_=0):
    """The permutation of ``size`` examples that epoch ``epoch`` visits (``pass_`` > 0: refills)."""
    key = [int(seed), int(epoch), 7] + ([int(pass_)] if pass_ else [])
    return np.random.default_rng(key).permutation(size)


def uniforms(seed, epoch, start, count):
    """``(count, DRAWS)`` float64 uniforms in [0, 1) of positions ``start .. start+count-1``."""
    key = np.random.SeedSequence([int(seed), int(epoch), 13]).generate_state(2, np.uint64)
    generator = np.random.Generator(np.random.Philox(key=key, counter=int(start) * DRAWS // 4))
    return generator.random((int(count), DRAWS))


def position_uniforms(seed, epoch, positions):
    """Uniforms of arbitrary positions (sorted or not): one draw over their range."""
    positions = np.asarray(positions, np.int64)
    if not len(positions):
        return np.zeros((0, DRAWS))
    low = int(positions.min())
    block = uniforms(seed, epoch, low, int(positions.max()) - low + 1)
    return block[positions - low]


def pad_crop_params(u, augment):
    """Pad-and-crop offsets ``(N, 2)`` int32 in ``0 .. 2 * pad`` and flips ``(N,)`` bool."""
    pad = DIGITS_PAD if augment == "digits" else CIFAR_PAD
    offsets = np.floor(u[:, _POS] * (2 * pad + 1)).astype(np.int32)
    flips = (u[:, _FLIP] < 0.5) & (augment != "digits")
    return offsets, flips


def flips(u):
    return u[:, _FLIP] < 0.5


def rrc_boxes(heights, widths, u):
    """Random-resized-crop windows ``(N, 4)`` int: ``top, left, height, width``.

    Up to 10 attempts draw an area of 8%..100% of the image and an aspect ratio
    (width / height) log-uniform in 3/4..4/3; the first window that fits is
    placed uniformly at random. When none fits, the central crop of the
    largest window of allowed aspect ratio is taken (the scheme of Szegedy et
    al. 2015, as torchvision's ``RandomResizedCrop`` implements it).
    """
    heights = np.broadcast_to(np.asarray(heights, np.int64), (len(u),))
    widths = np.broadcast_to(np.asarray(widths, np.int64), (len(u),))
    H, W = heights[:, None].astype(np.float64), widths[:, None].astype(np.float64)
    area = H * W * (RRC_SCALE[0] + (RRC_SCALE[1] - RRC_SCALE[0]) * u[:, _AREA])
    low, high = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
    ratio = np.exp(low + (high - low) * u[:, _RATIO])
    w = np.rint(np.sqrt(area * ratio)).astype(np.int64)
    h = np.rint(np.sqrt(area / ratio)).astype(np.int64)
    fits = (w > 0) & (h > 0) & (w <= W) & (h <= H)
    first = np.argmax(fits, axis=1)
    rows = np.arange(len(u))
    h, w, found = h[rows, first], w[rows, first], fits.any(axis=1)
    top = np.floor(u[:, 1] * (heights - h + 1)).astype(np.int64)
    left = np.floor(u[:, 2] * (widths - w + 1)).astype(np.int64)
    # Fallback: the whole image, narrowed to the allowed aspect ratios, centred.
    aspect = widths / heights
    fw = np.where(aspect > RRC_RATIO[1], np.rint(heights * RRC_RATIO[1]), widths).astype(np.int64)
    fh = np.where(aspect < RRC_RATIO[0], np.rint(widths / RRC_RATIO[0]), heights).astype(np.int64)
    h, w = np.where(found, h, fh), np.where(found, w, fw)
    top = np.where(found, top, (heights - fh) // 2)
    left = np.where(found, left, (widths - fw) // 2)
    return np.stack([top, left, h, w], axis=1)


class EpochOrders:
    """The permutations of the last few (epoch, pass) pairs, computed once, shared by threads."""

    def __init__(self, seed, size, keep=4):
        self.seed, self.size, self.keep = int(seed), int(size), keep
        self._lock = threading.Lock()
        self._orders = {}

    def __call__(self, epoch, pass_=0):
        key = (int(epoch), int(pass_))
        with self._lock:
            found = self._orders.get(key)
        if found is None:
            found = order(self.seed, epoch, self.size, pass_)
            with self._lock:
                self._orders[key] = found
                while len(self._orders) > self.keep:
                    self._orders.pop(next(iter(self._orders)))
        return found

    def indices(self, epoch, positions):
        """Example indices at stream positions (positions >= size wrap into further passes)."""
        positions = np.asarray(positions, np.int64)
        passes, within = np.divmod(positions, self.size)
        out = np.empty_like(positions)
        for p in np.unique(passes):
            sel = passes == p
            out[sel] = self(epoch, p)[within[sel]]
        return out
