"""200 hits open at once and the grid keeps answering keys while thumbnails trickle in."""

from __future__ import annotations

import time

from petwatch.tui.app import PetwatchApp
from petwatch.tui.widgets.picture import HalfBlockPicture
from petwatch.tui.widgets.results import ResultsGrid

from .conftest import ready, wait_for
from .fakes import FakeClient, fake_hits

KEYPRESS_BOUND_S = 2.0


async def test_200_hits_stay_responsive_while_thumbnails_load():
    client = FakeClient(hits=fake_hits(200), thumbnail_delay=0.25)  # a slow daemon
    app = PetwatchApp(client=client, picture_class=HalfBlockPicture, theme="textual-dark")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.screen.query_one("#top-k").value = "200"
        app.screen.query_one("#query").value = "/photos/query.jpg"
        started = time.monotonic()
        await pilot.press("enter")
        grid = app.screen.query_one(ResultsGrid)
        await wait_for(pilot, lambda: len(grid.hits) == 200, timeout=10, what="200 hits")
        assert time.monotonic() - started < 5.0

        # Thumbnails are still loading: keys are handled anyway, each well within the bound.
        assert "queued" in grid.states
        for key, expected in (("down", grid.columns), ("right", grid.columns + 1), ("pagedown", None)):
            before = time.monotonic()
            await pilot.press(key)
            elapsed = time.monotonic() - before
            assert elapsed < KEYPRESS_BOUND_S, f"{key} took {elapsed:.2f}s"
            if expected is not None:
                assert grid.cursor == expected
        assert "queued" in grid.states  # the presses did not wait for the thumbnails

        # Lazy: only tiles on screen and about one screen around it were asked for.
        near = len(grid.visible_range())
        assert len(client.thumbnail_calls) <= near + 3 * grid.columns
        assert len(client.thumbnail_calls) < 100

        # Jumping to the end loads the end; the start is not fetched again when we come back.
        await pilot.press("end")
        assert grid.cursor == 199
        await wait_for(pilot, lambda: grid.states[199] == "done", timeout=15, what="the last thumbnail")
        await pilot.press("home")
        await wait_for(pilot, lambda: grid.states[0] == "done", timeout=15, what="the first thumbnail")
        paths = [path for path, _size in client.thumbnail_calls]
        assert len(paths) == len(set(paths)), "a thumbnail was fetched twice (the LRU cache missed)"


async def test_show_more_pages_with_offset():
    client = FakeClient(hits=fake_hits(50))
    app = PetwatchApp(client=client, picture_class=HalfBlockPicture, theme="textual-dark")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        app.screen.query_one("#query").value = "/photos/query.jpg"
        await pilot.press("enter")
        grid = app.screen.query_one(ResultsGrid)
        await wait_for(pilot, lambda: len(grid.hits) == 20, what="first page")
        await pilot.press("end", "m")
        await wait_for(pilot, lambda: len(grid.hits) == 40, what="second page")
        assert grid.cursor == 19  # paging keeps the cursor where it was
        await pilot.press("m")
        await wait_for(pilot, lambda: len(grid.hits) == 50, what="last page")
        assert [s["offset"] for s in client.searches] == [0, 20, 40]
        assert [h["path"] for h in grid.hits] == [h["path"] for h in client.hits]
        await pilot.press("m")  # nothing more: says so, asks no more
        await pilot.pause()
        assert len(client.searches) == 3
