"""Stacks in the TUI against a real daemon: a burst of 8 frames is one tile, and `z` opens it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.test_stacks import BURST, build_album

from petwatch.tui.app import PetwatchApp
from petwatch.tui.screens.preview import PreviewScreen
from petwatch.tui.widgets.results import ResultsGrid

from .conftest import daemon_watching, ready, wait_for
from .test_live import search_by_typing


@pytest.fixture(scope="module")
def burst_album():
    made: dict[str, list[Path]] = {}

    def albums(home: Path) -> list[Path]:
        made.update(build_album(home))
        return [home / "album", home / "other"]

    with daemon_watching(albums):
        yield made


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
