"""The one shape of a feature of the daemon: what it hears and what it serves.

The Daemon keeps one list of features (``Daemon.features``: pet profiles, pets found, comics,
stacks) and tells each of them, in that order, what happens to the library (and closes them
in the reverse order); ``api.create_app`` serves each one's routes. A feature is the daemon's
side of a domain object (``pets.Pets``, ``discovery.Discovery``, ...): it lives with its routes
(``pet_routes.PetsFeature``, ...), so the domain modules know nothing of HTTP, and a new
feature is one class in one list.

A class that names Feature as its base keeps the defaults (nothing) for what it does not hear,
and writes ``routes``. The defaults ``return None``: a body of only a docstring would make them
abstract to mypy.
"""

from __future__ import annotations

from typing import Protocol

from fastapi import APIRouter

from petwatch.index import IndexReport
from petwatch.store import PhotoRow


class Feature(Protocol):
    def routes(self) -> APIRouter:
        """Its part of the socket API, registered against ``petwatch.endpoints``."""
        ...

    def start(self) -> None:
        """The daemon starts (its worker is running): start a thread of its own, if any."""
        return None

    def stored(self, rows: list[PhotoRow]) -> None:
        """Photos were stored (their rows, every view, vectors included), on the worker thread."""
        return None

    def removed(self, paths: list[str]) -> None:
        """These photos were dropped from the index, on the worker thread."""
        return None

    def walked(self, report: IndexReport) -> None:
        """A walk of the watched folders finished (at start, a rescan, a folder added or back)."""
        return None

    def upgraded(self) -> None:
        """An upgrade finished: the serving index changed space, so vectors kept are stale."""
        return None

    def stopping(self) -> None:
        """The daemon stops, before its worker is waited for: take no more work."""
        return None

    def close(self) -> None:
        """The worker has been waited for; the library closes next: wait here for what still reads it."""
        return None
