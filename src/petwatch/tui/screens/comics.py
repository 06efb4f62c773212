"""The gallery of comics: every job the daemon knows, newest first, as a grid of thumbnails
with state, cost and prompt; open one large, refine or retry it, cancel one that runs.

It follows the daemon's pushed ``comic`` events: a job that changes is redrawn, a new one
(from this TUI or the CLI) appears first.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from PIL import Image
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Static

from petwatch import format
from petwatch.errors import PetwatchError
from petwatch.tui.events import ComicChanged
from petwatch.tui.images import TILE_SIZE
from petwatch.tui.screens.base import PetwatchScreen
from petwatch.tui.screens.comic import STATE_RANK
from petwatch.tui.widgets.banner import ConnectionBanner
from petwatch.tui.widgets.results import MOVE_BINDINGS, ResultsGrid, Tile
from petwatch.tui.widgets.status_bar import StatusBar

STATE_MARKS = {"succeeded": "✓", "failed": "✕", "cancelled": "–", "running": "◐", "queued": "…"}

EMPTY_TEXT = (
    "[b]No comics yet.[/]\n\nSelect photos of your pet in the search results ([b]Space[/]) "
    "and press [b]k[/] to make one, or open a pet's profile ([b]p[/]) and press [b]k[/] there."
)


def comic_hit(job: Mapping[str, Any]) -> dict[str, Any]:
    """A gallery tile: the grid keys tiles by ``path``; the record rides along."""
    return {"path": f"comic:{job['id']}", "job": job}


class ComicGrid(ResultsGrid, inherit_bindings=False):
    """The results grid, drawing comics: the picture, the state and cost, the prompt."""

    HELP_AREA = "Comics gallery"  # where help lists its keys
    BINDINGS = [*MOVE_BINDINGS, Binding("enter", "open", "Open large")]

    def tile_text(self, index: int, selected: bool) -> tuple[str, str, str]:
        job = self.hits[index]["job"]
        state = job.get("state", "?")
        cost = job.get("cost_usd")
        if cost is None and state in ("queued", "running", "succeeded"):
            cost = job.get("estimated_cost_usd")
        note = f" {format.usd(cost)}" if cost else ""
        return f"{STATE_MARKS.get(state, '?')} {state}", note, job.get("prompt", "")

    def is_marked(self, hit: Tile) -> bool:
        return False

    async def fetch_picture(self, hit: Tile) -> Image.Image | None:
        job = hit["job"]
        if job.get("state") != "succeeded":
            return None
        return await self.petwatch.load_comic_thumbnail(job["id"], TILE_SIZE)


class ComicsScreen(PetwatchScreen):
    HELP_AREA = "Comics gallery"  # where help lists its keys
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("r", "refine", "Refine / retry"),
        Binding("c", "cancel_job", "Cancel comic"),
        Binding("o", "open_external", "Viewer"),
        Binding("y", "copy_path", "Copy path", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.loaded = False

    @property
    def grid(self) -> ComicGrid:
        return self.query_one(ComicGrid)

    @property
    def current(self) -> Mapping[str, Any] | None:
        hit = self.grid.current_hit
        return hit["job"] if hit else None

    def follows_comic(self, job_id: str) -> bool:
        return True  # every comic shows here

    def compose(self) -> ComposeResult:
        yield ConnectionBanner()
        with Horizontal(id="results-header"):
            yield Static("[b]Comics[/]  loading…", id="results-info")
            yield Static("", id="hit-info", markup=False)
        yield ComicGrid(id="comics-grid")
        yield Static(EMPTY_TEXT, id="results-empty")
        yield Static("", id="comics-details")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.petwatch, "connected", self._connection_changed, init=False)
        self.load()

    def _connection_changed(self, connected: bool | None) -> None:
        if connected:
            self.load()  # events may have been missed while away

    @work(exclusive=True, group="comics")
    async def load(self) -> None:
        try:
            jobs = await self.petwatch.client.comics()
        except PetwatchError as error:
            self.query_one("#results-info", Static).update(f"[b]Comics[/]  {error}")
            return
        chosen = self.current["id"] if self.current else None
        self.grid.show([comic_hit(self._newest(job)) for job in jobs])
        self._select(chosen)
        self.loaded = True
        self._counts()
        if self.grid.hits and self.app.screen is self:
            self.grid.focus()

    def _newest(self, job: Mapping[str, Any]) -> Mapping[str, Any]:
        """The listed record, or a later one that came as an event while the list loaded."""
        seen = self.petwatch.comic_records.get(job["id"])
        if seen is not None and STATE_RANK.get(seen.get("state", ""), 0) > STATE_RANK.get(job.get("state", ""), 0):
            return seen
        return job

    def _select(self, job_id: str | None) -> None:
        ids = [hit["job"]["id"] for hit in self.grid.hits]
        if job_id in ids:
            self.grid.cursor = ids.index(job_id)

    def _counts(self) -> None:
        jobs = [hit["job"] for hit in self.grid.hits]
        self.set_class(bool(jobs), "-has-results")
        by_state: dict[str, int] = {}
        for job in jobs:
            by_state[job.get("state", "?")] = by_state.get(job.get("state", "?"), 0) + 1
        parts = [f"{count} {state}" for state, count in by_state.items()]
        self.query_one("#results-info", Static).update(
            f"[b]Comics[/]  {format.plural(len(jobs), 'comic')}" + (f" ({', '.join(parts)})" if parts else "")
        )
        self._details()

    def on_comic_changed(self, message: ComicChanged) -> None:
        self._show_job(message.data)

    def _show_job(self, job: Mapping[str, Any]) -> None:
        """A job's newer record: its tile, or a new tile first."""
        if not self.loaded:
            return
        grid = self.grid
        for index, hit in enumerate(grid.hits):
            if hit["job"]["id"] == job["id"]:
                was = hit["job"].get("state")
                grid.hits[index] = {**hit, "job": job}
                if job.get("state") == "succeeded" and was != "succeeded":
                    grid.states[index] = "none"  # now there is a picture to fetch
                    grid.request_visible()
                grid._invalidate(index)
                break
        else:  # a new comic: first, as the daemon lists them
            chosen = self.current["id"] if self.current else None
            grid.show([comic_hit(job), *grid.hits], append=False)
            self._select(chosen)
        self._counts()
        self.refresh_bindings()

    @on(ResultsGrid.Highlighted)
    def _highlighted(self, event: ResultsGrid.Highlighted) -> None:
        self._details()
        self.refresh_bindings()

    def _details(self) -> None:
        job = self.current
        details = self.query_one("#comics-details", Static)
        hit_info = self.query_one("#hit-info", Static)
        if job is None:
            details.update("")
            hit_info.update("")
            return
        hit_info.update(f"{self.grid.cursor + 1}/{len(self.grid.hits)}  {job['id']}")
        state = job.get("state", "?")
        money = format.comic_cost(job.get("spent_usd"), job.get("estimated_cost_usd"))
        lines = [
            f"[b]{STATE_MARKS.get(state, '?')} {state}[/]  {_when(job.get('created_at'))} · "
            f"{format.plural(len(job.get('photos') or []), 'photo')} · {job.get('size')} "
            f"{job.get('quality')} · {money}" + (" · a refinement" if job.get("parent") else ""),
            _escape(job.get("prompt", "")),
        ]
        if state in ("queued", "running"):
            lines.append(_escape(job.get("progress") or ""))
        if job.get("error"):
            lines.append(f"[$text-error]{_escape(job['error'])}[/]")
        elif job.get("image"):
            lines.append(_escape(format.home_relative(job["image"])))
        details.update("\n".join(lines))

    # --- actions -------------------------------------------------------------------------
    def action_back(self) -> None:
        self.dismiss()

    def action_reload(self) -> None:
        self.load()

    @on(ResultsGrid.Open)
    def _open(self, event: ResultsGrid.Open) -> None:
        self.open_comic(edit=False)

    def action_refine(self) -> None:
        self.open_comic(edit=True)

    def open_comic(self, edit: bool) -> None:
        from petwatch.tui.screens.comic import ComicScreen

        job = self.current
        if job is None:
            self.notify("no comic to open", severity="warning")
            return
        self.app.push_screen(ComicScreen(job.get("photos") or [], job=job, edit=edit))

    def action_cancel_job(self) -> None:
        job = self.current
        if job is None or job.get("state") not in ("queued", "running"):
            self.notify("only a queued or running comic can be cancelled", severity="warning")
            return
        self.cancel_job(job["id"])

    @work(group="comics-cancel")
    async def cancel_job(self, job_id: str) -> None:
        try:
            job = await self.petwatch.client.comic_cancel(job_id)
        except PetwatchError as error:
            self.notify(str(error), title="Not cancelled", severity="error")
            return
        self._show_job(job)

    def action_open_external(self) -> None:
        job = self.current
        if job and job.get("image"):
            self.petwatch.open_external(job["image"])
        else:
            self.notify("this comic has no picture", severity="warning")

    def action_copy_path(self) -> None:
        job = self.current
        if job and job.get("image"):
            self.app.copy_to_clipboard(job["image"])
            self.notify("path copied to the clipboard")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        job = self.current if self.is_mounted and self.query(ComicGrid) else None
        if action == "cancel_job":
            return job is not None and job.get("state") in ("queued", "running")
        if action == "refine":
            return job is not None and job.get("state") not in ("queued", "running")
        if action in ("open_external", "copy_path"):
            has_image = job is not None and bool(job.get("image"))
            return has_image  # without a viewer "o" says what to install
        return True


def _when(iso: str | None) -> str:
    if not iso:
        return "?"
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def _escape(text: str) -> str:
    return text.replace("[", r"\[")
