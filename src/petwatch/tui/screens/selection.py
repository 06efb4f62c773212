"""The selected photos (from any number of searches): review, copy out, save, make a comic or
a pet profile."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option

from petwatch import format

if TYPE_CHECKING:
    from petwatch.tui.app import PetwatchApp


def default_selection_file() -> str:
    return str(Path.cwd() / "petwatch-selection.txt")


class SelectionScreen(ModalScreen):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("delete,x", "remove", "Unselect"),
        Binding("y", "copy", "Copy paths"),
        Binding("w", "focus_save", "Save to file"),
        Binding("X", "clear", "Clear all", show=False),
        Binding("k", "app.comic", "Comic"),
        Binding("n", "app.pet_new", "Pet profile"),
    ]

    @property
    def petwatch(self) -> PetwatchApp:
        return cast("PetwatchApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-wide"):
            yield Static("", id="selection-title", classes="dialog-title")
            yield OptionList(id="selection-list")
            with Horizontal(id="selection-save"):
                yield Input(default_selection_file(), id="selection-file", compact=True)
                yield Button("Save", id="selection-save-button", compact=True)
                yield Button("Copy", id="selection-copy", compact=True, variant="primary")
                yield Button("Comic", id="selection-comic", compact=True)
                yield Button("Pet profile", id="selection-pet", compact=True)
            yield Static(
                "[b]x[/] unselect · [b]X[/] clear all · [b]y[/] copy paths · [b]w[/] save to file · "
                "[b]k[/] comic · [b]n[/] pet profile · [b]Esc[/] close",
                classes="dialog-hint",
            )

    def on_mount(self) -> None:
        self.watch(self.petwatch, "selection_count", self._fill)
        self.query_one(OptionList).focus()

    def _fill(self, _count: int = 0) -> None:
        selection = self.petwatch.selection
        self.query_one("#selection-title", Static).update(
            f"[b]Selection[/]  {format.plural(len(selection), 'photo')}"
            + ("" if selection else ": select hits with Space")
        )
        options = self.query_one(OptionList)
        highlighted = options.highlighted
        options.clear_options()
        options.add_options([Option(format.home_relative(p), id=p) for p in selection])
        if selection:
            options.highlighted = min(highlighted or 0, len(selection) - 1)

    def action_remove(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is None or not options.option_count:
            return
        path = options.get_option_at_index(options.highlighted).id
        if path:
            self.petwatch.toggle_selected(path)

    def action_clear(self) -> None:
        self.petwatch.unselect_all()

    @on(Button.Pressed, "#selection-copy")
    def action_copy(self) -> None:
        self.petwatch.action_copy_selection()

    def action_focus_save(self) -> None:
        self.query_one("#selection-file", Input).focus()

    @on(Input.Submitted, "#selection-file")
    @on(Button.Pressed, "#selection-save-button")
    def _save(self) -> None:
        self.petwatch.save_selection(self.query_one("#selection-file", Input).value.strip())

    @on(Button.Pressed, "#selection-comic")
    async def _comic(self) -> None:
        await self.app.run_action("app.comic")

    @on(Button.Pressed, "#selection-pet")
    async def _pet(self) -> None:
        await self.app.run_action("app.pet_new")
