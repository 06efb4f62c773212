"""What the app's full screens share: the app as a PetwatchApp, and a grid of photos' behaviour."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import on
from textual.screen import Screen
from textual.widgets import Static

from petwatch.tui.widgets.results import ResultsGrid, Tile, hit_line

if TYPE_CHECKING:
    from petwatch.tui.app import PetwatchApp


class PetwatchScreen(Screen):
    @property
    def petwatch(self) -> PetwatchApp:
        return cast("PetwatchApp", self.app)


class GridScreen(PetwatchScreen):
    """A screen around one ResultsGrid of photos: the highlighted hit's line in #hit-info,
    Enter opens it large, ``a`` searches again from it (on the search screen)."""

    @property
    def grid(self) -> ResultsGrid:
        return self.query_one(ResultsGrid)

    @on(ResultsGrid.Highlighted)
    def _highlighted(self, event: ResultsGrid.Highlighted) -> None:
        text = "" if event.hit is None else hit_line(event.index, len(self.grid.hits), event.hit)
        self.query_one("#hit-info", Static).update(text)

    @on(ResultsGrid.Open)
    def _open(self, event: ResultsGrid.Open) -> None:
        from petwatch.tui.screens.preview import browse

        browse(self, self.grid, event.index, self.search_from_hit)

    @on(ResultsGrid.SearchFrom)
    def _search_from(self, event: ResultsGrid.SearchFrom) -> None:
        self.search_from_hit(event.hit)

    def search_from_hit(self, hit: Tile) -> None:
        if screen := self.petwatch._search_screen():
            screen.search_from_hit(hit)
