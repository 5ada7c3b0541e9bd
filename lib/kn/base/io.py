"""kn.base.io: the one atomic file write. Readers never see half a file; an interrupted or failed write (a full disk
included) leaves the previous file, or none, and no temporary file behind.

kn.base.io: text files as people save them: UTF-8, with or without the byte-order mark that spreadsheet programs
write; anything else is refused with the file and the line.

API
    atomic_write(path, write) -> Path         write(tmp_path) fills a temporary file beside path, renamed over it
    atomic_write_bytes(path, data) -> Path    the same for bytes, flushed to disk before the rename
    read_text(path) -> str          the file's text, a leading byte-order mark dropped
    TextFileError                   (kn.base.errors) a BadInput: "<path>: line N: not UTF-8 (...)"
    cache_dir() -> Path                                      # the user cache (data, models)
"""

from __future__ import annotations

import codecs
import os
import tempfile
from pathlib import Path

from kn.base.errors import TextFileError


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


def read_text(path: str | Path) -> str:
    """The text of ``path`` decoded as UTF-8 (a leading BOM dropped); TextFileError names the first bad line."""
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise TextFileError(f"{path}: line {line}: not UTF-8 (byte 0x{data[err.start]:02x}); save the file as UTF-8") \
            from None


def cache_dir() -> Path:
    """The project's user cache: KN_CACHE_DIR, else $XDG_CACHE_HOME/kn-study, else ~/.cache/kn-study."""
    if os.environ.get("KN_CACHE_DIR"):
        return Path(os.environ["KN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kn-study"
