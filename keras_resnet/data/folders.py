"""Image folders: ``DIR/train/<class>/...`` and ``DIR/val/<class>/...``, decoded lazily.

Without ``val/`` (``DIR/train/<class>/`` alone, or the class folders directly
under ``DIR``), a fixed part of each class's images is held out for
validation (:func:`split_by_class`): seeded, stratified, and the same for the
same files and seed.

Loading lists the files (any depth below a class folder; names ending in one of
:data:`keras_resnet.preprocessing.IMAGE_EXTENSIONS`, case-insensitive; hidden
files and folders left out) and decodes nothing but a first readable file of
each split. The pipelines decode every file when they reach it, with
:func:`keras_resnet.preprocessing.read_image`; a file it cannot read is
skipped there and then, and counted with its reason in the dataset's
:class:`~keras_resnet.data.common.SkipRecord`.

The listing (every file's path, size and modification time) is the key of a
small cache file in :func:`cache_dir`: what earlier passes over the same
listing learned (the undecodable files and why) is known again at the next
load, and any change to a file makes a new key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from keras_resnet import preprocessing as prep
from keras_resnet.data.common import DataError, SkipRecord, Split, log, read_json

PROBE_LIMIT = 32   # files tried at load before a split is declared unreadable
VAL_SPLIT = 0.1    # held out of each class of a folder without val/ (default of `val_split`)


@dataclasses.dataclass
class Folder:
    """A listed image folder: what :func:`load_folder` returns."""

    class_names: list
    spec: dict
    family: str
    train: Split
    val: Split
    skips: SkipRecord
    val_split: float | None   # the held-out fraction when there was no val/, else None


def cache_dir():
    """Where folder scans are cached: ``$KERAS_RESNET_CACHE`` or ``~/.cache/keras_resnet``."""
    return os.environ.get("KERAS_RESNET_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "keras_resnet"))


def folder_error(data_dir, problem):
    return DataError(f"Invalid value for argument `data_dir` (--data-dir): received "
                     f"{str(data_dir)!r}, {problem}; expected a folder with train/<class>/ and "
                     f"val/<class>/ image files, or class folders alone (then "
                     f"{VAL_SPLIT:.0%} of each class is held out for validation) "
                     f"({', '.join(prep.IMAGE_EXTENSIONS)}).")


def class_folders(split_dir):
    return sorted(e.name for e in os.scandir(split_dir)
                  if e.is_dir() and not e.name.startswith("."))


def list_images(folder):
    """``[(path, size, mtime_ns), ...]`` of the image files under ``folder``, sorted, recursive."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(prep.IMAGE_EXTENSIONS):
                continue
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError:
                continue   # vanished, or a dangling link
            found.append((path, st.st_size, st.st_mtime_ns))
    return found


def listing_key(listing):
    """A digest of ``(path, size, mtime)`` of every file: the cache key."""
    digest = hashlib.sha256()
    for path, size, mtime in listing:
        digest.update(f"{os.path.abspath(path)}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()[:32]


def probe(paths, split, data_dir, skips):
    """Decode files in order until one reads; an error if the first ``PROBE_LIMIT`` do not."""
    tried = 0
    for path in paths:
        if path in skips:
            continue
        try:
            prep.read_image(path)
            return
        except prep.ImageError as e:
            skips.add(path, e.reason)
        tried += 1
        if tried >= PROBE_LIMIT:
            break
    known = [p for p in paths if p in skips]
    example = f"e.g. {known[0]}: {skips.reasons[known[0]]}" if known else "no files"
    if len(known) == len(paths):
        raise folder_error(data_dir, f"none of the image files in {split} can be decoded "
                                     f"({example})")
    raise folder_error(data_dir, f"the first {PROBE_LIMIT} image files tried in {split} cannot "
                                 f"be decoded ({example})")


def check_val_split(val_split):
    """``val_split`` as a float in (0, 1), or None."""
    if val_split is None:
        return None
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float, np.floating)) \
            or not 0 < val_split < 1:
        raise DataError(f"Invalid value for argument `val_split` (--val-split): received "
                        f"{val_split!r}; expected a fraction between 0 and 1 (exclusive).")
    return float(val_split)


def split_by_class(labels, fraction, seed):
    """``(train, val)`` sorted index arrays: ``fraction`` of each class held out, seeded.

    Class ``c`` with ``n`` examples gives ``floor(n * fraction + 0.5)`` of them
    to ``val``: the first ones of the permutation
    ``numpy.random.default_rng([seed, 17, c]).permutation(n)`` of its
    examples (in listing order). A class's draw depends only on the seed, the
    class index and that class's files.

    >>> train, val = split_by_class([0] * 10 + [1] * 20, 0.1, seed=0)
    >>> len(train), len(val), [int(v >= 10) for v in val]
    (27, 3, [0, 1, 1])
    """
    labels = np.asarray(labels)
    train, val = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = np.random.default_rng([int(seed), 17, int(c)]).permutation(len(members))
        held = int(np.floor(len(members) * fraction + 0.5))
        val.append(members[order[:held]])
        train.append(members[order[held:]])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _layout(data_dir):
    """``(train folder, val folder or None)`` of an image folder."""
    train, val = os.path.join(data_dir, "train"), os.path.join(data_dir, "val")
    if os.path.isdir(train):
        return train, (val if os.path.isdir(val) else None)
    if os.path.isdir(val):
        raise folder_error(data_dir, "it has val/ but no train/ sub-folder")
    if not class_folders(data_dir):
        raise folder_error(data_dir, "it has no train/ sub-folder and no class folders")
    return data_dir, None


