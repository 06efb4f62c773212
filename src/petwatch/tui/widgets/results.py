"""The results area: a keyboard-first grid of thumbnails with score and file name.

One widget draws the whole grid line by line (a ScrollView, as Textual's Log and DataTable
do), so a thousand hits cost no more than ten: only the lines on screen are rendered, each
tile row once until something in it changes. Thumbnails are fetched lazily: from the app's
LRU cache, else from the daemon by a small pool of workers, and only for the rows on screen
and one screen above and below. Tiles are drawn with half blocks, whatever the terminal;
the preview screen shows the photo large with Kitty graphics or Sixel where the terminal has
them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

from PIL import Image
from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import work
from textual.binding import Binding
from textual.events import Click, Resize
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from petwatch import format
from petwatch.errors import PetwatchError
from petwatch.protocol import PET_SPECIES
from petwatch.tui.images import TILE_SIZE
from petwatch.tui.widgets.picture import half_block_strips

if TYPE_CHECKING:
    from petwatch.tui.app import PetwatchApp

# A tile's record: a search hit (protocol.HitReply), an album photo (PetHitReply), a comic or a
# group (wrapped with a ``path`` key); the grid only reads it.
Tile = Mapping[str, Any]

TILE_WIDTH = 19  # minimum cells per tile, border included: columns = width // TILE_WIDTH
PICTURE_ROWS = 7
TILE_HEIGHT = PICTURE_ROWS + 4  # border, picture, score line, name line, border
THUMB_WORKERS = 4
LOOKAHEAD_SCREENS = 1  # thumbnails load this many screens above and below the view

MARK_NOTES = {"example": " example", "yes": " confirmed"}  # a pet album's marks

NORMAL_BORDER = "╭─╮│╰╯"
CURSOR_BORDER = "┏━┓┃┗┛"


MOVE_BINDINGS = [
    Binding("left", "move(-1)", "Previous hit", show=False),
    Binding("right", "move(1)", "Next hit", show=False),
    Binding("up", "move_rows(-1)", "Row up", show=False),
    Binding("down", "move_rows(1)", "Row down", show=False),
    Binding("pageup", "move_page(-1)", "Screen up", show=False),
    Binding("pagedown", "move_page(1)", "Screen down", show=False),
    Binding("home", "move_to(0)", "First hit", show=False),
    Binding("end", "move_to(-1)", "Last hit", show=False),
]


def hit_line(index: int, total: int, hit: Tile) -> str:
    """The line under a grid about its highlighted hit: rank, score, path (and breed, for a pet)."""
    label = hit.get("label") if hit.get("species") in PET_SPECIES else ""
    return (
        f"{index + 1}/{total}  {hit['score']:.3f}  {format.home_relative(hit['path'])}{f'  ({label})' if label else ''}"
    )


class ResultsGrid(ScrollView, can_focus=True):
    """Arrows move, Enter opens large, Space selects; click moves, double-click opens."""

    COMPONENT_CLASSES = {
        "results--border",
        "results--cursor",
        "results--selected",
        "results--caption",
        "results--score",
        "results--note",
    }

    DEFAULT_CSS = """
    ResultsGrid {
        scrollbar-gutter: stable;
        & > .results--border { color: $panel; }
        & > .results--cursor { color: $accent; text-style: bold; }
        &:focus > .results--cursor { color: $primary; background: $primary-muted; }
        & > .results--selected { color: $secondary; background: $secondary-muted; }
        & > .results--caption { color: $text-muted; }
        & > .results--score { color: $foreground; text-style: bold; }
        & > .results--note { color: $text-warning; }
    }
    """

    BINDINGS = [
        *MOVE_BINDINGS,
        Binding("enter", "open", "Open large"),
        Binding("space", "toggle_select", "Select"),
        Binding("a", "search_from", "Search from hit"),
        Binding("z", "open_stack", "Open stack"),
        Binding("o", "open_external", "Open in the system viewer", show=False),
    ]

    cursor: reactive[int] = reactive(-1, init=False)

    class Open(Message):
        """Open this hit large."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    class SearchFrom(Message):
        def __init__(self, hit: Tile) -> None:
            super().__init__()
            self.hit = hit

    class Highlighted(Message):
        def __init__(self, hit: Tile | None, index: int) -> None:
            super().__init__()
            self.hit = hit
            self.index = index

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hits: list[Tile] = []
        self.pictures: list[Image.Image | None] = []
        self.states: list[str] = []  # per hit: none | queued | done | failed
        self._queue: asyncio.Queue[int] | None = None
        self._generation = 0  # bumped by each new result set: stale fetches are dropped
        self._columns = 4
        self._rows_cache: dict[int, list[Strip]] = {}
        self._picture_cache: dict[tuple, list[Strip]] = {}
        self._visible_pending = False

    @property
    def petwatch(self) -> PetwatchApp:
        return cast("PetwatchApp", self.app)

    @property
    def columns(self) -> int:
        return self._columns

    @property
    def current_hit(self) -> Tile | None:
        return self.hits[self.cursor] if 0 <= self.cursor < len(self.hits) else None

    def on_mount(self) -> None:
        self._queue = asyncio.Queue()
        for _ in range(THUMB_WORKERS):
            self.run_worker(self._thumbnail_worker, group="thumbnails", exit_on_error=False)
        self.watch(self, "scroll_y", self._scrolled, init=False)
        self.watch(self.petwatch, "selection_count", self._selection_changed, init=False)
        self.watch(self.petwatch, "connected", self._reconnected, init=False)

    # --- contents ------------------------------------------------------------------------
    def show(self, hits: Sequence[Tile], append: bool = False) -> int:
        """Show ``hits`` (replacing, or after the ones shown); returns how many were added."""
        if not append:
            self._generation += 1
            self._drain_queue()
            self.hits, self.pictures, self.states = [], [], []
            self._picture_cache.clear()
            self.scroll_to(y=0, animate=False, immediate=True)
        known = {hit["path"] for hit in self.hits}
        fresh = [hit for hit in hits if hit["path"] not in known]
        self.hits.extend(fresh)
        self.pictures.extend([None] * len(fresh))
        self.states.extend(["none"] * len(fresh))
        self._rows_cache.clear()
        self._update_virtual_size()
        if not append or self.cursor < 0:
            self.set_reactive(ResultsGrid.cursor, -1)
            if self.hits:
                self.cursor = 0
            else:
                self.post_message(self.Highlighted(None, -1))
        self.refresh()
        self.request_visible()
        return len(fresh)

    def _drain_queue(self) -> None:
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()

    def _update_virtual_size(self) -> None:
        rows = -(-len(self.hits) // self._columns)
        self.virtual_size = Size(self.scrollable_content_region.width, rows * TILE_HEIGHT)

    def _invalidate(self, index: int) -> None:
        self._rows_cache.pop(index // self._columns, None)
        self.refresh()

    # --- cursor --------------------------------------------------------------------------
    def watch_cursor(self, old: int, new: int) -> None:
        for index in (old, new):
            if 0 <= index < len(self.hits):
                self._invalidate(index)
        self._scroll_to_cursor()
        self.post_message(self.Highlighted(self.current_hit, new))

    def _scroll_to_cursor(self) -> None:
        if not 0 <= self.cursor < len(self.hits):
            return
        top = (self.cursor // self._columns) * TILE_HEIGHT
        height = self.scrollable_content_region.height
        if top < self.scroll_y:
            self.scroll_to(y=top, animate=False, immediate=True)
        elif height and top + TILE_HEIGHT > self.scroll_y + height:
            self.scroll_to(y=top + TILE_HEIGHT - height, animate=False, immediate=True)

    def _set_cursor(self, index: int) -> None:
        if self.hits:
            self.cursor = max(0, min(len(self.hits) - 1, index))

    def action_move(self, delta: int) -> None:
        self._set_cursor(self.cursor + delta)

    def action_move_rows(self, rows: int) -> None:
        target = self.cursor + rows * self._columns
        if 0 <= target < len(self.hits):
            self._set_cursor(target)
        elif rows > 0 and self.cursor // self._columns < (len(self.hits) - 1) // self._columns:
            self._set_cursor(len(self.hits) - 1)  # onto the last, shorter row

    def action_move_page(self, pages: int) -> None:
        rows = max(1, self.scrollable_content_region.height // TILE_HEIGHT)
        self._set_cursor(self.cursor + pages * rows * self._columns)

    def action_move_to(self, index: int) -> None:
        self._set_cursor(index if index >= 0 else len(self.hits) - 1)

    def action_open(self) -> None:
        if self.current_hit is not None:
            self.post_message(self.Open(self.cursor))

    def action_toggle_select(self) -> None:
        if (hit := self.current_hit) is not None:
            self.petwatch.toggle_selected(hit["path"])

    def action_search_from(self) -> None:
        if (hit := self.current_hit) is not None:
            self.post_message(self.SearchFrom(hit))

    def action_open_external(self) -> None:
        if (hit := self.current_hit) is not None:
            self.petwatch.open_external(hit["path"])

    def action_open_stack(self) -> None:
        """The photos of the highlighted tile's stack (a burst, copies), large, one by one."""
        if (hit := self.current_hit) is not None and hit.get("stack"):
            self._open_stack(hit)

    @work(exclusive=True, group="stack")
    async def _open_stack(self, hit: Tile) -> None:
        from petwatch.tui.screens.preview import PreviewScreen  # the preview shows grids' hits

        try:
            stack = await self.petwatch.client.stack(hit["stack"]["id"])
        except PetwatchError as error:
            self.notify(str(error), title="Cannot open the stack", severity="error")
            return
        members: list[Tile] = [{"path": path, "score": None} for path in stack["members"]]
        if hit["path"] in stack["members"]:
            members[stack["members"].index(hit["path"])] = hit

        def closed(result: tuple[str, object] | None) -> None:
            if result and result[0] == "search":
                self.post_message(self.SearchFrom(cast(Tile, result[1])))

        self.app.push_screen(PreviewScreen(members, 0), closed)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("open", "toggle_select", "search_from"):
            return self.current_hit is not None
        if action == "open_stack":
            return self.current_hit is not None and bool(self.current_hit.get("stack"))
        if action == "open_external":
            return self.current_hit is not None  # without a viewer "o" says what to install
        return True

    def index_at(self, x: int, y: int) -> int | None:
        """The hit under content offset (x, y) of the visible area, if any."""
        width = self._tile_width()
        column, row = x // width, (y + int(self.scroll_y)) // TILE_HEIGHT
        index = row * self._columns + column
        return index if column < self._columns and 0 <= index < len(self.hits) else None

    def on_click(self, event: Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = self.index_at(offset.x, offset.y)
        if index is None:
            return
        self.focus()
        self.cursor = index
        if event.chain >= 2:
            self.post_message(self.Open(index))

    # --- drawing -------------------------------------------------------------------------
    def _tile_width(self) -> int:
        return max(TILE_WIDTH, self.scrollable_content_region.width // self._columns)

    def on_resize(self, event: Resize) -> None:
        self._columns = max(1, self.scrollable_content_region.width // TILE_WIDTH)
        self._rows_cache.clear()
        self._update_virtual_size()
        self._scroll_to_cursor()
        self.request_visible()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._rows_cache.clear()
        self._picture_cache.clear()
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        line = int(self.scroll_y) + y
        row, offset = divmod(line, TILE_HEIGHT)
        if row * self._columns >= len(self.hits):
            return Strip.blank(width, self.rich_style)
        strips = self._rows_cache.get(row)
        if strips is None:
            strips = self._rows_cache[row] = self._render_row(row, width)
        return strips[offset]

    def _render_row(self, row: int, width: int) -> list[Strip]:
        base = self.rich_style
        tile_width = self._tile_width()
        lines: list[list[Segment]] = [[] for _ in range(TILE_HEIGHT)]
        for column in range(self._columns):
            index = row * self._columns + column
            if index >= len(self.hits):
                break
            for target, segments in zip(lines, self._render_tile(index, tile_width, base), strict=True):
                target.extend(segments)
        return [Strip(segments).adjust_cell_length(width, base) for segments in lines]

    def _render_tile(self, index: int, width: int, base: Style) -> list[list[Segment]]:
        hit = self.hits[index]
        component = self.get_component_rich_style
        selected = self.is_marked(hit)
        if index == self.cursor:
            frame, chars = base + component("results--cursor"), CURSOR_BORDER
        elif selected:
            frame, chars = base + component("results--selected"), NORMAL_BORDER
        else:
            frame, chars = base + component("results--border"), NORMAL_BORDER
        inside = base + Style(bgcolor=frame.bgcolor) if frame.bgcolor else base
        inner = width - 2
        left, right = Segment(chars[3], frame), Segment(chars[3], frame)
        out = [[Segment(chars[0] + chars[1] * inner + chars[2], frame)]]
        for strip in self._picture(index, inner, inside):
            out.append([left, *strip, right])
        score, extra, name = self.tile_text(index, selected)
        if cell_len(score) > inner:
            score = _fit(score, inner, ellipsis=True)
        extra = _fit(extra, inner - cell_len(score))
        out.append(
            [
                left,
                Segment(score, inside + component("results--score")),
                Segment(extra, inside + component("results--note")),
                right,
            ]
        )
        out.append([left, Segment(_fit(name, inner, ellipsis=True), inside + component("results--caption")), right])
        out.append([Segment(chars[4] + chars[1] * inner + chars[5], frame)])
        return out

    # --- what a tile shows: subclasses (the comics gallery) change these -------------------
    def tile_text(self, index: int, selected: bool) -> tuple[str, str, str]:
        """(bold first line, note after it, caption) of tile ``index``."""
        hit = self.hits[index]
        mark = "✓ " if selected else ""
        offline = " offline" if hit.get("online") is False else ""
        album_mark = MARK_NOTES.get(hit.get("mark") or "", "")
        note = {"failed": " no preview", "queued": " …"}.get(self.states[index], "")
        stack = f" [{hit['stack']['size']}]" if hit.get("stack") else ""  # one tile for a burst of 8: [8]
        score = f"{hit['score']:.3f}" if hit.get("score") is not None else ""
        return f"{mark}{score}", stack + album_mark + offline + note, os.path.basename(hit["path"])

    def is_marked(self, hit: Tile) -> bool:
        """Whether the tile is drawn as selected."""
        return self.petwatch.is_selected(hit["path"])

    def cached_picture(self, hit: Tile) -> Image.Image | None:
        return self.petwatch.thumbnails.get(hit["path"], TILE_SIZE)

    async def fetch_picture(self, hit: Tile) -> Image.Image | None:
        return await self.petwatch.load_thumbnail(hit["path"], TILE_SIZE)

    def _picture(self, index: int, width: int, style: Style) -> list[list[Segment]]:
        image = self.pictures[index]
        if image is None:
            return [[Segment(" " * width, style)] for _ in range(PICTURE_ROWS)]
        key = (index, id(image), width, style)
        strips = self._picture_cache.get(key)
        if strips is None:
            strips = half_block_strips(image, width, PICTURE_ROWS, style)
            self._picture_cache[key] = strips
        return [list(strip) for strip in strips]

    # --- lazy thumbnails -----------------------------------------------------------------
    def _scrolled(self, _value: float) -> None:
        self.request_visible()

    def request_visible(self) -> None:
        """Queue thumbnails for the tiles near the view (once per refresh, however often asked)."""
        if not self._visible_pending:
            self._visible_pending = True
            self.call_after_refresh(self._load_visible)

    def visible_range(self) -> range:
        """Indices of the tiles on screen, plus LOOKAHEAD_SCREENS above and below."""
        height = max(self.scrollable_content_region.height, TILE_HEIGHT)
        top = self.scroll_y - LOOKAHEAD_SCREENS * height
        bottom = self.scroll_y + (1 + LOOKAHEAD_SCREENS) * height
        first_row = max(0, int(top) // TILE_HEIGHT)
        last_row = int(bottom) // TILE_HEIGHT
        return range(first_row * self._columns, min(len(self.hits), (last_row + 1) * self._columns))

    def _load_visible(self) -> None:
        self._visible_pending = False
        if self._queue is None:
            return
        for index in self.visible_range():
            if self.states[index] != "none":
                continue
            cached = self.cached_picture(self.hits[index])
            if cached is not None:
                self._set_picture(index, cached)
            else:
                self.states[index] = "queued"
                self._queue.put_nowait(index)

    def _set_picture(self, index: int, image: Image.Image | None) -> None:
        self.pictures[index] = image
        self.states[index] = "done" if image is not None else "failed"
        self._invalidate(index)

    async def _thumbnail_worker(self) -> NoReturn:  # until the worker is cancelled
        assert self._queue is not None
        while True:
            index = await self._queue.get()
            generation = self._generation
            if index >= len(self.states) or self.states[index] != "queued":
                continue
            if index not in self.visible_range():
                self.states[index] = "none"  # scrolled away before its turn: fetched when seen again
                continue
            image = await self.fetch_picture(self.hits[index])
            if generation == self._generation and index < len(self.states):
                self._set_picture(index, image)

    def _selection_changed(self, _count: int) -> None:
        self._rows_cache.clear()
        self.refresh()

    def _reconnected(self, connected: bool | None) -> None:
        if connected:
            self.states = ["none" if state == "failed" else state for state in self.states]
            self._rows_cache.clear()
            self.refresh()
            self.request_visible()


def _fit(text: str, width: int, ellipsis: bool = False) -> str:
    """``text`` padded or cut to exactly ``width`` cells."""
    if width <= 0:
        return ""
    if ellipsis and cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)
