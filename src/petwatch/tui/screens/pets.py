"""Pet profiles: the list (p), a pet's album in the results grid, teaching it ("not my pet",
"add missed photos"), a new profile from the selection, and a comic of a pet.

The daemon owns the profiles and matches every newly indexed photo against them; its pushed
``pet`` events ({name, new, count}) refresh these screens (and the app announces them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Input, Static

from petwatch import format
from petwatch.errors import PetwatchError
from petwatch.protocol import MAX_NAME, PetReply
from petwatch.tui.events import PetPhotos
from petwatch.tui.screens.base import GridScreen, PetwatchScreen
from petwatch.tui.screens.confirm import ConfirmScreen
from petwatch.tui.widgets.banner import ConnectionBanner
from petwatch.tui.widgets.results import ResultsGrid
from petwatch.tui.widgets.status_bar import StatusBar

BAD_NAME_CHARACTERS = ("/", "\\")

NO_PETS = (
    "no pet profiles yet: press d for the pets found in your photos, or select photos "
    "of your pet in the search results (Space), then press n here"
)


def check_name(name: str) -> str | None:
    """Why ``name`` cannot be a pet's name, or None when it can."""
    if not name:
        return "type the pet's name"
    if len(name) > MAX_NAME:
        return f"at most {MAX_NAME} characters"
    if any(c in name for c in BAD_NAME_CHARACTERS) or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a name without slashes or control characters"
    if name.startswith("-"):
        return "a name that does not start with '-'"
    return None


