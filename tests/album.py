"""Album safety: what a folder holds, byte for byte, to compare before and after."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: files by size, mtime and content hash; dirs and links too."""
    state: dict[str, tuple] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            relative = str(path.relative_to(root))
            if path.is_symlink():
                state[relative] = ("link", os.readlink(path))
            elif path.is_dir():
                state[relative] = ("dir", path.stat().st_mode)
            else:
                try:
                    data = path.read_bytes()
                except OSError:
                    data = b"<unreadable>"
                stat = path.stat()
                state[relative] = (
                    "file",
                    stat.st_size,
                    stat.st_mtime_ns,
                    stat.st_mode,
                    hashlib.sha256(data).hexdigest(),
                )
    return state
