"""The TUI against a real daemon (one per module): search, selection, folders, reconnection,
and `petwatch tui` itself in a real terminal (tmux)."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_photos
from petwatch.tui import launcher
from petwatch.tui.app import PetwatchApp
from petwatch.tui.screens.folders import FoldersScreen
from petwatch.tui.screens.search import SearchScreen
from petwatch.tui.screens.selection import SelectionScreen
from petwatch.tui.widgets.banner import ConnectionBanner
from petwatch.tui.widgets.results import ResultsGrid
from petwatch.tui.widgets.status_bar import StatusBar

from .conftest import ready, screen_text, wait_for


def status_text(app) -> str:
    bar = app.screen.query_one(StatusBar)
    return " ".join(str(item.render()) for item in bar.query("StatusItem") if item.display)


async def start(pilot) -> None:
    await ready(pilot)


async def search_by_typing(pilot, path: str) -> ResultsGrid:
    """Type ``path`` into the query field as a user does, press Enter, wait for the hits."""
    app = pilot.app
    await pilot.press("slash")
    query = app.screen.query_one("#query")
    query.value = ""
    await pilot.press(*path)
    await pilot.press("enter")
    grid = app.screen.query_one(ResultsGrid)
    await wait_for(
        pilot,
        lambda: (
            grid.hits
            and app.screen.last_query
            and app.screen.last_query["path"] == path
            and "hits for" in screen_text(app)
        ),
        what="search results",
    )
    return grid


async def test_search_by_path_shows_the_query_photo_first(live):
    app = PetwatchApp(theme="textual-dark")
    query = str(live.photos[3])
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        assert isinstance(app.screen, SearchScreen)
        assert f"{len(live.photos)} photos" in status_text(app)
        # Path completion: the directory and a unique prefix of the name, then Tab.
        stem = Path(query).name[: len(Path(query).name) - 6]
        await pilot.press(*f"{live.album}/{stem}")
        await wait_for(pilot, lambda: app.screen.query_one("#query")._suggestion == query, what="path completion")
        await pilot.press("tab")
        assert app.screen.query_one("#query").value == query
        await pilot.press("enter")
        grid = app.screen.query_one(ResultsGrid)
        await wait_for(pilot, lambda: grid.hits, what="search results")
        assert grid.hits[0]["path"] == query
        assert grid.hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
        assert len(grid.hits) == len(live.photos)  # top-k 20 > 12 photos: all, best first
        assert [h["score"] for h in grid.hits] == sorted((h["score"] for h in grid.hits), reverse=True)
        assert grid.has_focus and grid.cursor == 0
        assert Path(query).name in screen_text(app)  # the highlighted hit's path is shown
        # Thumbnails come from the daemon, lazily, into the LRU cache.
        await wait_for(pilot, lambda: grid.states[0] == "done", what="the first thumbnail")
        assert (query, 128) in app.thumbnails
        # Enter opens the hit large, with its metadata from the daemon.
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: type(app.screen).__name__ == "PreviewScreen" and app.screen.meta, what="the preview"
        )
        details = screen_text(app)
        assert "taken" in details and "pixels" in details and str(live.album.name) in details
        await pilot.press("escape")
        assert isinstance(app.screen, SearchScreen)


async def test_selection_survives_a_new_search(live, tmp_path):
    app = PetwatchApp(theme="textual-dark")
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        grid = await search_by_typing(pilot, str(live.photos[0]))
        await pilot.press("space", "right", "space")
        chosen = [grid.hits[0]["path"], grid.hits[1]["path"]]
        assert app.selection == chosen
        assert "2 selected" in status_text(app)
        # "Search again from this hit" (a), then a new typed search: the selection stays.
        await pilot.press("a")
        await wait_for(
            pilot,
            lambda: app.screen.last_query["path"] == chosen[1] and grid.hits and grid.hits[0]["path"] == chosen[1],
            what="search from hit",
        )
        grid = await search_by_typing(pilot, str(live.photos[5]))
        assert grid.hits[0]["path"] == str(live.photos[5])
        assert app.selection == chosen
        assert "2 selected" in status_text(app)
        shown = {h["path"] for h in grid.hits}
        assert set(chosen) <= shown  # all 12 photos are hits, so the marks show again
        # The selection screen lists them; y copies, w saves one path a line.
        await pilot.press("v")
        assert isinstance(app.screen, SelectionScreen)
        await pilot.press("y")
        assert app.clipboard == "\n".join(chosen)
        target = tmp_path / "chosen.txt"
        await pilot.press("w")
        app.screen.query_one("#selection-file").value = str(target)
        await pilot.press("enter")
        assert target.read_text().splitlines() == chosen
        await pilot.press("escape")
        # Space on a selected hit unselects it.
        grid = app.screen.query_one(ResultsGrid)
        grid.focus()
        grid.cursor = [h["path"] for h in grid.hits].index(chosen[0])
        await pilot.press("space")
        assert app.selection == chosen[1:]


async def test_adding_a_folder_on_the_folders_screen_indexes_its_photos(live):
    extra = live.home / "more"
    added = write_photos(extra, 5)
    before = len(live.daemon.wait_idle()["folders"])
    app = PetwatchApp(theme="textual-dark")
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        indexed_before = app.daemon_status["indexed"]
        await pilot.press("escape", "f")  # leave the query field, then f: folders
        assert isinstance(app.screen, FoldersScreen)
        await pilot.press("a")
        await pilot.press(*str(extra))
        await pilot.press("enter")

        def counted() -> bool:
            folders = {f["path"]: f for f in app.daemon_status.get("folders", [])}
            return (
                str(extra) in folders
                and folders[str(extra)]["photos"] == len(added)
                and app.daemon_status["indexed"] == indexed_before + len(added)
            )

        await wait_for(pilot, counted, timeout=90, what="the new folder's photos in the status")
        assert len(app.daemon_status["folders"]) == before + 1
        assert f"{indexed_before + len(added)} photos" in status_text(app)
        table = app.screen.query_one("#folders-table")
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert any(row[1] == str(len(added)) for row in rows)
        await pilot.press("escape")
        assert isinstance(app.screen, SearchScreen)


def _tmux(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", TMUX_SERVER, *args], capture_output=True, text=True, timeout=30, check=check)


TMUX_SERVER = f"petwatch-test-{os.getpid()}"


def _pane(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session, check=False).stdout


def _wait_pane(session: str, condition, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = _pane(session)
        if condition(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"the terminal never showed what was expected; it shows:\n{text}")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
def test_petwatch_tui_in_a_real_80x24_terminal(live):
    """`petwatch tui` in tmux: search by typing a path, quit; no traceback anywhere."""
    session = "pw"
    env = {name: os.environ[name] for name in ("PETWATCH_HOME", "PETWATCH_MODEL", "PATH", "HOME") if name in os.environ}
    command = (
        f"env {' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())} TERM=xterm-256color "
        f"{shlex.quote(sys.executable)} -m petwatch tui; echo PETWATCH-EXIT=$?; sleep 60"
    )
    _tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", command)
    try:
        _wait_pane(session, lambda text: "photos" in text and "idle" in text)
        query = str(live.photos[2])
        _tmux("send-keys", "-t", session, "-l", query)
        _tmux("send-keys", "-t", session, "Enter")
        screen = _wait_pane(session, lambda text: "hits for" in text)
        assert Path(query).name[:14] in screen  # the best hit's tile (name may be cut)
        _tmux("send-keys", "-t", session, "Right", "Space")
        _wait_pane(session, lambda text: "1 selected" in text)
        _tmux("send-keys", "-t", session, "q")
        final = _wait_pane(session, lambda text: "PETWATCH-EXIT=" in text, timeout=30)
        assert "PETWATCH-EXIT=0" in final, final
        assert "Traceback" not in final and "Error" not in final, final
    finally:
        _tmux("kill-server", check=False)


async def test_daemon_stop_shows_a_banner_and_the_tui_recovers(live):
    """Runs last in this module: it restarts the module's daemon."""
    app = PetwatchApp(theme="textual-dark", retry_seconds=(0.2,))
    async with app.run_test(size=(100, 30)) as pilot:
        await start(pilot)
        banner = app.screen.query_one(ConnectionBanner)
        assert not banner.display
        indexed = app.daemon_status["indexed"]
        await asyncio.to_thread(live.daemon.stop)
        await wait_for(pilot, lambda: banner.display, timeout=20, what="the banner")
        assert app.connected is False
        assert "Lost the petwatch daemon" in screen_text(app)
        assert "no daemon" in status_text(app)
        # Searching while it is gone says so, and nothing crashes.
        await pilot.press("slash", *str(live.photos[0]), "enter")
        await wait_for(pilot, lambda: "search failed" in screen_text(app), what="the search error")
        await asyncio.to_thread(live.daemon.start)
        await wait_for(pilot, lambda: app.connected and not banner.display, timeout=60, what="reconnection")
        assert f"{indexed} photos" in status_text(app)
        await pilot.press("enter")  # the same search works again
        await wait_for(pilot, lambda: "hits for" in screen_text(app), what="search after recovery")


