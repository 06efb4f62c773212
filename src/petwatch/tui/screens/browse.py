"""Pick the query photo from a folder tree (folders and photos only)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Static

from petwatch.tui.images import is_photo_name


class PhotoTree(DirectoryTree):
    """Folders and photo files; hidden entries left out."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".") and (p.is_dir() or is_photo_name(p.name))]


class BrowseScreen(ModalScreen[str | None]):
    """Dismisses with the chosen photo's path, or None."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("backspace,u", "up", "Parent folder"),
        Binding("tilde", "home", "Home folder", key_display="~"),
    ]

    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-wide dialog-tall"):
            yield Static("", id="browse-title", classes="dialog-title", markup=False)
            yield PhotoTree(self.start, id="browse-tree")
            yield Static(
                "[b]Enter[/] search with this photo / open folder · [b]u[/] parent folder · "
                "[b]~[/] home · [b]Esc[/] cancel",
                classes="dialog-hint",
            )

    def on_mount(self) -> None:
        self._set_root(self.start)
        self.query_one(PhotoTree).focus()

    def _set_root(self, path: str) -> None:
        self.query_one("#browse-title", Static).update(f"Choose a photo of your pet — {path}")
        tree = self.query_one(PhotoTree)
        if str(tree.path) != path:
            tree.path = path

    def action_up(self) -> None:
        current = str(self.query_one(PhotoTree).path)
        parent = os.path.dirname(current.rstrip(os.sep)) or os.sep
        self._set_root(parent)

    def action_home(self) -> None:
        self._set_root(os.path.expanduser("~"))

    @on(DirectoryTree.FileSelected)
    def _chosen(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.dismiss(str(event.path))
