"""A feature as a plug-in meets the daemon (daemon/features.py): registered on a real Daemon, it
hears what happens to the library (photos stored and removed, a walk, an upgrade finished, the
daemon starting and stopping) and serves its own route over the real Unix socket, next to the
built-in ones. Real model, real Milvus Lite, real watcher; the probe below is the plug-in."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import APIRouter
from tests.conftest import TEST_MODEL
from tests.test_index import embedder  # noqa: F401 - the same real model
from tests.test_pet_focus import _album, _make_old_format

from petwatch import locations, settings
from petwatch.client import DaemonClient
from petwatch.daemon.api import OwnerOnlyH11, create_app
from petwatch.daemon.core import Daemon
from petwatch.daemon.features import Feature
from petwatch.daemon.run import _serve, _server_class
from petwatch.daemon.unix_socket import bind_socket
from petwatch.embed import Embedder
from petwatch.index import IndexReport
from petwatch.library import Library
from petwatch.store import PhotoRow


class Probe(Feature):
    """Writes down what it hears; GET /probe answers with it."""

    def __init__(self) -> None:
        self.heard: list[str] = []
        self.stored_paths: list[str] = []
        self.removed_paths: list[str] = []
        self.walks: list[int] = []  # photos each walk found unchanged

    def routes(self) -> APIRouter:
        routes = APIRouter()

        @routes.get("/probe")
        def heard() -> dict[str, Any]:
            return {"heard": self.heard, "stored": self.stored_paths, "removed": self.removed_paths}

        return routes

    def start(self) -> None:
        self.heard.append("start")

    def stored(self, rows: list[PhotoRow]) -> None:
        self.heard.append("stored")
        self.stored_paths += [row.path for row in rows if row.view == 0]

    def removed(self, paths: list[str]) -> None:
        self.heard.append("removed")
        self.removed_paths += paths

    def walked(self, report: IndexReport) -> None:
        self.heard.append("walked")
        self.walks.append(report.unchanged)

    def upgraded(self) -> None:
        self.heard.append("upgraded")

    def stopping(self) -> None:
        self.heard.append("stopping")

    def close(self) -> None:
        self.heard.append("close")


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.1)


def test_a_plugged_in_feature_hears_the_library_and_answers_on_the_socket(home, embedder, tmp_path):
    album_dir = tmp_path / "album"
    album = _album(album_dir)  # 14 photos, indexed in the older format: the daemon upgrades them
    whole = Library(settings.load(pet_focus=False), Embedder(TEST_MODEL, pet_focus=None))
    whole.reconcile([str(album_dir)])
    _make_old_format(whole, tmp_path)
    whole.close()
    settings.update_config_file(folders=[str(album_dir)])

    daemon = Daemon(settings.load(), Library(settings.load(), embedder))
    probe = Probe()
    daemon.features.append(probe)  # before create_app and start, as the built-in ones
    server = _server_class(uvicorn, daemon.bus.close)(
        uvicorn.Config(create_app(daemon), http=OwnerOnlyH11, lifespan="off", log_level="warning")
    )
    serving = threading.Thread(target=_serve, args=(daemon, bind_socket(locations.socket_path()), server))
    serving.start()  # as run.main does: attach the bus, start the daemon, serve the socket
    try:
        wait_for(lambda: probe.walks, "the first walk")
        assert probe.heard[0] == "start" and probe.walks == [14]  # nothing new: every photo unchanged
        wait_for(lambda: "upgraded" in probe.heard, "the upgrade")

        copy = album_dir / "the_same_dog.jpg"
        shutil.copyfile(album["dog"][0], copy)
        wait_for(lambda: str(copy) in probe.stored_paths, "the copy stored")
        copy.unlink()  # another path holds its bytes: dropped at once, no grace
        wait_for(lambda: str(copy) in probe.removed_paths, "the copy removed")

        with DaemonClient(locations.socket_path()) as client:
            heard = client.call("GET", "/probe")
            assert heard["stored"] == [str(copy)] and heard["removed"] == [str(copy)]
            assert heard["heard"].count("upgraded") == 1
            assert client.status()["upgrade"] is None  # the built-in routes answer beside it
            assert client.pets() == []
    finally:
        server.should_exit = True
        serving.join(timeout=30)
        daemon.stop()
    assert probe.heard[-2:] == ["stopping", "close"]
