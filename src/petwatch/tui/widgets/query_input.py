"""The search's query field: a photo's path, or words ("rex at the beach in lisbon 2023").
Tab and → complete a path as a shell does, or the last word(s) to a place or a pet's name."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable

from textual.binding import Binding
from textual.suggester import Suggester

from petwatch.tui.widgets.path_input import PathInput, complete_path

MAX_NAME_WORDS = 3  # a name completed may span this many typed words ("los an" -> "Los Angeles")


def looks_like_path(text: str) -> bool:
    """Whether the query is a path (searched by photo) rather than words."""
    text = text.strip()
    return text.startswith(("/", "~", "./", "../")) or os.sep in text


def complete_words(value: str, names: Iterable[str]) -> str | None:
    """``value`` with its last word(s) completed to one of ``names`` (places, pets), case
    ignored: the names' common prefix when it adds something, else the first; None when no
    name starts with what was typed last."""
    if not value or value[-1].isspace():
        return None
    words = value.split(" ")
    known = sorted(set(names), key=str.casefold)
    for count in range(min(MAX_NAME_WORDS, len(words)), 0, -1):
        tail = " ".join(words[-count:])
        folded = tail.casefold()
        matches = [name for name in known if name.casefold().startswith(folded) and len(name) > len(tail)]
        if not matches:
            continue
        common = os.path.commonprefix([name.casefold() for name in matches])
        chosen = matches[0][: len(common)] if len(common) > len(tail) else matches[0]
        return value[: len(value) - len(tail)] + chosen
    return None


def complete_query(value: str, names: Iterable[str]) -> str | None:
    return complete_path(value) if looks_like_path(value) else complete_words(value, names)


class QuerySuggester(Suggester):
    def __init__(self, names: Callable[[], Iterable[str]]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.names = names

    async def get_suggestion(self, value: str) -> str | None:
        if looks_like_path(value):
            return await asyncio.to_thread(complete_path, value)
        return complete_words(value, self.names())


class QueryInput(PathInput):
    """The query: a path (Tab completes it) or words (Tab completes a place or a pet's name)."""

    HELP_AREA = "Query field"  # where help lists its keys

    BINDINGS = [Binding("tab", "complete", "Complete a path, place or pet name", show=False, priority=True)]

    def __init__(self, *args, names: Callable[[], Iterable[str]] = tuple, **kwargs) -> None:
        super().__init__(*args, suggester=QuerySuggester(names), **kwargs)
        self.names = names

    def _completion(self) -> str | None:
        return complete_query(self.value, self.names())
