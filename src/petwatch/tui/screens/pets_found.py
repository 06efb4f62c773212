"""Pets found for you (d on the pets screen): the individuals the daemon found in the library,
each a cover photo with its size, breed and dates. Name one to make it a pet profile, dismiss
one that is not yours, merge two that are the same pet; Enter shows a group's photos, where
x takes a photo out of it. Pushed ``group`` events refresh the list as groups appear and grow.
"""

from __future__ import annotations

from typing import Any, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Static

from petwatch import format
from petwatch.errors import PetwatchError
from petwatch.protocol import GroupReply
from petwatch.tui.events import GroupChanged
from petwatch.tui.screens.base import PetwatchScreen
from petwatch.tui.screens.pets import PetNameScreen, _escape
from petwatch.tui.widgets.banner import ConnectionBanner
from petwatch.tui.widgets.results import ResultsGrid
from petwatch.tui.widgets.status_bar import StatusBar

NONE_FOUND = (
    "No pets found yet. A pet appears here once it shows up in at least 3 photos from "
    "2 different days or folders; the daemon looks again after each backfill."
)


def describe(group: GroupReply) -> str:
    return (
        f"group {group['id']} · {format.plural(group['size'], 'photo')} · {group['species']}, "
        f"{group['breed']} · {group['reason']} ({group['first_day']} – {group['last_day']})"
    )


class _GroupScreen(PetwatchScreen):
    @property
    def grid(self) -> ResultsGrid:
        return self.query_one(ResultsGrid)

    def compose(self) -> ComposeResult:
        yield ConnectionBanner()
        with Horizontal(id="results-header"):
            yield Static("loading…", id="results-info")
            yield Static("", id="hit-info")
        yield ResultsGrid(id="found-grid")
        yield Static("", id="results-empty")
        yield StatusBar()
        yield Footer()

    def action_back(self) -> None:
        self.dismiss()


