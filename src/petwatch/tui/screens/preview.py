"""One hit large: the picture, when and where it was taken, what it shows, its size and folder;
page through the hits."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Static

from petwatch import format
from petwatch.errors import PetwatchError
from petwatch.tui.images import PREVIEW_SIZE
from petwatch.tui.widgets.banner import ConnectionBanner
from petwatch.tui.widgets.picture import Picture
from petwatch.tui.widgets.results import ResultsGrid, Tile
from petwatch.tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from petwatch.tui.app import PetwatchApp


class PreviewScreen(Screen[tuple[str, object]]):
    """Dismisses with ("cursor", index) to move the grid, or ("search", hit) to search from it."""

    BINDINGS = [
        Binding("escape,q", "back", "Back"),
        Binding("left", "step(-1)", "Previous"),
        Binding("right", "step(1)", "Next"),
        Binding("space", "toggle_select", "Select"),
        Binding("a", "search_from", "Search from this"),
        Binding("o", "open_external", "Viewer"),
        Binding("y", "copy_path", "Copy path", show=False),
    ]

    def __init__(self, hits: list[Tile], index: int) -> None:
        super().__init__()
        self.hits = hits
        self.index = index
        self.meta: Mapping[str, Any] | None = None  # the PhotoReply, or {"error": why not}

    @property
    def petwatch(self) -> PetwatchApp:
        return cast("PetwatchApp", self.app)

    @property
    def hit(self) -> Tile:
        return self.hits[self.index]

    def compose(self) -> ComposeResult:
        yield ConnectionBanner()
        with Horizontal(id="preview-body"):
            with Container(id="preview-frame"):
                yield self.petwatch.picture_class(id="preview-picture")
            with VerticalScroll(id="preview-meta"):
                yield Static("", id="preview-title", markup=False)
                yield Static("", id="preview-details")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.petwatch, "selection_count", self._render_details, init=False)
        self.show_hit(self.index)

    def show_hit(self, index: int) -> None:
        self.index = index
        self.meta = None
        cast(Picture, self.query_one("#preview-picture")).image = None
        self._render_details()
        self.load(self.hit["path"])

    @work(exclusive=True, group="preview")
    async def load(self, path: str) -> None:
        image = await self.petwatch.load_thumbnail(path, PREVIEW_SIZE)
        if path != self.hit["path"]:
            return
        cast(Picture, self.query_one("#preview-picture")).image = image
        try:
            self.meta = await self.petwatch.client.photo(path)
        except PetwatchError as error:
            self.meta = {"error": str(error)}
        if path == self.hit["path"]:
            self._render_details()

    def _render_details(self, _value: object = None) -> None:
        hit, meta = self.hit, self.meta or {}
        path = hit["path"]
        self.query_one("#preview-title", Static).update(os.path.basename(path))
        width, height = meta.get("width", hit.get("width")), meta.get("height", hit.get("height"))
        rows = [
            ("hit", f"{self.index + 1} of {len(self.hits)}"),
            ("score", f"{hit['score']:.3f}" if hit.get("score") is not None else "–"),  # a stack's other photos
            ("taken", _taken(hit, meta)),
            ("place", escape(_place(hit, meta))),
            ("pixels", f"{width} × {height}" if width and height else "unknown"),
            ("camera", escape(meta.get("camera", hit.get("camera")) or "unknown")),  # EXIF text: not markup
            ("file size", format.size(meta.get("size", hit.get("size")))),
            ("shows", _shows(hit)),
            ("concepts", escape(", ".join(hit.get("concepts") or [])) or "–"),
            # The photo's own folder (the title is its name): a whole path wrapped mid-name.
            ("folder", format.home_relative(os.path.dirname(path))),
            ("selected", "yes ★" if self.petwatch.is_selected(path) else "no"),
        ]
        if meta.get("online") is False or hit.get("online") is False:
            rows.append(("file", "[b]offline[/] (its folder is not mounted)"))
        if "error" in meta:
            rows.append(("daemon", meta["error"]))
        text = "\n".join(f"[b]{label:>9}[/]  {value}" for label, value in rows)
        self.query_one("#preview-details", Static).update(text)

    # --- actions -------------------------------------------------------------------------
    def action_back(self) -> None:
        self.dismiss(("cursor", self.index))

    def action_step(self, delta: int) -> None:
        index = self.index + delta
        if 0 <= index < len(self.hits):
            self.show_hit(index)

    def action_toggle_select(self) -> None:
        self.petwatch.toggle_selected(self.hit["path"])

    def action_search_from(self) -> None:
        self.dismiss(("search", self.hit))

    def action_open_external(self) -> None:
        self.petwatch.open_external(self.hit["path"])

    def action_copy_path(self) -> None:
        self.app.copy_to_clipboard(self.hit["path"])
        self.notify("path copied to the clipboard")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "step":
            return 0 <= self.index + cast(int, parameters[0]) < len(self.hits) or None
        return True


def _taken(hit: Tile, meta: Mapping[str, Any]) -> str:
    """When: a search hit's date (EXIF, else the file's time, said so); else the photo's EXIF date."""
    if hit.get("taken"):
        return format.taken(hit["taken"]) + ("  (file time)" if hit.get("taken_from") == "file" else "")
    return format.taken(meta.get("taken_at", hit.get("taken_at")))


def _place(hit: Tile, meta: Mapping[str, Any]) -> str:
    """Where (from the photo's GPS): a search hit's place, else the photo's town and country."""
    if hit.get("place"):
        return str(hit["place"])
    named = [meta.get(key) or hit.get(key) for key in ("city", "country")]
    return ", ".join(str(name) for name in named if name) or "unknown"


def _shows(hit: Tile) -> str:
    """What the classifier saw: the species, and the breed (or the animal's class)."""
    species, label = hit.get("species") or "none", hit.get("label") or ""
    if species == "none":
        return "no animal seen"
    return f"{species} · {label}" if label else species


def browse(screen: Screen, grid: ResultsGrid, index: int, search: Callable[[Tile], None]) -> None:
    """Open hit ``index`` of ``grid`` in the preview. Back on ``screen``, the grid's cursor is
    where the preview left it, and "search from this" hands the hit to ``search``."""

    def closed(result: tuple[str, object] | None) -> None:
        if not result:
            return
        kind, value = result
        if kind == "cursor":
            grid.cursor = cast(int, value)
        elif kind == "search":
            search(cast(Tile, value))

    screen.app.push_screen(PreviewScreen(grid.hits, index), closed)
