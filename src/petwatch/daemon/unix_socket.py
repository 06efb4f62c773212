"""The API's Unix socket: bound private (0600 in a 0700 directory) and who is at the other end
of a connection (SO_PEERCRED). Used by the starting answers (run.py) and the server (api.py)."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from petwatch import locations
from petwatch.errors import PetwatchError


def bind_socket(path: Path) -> socket.socket:
    """The API socket: 0600 in a 0700 directory, a stale one from a crash replaced."""
    if len(os.fsencode(path)) > locations.MAX_SOCKET_PATH:
        raise PetwatchError(f"socket path too long for Unix sockets ({path}); use a shorter PETWATCH_HOME")
    locations.ensure_private_dir(path.parent)
    path.unlink(missing_ok=True)  # we hold the instance lock: any socket here is stale
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(256)
    sock.setblocking(False)
    return sock


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket connection (SO_PEERCRED)."""
    try:
        _pid, uid, _gid = struct.unpack(
            "3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        )
    except OSError:
        return None
    return uid
