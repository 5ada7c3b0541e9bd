"""kn.textio: text files as people save them: UTF-8, with or without the byte-order mark that spreadsheet programs
write; anything else is refused with the file and the line.

API
    read_text(path) -> str          the file's text, a leading byte-order mark dropped
    TextFileError                   (kn.errors) a BadInput: "<path>: line N: not UTF-8 (...)"
"""

from __future__ import annotations

import codecs
from pathlib import Path

from .errors import TextFileError

__all__ = ["read_text", "TextFileError"]


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
