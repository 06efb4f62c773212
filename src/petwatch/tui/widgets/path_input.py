"""A path Input with shell-like completion: the suggestion shows greyed, → or Tab accepts it."""

from __future__ import annotations

import asyncio
import os

from textual.binding import Binding
from textual.suggester import Suggester
from textual.widgets import Input

from petwatch.tui.images import is_photo_name

MAX_ENTRIES = 2000  # a huge folder is not listed whole on every key press


def complete_path(value: str, dirs_only: bool = False) -> str | None:
    """The completion of ``value``: the entries' common prefix when it adds something, else the
    first entry (directories end in "/"); None when nothing matches."""
    if not value:
        return None
    expanded = os.path.expanduser(value)
    directory, prefix = os.path.split(expanded)
    try:
        with os.scandir(directory or ".") as entries:
            names = []
            for count, entry in enumerate(entries):
                if count >= MAX_ENTRIES:
                    break
                if not entry.name.startswith(prefix):
                    continue
                if entry.name.startswith(".") and not prefix.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    continue
                if is_dir:
                    names.append(entry.name + "/")
                elif not dirs_only and is_photo_name(entry.name):
                    names.append(entry.name)
    except OSError:
        return None
    if not names:
        return None
    names.sort(key=lambda n: (not n.endswith("/"), n.lower()))
    common = os.path.commonprefix(names)
    chosen = common if len(common) > len(prefix) else names[0]
    completion = chosen[len(prefix) :]
    return value + completion if completion else None


class PathSuggester(Suggester):
    def __init__(self, dirs_only: bool = False) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.dirs_only = dirs_only

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(complete_path, value, self.dirs_only)


class PathInput(Input):
    """Input for a file or folder path; Tab completes like a shell when there is a suggestion."""

    HELP_AREA = "Path fields"  # where help lists its keys

    BINDINGS = [Binding("tab", "complete", "Complete path", show=False, priority=True)]

    def __init__(self, *args, dirs_only: bool = False, suggester: Suggester | None = None, **kwargs) -> None:
        super().__init__(*args, suggester=suggester or PathSuggester(dirs_only), **kwargs)
        self.dirs_only = dirs_only

    def _completion(self) -> str | None:
        """From the typed text, now: the greyed suggestion comes from a thread a moment later,
        and a Tab pressed before it must complete, not move the focus."""
        return complete_path(self.value, self.dirs_only)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "complete":
            return self.has_focus and self._completion() is not None
        return super().check_action(action, parameters)

    def action_complete(self) -> None:
        completion = self._completion()
        if completion is not None:
            self.value = completion
            self.cursor_position = len(self.value)
