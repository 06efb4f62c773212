"""Command palette entries (ctrl+p) for the main actions, and per pet: its album and a comic."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from petwatch.errors import PetwatchError
from petwatch.protocol import MAX_REFERENCES

if TYPE_CHECKING:
    from petwatch.tui.app import PetwatchApp

# (title, app action, help)
COMMANDS = [
    ("Search: focus the query path", "focus_query", "Type the path of a photo of your pet"),
    ("Search: browse for a query photo", "browse", "Pick the query photo from a folder tree"),
    ("Search: show more hits", "more", "The next page of hits for the current search"),
    ("Folders: manage watched folders", "folders", "List, add and remove album folders"),
    ("Folders: rescan everything now", "rescan", "Walk every watched folder for changes"),
    ("Daemon: show indexing failures", "failures", "Photos that could not be indexed, and why"),
    ("Daemon: start the daemon", "start_daemon", "Start petwatch's background daemon"),
    ("Selection: show the selected photos", "show_selection", "Review, unselect, save"),
    ("Selection: copy paths to the clipboard", "copy_selection", "One path a line"),
    ("Selection: clear", "unselect_all", "Unselect every photo"),
    ("Comic: make a comic from the selection", "comic", "Send the selected photos to the comic maker"),
    ("Comic: gallery of comics", "comics", "Every comic: open one large, refine, retry or cancel it"),
    ("Pets: list pet profiles", "pets", "Each pet's album, found by the daemon as photos come in"),
    (
        "Pets: make a pet profile from the selection",
        "pet_new",
        "The selected photos become the examples of a named pet",
    ),
    ("Theme: toggle light / dark", "toggle_dark", "Switch between the light and dark theme"),
    ("Help: every key", "help", "What each key does, screen by screen"),
    ("App: quit petwatch", "quit", "Leave the TUI (the daemon keeps running)"),
]
PET_NAMES_TIMEOUT_SECONDS = 2.0


class PetwatchCommands(Provider):
    async def startup(self) -> None:
        """The pets' names, for "Comic: comic of Cola" (asked once if not seen yet)."""
        app = cast("PetwatchApp", self.app)
        names = list(getattr(app, "pet_names", []))
        if not names and getattr(app, "connected", False):
            try:
                pets = await asyncio.wait_for(app.client.pets(), PET_NAMES_TIMEOUT_SECONDS)
                names = [pet["name"] for pet in pets]
                app.pet_names = names
            except (TimeoutError, PetwatchError, OSError, AttributeError, KeyError, TypeError):
                names = []
        self._pet_names = names

    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app = cast("PetwatchApp", self.app)
        entries: list[tuple[str, Callable[[], object], str]] = [
            (title, partial(app.run_action, f"app.{action}"), help_text) for title, action, help_text in COMMANDS
        ]
        for name in getattr(self, "_pet_names", []):
            entries.append(
                (
                    f"Pets: {name}'s album",
                    partial(app.open_pet_album, name),
                    f"Every photo of {name}; teach it with x (not my pet) and +",
                )
            )
            entries.append(
                (
                    f"Comic: comic of {name}",
                    partial(app.comic_of_pet, name),
                    f"A comic from {name}'s best photos (at most {MAX_REFERENCES})",
                )
            )
        return entries

    async def discover(self) -> Hits:
        for title, runner, help_text in self._commands():
            yield DiscoveryHit(title, runner, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, runner, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), runner, help=help_text)
