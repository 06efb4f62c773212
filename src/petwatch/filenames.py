"""File names as text that survives UTF-8 and JSON (the store's rows and the socket's
requests), and whether a path lies under a folder.

A name that is not valid UTF-8 (an old FAT stick, a Latin-1 archive) reaches Python as a str
with lone surrogates (os.fsdecode), which neither UTF-8 nor Milvus take. ``encode_path`` keeps
valid names as they are and writes the others reversibly as ``b64:`` + their bytes in base64
(and a name that itself starts with "b64:" too, so the two cannot be confused). One scheme,
both places: the store writes rows with it, the clients send paths with it, the daemon
decodes them.
"""

from __future__ import annotations

import base64
import binascii
import os

PREFIX = "b64:"


def encode_path(path: str) -> str:
    """Paths are kept as UTF-8; a path that is not valid UTF-8 is kept reversibly as b64:..."""
    raw = os.fsencode(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not text.startswith(PREFIX):
        return text
    return PREFIX + base64.urlsafe_b64encode(raw).decode("ascii")


def decode_path(stored: str) -> str:
    """The path ``encode_path`` was given; ValueError for a b64: that is not base64."""
    if not stored.startswith(PREFIX):
        return stored
    try:
        return os.fsdecode(base64.b64decode(stored[len(PREFIX) :], altchars=b"-_", validate=True))
    except binascii.Error as error:
        raise ValueError(f"{PREFIX} is not followed by a base64 file name ({error})") from None


def is_under(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies somewhere below it (by name, not by resolving links)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
