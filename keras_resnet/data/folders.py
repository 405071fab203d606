"""Image folders: ``DIR/train/<class>/...`` and ``DIR/val/<class>/...``, decoded lazily.

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

import hashlib
import os

import numpy as np

from keras_resnet import preprocessing as prep
from keras_resnet.data.common import DataError, SkipRecord, Split, read_json

PROBE_LIMIT = 32   # files tried at load before a split is declared unreadable


def cache_dir():
    """Where folder scans are cached: ``$KERAS_RESNET_CACHE`` or ``~/.cache/keras_resnet``."""
    return os.environ.get("KERAS_RESNET_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "keras_resnet"))


def folder_error(data_dir, problem):
    return DataError(f"Invalid value for argument `data_dir` (--data-dir): received "
                     f"{str(data_dir)!r}, {problem}; expected a folder with train/<class>/ and "
                     f"val/<class>/ image files ({', '.join(prep.IMAGE_EXTENSIONS)}).")


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
        raise folder_error(data_dir, f"none of the image files in {split}/ can be decoded "
                                     f"({example})")
    raise folder_error(data_dir, f"the first {PROBE_LIMIT} image files tried in {split}/ cannot "
                                 f"be decoded ({example})")


def load_folder(data_dir, image_size):
    """``(class_names, spec, family, train Split, val Split, SkipRecord)`` of an image folder."""
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise folder_error(data_dir, "not an existing directory")
    for sub in ("train", "val"):
        if not os.path.isdir(os.path.join(data_dir, sub)):
            raise folder_error(data_dir, f"it has no {sub}/ sub-folder")
    class_names = class_folders(os.path.join(data_dir, "train"))
    if not class_names:
        raise folder_error(data_dir, "train/ has no class folders")
    extra = sorted(set(class_folders(os.path.join(data_dir, "val"))) - set(class_names))
    if extra:
        raise folder_error(data_dir, f"val/ has classes not in train/: {extra[:5]}")
    listings = {}
    for sub in ("train", "val"):
        listing, labels = [], []
        for label, cls in enumerate(class_names):
            files = list_images(os.path.join(data_dir, sub, cls))
            listing += files
            labels += [label] * len(files)
        if not listing:
            raise folder_error(data_dir, f"{sub}/ has no image files")
        listings[sub] = (listing, labels)
    cache_file = os.path.join(cache_dir(), "folder_scans",
                              listing_key(listings["train"][0] + listings["val"][0]) + ".json")
    known = (read_json(cache_file) or {}).get("skipped") or {}
    skips = SkipRecord(cache_file, known if isinstance(known, dict) else {})
    splits = {}
    for sub, (listing, labels) in listings.items():
        paths = [p for p, _, _ in listing]
        probe(paths, sub, data_dir, skips)
        splits[sub] = Split(labels=np.asarray(labels, np.int32),
                            images=np.asarray(paths, dtype=object).astype(str))
    size = image_size or 224
    family = "imagenet" if size >= 64 else "cifar"
    spec = prep.make_spec((size, size), prep.IMAGENET_MEAN, prep.IMAGENET_STD,
                          resize="center_crop" if family == "imagenet" else "stretch")
    return class_names, spec, family, splits["train"], splits["val"], skips


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
