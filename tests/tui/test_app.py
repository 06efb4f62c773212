"""App behaviour from fixed data (no daemon): pushed events, reconnection, dialogs, hooks."""

from __future__ import annotations

import sys
import types

import pytest
from textual.screen import Screen
from textual.widgets import DataTable, Static

from petwatch.errors import PetwatchError
from petwatch.tui import launcher
from petwatch.tui.app import PetwatchApp
from petwatch.tui.screens.browse import BrowseScreen
from petwatch.tui.screens.confirm import ConfirmScreen
from petwatch.tui.screens.folders import FoldersScreen
from petwatch.tui.screens.help import HelpScreen, binding_rows
from petwatch.tui.screens.search import SearchScreen
from petwatch.tui.widgets.banner import ConnectionBanner
from petwatch.tui.widgets.picture import HalfBlockPicture
from petwatch.tui.widgets.results import ResultsGrid
from petwatch.tui.widgets.status_bar import StatusBar

from .conftest import ready, searched, wait_for
from .fakes import FakeClient, fake_hits, fake_status


def make_app(client: FakeClient | None = None, **kwargs) -> PetwatchApp:
    return PetwatchApp(
        client=client or FakeClient(),
        picture_class=HalfBlockPicture,
        theme="textual-dark",
        retry_seconds=(0.05,),
        **kwargs,
    )


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


def status_text(app) -> str:
    return " ".join(str(i.render()) for i in app.screen.query_one(StatusBar).query("StatusItem") if i.display)


async def test_pushed_events_update_the_status_bar_and_announce_new_photos():
    client = FakeClient(status=fake_status(indexed=10))
    app = make_app(client)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.connected and client.events_queue, what="connection")
        assert "10 photos" in status_text(app) and "idle" in status_text(app)
        await client.events_queue.put(("state", {"state": "indexing"}))
        await client.events_queue.put(
            ("progress", {"done": 3, "total": 12, "rate": 2.0, "eta_s": 4.5, "current": "/x.jpg"})
        )
        await client.events_queue.put(("indexed", {"paths": ["/a.jpg"], "count": 3, "total": 13}))
        await wait_for(pilot, lambda: "13 photos" in status_text(app), what="the count")
        text = status_text(app)
        assert "indexing" in text and "queue 9" in text and "ETA 4s" in text
        assert app.screen.query_one("#status-progress").display
        client._status = fake_status(indexed=13, failed=2)
        await client.events_queue.put(("report", {"indexed": 3, "failed": {"/b.jpg": "truncated"}}))
        await client.events_queue.put(("state", {"state": "idle"}))
        await client.events_queue.put(("status", client._status))  # idle: the numbers, pushed
        await wait_for(pilot, lambda: "2 failed" in status_text(app), what="the failures count")
        assert client.status_calls == 0  # pushed: the TUI asked for no status
        await client.events_queue.put(("removed", {"paths": ["/a.jpg"], "count": 1, "total": 12}))
        await wait_for(pilot, lambda: "12 photos" in status_text(app), what="the count after a removal")
        assert not app.screen.query_one("#status-progress").display
        await wait_for(
            pilot,
            lambda: any("3 new photos indexed" in n for n in notes(app)),
            timeout=5,
            what="the new photos notification",
        )
        await client.events_queue.put(("error", {"message": "disk full"}))
        await wait_for(pilot, lambda: "disk full" in notes(app), what="the error notification")


async def test_a_config_file_the_daemon_could_not_take_is_told_and_marked():
    problem = "batch_size changed in /home/you/.config/petwatch/config.toml: restart the daemon to apply"
    client = FakeClient(status=fake_status(config_problem=None))
    app = make_app(client)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.connected and client.events_queue, what="connection")
        assert "config" not in status_text(app)
        client._status = fake_status(config_problem=problem)
        await client.events_queue.put(("status", client._status))  # pushed when the problem appears
        await wait_for(pilot, lambda: "⚠ config file" in status_text(app), what="the mark")
        assert notes(app) == [problem]  # told once, with what to do...
        await client.events_queue.put(("status", client._status))
        await pilot.pause(0.2)
        assert notes(app) == [problem]  # ... not again while it stays the same
        await pilot.click("#status-config")  # the mark tells it again
        await wait_for(pilot, lambda: notes(app) == [problem, problem], what="the note again")
        client._status = fake_status(config_problem=None)  # fixed: the mark goes
        await client.events_queue.put(("status", client._status))
        await wait_for(pilot, lambda: "config" not in status_text(app), what="the mark gone")


