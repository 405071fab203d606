"""``metadata.json``: what an export directory holds, enough to use it without the package.

It records the architecture, the dataset and class names, the input size and
the preprocessing spec (with a paragraph saying how an image file becomes the
network input), the metrics, the package versions, every file's size and
sha256, and the inputs and outputs of each served format.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os

METADATA_FORMAT = 1
VERSIONED_PACKAGES = ("keras", "tensorflow", "numpy", "ai-edge-litert", "onnx", "onnxruntime",
                      "tf2onnx", "keras-resnet-zoo")


def package_versions():
    """Versions of the packages an export depends on (those installed)."""
    import platform
    from importlib import metadata as md

    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return versions


def size(path):
    """Bytes of a file, or of every file under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: repr(o)))


def write_metadata(model, directory, *, preprocessing, class_names, metadata, quantize,
                   serving, n_calibration):
    """Write ``directory/metadata.json`` describing the files already in ``directory``."""
    from keras_resnet import preprocessing as prep

    metadata = dict(metadata)
    h, w = preprocessing["input_size"]
    files = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        files[name] = {"bytes": size(path)}
        if os.path.isfile(path):
            files[name]["sha256"] = sha256(path)
    try:
        keras_config = jsonable(model.get_config())
    except Exception:  # noqa: BLE001 - subclassed models may not have a config
        keras_config = None
    meta = {
        "format_version": METADATA_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model_name": model.name,
        "architecture": {"builder": metadata.pop("builder", None),
                         "parameters": int(model.count_params()),
                         "input_shape": [None, *model.inputs[0].shape[1:]],
                         "keras_config": keras_config},
        "dataset": metadata.pop("dataset", None),
        "class_names": [str(c) for c in class_names],
        "num_classes": len(class_names),
        "input_size": [int(h), int(w)],
        "preprocessing": dict(preprocessing),
        "preprocessing_howto": prep.howto(preprocessing),
        "metrics": metadata.pop("metrics", {}),
        "quantize": list(quantize),
        "calibration_images": n_calibration,
        "serving": serving,
        "versions": package_versions(),
        "files": files,
    }
    for key, value in metadata.items():
        meta.setdefault(key, jsonable(value))
    with open(os.path.join(directory, "metadata.json"), "w") as f:
        json.dump(jsonable(meta), f, indent=2)
        f.write("\n")


def read_metadata(path):
    """Return the ``metadata.json`` of an export directory or of the directory holding ``path``.

    Looks in ``path`` (a directory), beside ``path`` (a file) and, for a
    ``saved_model/`` directory, in its parent. Returns None if there is none.
    """
    path = os.path.abspath(os.fspath(path))
    candidates = [os.path.join(path, "metadata.json")] if os.path.isdir(path) else []
    candidates.append(os.path.join(os.path.dirname(path), "metadata.json"))
    for c in candidates:
        if os.path.isfile(c):
            with open(c) as f:
                return json.load(f)
    return None
