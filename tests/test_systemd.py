"""systemd integration, for real: sd_notify over a real datagram socket, the unit verified by
systemd's own parser, ``petwatch service install --no-start``, and the repository's copy of
the unit kept in step with the template the installer renders."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DaemonProcess, run_cli
from petwatch import settings as settings_module
from petwatch.daemon import systemd

REPO = Path(__file__).resolve().parents[1]
REPO_UNIT = REPO / "systemd" / "petwatch.service"
REPO_EXEC_START = "%h/.local/bin/petwatch daemon"


class NotifySocket:
    """What systemd listens on for sd_notify: an AF_UNIX datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def receive_until(self, predicate, timeout: float) -> list[str]:
        """Read messages until ``predicate(message)`` holds for one; returns all read so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            self.messages.append((time.monotonic(), data))
            if predicate(data):
                return [m for _, m in self.messages]
        raise AssertionError(f"no such sd_notify message within {timeout}s; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


def _lines(message: str) -> set[str]:
    return set(message.splitlines())


def test_daemon_notifies_ready_pings_the_watchdog_and_says_stopping(home, tmp_path):
    album = tmp_path / "album"
    album.mkdir()
    settings_module.update_config_file(folders=[str(album)])
    notify = NotifySocket(home / "notify.sock")
    daemon = DaemonProcess({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"})
    handle = open(daemon.log, "ab")
    daemon.process = subprocess.Popen(
        [sys.executable, "-m", "petwatch", "daemon"], env=daemon.env, stdout=handle, stderr=handle
    )
    try:
        notify.receive_until(lambda m: "READY=1" in _lines(m), 120)
        # Ready means ready: the socket answers right away (Type=notify orders dependents on it).
        with daemon.client() as client:
            assert client.status()["pid"] == daemon.process.pid
        ready_at = notify.messages[-1][0]
        # Pings every WATCHDOG_USEC / 2 = 1 s: three within a generous 10 s.
        for _ in range(3):
            notify.receive_until(lambda m: "WATCHDOG=1" in _lines(m), 10)
        pings = [t for t, m in notify.messages if "WATCHDOG=1" in _lines(m) and t >= ready_at]
        assert len(pings) >= 3
        assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for _, m in notify.messages)

        daemon.process.send_signal(signal.SIGTERM)
        notify.receive_until(lambda m: "STOPPING=1" in _lines(m), 30)
        assert daemon.process.wait(30) == 0
    finally:
        daemon.stop()
        notify.close()


def test_no_watchdog_pings_for_another_process(home, tmp_path):
    """WATCHDOG_PID names the process systemd watches; a child that inherits the env keeps quiet."""
    settings_module.update_config_file(folders=[])
    notify = NotifySocket(home / "notify.sock")
    daemon = DaemonProcess({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    daemon.start()
    try:
        notify.receive_until(lambda m: "READY=1" in _lines(m), 120)
        with pytest.raises(AssertionError):
            notify.receive_until(lambda m: "WATCHDOG=1" in _lines(m), 2)
    finally:
        assert daemon.stop() == 0
        notify.close()


# --- the unit ------------------------------------------------------------------------------------
def _significant(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_repository_unit_is_the_template_with_a_home_exec_start():
    template = systemd.UNIT_TEMPLATE.read_text()
    assert "@EXEC_START@" in template
    expected = _significant(template.replace("@EXEC_START@", REPO_EXEC_START))
    assert _significant(REPO_UNIT.read_text()) == expected, (
        "systemd/petwatch.service differs from src/petwatch/petwatch.service.in: change both"
    )
    assert "petwatch service install" in REPO_UNIT.read_text()  # says how to really install


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return tool


def _verify(unit: Path, home: Path) -> subprocess.CompletedProcess:
    runtime = home / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(runtime),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "xdg-config"),
        "SYSTEMD_LOG_LEVEL": "notice",
    }
    return subprocess.run(
        [_systemd_analyze(), "verify", "--user", str(unit)], capture_output=True, text=True, env=env, timeout=60
    )


def test_rendered_unit_passes_systemd_analyze_verify(tmp_path):
    unit = tmp_path / "units" / "petwatch.service"
    unit.parent.mkdir()
    unit.write_text(systemd.render_unit())
    result = _verify(unit, tmp_path)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_repository_unit_passes_systemd_analyze_verify(tmp_path):
    # %h/.local/bin/petwatch, as a pipx install would have it.
    bin_dir = tmp_path / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "petwatch").symlink_to(Path(sys.executable).with_name("petwatch"))
    result = _verify(REPO_UNIT, tmp_path)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_unit_command_line_survives_awkward_paths(tmp_path, monkeypatch):
    """A venv under "My Projects" (a space) or with % in its path still gives a runnable unit."""
    odd = tmp_path / "My Projects" / "50% off" / "bin"
    odd.mkdir(parents=True)
    python = odd / "python"
    python.symlink_to(sys.executable)
    monkeypatch.setattr(sys, "executable", str(python))
    exec_start = systemd.exec_start()
    assert exec_start == f'"{odd.as_posix().replace("%", "%%")}/python" -m petwatch daemon'
    unit = tmp_path / "units" / "petwatch.service"
    unit.parent.mkdir()
    unit.write_text(systemd.render_unit())
    result = _verify(unit, tmp_path)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_service_install_no_start_writes_the_unit_under_xdg_config_home(home, tmp_path):
    config_home = tmp_path / "xdg-config"
    result = run_cli("service", "install", "--no-start", env={"XDG_CONFIG_HOME": str(config_home)})
    assert result.returncode == 0, result.stderr
    unit = config_home / "systemd" / "user" / "petwatch.service"
    assert str(unit) in result.stdout
    text = unit.read_text()
    exec_lines = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert exec_lines == [f"ExecStart={sys.executable} -m petwatch daemon"]
    # The command it names really is petwatch.
    version = subprocess.run([sys.executable, "-m", "petwatch", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("petwatch ")
    # `service show` prints the same unit; nothing else was written.
    shown = run_cli("service", "show", env={"XDG_CONFIG_HOME": str(config_home)})
    assert shown.stdout == text
    assert sorted(p.relative_to(config_home).as_posix() for p in config_home.rglob("*")) == [
        "systemd",
        "systemd/user",
        "systemd/user/petwatch.service",
    ]
    if shutil.which("systemd-analyze"):
        verified = _verify(unit, tmp_path)
        assert verified.returncode == 0, verified.stderr