class PetsFoundScreen(_GroupScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("n", "name", "Name this pet"),
        Binding("x", "dismiss_group", "Not my pet"),
        Binding("m", "merge", "Merge (press on both)"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[GroupReply] = []
        self.marked: int | None = None  # the group a second m merges into

    def on_mount(self) -> None:
        self.load()

    def on_group_changed(self, _message: GroupChanged) -> None:
        self.load()

    @work(exclusive=True, group="found")
    async def load(self) -> None:
        info = self.query_one("#results-info", Static)
        try:
            self.groups = await self.petwatch.client.groups()
        except PetwatchError as error:
            info.update(_escape(str(error)))
            return
        grid = self.grid
        cursor = grid.cursor
        # A group is shown by its cover photo; the grid pages, previews and draws it as any hit.
        grid.show([{"path": g["cover"], "score": 1.0, "group": g} for g in self.groups])
        if grid.hits and cursor > 0:
            grid.cursor = min(cursor, len(grid.hits) - 1)
        if grid.hits and self.app.screen is self and not grid.has_focus:
            grid.focus()
        self.set_class(bool(grid.hits), "-has-results")
        self._highlighted()
        empty = ""
        if not self.groups:  # say why: what the daemon saw, and what the rule needs
            try:
                why = await self.petwatch.client.groups_why()
                empty = f"{format.no_pets_found(why)} The daemon looks again after each backfill."
            except PetwatchError:
                empty = NONE_FOUND
        self.query_one("#results-empty", Static).update(empty)
        count = sum(1 for g in self.groups if not g["lookalikes"])
        alike = len(self.groups) - count
        folded = f" (and {format.plural(alike, 'group')} of look-alikes, last)" if alike else ""
        info.update(
            f"[b]Pets found[/]  I found {format.plural(count, 'pet')} in your photos{folded}, likeliest first · "
            "[b]n[/] name · [b]x[/] not my pet · [b]m[/] on two: merge · [b]Enter[/] photos"
            if self.groups
            else "[b]Pets found[/]"
        )

    @on(ResultsGrid.Highlighted)
    def _highlighted(self, _event: ResultsGrid.Highlighted | None = None) -> None:
        hit = self.grid.current_hit
        group = hit.get("group") if hit else None
        marked = "  (marked for merge)" if group and group["id"] == self.marked else ""
        self.query_one("#hit-info", Static).update(describe(group) + marked if group else "")

    @on(ResultsGrid.Open)
    def _open(self, event: ResultsGrid.Open) -> None:
        group = self._current()
        if group:
            self.app.push_screen(GroupPhotosScreen(group["id"]), self._photos_closed)

    def _photos_closed(self, _result: object) -> None:
        self.load()

    def _current(self) -> GroupReply | None:
        hit = self.grid.current_hit
        if hit is None:
            self.notify("no pet found yet", severity="warning")
            return None
        return cast(GroupReply, hit["group"])

    def action_reload(self) -> None:
        self.load()

    def action_name(self) -> None:
        if group := self._current():
            gid = group["id"]

            def named(name: str | None) -> None:
                if name:
                    self.name_group(gid, name)

            self.app.push_screen(PetNameScreen(group["size"]), named)

    @work(group="found-edit")
    async def name_group(self, gid: int, name: str) -> None:
        try:
            pet = await self.petwatch.client.group_action(gid, "name", {"name": name})
        except PetwatchError as error:
            self.notify(str(error), title="Not named", severity="error")
            return
        self.notify(
            f"{pet['name']}: {format.plural(pet.get('count', 0), 'photo')} in the album, "
            "kept current as new photos arrive",
            title="New pet profile",
        )
        self.load()

    def action_dismiss_group(self) -> None:
        if group := self._current():
            self.group_action(group["id"], "dismiss", None, f"group {group['id']} hidden: not your pet")

    def action_merge(self) -> None:
        """m on one group, then m on the other: the same pet, one group (m again: changed my mind)."""
        group = self._current()
        if not group:
            return
        if self.marked is None or self.marked == group["id"]:
            self.marked = None if self.marked == group["id"] else group["id"]
            self._highlighted()
            self.notify(
                f"group {group['id']}: move to the group that is the same pet and press m"
                if self.marked
                else "not merging"
            )
            return
        into, self.marked = self.marked, None
        self.group_action(into, "merge", {"other": group["id"]}, f"group {group['id']} joined group {into}")

    @work(group="found-edit")
    async def group_action(self, gid: int, action: str, body: dict[str, Any] | None, done: str) -> None:
        try:
            await self.petwatch.client.group_action(gid, action, body)
        except PetwatchError as error:
            self.notify(str(error), severity="error")
            return
        self.notify(done)
        self.load()


class GroupPhotosScreen(_GroupScreen):
    """One group's photos, best first; x: not this pet (out of the group for good)."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("x", "move_out", "Not this pet"),
    ]

    def __init__(self, gid: int) -> None:
        super().__init__()
        self.gid = gid

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, group="group-photos")
    async def load(self) -> None:
        info = self.query_one("#results-info", Static)
        try:
            group = next(g for g in await self.petwatch.client.groups() if g["id"] == self.gid)
        except (PetwatchError, StopIteration):
            info.update(f"group {self.gid} is gone (named, dismissed or merged)")
            return
        self.grid.show([{"path": path, "score": 1.0} for path in group["paths"]])
        self.set_class(bool(self.grid.hits), "-has-results")
        info.update(f"[b]{describe(group)}[/]  x: not this pet")
        if not self.grid.has_focus:
            self.grid.focus()

    def action_move_out(self) -> None:
        hit = self.grid.current_hit
        if hit is not None:
            self.move_out(hit["path"])

    @work(group="group-photos-edit")
    async def move_out(self, path: str) -> None:
        try:
            await self.petwatch.client.group_action(self.gid, "remove", {"paths": [path]})
        except PetwatchError as error:
            self.notify(str(error), severity="error")
            return
        self.load()
