"""Weight files: which format a file holds, and reading a state dict into NumPy arrays.

:func:`sniff_format` tells a file's format from its first bytes (HDF5, a
``.keras`` zip, a ``torch.save`` zip or pickle, safetensors);
:func:`is_torch_weights` says whether a ``weights=`` argument is a
torchvision/timm state dict; :func:`read_state_dict` reads one into
``{name: float32 array}`` with safetensors' NumPy API or
``torch.load(weights_only=True)``. Mapping a state dict onto our layers is
:mod:`keras_resnet.weights_torch`, which re-exports these names. Imports
neither Keras nor PyTorch at import time.
"""

from __future__ import annotations

import os
import struct
import zipfile

import numpy as np

FORMATS = ("safetensors", "torch")
_TORCH_EXTENSIONS = (".pth", ".pt", ".bin", ".ckpt")


# -- recognising the file ------------------------------------------------------------------

def sniff_format(path):
    """The format of a weights file from its first bytes (and, for zips, its members).

    Returns:
        ``"safetensors"``, ``"torch"`` (a ``torch.save`` zip or legacy pickle),
        ``"hdf5"`` (Keras ``.h5`` / ``.weights.h5``), ``"keras"`` (a ``.keras``
        zip) or None.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return None
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        return "keras" if "config.json" in names else None
    if head[:1] == b"\x80":  # a pickle protocol marker: torch.save's legacy format
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        (size,) = struct.unpack("<Q", head[:8])
        if 0 < size <= os.path.getsize(path) - 8:
            return "safetensors"
    return None


def is_torch_weights(weights):
    """True when ``weights`` is the path of a ``.pth``/``.safetensors`` state dict."""
    if weights is None or not isinstance(weights, (str, os.PathLike)):
        return False
    if isinstance(weights, str) and weights == "imagenet":
        return False
    path = os.fspath(weights)
    if not os.path.isfile(path):
        return False
    if path.endswith(".safetensors") or path.endswith(_TORCH_EXTENSIONS):
        return True
    return sniff_format(path) in FORMATS



# -- reading ------------------------------------------------------------------------------

def read_state_dict(path):
    """``{name: float32 array}`` of a torchvision/timm ``.pth`` or ``.safetensors`` file.

    ``.safetensors`` files are read with safetensors' NumPy API; ``.pth`` files
    with ``torch.load(map_location="cpu", weights_only=True)`` (PyTorch needed).
    Checkpoints that wrap the state dict (``{"state_dict": ...}``, ``{"model": ...}``)
    and ``module.`` prefixes (DistributedDataParallel) are unwrapped.
    """
    path = os.fspath(path)
    fmt = sniff_format(path)
    if fmt == "safetensors" or (fmt is None and path.endswith(".safetensors")):
        state = _read_safetensors(path)
    elif fmt == "torch" or (fmt is None and path.endswith(_TORCH_EXTENSIONS)):
        state = _read_torch(path)
    else:
        raise ValueError(f"Invalid value for argument `weights`: {path!r} is neither a "
                         "PyTorch (.pth) nor a safetensors file.")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    arrays = {}
    for name, value in state.items():
        if not hasattr(value, "shape"):
            continue
        name = name[len("module."):] if name.startswith("module.") else name
        arrays[name] = np.asarray(value, dtype=np.float32)
    if not arrays:
        raise ValueError(f"Invalid value for argument `weights`: {path!r} holds no tensors.")
    return arrays


def _read_safetensors(path):
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ImportError("Reading .safetensors weights needs the safetensors package: "
                          "pip install safetensors (or keras-resnet-zoo[torch]).") from None
    try:
        return load_file(path)
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"Invalid value for argument `weights`: cannot read the safetensors "
                         f"file {path!r} with NumPy: {error}.") from None


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise ImportError(f"Reading the PyTorch file {path!r} needs PyTorch: pip install torch "
                          "(or keras-resnet-zoo[torch]); or save the state dict as "
                          ".safetensors, which needs only the safetensors package.") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"Invalid value for argument `weights`: torch.load(weights_only=True) "
                         f"cannot read {path!r} as a state dict (save model.state_dict(), "
                         f"not the model): {first}") from None
    if not isinstance(state, dict):
        raise ValueError(f"Invalid value for argument `weights`: {path!r} holds a "
                         f"{type(state).__name__}, not a state dict.")
    return {k: (v.detach().float().numpy() if hasattr(v, "detach") else v)
            for k, v in state.items()}
