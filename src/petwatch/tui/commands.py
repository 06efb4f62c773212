"""Command palette entries (ctrl+p) for the main actions."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

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
    ("Theme: toggle light / dark", "toggle_dark", "Switch between the light and dark theme"),
    ("Help: every key", "help", "What each key does, screen by screen"),
    ("App: quit petwatch", "quit", "Leave the TUI (the daemon keeps running)"),
]


class PetwatchCommands(Provider):
    def _runner(self, action: str):
        return partial(self.app.run_action, f"app.{action}")

    async def discover(self) -> Hits:
        for title, action, help_text in COMMANDS:
            yield DiscoveryHit(title, self._runner(action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_text in COMMANDS:
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), self._runner(action), help=help_text)