async def test_an_index_upgrade_shows_its_progress_and_its_end():
    client = FakeClient(status=fake_status(indexed=120))
    app = make_app(client)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.connected and client.events_queue, what="connection")
        await client.events_queue.put(
            ("upgrade", {"from": "whole", "to": "petfocus1", "done": 30, "total": 120, "finished": False})
        )
        await wait_for(pilot, lambda: "upgrading 25%" in status_text(app), what="the upgrade's progress")
        await client.events_queue.put(("upgrade", {"done": 120, "total": 120, "finished": True}))
        await wait_for(pilot, lambda: any("pet-focused vector" in n for n in notes(app)), what="its end")
        assert "upgrading" not in status_text(app) and "idle" in status_text(app)


async def test_reconnects_by_itself_and_clears_the_banner():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.connected and client.events_queue, what="connection")
        banner = app.screen.query_one(ConnectionBanner)
        assert not banner.display
        client.running = False
        await client.events_queue.put(None)  # the stream ends: the daemon went away
        await wait_for(pilot, lambda: banner.display, what="the banner")
        assert "no daemon" in status_text(app)
        client.running = True
        await wait_for(pilot, lambda: app.connected and not banner.display, what="recovery")
        assert "connected to the daemon again" in notes(app)


async def test_start_daemon_key_launches_and_waits():
    client = FakeClient(running=False)
    launches = []

    def fake_start() -> launcher.Launch:
        launches.append(1)
        client.running = True  # as if the new daemon came up
        return launcher.Launch("background", log=None)

    app = make_app(client, start_daemon=fake_start)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await ready(pilot, connected=False)
        assert app.focused is None  # the empty query field let go: s reaches the app
        await pilot.press("s")
        await ready(pilot)
        assert launches == [1] and not app.starting
        assert app.focused is app.screen.query_one("#query")
        await pilot.press("escape", "s")  # already running: no second daemon
        assert launches == [1]


async def test_start_daemon_failure_is_reported():
    def failing() -> launcher.Launch:
        raise PetwatchError("could not start the daemon: no python")

    app = make_app(FakeClient(running=False), start_daemon=failing)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await ready(pilot, connected=False)
        await pilot.press("s")
        await wait_for(pilot, lambda: "could not start the daemon: no python" in notes(app), what="the error")
        assert not app.starting


async def test_comic_hook_opens_the_comic_screen_with_the_selection(monkeypatch):
    app = make_app()
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await ready(pilot)
        await pilot.press("escape", "k")
        await wait_for(
            pilot, lambda: any("select the photos for the comic first" in n for n in notes(app)), what="the hint"
        )
        app.selection.extend(["/photos/pets/a.jpg", "/photos/pets/b.jpg"])
        app.selection_changed()
        await pilot.pause()
        assert "2 selected" in status_text(app)
        if "petwatch.tui.screens.comic" not in sys.modules:
            try:
                import petwatch.tui.screens.comic  # noqa: F401
            except ModuleNotFoundError:
                await pilot.press("k")
                await wait_for(
                    pilot, lambda: any("comics are not available" in n for n in notes(app)), what="the notice"
                )

        class ComicScreen(Screen):
            def __init__(self, paths):
                super().__init__()
                self.paths = paths

        monkeypatch.setitem(sys.modules, "petwatch.tui.screens.comic", types.SimpleNamespace(ComicScreen=ComicScreen))
        await pilot.press("k")
        assert isinstance(app.screen, ComicScreen)
        assert app.screen.paths == ["/photos/pets/a.jpg", "/photos/pets/b.jpg"]


async def test_tab_completes_only_when_there_is_a_completion(tmp_path):
    (tmp_path / "rex.jpg").write_bytes(b"")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        query = app.screen.query_one("#query")
        query.value = f"{tmp_path}/"
        await pilot.press("r")
        await wait_for(pilot, lambda: query._suggestion.endswith("rex.jpg"), what="suggestion")
        await pilot.press("tab")
        assert query.value == f"{tmp_path}/rex.jpg" and query.has_focus
        await pilot.press("tab")  # nothing left to complete: Tab moves on, as usual
        assert app.focused is app.screen.query_one("#top-k")


async def test_browse_picks_the_query_photo(tmp_path):
    (tmp_path / "album").mkdir()
    (tmp_path / "album" / "rex.jpg").write_bytes(b"")
    (tmp_path / "album" / "notes.txt").write_bytes(b"")
    client = FakeClient(hits=fake_hits(5))
    app = make_app(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        app.screen.query_one("#query").value = str(tmp_path / "album" / "x")
        await pilot.press("escape", "b")
        assert isinstance(app.screen, BrowseScreen)
        tree = app.screen.query_one("#browse-tree")
        await wait_for(pilot, lambda: len(tree.root.children) == 1, what="the folder listing")
        assert tree.root.children[0].data.path.name == "rex.jpg"  # the .txt is left out
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SearchScreen) and client.searches, what="the search")
        assert client.searches[0]["image"] == str(tmp_path / "album" / "rex.jpg")
        assert app.screen.query_one("#query").value == str(tmp_path / "album" / "rex.jpg")