async def test_pressing_s_starts_a_daemon_in_the_background(home):
    """No daemon on this (fresh) home: the screen says so, s starts one, the TUI connects."""
    from petwatch import locations
    from petwatch import settings as settings_module

    album = home / "album"
    write_photos(album, 3)
    settings_module.update_config_file(folders=[str(album)])
    launches: list[launcher.Launch] = []

    def start_and_remember() -> launcher.Launch:
        launches.append(launcher.start_daemon())
        return launches[-1]

    app = PetwatchApp(theme="textual-dark", start_daemon=start_and_remember, retry_seconds=(0.2,))
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot, connected=False)
            assert "No petwatch daemon is running" in screen_text(app)
            await pilot.press("s")
            assert launches and launches[0].how == "background"
            try:
                await wait_for(pilot, lambda: app.connected, timeout=120, what="the started daemon")
            except AssertionError:
                raise AssertionError(
                    f"no connection; daemon log: {launcher.log_tail(launches[0].log, 20)}; "
                    f"exit {launches[0].process.poll()}"
                ) from None
            await wait_for(pilot, lambda: app.daemon_status.get("indexed") == 3, timeout=60, what="its first walk")
            assert not app.screen.query_one(ConnectionBanner).display
            assert launches[0].log == locations.log_file() and launches[0].log.exists()
    finally:
        for launch in launches:
            if launch.process is not None:
                launch.process.terminate()
                launch.process.wait(60)


