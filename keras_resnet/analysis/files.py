"""Atomic file writes for the analyses' outputs (standard library only)."""

from __future__ import annotations

import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path, write, suffix=""):
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``.

    Readers see the old file or the new one, never a partial one. The file gets
    the usual permissions (0666 less the umask), not the temporary file's 0600.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
