"""A real Milvus standalone server for tests and benchmarks, from the `milvus` PyPI package.

That package bundles a Milvus 2.3.5 server binary (no docker). Its own launcher picks free
ports by binding them first without SO_REUSEADDR, so a restart (old sockets in TIME_WAIT)
moves the server to other ports; and its stop kills after one second. So the config is
rendered from its template with fixed ports and the binary is run and stopped here.

The server binds every interface: callers run it in a loopback-only network namespace
(``netns.enter_loopback_namespace``), where every interface is loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

PORT = 19530
HEALTH_PORT = 9091
TOKEN = "root:Milvus"  # the server's built-in superuser; authorization is on, so tokens count
URI = f"http://127.0.0.1:{PORT}"
# Without these, SIGTERM waits up to 30 min for loaded collections to hand over (no one takes them).
EXTRA_CONFIG = {
    "common.gracefulStopTimeout": 3,
    "queryNode.gracefulStopTimeout": 3,
    "common.security.authorizationEnabled": True,
}


class MilvusStandalone:
    """One server on ``base`` (config, data, logs); start, stop and start again on the same data."""

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.process: subprocess.Popen | None = None
        self.uri, self.token = URI, TOKEN
        self.starts = 0

    def _prepare(self) -> Path:
        import milvus  # the test extra; imported here so a missing one is a skip, not an error

        config = milvus.MilvusServerConfig()
        config.configs["data_dir"] = str(self.base)
        config.resolve_storage()  # configs/, data/, logs/ under base; ports keep the template's
        for key, value in EXTRA_CONFIG.items():
            config.set(key, value)
        config.write_config()
        milvus._initialize_data_files(str(self.base))  # unpacks bin/ once (md5-checked)
        return self.base / "bin" / "milvus"

    def start(self, timeout: float = 180) -> MilvusStandalone:
        executable = self._prepare()
        env = {
            **os.environ,
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(HEALTH_PORT),
            "MILVUS_RUN_DIR": str(self.base / "run"),
            "LD_LIBRARY_PATH": f"{executable.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        }
        self.starts += 1
        log = open(self.base / "logs" / f"server-{self.starts}.log", "wb")
        self.process = subprocess.Popen(
            [str(executable), "run", "standalone"],
            cwd=self.base,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Milvus exited with {self.process.returncode}; see {log.name}")
            if self._healthy():
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"Milvus not healthy in {timeout:.0f}s; see {log.name}")

    @staticmethod
    def _healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{HEALTH_PORT}/healthz", timeout=2) as answer:
                return b"OK" in answer.read()
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (seconds, with the graceful-stop settings above), SIGKILL after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        """Gone at once, as a crash or a pulled cable looks to a client."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
