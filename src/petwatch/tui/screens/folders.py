"""Watched folders: list with photo counts and watch mode, add, remove, rescan."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.coordinate import Coordinate
from textual.widgets import Button, DataTable, Footer, Input, Static

from petwatch import format
from petwatch.errors import PetwatchError
from petwatch.tui.screens.base import PetwatchScreen
from petwatch.tui.screens.confirm import ConfirmScreen
from petwatch.tui.widgets.banner import ConnectionBanner
from petwatch.tui.widgets.path_input import PathInput
from petwatch.tui.widgets.status_bar import StatusBar

MODES = {"events": "events (inotify)", "polling": "polling", "offline": "offline (missing)"}


class FoldersScreen(PetwatchScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("a", "focus_add", "Add folder"),
        Binding("delete,x", "remove", "Remove folder"),
        Binding("r", "app.rescan", "Rescan"),
    ]

    def compose(self) -> ComposeResult:
        yield ConnectionBanner()
        yield Static(
            "[b]Watched folders[/]  petwatch reads these folders (never writes) and follows changes as they happen.",
            id="folders-title",
        )
        yield DataTable(id="folders-table", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="folders-add"):
            yield PathInput(
                placeholder="folder to watch (Tab completes)", id="folder-path", dirs_only=True, compact=True
            )
            yield Button("Add", id="folder-add", compact=True, variant="primary")
            yield Button("Remove", id="folder-remove", compact=True, variant="error")
            yield Button("Rescan", id="folder-rescan", compact=True)
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("folder", key="path")
        table.add_column("photos", key="photos")
        table.add_column("watching", key="mode")
        self.watch(self.petwatch, "daemon_status", self._status_changed, init=False)
        self._fill(self.petwatch.daemon_status.get("folders", []))
        self.refresh_folders()
        table.focus()

    def _status_changed(self, status: Mapping[str, Any]) -> None:
        self._fill(status.get("folders", []))

    def _fill(self, folders: Sequence[Mapping[str, Any]]) -> None:
        table = self.query_one(DataTable)
        current = table.cursor_row
        table.clear()
        for folder in folders:
            mode = folder.get("mode", "?")
            if not folder.get("online", True):
                mode = "offline"
            table.add_row(
                format.home_relative(folder["path"]),
                format.count(folder.get("photos")),
                MODES.get(mode, mode),
                key=folder["path"],
            )
        if not folders:
            table.add_row("no folders yet: type one below and press Enter", "", "", key="")
        if table.row_count:
            table.move_cursor(row=min(current, table.row_count - 1))

    @work(exclusive=True, group="folders")
    async def refresh_folders(self) -> None:
        try:
            folders = await self.petwatch.client.folders()
        except PetwatchError:
            return
        self.petwatch.daemon_status = {**self.petwatch.daemon_status, "folders": folders}

    # --- actions -------------------------------------------------------------------------
    def action_back(self) -> None:
        self.dismiss()

    def action_focus_add(self) -> None:
        self.query_one("#folder-path", PathInput).focus()

    @on(Input.Submitted, "#folder-path")
    @on(Button.Pressed, "#folder-add")
    def _add(self) -> None:
        field = self.query_one("#folder-path", PathInput)
        path = field.value.strip()
        if not path:
            self.notify("type the path of a folder to watch", severity="warning")
            field.focus()
            return
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isdir(path):
            self.notify(f"{path} is not a folder", severity="error")
            return
        self.add_folder(path)

    @work(group="folders-edit")
    async def add_folder(self, path: str) -> None:
        try:
            folders = await self.petwatch.client.add_folder(path)
        except PetwatchError as error:
            self.notify(str(error), title="Folder not added", severity="error")
            return
        self.query_one("#folder-path", PathInput).value = ""
        self.petwatch.daemon_status = {**self.petwatch.daemon_status, "folders": folders}
        self.notify(f"watching {format.home_relative(path)}; its photos are being indexed")
        self.query_one(DataTable).focus()

    @on(Button.Pressed, "#folder-remove")
    def action_remove(self) -> None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return
        path = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        if not path:
            return
        folder: Mapping[str, Any] = next(
            (f for f in self.petwatch.daemon_status.get("folders", []) if f["path"] == path), {}
        )
        photos = folder.get("photos")
        message = (
            f"Stop watching {format.home_relative(path)}?\n"
            f"Its {format.plural(photos or 0, 'photo')} leave the index (the files are not touched)."
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.remove_folder(path)

        self.app.push_screen(ConfirmScreen(message, "Remove"), confirmed)

    @work(group="folders-edit")
    async def remove_folder(self, path: str) -> None:
        try:
            folders = await self.petwatch.client.remove_folder(path)
        except PetwatchError as error:
            self.notify(str(error), title="Folder not removed", severity="error")
            return
        self.petwatch.daemon_status = {**self.petwatch.daemon_status, "folders": folders}
        self.notify(f"stopped watching {format.home_relative(path)}")

    @on(Button.Pressed, "#folder-rescan")
    async def _rescan(self) -> None:
        await self.app.run_action("app.rescan")
