"""Starting the daemon from the TUI, and opening a photo in the system viewer.

The daemon starts under systemd when the user unit is installed (and no private
``PETWATCH_HOME`` is in effect, which the unit would not see); otherwise as a detached
background process, ``python -m petwatch daemon``, writing to the daemon log file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from petwatch import locations
from petwatch.errors import PetwatchError

UNIT_NAME = "petwatch.service"  # the name `petwatch service install` uses


@dataclass
class Launch:
    how: str  # "systemd" | "background"
    log: Path | None = None
    process: subprocess.Popen | None = None

    def describe(self) -> str:
        if self.how == "systemd":
            return "started the petwatch user service (journalctl --user -u petwatch)"
        return f"started the daemon in the background (log: {self.log})"


def user_unit() -> Path:
    """Where `petwatch service install` writes the unit (see petwatch.daemon.systemd)."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "systemd" / "user" / UNIT_NAME


def use_systemd() -> bool:
    return not os.environ.get(locations.HOME_ENV) and user_unit().exists() and shutil.which("systemctl") is not None


def start_daemon() -> Launch:
    """Start the daemon without waiting for it; raise PetwatchError if it cannot be started."""
    if use_systemd():
        result = subprocess.run(["systemctl", "--user", "start", UNIT_NAME], capture_output=True, text=True, timeout=30)
        if result.returncode == 0:
            return Launch("systemd")
    log = locations.log_file()
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "petwatch", "daemon"],
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
    except OSError as error:
        raise PetwatchError(f"could not start the daemon: {error}; run `petwatch daemon` in a terminal") from None
    return Launch("background", log, process)


def log_tail(path: Path | None, lines: int = 3) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def system_viewer() -> list[str] | None:
    """The command that opens a file in the desktop's default viewer, if there is one."""
    if sys.platform == "darwin" and shutil.which("open"):
        return ["open"]
    if shutil.which("xdg-open"):
        return ["xdg-open"]
    return None


def open_in_viewer(path: str) -> None:
    command = system_viewer()
    if command is None:
        raise PetwatchError("no system viewer found (install xdg-utils for xdg-open)")
    try:
        subprocess.Popen(
            [*command, path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as error:
        raise PetwatchError(f"could not open {path}: {error}") from None
