"""Shared fixtures: a private PETWATCH_HOME, real photos, and a real daemon process."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.server.netns import enter_loopback_namespace

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("PETWATCH_DATASETS", REPO.parent / "shared" / "datasets"))
# Tests use the smallest real model: same code path as the default, a third of the compute.
TEST_MODEL = os.environ.get("PETWATCH_TEST_MODEL", "efficientnet_lite0")
# Every private home shares one cache of exported networks (engine.py: ~20 s an export), kept
# from run to run: its key holds the library versions, so a stale one is never used.
os.environ.setdefault("PETWATCH_MODELS_DIR", str(Path(tempfile.gettempdir()) / f"petwatch-test-models-{os.getuid()}"))


def pytest_configure(config) -> None:
    """A run that selects the Milvus server tier (-m server) moves into a network namespace of
    its own, loopback only, where that server binds (tests/server/): here, before any thread
    or gRPC channel exists. Where it cannot (not root), the tier skips saying why."""
    if "server" in (config.getoption("markexpr") or "").replace("not server", ""):
        enter_loopback_namespace()


def dataset(*parts: str) -> Path:
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"dataset {path} is absent (set PETWATCH_DATASETS to ../shared/datasets)")
    return path


def bundled_photos() -> dict[str, np.ndarray]:
    """Real photographs that ship inside scikit-image's wheel (no download)."""
    import skimage.data

    names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "horse"]
    images = {}
    for name in names:
        array = getattr(skimage.data, name)()
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        if array.dtype != np.uint8:
            array = (array * 255).astype(np.uint8) if array.max() <= 1 else array.astype(np.uint8)
        images[name] = array
    return images


def embed_images(embedder, images: list[Image.Image]) -> np.ndarray:
    """The stored kind of vector (view 0) of each image, as the indexer makes it: (n, dim)."""
    return np.stack([e.vector for e in embedder.embed_prepared([embedder.prepare(image) for image in images])])


def write_photos(folder: Path, count: int | None = None) -> list[Path]:
    """Write real photos as JPEGs into ``folder``: the Oxford pets sample if present, else
    scikit-image's bundled photographs."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    pets = DATASETS / "oxford-pets-sample"
    if pets.is_dir():
        sources = sorted(pets.glob("*/*.jpg"))[:: max(1, 370 // (count or 370))][: count or None]
        for source in sources:
            target = folder / f"{source.parent.name}_{source.name}"
            shutil.copyfile(source, target)
            written.append(target)
    else:
        for name, array in list(bundled_photos().items())[: count or None]:
            target = folder / f"{name}.jpg"
            Image.fromarray(array).save(target, quality=90)
            written.append(target)
    return written


@pytest.fixture(scope="session", autouse=True)
def private_petwatch_home():
    """Every test on a private petwatch home, even one that does not ask for ``home``: a store
    opened without one would put Milvus Lite's logs in the user's cache dir and make the user's
    runtime dir (/tmp/petwatch-UID without XDG_RUNTIME_DIR). Removed at the end."""
    if os.environ.get("PETWATCH_HOME"):
        yield Path(os.environ["PETWATCH_HOME"])  # the caller chose one
        return
    root = Path(tempfile.mkdtemp(prefix="pw-session-", dir="/tmp"))
    os.environ["PETWATCH_HOME"] = str(root)
    try:
        yield root
    finally:
        os.environ.pop("PETWATCH_HOME", None)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def home(monkeypatch) -> Path:
    """A private petwatch home, short enough for a Unix socket path."""
    root = Path(tempfile.mkdtemp(prefix="pw-", dir="/tmp"))
    monkeypatch.setenv("PETWATCH_HOME", str(root))
    monkeypatch.setenv("PETWATCH_MODEL", TEST_MODEL)
    monkeypatch.setenv("PETWATCH_SETTLE_SECONDS", "0.5")
    for name in ("PETWATCH_FOLDERS", "PETWATCH_MILVUS_URI", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``petwatch ARGS`` as a user runs it, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "petwatch", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


class DaemonProcess:
    """A real ``petwatch daemon`` in its own process, on the current PETWATCH_HOME."""

    def __init__(self, env: dict | None = None) -> None:
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.log = Path(self.env["PETWATCH_HOME"]) / "daemon-test.log"

    def start(self, timeout: float = 120) -> DaemonProcess:
        from petwatch.client import DaemonClient, DaemonUnavailable

        handle = open(self.log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "petwatch", "daemon"], env=self.env, stdout=handle, stderr=handle
        )
        deadline = time.monotonic() + timeout
        socket = Path(self.env["PETWATCH_HOME"]) / "run" / "petwatch.sock"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.process.returncode}:\n{self.log.read_text()}")
            if socket.exists():
                with DaemonClient(socket) as client, contextlib.suppress(DaemonUnavailable):
                    client.status()
                    return self
            time.sleep(0.1)
        self.kill()  # never leave a daemon that did not come up running behind the test
        raise RuntimeError(f"daemon not ready in {timeout}s:\n{self.log.read_text()}")

    def client(self):
        from petwatch.client import DaemonClient

        return DaemonClient(Path(self.env["PETWATCH_HOME"]) / "run" / "petwatch.sock")

    def wait_idle(self, timeout: float = 120, settle: float = 0.3) -> dict:
        """Wait until the daemon has nothing queued (twice in a row, ``settle`` apart)."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            calm = 0
            while time.monotonic() < deadline:
                status = client.status()
                calm = calm + 1 if status["state"] == "idle" and status["queued"] == 0 else 0
                if calm >= 2:
                    return status
                time.sleep(settle)
        raise TimeoutError(f"daemon still busy after {timeout}s: {status}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


# A real daemon whose instance lock is held, and its socket not yet bound, until the test says
# "go": the moment when the interpreter and the settings load (a starting daemon's first seconds).
_HELD_BEFORE_THE_SOCKET = """
import sys, time
from pathlib import Path
from petwatch.daemon import run
take = run.acquire_instance_lock
def held_until_go():
    fd = take()
    Path(sys.argv[1]).touch()
    while not Path(sys.argv[2]).exists():
        time.sleep(0.01)
    return fd
run.acquire_instance_lock = held_until_go
sys.exit(run.main())
"""


def daemon_holding_its_lock(held: Path, go: Path, timeout: float = 60) -> DaemonProcess:
    """A real daemon stopped between taking its instance lock and binding its socket, until the
    file ``go`` exists (``held`` exists once it holds the lock)."""
    daemon = DaemonProcess()
    handle = open(daemon.log, "ab")
    daemon.process = subprocess.Popen(
        [sys.executable, "-c", _HELD_BEFORE_THE_SOCKET, str(held), str(go)],
        env=daemon.env,
        stdout=handle,
        stderr=handle,
    )
    deadline = time.monotonic() + timeout
    while not held.exists():
        if daemon.process.poll() is not None or time.monotonic() > deadline:
            daemon.kill()
            raise RuntimeError(f"the daemon did not take its lock:\n{daemon.log.read_text()}")
        time.sleep(0.02)
    return daemon


@pytest.fixture
def start_daemon(home):
    """Start real daemons on the test's home; all are stopped at the end."""
    started: list[DaemonProcess] = []

    def start(**env: str) -> DaemonProcess:
        daemon = DaemonProcess(env).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
