"""TUI test helpers: one real daemon per test module, and waiting on the app."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import TEST_MODEL, DaemonProcess, write_photos


@dataclass
class Live:
    home: Path
    album: Path
    photos: list[Path]
    daemon: DaemonProcess


@contextmanager
def daemon_watching(make_albums: Callable[[Path], list[Path]]) -> Iterator[tuple[Path, DaemonProcess]]:
    """A daemon on a private /tmp home watching the folders ``make_albums(home)`` fills
    (indexed, idle): (home, daemon)."""
    from petwatch import settings as settings_module

    home = Path(tempfile.mkdtemp(prefix="pwt-", dir="/tmp"))
    patch = pytest.MonkeyPatch()
    patch.setenv("PETWATCH_HOME", str(home))
    patch.setenv("PETWATCH_MODEL", TEST_MODEL)
    patch.setenv("PETWATCH_SETTLE_SECONDS", "0.5")
    patch.setenv("PETWATCH_TUI_IMAGES", "halfblock")
    for name in ("PETWATCH_FOLDERS", "PETWATCH_MILVUS_URI", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        patch.delenv(name, raising=False)
    try:
        # The folder list lives in the config file (as `petwatch folders add` leaves it), so a
        # restarted daemon, and folders added by the tests, keep it.
        settings_module.update_config_file(folders=[str(f) for f in make_albums(home)])
        daemon = DaemonProcess().start()
        try:
            daemon.wait_idle()
            yield home, daemon
        finally:
            daemon.stop()
    finally:
        patch.undo()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """A daemon on a private /tmp home, watching one album of real photos (indexed, idle)."""
    written: list[Path] = []

    def album(home: Path) -> list[Path]:
        written.extend(write_photos(home / "album", 12))
        return [home / "album"]

    with daemon_watching(album) as (home, daemon):
        yield Live(home, home / "album", written, daemon)


async def wait_for(pilot, condition: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    """Let the app run until ``condition()`` is true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)
        await asyncio.sleep(0)


async def ready(pilot, connected: bool | None = True) -> None:
    """The search screen composed and focused (an auto-pilot may start earlier), and the
    connection settled (``connected=None``: either way)."""
    from petwatch.tui.screens.search import SearchScreen

    app = pilot.app
    await wait_for(
        pilot,
        lambda: (
            isinstance(app.screen, SearchScreen)
            and list(app.screen.query("#query"))
            and (app.connected is connected if connected is not None else app.connected is not None)
        ),
        what="the app to be ready",
    )
    await pilot.pause()
    await pilot.pause()


async def searched(pilot, query: str = "/photos/dog.jpg"):
    """The search screen ready, ``query`` searched, and its results grid once hits are in it."""
    from petwatch.tui.widgets.results import ResultsGrid

    await ready(pilot)
    pilot.app.screen.query_one("#query").value = query
    await pilot.press("enter")
    grid = pilot.app.screen.query_one(ResultsGrid)
    await wait_for(pilot, lambda: grid.hits, what="hits")
    return grid


def screen_text(app) -> str:
    """Everything on the current screen as plain text (for asserting what the user sees)."""
    from textual.widgets import Static

    parts = []
    for widget in app.screen.query(Static):
        if widget.display:
            parts.append(str(widget.render()))
    return "\n".join(parts)
