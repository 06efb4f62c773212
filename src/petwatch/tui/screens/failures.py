"""Photos the daemon could not index, with the reason for each."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from petwatch import format
from petwatch.errors import PetwatchError
from petwatch.protocol import FailureReply
from petwatch.tui import events

if TYPE_CHECKING:
    from petwatch.tui.app import PetwatchApp


class FailuresScreen(ModalScreen):
    BINDINGS = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("y", "copy", "Copy list"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[FailureReply] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-wide"):
            yield Static("[b]Photos that could not be indexed[/]", classes="dialog-title")
            yield Static("loading…", id="failures-info")
            yield DataTable(id="failures-table", cursor_type="row", zebra_stripes=True)
            yield Static(
                "[b]y[/] copy the list · [b]Esc[/] close · fixed files are retried when they change",
                classes="dialog-hint",
            )

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("photo", key="path")
        table.add_column("reason", key="reason")
        table.add_column("size", key="size")
        table.focus()
        self.load()

    def on_reported(self, message: events.Reported) -> None:
        """A task ended: files it could not read (or fixed ones) change the list."""
        if message.data.get("failed") or message.data.get("skipped") or message.data.get("indexed"):
            self.load()

    @work(exclusive=True)
    async def load(self) -> None:
        info = self.query_one("#failures-info", Static)
        try:
            self.failures = await cast("PetwatchApp", self.app).client.failures()
        except PetwatchError as error:
            info.update(str(error))
            return
        table = self.query_one(DataTable)
        table.clear()
        for failure in self.failures:
            table.add_row(
                format.home_relative(failure["path"]), failure.get("reason", ""), format.size(failure.get("size"))
            )
        info.update(
            format.plural(len(self.failures), "failure") if self.failures else "No failures: every photo was indexed."
        )

    def action_copy(self) -> None:
        lines = [f"{f['path']}\t{f.get('reason', '')}" for f in self.failures]
        self.app.copy_to_clipboard("\n".join(lines))
        self.notify(f"copied {format.plural(len(lines), 'line')}")
