"""The TUI in a new user's first minutes: no terminal, quitting, a daemon still starting, and the
welcome text at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from conftest import DaemonProcess, daemon_holding_its_lock, write_photos
from petwatch import locations
from petwatch import settings as settings_module
from petwatch.tui.app import PetwatchApp
from petwatch.tui.screens.search import SearchScreen
from petwatch.tui.widgets.banner import ConnectionBanner
from petwatch.tui.widgets.picture import HalfBlockPicture
from petwatch.tui.widgets.status_bar import StatusBar

from .conftest import ready, wait_for
from .fakes import FakeClient


# --- no terminal --------------------------------------------------------------------------------
@pytest.mark.parametrize("stdin", ["devnull", "terminal"])
def test_without_a_terminal_the_tui_says_so_in_one_line_and_exits_2(stdin):
    """`petwatch < /dev/null` and `petwatch | head` (stdin a terminal, stdout a pipe) used to spin
    at full CPU, forever, drawing nowhere."""
    if stdin == "terminal":
        main_end, child_end = os.openpty()
    else:
        main_end, child_end = None, subprocess.DEVNULL
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "petwatch"], stdin=child_end, capture_output=True, text=True, timeout=30
        )
    finally:
        if main_end is not None:
            os.close(main_end)
            os.close(child_end)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "needs a terminal" in lines[0] and "petwatch search" in lines[0], lines
    assert time.monotonic() - started < 15, "not at once"


# --- quitting ----------------------------------------------------------------------------------
def _footer_keys(app, action: str) -> list[str]:
    return [key.key for key in app.screen.query("FooterKey") if key.action == action]


async def test_the_quit_key_the_footer_shows_quits_even_from_the_query_field():
    app = PetwatchApp(client=FakeClient(), picture_class=HalfBlockPicture, theme="textual-dark")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        query = app.screen.query_one("#query")
        assert query.has_focus  # where a new user's keyboard is at first
        shown = _footer_keys(app, "quit")
        assert shown, "the footer shows no way to quit"
        await pilot.press("q")  # a letter in a text field types itself, as in any terminal program
        assert query.value == "q" and app.is_running
        await pilot.press(shown[0])
        await pilot.pause()
    assert not app.is_running and app.return_code == 0


async def test_q_quits_once_the_keyboard_has_left_the_query_field():
    app = PetwatchApp(client=FakeClient(), picture_class=HalfBlockPicture, theme="textual-dark")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("escape")
        assert app.focused is None or not app.focused.id == "query"
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running


async def test_the_help_screen_says_how_quitting_works_in_a_text_field():
    from petwatch.tui.screens.help import binding_rows

    rows = binding_rows()
    quit_keys = [keys for area, keys, what in rows if area == "Everywhere" and what == "Quit"]
    assert quit_keys == ["ctrl+q / q"], rows
    assert any(area == "Query field" and "ctrl+q" in what for area, _keys, what in rows)


# --- the welcome text --------------------------------------------------------------------------
def _rendered_lines(widget) -> list[str]:
    """The widget's text as drawn, inside its border and padding."""
    outer, inner = widget.region, widget.content_region
    dx, dy = inner.x - outer.x, inner.y - outer.y
    strips = widget.render_lines(outer.reset_offset)[dy : dy + inner.height]
    return [strip.text[dx : dx + inner.width].rstrip() for strip in strips]


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
async def test_the_welcome_text_reflows_to_the_width(size):
    """Each paragraph fills its lines: no line ends early while the next word would have fitted
    (hard line breaks inside reflowed text left "completes)," or "large," alone on a line)."""
    app = PetwatchApp(client=FakeClient(), picture_class=HalfBlockPicture, theme="textual-dark")
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        welcome = app.screen.query_one("#results-empty")
        width = welcome.content_region.width
        lines = _rendered_lines(welcome)
    text = [line.strip() for line in lines]
    assert "Find every photo of your pet from one example." in text
    for line, after in zip(text, text[1:], strict=False):
        if line and after:  # within a paragraph
            next_word = after.split()[0]
            assert len(line) + 1 + len(next_word) > width, f"{line!r} ends early (width {width})"
    assert all(len(line) <= width for line in text)


# --- a daemon that is still starting ---------------------------------------------------------------
async def test_the_tui_says_the_daemon_is_starting_then_connects(home):
    album = home / "album"
    write_photos(album, 2)
    settings_module.update_config_file(folders=[str(album)])
    daemon = DaemonProcess()
    handle = open(daemon.log, "ab")
    daemon.process = subprocess.Popen(
        [sys.executable, "-m", "petwatch", "daemon"], env=daemon.env, stdout=handle, stderr=handle
    )
    try:
        deadline = time.monotonic() + 60
        while not locations.socket_path().exists():
            assert daemon.process.poll() is None and time.monotonic() < deadline, daemon.log.read_text()
            time.sleep(0.02)
        app = PetwatchApp(theme="textual-dark", retry_seconds=(0.2,))
        async with app.run_test(size=(100, 30)) as pilot:
            banner = app.screen.query_one(ConnectionBanner)
            state = app.screen.query_one(StatusBar).query_one("#status-state")
            await wait_for(pilot, lambda: app.daemon_starting, what="the daemon seen as starting")
            await pilot.pause()
            assert banner.display
            assert "The petwatch daemon is starting (loading the model)" in str(
                banner.query_one("#banner-text").render()
            )
            assert "starting" in str(state.render())
            assert not banner.query_one("#banner-start").display  # no "Start daemon" for a starting one
            await wait_for(pilot, lambda: app.connected, timeout=120, what="the connection")
            await pilot.pause()
            assert not banner.display
            assert str(state.render()).split()[-1] in ("idle", "indexing")
            assert isinstance(app.screen, SearchScreen)
    finally:
        daemon.stop()


async def test_a_daemon_holding_its_lock_before_its_socket_is_starting_in_the_tui(home, tmp_path):
    """Between the daemon's first moment (its instance lock) and its socket, the TUI said "not
    running" and offered to start another."""
    held, go = tmp_path / "held", tmp_path / "go"
    daemon = daemon_holding_its_lock(held, go)
    try:
        app = PetwatchApp(theme="textual-dark", retry_seconds=(0.2,))
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: app.daemon_starting, what="the daemon seen as starting")
            await pilot.pause()
            banner = app.screen.query_one(ConnectionBanner)
            assert "The petwatch daemon is starting (loading the model)" in str(
                banner.query_one("#banner-text").render()
            )
            assert not banner.query_one("#banner-start").display
            assert not locations.socket_path().exists()
    finally:
        daemon.kill()