async def test_pets_only_toggle_searches_again_with_the_species_filter():
    client = FakeClient(hits=fake_hits(12))
    app = make_app(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        app.screen.query_one("#query").value = "/photos/pets/bengal_000.jpg"
        await pilot.press("enter")
        grid = app.screen.query_one(ResultsGrid)
        await wait_for(pilot, lambda: len(grid.hits) == 12, what="every hit")
        assert client.searches[-1]["species"] is None
        await pilot.press("t")  # the grid has the focus: t toggles "pets only"
        await wait_for(pilot, lambda: len(client.searches) == 2 and len(grid.hits) == 8, what="the filtered search")
        assert client.searches[-1]["species"] == ["dog", "cat"]
        assert {hit["species"] for hit in grid.hits} <= {"dog", "cat"}
        assert "· pets only ·" in str(app.screen.query_one("#results-info").render())
        await pilot.press("t")
        await wait_for(pilot, lambda: len(client.searches) == 3 and len(grid.hits) == 12, what="unfiltered again")


async def test_removing_a_folder_asks_first():
    client = FakeClient()
    app = make_app(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("escape", "f")
        assert isinstance(app.screen, FoldersScreen)
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert len(client._status["folders"]) == 1
        await pilot.press("delete", "y")
        await wait_for(pilot, lambda: not client._status["folders"], what="removal")
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: "no folders yet" in str(table.get_row_at(0)[0]), what="empty list")


def test_every_screens_keys_are_in_help():
    """Help is built from the bindings: every screen and widget of the TUI that declares keys
    (found here by walking the package, as a new screen would be) has each of them listed, under
    its own area (the "pets found" and group screens were missing from a hand-kept list)."""
    import importlib
    import inspect
    import pkgutil

    from textual.dom import DOMNode

    import petwatch.tui
    from petwatch.tui.screens.help import area_name

    rows = binding_rows()
    owners = []
    for info in pkgutil.walk_packages(petwatch.tui.__path__, "petwatch.tui."):
        module = importlib.import_module(info.name)
        owners += [
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, DOMNode) and c.__module__ == info.name and "BINDINGS" in c.__dict__
        ]
    names = {owner.__name__ for owner in owners}
    assert {"PetsFoundScreen", "GroupPhotosScreen", "PetsScreen", "SearchScreen", "PreviewScreen"} <= names
    missing = [
        f"{owner.__name__}: {binding.key} {binding.description or binding.action}"
        for owner in owners
        if not owner.__name__.startswith("_")
        for binding in owner.BINDINGS
        if not any(
            area == area_name(owner) and what == (binding.description or binding.action) for area, _, what in rows
        )
    ]
    assert not missing, "keys missing from help:\n" + "\n".join(missing)
    areas = {area for area, _, _ in rows}
    assert {"Pets found", "Group photos", "Status bar", "Query field"} <= areas


async def test_help_lists_every_binding():
    rows = binding_rows()
    listed = {(area, keys) for area, keys, _ in rows}
    assert ("Everywhere", "? / f1") in listed and ("Results grid", "space") in listed
    assert ("Preview", "o") in listed and ("Folders", "a") in listed
    assert all(what for _, _, what in rows)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("escape", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert app.screen.query_one(DataTable).row_count == len(rows)
        await pilot.press("escape")
        assert isinstance(app.screen, SearchScreen)


async def test_command_palette_offers_the_main_actions():
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await pilot.press(*"folders")
        await pilot.pause(0.5)
        options = app.screen.query_one("CommandList")
        prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert any("Folders: manage watched folders" in p for p in prompts), prompts
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, FoldersScreen), what="folders screen")


async def test_preview_pages_through_hits_and_selects():
    client = FakeClient(hits=fake_hits(5))
    app = make_app(client)
    async with app.run_test(size=(100, 30)) as pilot:
        grid = await searched(pilot, "/photos/q.jpg")
        await pilot.press("enter")
        await wait_for(pilot, lambda: getattr(app.screen, "meta", None), what="preview")
        await pilot.press("right", "right", "space")
        assert app.selection == [client.hits[2]["path"]]
        details = str(app.screen.query_one("#preview-details", Static).render())
        assert "3 of 5" in details and "yes" in details
        await pilot.press("left")
        await pilot.press("escape")
        assert isinstance(app.screen, SearchScreen) and grid.cursor == 1
        await pilot.press("enter", "a")  # search again from the previewed hit
        await wait_for(pilot, lambda: len(client.searches) == 2, what="second search")
        assert client.searches[1]["photo"] == client.hits[1]["path"]