async def test_a_search_in_words_against_the_daemon(live):
    """Words to the real daemon (issue 28): hits with how each word was read, Tab completing a
    pet's name from GET /words, and an unknown word told in the daemon's one line."""
    app = PetwatchApp(theme="textual-dark")
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await start(pilot)
        query = app.screen.query_one("#query")
        query.focus()
        query.value = ""
        await pilot.press(*"dog", "enter")
        grid = app.screen.query_one(ResultsGrid)
        info = app.screen.query_one("#results-info")
        await wait_for(pilot, lambda: grid.hits, what=f"hits for a word ({info.render()}, {app._notifications})")
        assert app.screen.last_query["text"] == "dog"
        line = str(app.screen.query_one("#readings").render())
        assert line.startswith("read as  dog: ") and "ImageNet" in line, line
        hit = grid.hits[0]
        assert hit["concepts"] and hit["taken_from"] in ("exif", "file")
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: type(app.screen).__name__ == "PreviewScreen" and app.screen.meta, what="the preview"
        )
        assert f"concepts {hit['concepts'][0]}" in " ".join(screen_text(app).split())
        await pilot.press("escape", "slash")
        query.value = "dog flibbertigibbet"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app._notifications, what="the unknown word's notification")
        message = next(iter(app._notifications)).message
        assert "flibbertigibbet" in message and "\n" not in message