def _listing(data_dir, folder, class_names, where):
    listing, labels = [], []
    for label, cls in enumerate(class_names):
        files = list_images(os.path.join(folder, cls))
        listing += files
        labels += [label] * len(files)
    if not listing:
        raise folder_error(data_dir, f"{where} no image files")
    return listing, labels


def load_folder(data_dir, image_size, *, val_split=None, seed=0):
    """A :class:`Folder`: the listed files of an image folder, split for training and validation.

    Args:
        data_dir: ``DIR`` with ``train/<class>/`` and ``val/<class>/``, or with
            ``train/<class>/`` alone, or with the class folders alone.
        image_size: int or None, the square input size (default 224).
        val_split: float in (0, 1) or None: the fraction of each class held out
            for validation when there is no ``val/`` (None: :data:`VAL_SPLIT`);
            an error when there is one.
        seed: int, the seed of that split (:func:`split_by_class`).
    """
    data_dir = os.fspath(data_dir)
    val_split = check_val_split(val_split)
    if not os.path.isdir(data_dir):
        raise folder_error(data_dir, "not an existing directory")
    train_dir, val_dir = _layout(data_dir)
    train_name = "train/" if train_dir != data_dir else "its class folders"
    if val_dir is not None and val_split is not None:
        raise DataError(f"Conflicting arguments: `val_split` (--val-split) {val_split:g} holds "
                        f"out part of a folder without val/, and `data_dir` (--data-dir) "
                        f"{data_dir!r} has val/; drop one of them.")
    class_names = class_folders(train_dir)
    if not class_names:
        raise folder_error(data_dir, "train/ has no class folders")
    listings = {"train": _listing(data_dir, train_dir, class_names,
                                  "train/ has" if train_dir != data_dir else "its class folders have")}
    if val_dir is not None:
        extra = sorted(set(class_folders(val_dir)) - set(class_names))
        if extra:
            raise folder_error(data_dir, f"val/ has classes not in train/: {extra[:5]}")
        listings["val"] = _listing(data_dir, val_dir, class_names, "val/ has")
    cache_file = os.path.join(cache_dir(), "folder_scans", listing_key(
        sum((listing for listing, _ in listings.values()), [])) + ".json")
    known = (read_json(cache_file) or {}).get("skipped") or {}
    skips = SkipRecord(cache_file, known if isinstance(known, dict) else {})
    paths = {sub: np.asarray([p for p, _, _ in listing], dtype=object).astype(str)
             for sub, (listing, _) in listings.items()}
    labels = {sub: np.asarray(y, np.int32) for sub, (_, y) in listings.items()}
    if val_dir is None:
        val_split = VAL_SPLIT if val_split is None else val_split
        keep, held = split_by_class(labels["train"], val_split, seed)
        if not len(held) or not len(keep):
            raise folder_error(data_dir, f"holding out {val_split:g} of each class of its "
                                         f"{len(keep) + len(held)} images leaves "
                                         f"{'no validation' if not len(held) else 'no training'} "
                                         f"images (set `val_split`/--val-split, or add val/)")
        paths["val"], labels["val"] = paths["train"][held], labels["train"][held]
        paths["train"], labels["train"] = paths["train"][keep], labels["train"][keep]
        log.warning("%s has no val/ folder: %d of its %d images (%g of each class, seed %d) are "
                    "held out for validation (--val-split).", data_dir, len(held),
                    len(held) + len(keep), val_split, seed)
    splits = {}
    names = {"train": train_name, "val": "val/" if val_dir is not None else "the held-out part"}
    for sub in ("train", "val"):
        probe(list(paths[sub]), names[sub], data_dir, skips)
        splits[sub] = Split(labels=labels[sub], images=paths[sub])
    size = image_size or 224
    family = "imagenet" if size >= 64 else "cifar"
    spec = prep.make_spec((size, size), prep.IMAGENET_MEAN, prep.IMAGENET_STD,
                          resize="center_crop" if family == "imagenet" else "stretch")
    return Folder(class_names, spec, family, splits["train"], splits["val"], skips,
                  val_split if val_dir is None else None)


def check_folder(paths, workers=None):
    """Decode every file once (threads); ``{path: reason}`` of those that fail.

    For ``python -m keras_resnet.data --check``: training does not need it (it
    skips a bad file when it meets it), but a user may want the list up front.
    """
    from concurrent.futures import ThreadPoolExecutor

    def one(path):
        try:
            prep.read_image(path)
            return None
        except prep.ImageError as e:
            return path, e.reason

    with ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        return dict(r for r in pool.map(one, paths, chunksize=16) if r is not None)
