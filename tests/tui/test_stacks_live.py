"""Stacks in the TUI against a real daemon: a burst of 8 frames is one tile, and `z` opens it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from tests.test_stacks import BURST, build_album

from conftest import TEST_MODEL, DaemonProcess
from petwatch.tui.app import PetwatchApp
from petwatch.tui.screens.preview import PreviewScreen
from petwatch.tui.widgets.results import ResultsGrid

from .conftest import ready, wait_for
from .test_live import search_by_typing


@pytest.fixture(scope="module")
def burst_album():
    from petwatch import settings as settings_module

    home = Path(tempfile.mkdtemp(prefix="pwt-", dir="/tmp"))
    patch = pytest.MonkeyPatch()
    patch.setenv("PETWATCH_HOME", str(home))
    patch.setenv("PETWATCH_MODEL", TEST_MODEL)
    patch.setenv("PETWATCH_SETTLE_SECONDS", "0.5")
    patch.setenv("PETWATCH_TUI_IMAGES", "halfblock")
    for name in ("PETWATCH_FOLDERS", "PETWATCH_MILVUS_URI", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        patch.delenv(name, raising=False)
    made = build_album(home)
    settings_module.update_config_file(folders=[str(home / "album"), str(home / "other")])
    daemon = DaemonProcess().start()
    try:
        daemon.wait_idle()
        yield made
    finally:
        daemon.stop()
        patch.undo()
        shutil.rmtree(home, ignore_errors=True)


async def test_a_burst_is_one_tile_that_opens_into_its_frames(burst_album):
    frames = {str(p) for p in burst_album["burst"]}
    app = PetwatchApp(theme="textual-dark")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        grid = await search_by_typing(pilot, str(burst_album["burst"][2]))
        tiles = [i for i, hit in enumerate(grid.hits) if hit["path"] in frames]
        assert len(tiles) == 1
        _score, note, _name = grid.tile_text(tiles[0], False)
        assert f"[{BURST}]" in note  # the tile says how many photos it stands for
        grid.focus()
        grid.cursor = tiles[0]
        await pilot.press("z")
        await wait_for(pilot, lambda: isinstance(app.screen, PreviewScreen), what="the stack opened")
        preview = app.screen
        assert {hit["path"] for hit in preview.hits} == frames
        await pilot.press("right")
        assert preview.index == 1
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, PreviewScreen), what="back to the grid")
        # A photo on its own has no stack to open.
        alone = next(i for i, hit in enumerate(grid.hits) if not hit["stack"])
        app.screen.query_one(ResultsGrid).cursor = alone
        await pilot.press("z")
        await pilot.pause()
        assert not isinstance(app.screen, PreviewScreen)
