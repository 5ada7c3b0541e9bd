"""kn.atomic: the one atomic file write. Readers never see half a file; an interrupted or failed write (a full disk
included) leaves the previous file, or none, and no temporary file behind.

API
    atomic_write(path, write) -> Path         write(tmp_path) fills a temporary file beside path, renamed over it
    atomic_write_bytes(path, data) -> Path    the same for bytes, flushed to disk before the rename
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes"]


def atomic_write(path: Path, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file in ``path``'s folder, then rename it to ``path``: readers never see
    half a file, and an interrupted write leaves the previous file (or none) and no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    def write(tmp):
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_write(path, write)
