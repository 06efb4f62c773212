"""systemd integration: sd_notify messages, and installing the user unit."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from petwatch.errors import PetwatchError

UNIT_NAME = "petwatch.service"
UNIT_TEMPLATE = Path(__file__).resolve().parents[1] / "petwatch.service.in"


def notify(message: str) -> bool:
    """Send an sd_notify message ("READY=1", "WATCHDOG=1", ...); False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when not asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


def under_journald() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM"))


def unit_dir() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "systemd" / "user"


def exec_start() -> str:
    """The command systemd runs: this interpreter and this install's petwatch."""
    return " ".join(quote(word) for word in (sys.executable, "-m", "petwatch", "daemon"))


def quote(word: str) -> str:
    """One word of a unit's command line, as systemd parses it (systemd.service(5), "Command
    lines"): ``%`` and ``$`` escaped, quoted when it holds spaces or quotes."""
    word = word.replace("%", "%%").replace("$", "$$")
    if word and not any(c.isspace() or c in "\\\"';" for c in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit() -> str:
    return UNIT_TEMPLATE.read_text().replace("@EXEC_START@", exec_start())


def _systemctl(*args: str) -> None:
    if shutil.which("systemctl") is None:
        raise PetwatchError(
            "systemctl not found: this system does not run systemd; start "
            "`petwatch daemon` another way (e.g. from your session's autostart)"
        )
    result = subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise PetwatchError(f"systemctl --user {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")


def install(start: bool = True) -> Path:
    target = unit_dir() / UNIT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_unit())
    if start:
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", UNIT_NAME)
    return target


def uninstall() -> Path:
    target = unit_dir() / UNIT_NAME
    if shutil.which("systemctl") and target.exists():
        _systemctl("disable", "--now", UNIT_NAME)
    target.unlink(missing_ok=True)
    if shutil.which("systemctl"):
        _systemctl("daemon-reload")
    return target
