"""Move this process into a network namespace of its own, with loopback only.

Milvus standalone binds every interface; inside such a namespace every interface is
loopback, so neither the server nor anything the tests start can reach, or be reached
from, any other address. Done once, from the main thread, before any thread or gRPC
channel exists: threads and child processes made afterwards inherit the namespace.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

CLONE_NEWNET = 0x40000000
_state: dict[str, str | None] = {}


def enter_loopback_namespace() -> str | None:
    """None once this process is in its own loopback-only namespace, else why not (a skip reason)."""
    if "reason" in _state:
        return _state["reason"]
    _state["reason"] = reason = _enter()
    return reason


def problem() -> str | None:
    """None when this process is in its own loopback-only namespace, else why not."""
    return _state.get("reason", "not in a network namespace of its own: select the tier with -m server")


def _enter() -> str | None:
    if not hasattr(os, "getuid") or not os.path.exists("/proc/self/ns/net"):
        return "no Linux network namespaces here"
    ip = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if os.path.exists(p)), None)
    if ip is None:
        return "the `ip` tool (iproute2) is missing: it brings the namespace's loopback up"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        return f"cannot make a network namespace: {os.strerror(ctypes.get_errno())} (needs root or CAP_SYS_ADMIN)"
    done = subprocess.run([ip, "link", "set", "lo", "up"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"cannot bring up loopback in the new namespace: {done.stderr.strip()}"
    return None