@pytest.mark.parametrize("background,theme", [("15", "textual-light"), ("0", "textual-dark")])
def test_default_theme_follows_the_terminal_background(monkeypatch, background, theme):
    from petwatch.tui.app import default_theme

    monkeypatch.delenv("TEXTUAL_THEME", raising=False)
    monkeypatch.setenv("COLORFGBG", f"7;{background}")
    assert default_theme() == theme


@pytest.mark.skipif(
    bool(sys.__stdout__ and sys.__stdout__.isatty()),
    reason="importing textual-image would probe the real terminal (pytest -s)",
)
@pytest.mark.parametrize("kind", ["kitty", "sixel"])
async def test_preview_with_textual_image_widgets(kind):
    """The classes a Kitty or Sixel terminal gets render the preview (no terminal probed here)."""
    from petwatch.tui.widgets import picture

    picture_class = picture._kitty_class() if kind == "kitty" else picture._sixel_class()
    client = FakeClient(hits=fake_hits(3))
    app = PetwatchApp(client=client, picture_class=picture_class, theme="textual-dark")
    async with app.run_test(size=(100, 30)) as pilot:
        await searched(pilot, "/photos/q.jpg")
        await pilot.press("enter")
        await wait_for(pilot, lambda: getattr(app.screen, "meta", None), what="preview")
        shown = app.screen.query_one("#preview-picture")
        assert isinstance(shown, picture_class) and shown.image is not None
        await pilot.pause()
        assert 0 < shown.size.width <= app.screen.query_one("#preview-frame").size.width
        await pilot.press("right")
        await wait_for(pilot, lambda: app.screen.meta and app.screen.index == 1, what="next")
        await pilot.press("escape")


async def test_mouse_click_moves_and_double_click_opens():
    from petwatch.tui.widgets.results import TILE_HEIGHT

    client = FakeClient(hits=fake_hits(12))
    app = make_app(client)
    async with app.run_test(size=(100, 30)) as pilot:
        grid = await searched(pilot, "/photos/q.jpg")
        width = grid.scrollable_content_region.width // grid.columns
        await pilot.click(ResultsGrid, offset=(width * 2 + 3, TILE_HEIGHT + 3))  # row 2, column 3
        assert grid.cursor == grid.columns + 2
        await pilot.click(ResultsGrid, offset=(3, 3), times=2)
        await wait_for(pilot, lambda: getattr(app.screen, "meta", None), what="preview")
        assert app.screen.index == 0
        await pilot.press("escape")
        await pilot.click("#status-selection")  # hidden while nothing is selected: no screen
        assert isinstance(app.screen, SearchScreen)


def _header(app) -> str:
    """The search bar's line as drawn (the screenshot's text; its segments, whose gaps are
    positions, joined without spaces)."""
    import html
    import re

    svg = app.export_screenshot()
    rows = re.findall(r'<text class="[^"]*" x="[^"]*" y="([^"]*)"[^>]*>([^<]*)</text>', svg)
    lines: dict[str, str] = {}
    for y, text in rows:
        lines[y] = lines.get(y, "") + html.unescape(text).replace("\xa0", " ")
    line = next(line for line in lines.values() if "top" in line and "min" in line)
    return "".join(line.split())


async def test_the_header_at_80x24_shows_no_cut_as_no_number_and_the_daemons_settings():
    """ "min -1.0" is not a cut; and the fields start from the daemon's live top_k and min_score
    settings (its status), not from protocol.DEFAULT_TOP_K."""
    client = FakeClient(status=fake_status(top_k=7, min_score=-1.0), hits=fake_hits(30))
    app = make_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        header = _header(app)
        assert "-1.0" not in header and "-1" not in header, header
        assert "top7minany" in header, header
        app.screen.search("/photos/query.jpg")
        await wait_for(pilot, lambda: app.screen.grid.hits, what="the hits")
        assert client.searches[-1]["top_k"] == 7 and client.searches[-1]["min_score"] is None
        assert len(app.screen.grid.hits) == 7

        client._status = fake_status(top_k=7, min_score=0.25)  # the config file edited: a cut
        app.daemon_status = client._status
        await pilot.pause()
        assert "top7min0.25" in _header(app)