class PetNameScreen(ModalScreen[str | None]):
    """Asks for the name of a new pet profile; dismisses with it (None: cancelled)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("[b]New pet profile[/]", classes="dialog-title")
            yield Static(
                f"From the {format.plural(self.count, 'selected photo')} (three or more work "
                "best). A name that exists already gets them as more examples.",
                classes="dialog-text",
            )
            yield Input(placeholder="the pet's name, e.g. Cola", id="pet-name", max_length=MAX_NAME, compact=True)
            yield Static("", id="pet-name-error", classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Make profile", id="pet-name-ok", variant="primary", compact=True)
                yield Button("Cancel", id="pet-name-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#pet-name", Input).focus()

    @on(Input.Submitted, "#pet-name")
    @on(Button.Pressed, "#pet-name-ok")
    def _ok(self) -> None:
        name = self.query_one("#pet-name", Input).value.strip()
        problem = check_name(name)
        if problem:
            self.query_one("#pet-name-error", Static).update(problem)
            return
        self.dismiss(name)

    @on(Button.Pressed, "#pet-name-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


# The app's folders and selection keys work on the pets screens as anywhere, but are left out
# of their footers: with these screens' own keys it ran past 120 columns and cut them.
UNSHOWN_APP_KEYS = [
    Binding("f", "app.folders", "Folders", show=False),
    Binding("v", "app.show_selection", "Selection", show=False),
]


class PetsScreen(PetwatchScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        # Short labels: the app's keys (quit, help, folders, selection, palette) share the footer.
        Binding("n", "app.pet_new", "New pet"),
        Binding("plus", "add_examples", "Add selected"),
        Binding("k", "comic", "Comic"),
        Binding("x,delete", "remove", "Remove"),  # x first: the footer shows it, as the hint line does
        Binding("d", "found", "Pets found"),
        Binding("ctrl+r", "reload", "Reload", show=False),
        *UNSHOWN_APP_KEYS,
    ]

    def __init__(self) -> None:
        super().__init__()
        self.pets: list[PetReply] = []

    def compose(self) -> ComposeResult:
        yield ConnectionBanner()
        yield Static(
            "[b]Pet profiles[/]  Each pet's album is every indexed photo that shows it; new photos join by themselves.",
            id="pets-title",
        )
        yield Static("loading…", id="pets-info")
        yield DataTable(id="pets-table", cursor_type="row", zebra_stripes=True)
        yield Static(
            "[b]Enter[/] album · [b]n[/] new profile from the selection · [b]+[/] add the selection "
            "as examples · [b]k[/] comic of the pet · [b]x[/] remove · [b]d[/] pets found for you",
            id="pets-hint",
        )
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("pet", key="name")
        table.add_column("photos", key="count")
        table.add_column("examples", key="examples")
        table.add_column("confirmed", key="confirmed")
        table.add_column("not my pet", key="rejected")
        table.add_column("since", key="created")
        self.watch(self.petwatch, "connected", self._connection_changed, init=False)
        table.focus()

    def on_screen_resume(self) -> None:
        self.load()  # on show, and back from an album: marks may have changed the counts

    def on_pet_photos(self, _message: PetPhotos) -> None:
        self.load()

    def _connection_changed(self, connected: bool | None) -> None:
        if connected:
            self.load()

    @work(exclusive=True, group="pets")
    async def load(self) -> None:
        info = self.query_one("#pets-info", Static)
        try:
            self.pets = await self.petwatch.client.pets()
        except PetwatchError as error:
            info.update(str(error))
            return
        self.petwatch.pet_names = [pet["name"] for pet in self.pets]
        table = self.query_one(DataTable)
        current = table.cursor_row
        table.clear()
        for pet in self.pets:
            table.add_row(
                pet["name"],
                format.count(pet.get("count")),
                format.count(pet.get("examples")),
                format.count(pet.get("confirmed")),
                format.count(pet.get("rejected")),
                _date(pet.get("created_at")),
                key=pet["name"],
            )
        if not self.pets:
            table.add_row(NO_PETS, "", "", "", "", "", key="")
        table.move_cursor(row=min(current, table.row_count - 1))
        info.update(format.plural(len(self.pets), "pet") if self.pets else "")

    @property
    def current(self) -> str | None:
        table = self.query_one(DataTable)
        if not self.pets or not table.row_count:
            return None
        return table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value or None

    # --- actions -------------------------------------------------------------------------
    def action_back(self) -> None:
        self.dismiss()

    def action_reload(self) -> None:
        self.load()

    def action_found(self) -> None:
        from petwatch.tui.screens.pets_found import PetsFoundScreen

        self.app.push_screen(PetsFoundScreen(), self._found_closed)

    def _found_closed(self, _result: object) -> None:
        self.load()

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        name = event.row_key.value
        if name:
            self.petwatch.open_pet_album(name)

    def action_comic(self) -> None:
        if name := self._need_pet():
            self.petwatch.comic_of_pet(name)

    def action_add_examples(self) -> None:
        name = self._need_pet()
        if not name:
            return
        if not self.petwatch.selection:
            self.notify(f"select more photos of {name} first (Space on a hit), then press + here", severity="warning")
            return
        self.add_examples(name, list(self.petwatch.selection))

    @work(group="pets-edit")
    async def add_examples(self, name: str, photos: list[str]) -> None:
        try:
            summary = await self.petwatch.client.pet_add(name, photos)
        except PetwatchError as error:
            self.notify(str(error), title="Not added", severity="error")
            return
        self.notify(
            f"{name}: {format.plural(summary.get('examples', 0), 'example')}, "
            f"{format.plural(summary.get('count', 0), 'photo')} in the album",
            title="Pets",
        )
        self.load()

    def action_remove(self) -> None:
        name = self._need_pet()
        if not name:
            return
        self.app.push_screen(
            ConfirmScreen(f"Remove {name}'s profile and what you taught it?\nNo photo is touched.", "Remove"),
            lambda yes: self._confirmed_remove(name, yes),
        )

    def _confirmed_remove(self, name: str, yes: bool | None) -> None:
        if yes:
            self.remove_profile(name)

    @work(group="pets-edit")
    async def remove_profile(self, name: str) -> None:
        try:
            await self.petwatch.client.pet_remove(name)
        except PetwatchError as error:
            self.notify(str(error), title="Not removed", severity="error")
            return
        self.notify(f"removed {name}'s profile")
        self.load()

    def _need_pet(self) -> str | None:
        name = self.current
        if not name:
            self.notify("no pet profile yet: make one from the selection with n", severity="warning")
        return name


class PetAlbumScreen(GridScreen):
    """One pet's album in the results grid: preview, select, teach the profile."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("x", "not_my_pet", "Not my pet"),
        Binding("plus", "add_missed", "Add selected"),
        Binding("k", "comic", "Comic"),  # short: "Comic of pet" was cut at 120 columns
        Binding("ctrl+r", "reload", "Reload", show=False),
        *UNSHOWN_APP_KEYS,
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name_of_pet = name
        self.summary: Mapping[str, Any] = {}  # the PetAlbumReply on show

    def compose(self) -> ComposeResult:
        yield ConnectionBanner()
        with Horizontal(id="results-header"):
            yield Static(f"[b]{_escape(self.name_of_pet)}[/]  loading the album…", id="results-info")
            yield Static("", id="hit-info")
        yield ResultsGrid(id="album-grid")
        yield Static("", id="results-empty")
        yield StatusBar()
        yield Footer(compact=True)  # with the grid's keys, the pet's own fit in 120 columns

    def on_mount(self) -> None:
        self.load()

    def on_pet_photos(self, message: PetPhotos) -> None:
        if message.data["name"] == self.name_of_pet:
            self.load()

    @work(exclusive=True, group="album")
    async def load(self) -> None:
        info = self.query_one("#results-info", Static)
        try:
            album = await self.petwatch.client.pet(self.name_of_pet)
        except PetwatchError as error:
            info.update(f"[b]{_escape(self.name_of_pet)}[/]  {_escape(str(error))}")
            return
        self.summary = album
        grid = self.grid
        cursor = grid.cursor
        grid.show(album.get("hits", []))
        if grid.hits and cursor > 0:
            grid.cursor = min(cursor, len(grid.hits) - 1)
        self.set_class(bool(grid.hits), "-has-results")
        info.update(
            f"[b]{_escape(album.get('name', self.name_of_pet))}[/]  "
            f"{format.plural(album.get('count', len(grid.hits)), 'photo')} · "
            f"{format.plural(album.get('examples', 0), 'example')} · "
            f"{album.get('confirmed', 0)} confirmed · {album.get('rejected', 0)} not my pet"
        )
        if not grid.hits:
            self.query_one("#results-empty", Static).update(
                "No photo matches this pet yet. Add example photos: select them (Space) in the "
                "search results, come back and press [b]+[/]."
            )
        elif self.app.screen is self and not grid.has_focus:
            grid.focus()

    # --- actions -------------------------------------------------------------------------
    def action_back(self) -> None:
        self.dismiss()

    def action_reload(self) -> None:
        self.load()

    def action_comic(self) -> None:
        self.petwatch.comic_of_pet(self.name_of_pet)

    def action_not_my_pet(self) -> None:
        hit = self.grid.current_hit
        if hit is None:
            return
        self.mark([hit["path"]], "not")

    def action_add_missed(self) -> None:
        shown = {hit["path"] for hit in self.grid.hits}
        missed = [path for path in self.petwatch.selection if path not in shown]
        if not missed:
            self.notify(
                f"select the photos of {self.name_of_pet} that are missing here first: find them "
                "in the search results, select them with Space, come back and press +",
                severity="warning",
                timeout=8,
            )
            return
        self.mark(missed, "yes")

    @work(group="album-mark")
    async def mark(self, paths: list[str], kind: str) -> None:
        name = self.name_of_pet
        try:
            await self.petwatch.client.pet_mark(name, paths, kind)
        except PetwatchError as error:
            self.notify(str(error), title="Not marked", severity="error")
            return
        if kind == "not":
            what = os.path.basename(paths[0]) if len(paths) == 1 else format.plural(len(paths), "photo")
            self.notify(f"{what}: not {name}; left out of the album from now on")
        else:
            self.notify(f"{format.plural(len(paths), 'photo')} added to {name}'s album")
        self.load()


def _date(iso: str | float | None) -> str:
    if not iso:
        return "-"
    try:
        when = (
            datetime.fromtimestamp(iso) if isinstance(iso, (int, float)) else datetime.fromisoformat(iso).astimezone()
        )
    except (ValueError, OverflowError, OSError):
        return str(iso)
    return when.strftime("%Y-%m-%d")


def _escape(text: str) -> str:
    return text.replace("[", r"\[")
