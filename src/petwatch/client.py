"""Talking to the daemon over its Unix socket: HTTP/1.1 + JSON, events as server-sent events.

``DaemonClient`` is synchronous (the CLI); ``AsyncDaemonClient`` is asyncio (the TUI). Both
raise ``DaemonUnavailable`` when no daemon listens, and ``DaemonError`` carrying the daemon's
one-line message when a request fails. This module imports nothing heavy (no torch, no
Milvus): the CLI and TUI start fast.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, overload
from urllib.parse import quote

import httpx

from petwatch import locations
from petwatch.errors import PetwatchError
from petwatch.paths import encode_path
from petwatch.protocol import (
    ComicEstimateReply,
    ComicJobReply,
    ComicShowReply,
    DiscoveryWhyReply,
    Event,
    FailureReply,
    FolderReply,
    GroupReply,
    PetAlbumReply,
    PetPathsReply,
    PetRemovedReply,
    PetReply,
    PhotoReply,
    ReportReply,
    RescanReply,
    SearchReply,
    StackReply,
    StatsReply,
    StatusReply,
)

log = logging.getLogger(__name__)

BASE = "http://petwatch"  # the host part is ignored on a Unix socket
START_HINT = "start it with `petwatch daemon` (or `petwatch service install` to run it under systemd)"


STARTING = "starting (loading the model)…"  # what the CLI and the TUI say of a starting daemon


class DaemonUnavailable(PetwatchError):
    def __init__(self, socket: Path) -> None:
        super().__init__(f"the petwatch daemon is not running (no socket at {socket}): {START_HINT}")


class DaemonStarting(DaemonUnavailable):
    """The daemon runs but is still loading (its socket answers 503 with state "starting")."""

    def __init__(self, pid: int | None, uptime_s: float) -> None:
        PetwatchError.__init__(
            self, f"the petwatch daemon is {STARTING} (pid {pid}, up {uptime_s:.0f}s): try again in a few seconds"
        )
        self.pid, self.uptime_s = pid, uptime_s


class DaemonError(PetwatchError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        message = body.get("error") or response.text
    except (json.JSONDecodeError, AttributeError):
        body, message = {}, response.text or response.reason_phrase
    if response.status_code == 503 and isinstance(body, dict) and body.get("state") == "starting":
        raise DaemonStarting(body.get("pid"), float(body.get("uptime_s") or 0))
    raise DaemonError(str(message), response.status_code)


EventData = dict[str, Any]  # by kind: the data TypedDicts in petwatch.protocol (hello: StatusReply)
KNOWN_EVENTS = frozenset(Event)


def _parse_sse(lines: Iterable[str]) -> Iterator[tuple[Event, EventData]]:
    """Yield (kind, data) from SSE lines; shared by the sync and async readers.

    An event of a kind this client does not know (from a newer daemon) is skipped: every
    reader dispatches on the kinds it knows, and ``kind`` is always an ``Event``.
    """
    event = "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                if event in KNOWN_EVENTS:
                    yield Event(event), json.loads("\n".join(data))
                else:
                    log.debug("skipped an event of unknown kind %r", event)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


class _Api:
    """Request shapes shared by both clients: (method, url, kwargs) per call."""

    @staticmethod
    def search(
        image: str | None = None,
        photo: str | None = None,
        top_k: int | None = None,
        min_score: float | None = None,
        offset: int = 0,
        species: list[str] | None = None,
        stacks: bool = True,
        expand: bool | None = None,
    ) -> tuple[str, str, dict]:
        """``top_k`` / ``min_score`` / ``expand`` None: left out, the daemon decides."""
        body: dict[str, Any] = {"image": _sent(image), "photo": _sent(photo)}
        if top_k is not None:
            body["top_k"] = top_k
        if min_score is not None:
            body["min_score"] = min_score
        if expand is not None:
            body["expand"] = expand
        body |= {"offset": offset, "species": species, "stacks": stacks}
        return "POST", "/search", {"json": body}

    @staticmethod
    def stack(stack_id: str) -> tuple[str, str, dict]:
        return "GET", f"/stacks/{quote(stack_id, safe='')}", {}

    # --- photos and folders: paths as the daemon decodes them (petwatch.paths)
    @staticmethod
    def index(folders: list[str]) -> tuple[str, str, dict]:
        return "POST", "/index", {"json": {"folders": [encode_path(f) for f in folders]}, "timeout": None}

    @staticmethod
    def folder(action: str, path: str) -> tuple[str, str, dict]:
        return "POST", "/folders" if action == "add" else "/folders/remove", {"json": {"path": encode_path(path)}}

    @staticmethod
    def photo(path: str) -> tuple[str, str, dict]:
        return "GET", "/photo", {"params": {"path": encode_path(path)}}

    @staticmethod
    def thumbnail(path: str, size: int) -> tuple[str, str, dict]:
        return "GET", "/thumbnail", {"params": {"path": encode_path(path), "size": size}}

    # --- comics: (method, url, kwargs); photo paths made absolute here, in the caller's cwd
    @staticmethod
    def comic_submit(
        photos: list[str], prompt: str, size: str | None = None, quality: str | None = None, parent: str | None = None
    ) -> tuple[str, str, dict]:
        body = {"photos": _absolute(photos), "prompt": prompt, "size": size, "quality": quality, "parent": parent}
        return "POST", "/comics", {"json": body}

    @staticmethod
    def comic_estimate(
        n: int | None = None,
        photos: list[str] | None = None,
        size: str | None = None,
        quality: str | None = None,
        parent: str | None = None,
    ) -> tuple[str, str, dict]:
        body = {
            "n": n,
            "photos": _absolute(photos) if photos else None,
            "size": size,
            "quality": quality,
            "parent": parent,
        }
        return "POST", "/comics/estimate", {"json": body}

    @staticmethod
    def comic_refine(
        job_id: str, prompt: str, photos: list[str] | None = None, size: str | None = None, quality: str | None = None
    ) -> tuple[str, str, dict]:
        body = {"prompt": prompt, "photos": _absolute(photos or []), "size": size, "quality": quality}
        return "POST", f"{_comic_url(job_id)}/refine", {"json": body}

    @staticmethod
    def comic_retry(job_id: str, prompt: str | None = None) -> tuple[str, str, dict]:
        return "POST", f"{_comic_url(job_id)}/retry", {"json": {"prompt": prompt}}

    # --- pet profiles (daemon/pet_routes.py); an album can take a while on a big library
    @staticmethod
    def pet_add(name: str, photos: list[str]) -> tuple[str, str, dict]:
        return "POST", "/pets", {"json": {"name": name, "photos": _absolute(photos)}, "timeout": PET_TIMEOUT}

    @staticmethod
    def pet(name: str, offset: int = 0, limit: int = 0) -> tuple[str, str, dict]:
        return "GET", _pet_url(name), {"params": {"offset": offset, "limit": limit}, "timeout": PET_TIMEOUT}

    @staticmethod
    def pet_paths(name: str, top: int = 8) -> tuple[str, str, dict]:
        return "GET", f"{_pet_url(name)}/paths", {"params": {"top": top}, "timeout": PET_TIMEOUT}

    @staticmethod
    def pet_mark(name: str, paths: list[str], mark: str) -> tuple[str, str, dict]:
        body = {"paths": _absolute(paths), "mark": mark}
        return "POST", f"{_pet_url(name)}/marks", {"json": body, "timeout": PET_TIMEOUT}

    # --- pets found (daemon/discovery_routes.py)
    @staticmethod
    def groups(include_all: bool = False) -> tuple[str, str, dict]:
        return "GET", "/groups", {"params": {"all": include_all}, "timeout": PET_TIMEOUT}

    @staticmethod
    def groups_why() -> tuple[str, str, dict]:
        return "GET", "/groups/why", {"timeout": PET_TIMEOUT}

    @staticmethod
    def group_action(gid: int, action: str, body: dict[str, Any] | None = None) -> tuple[str, str, dict]:
        """``action``: name {"name"}, dismiss, merge {"other"} or remove {"paths"}."""
        if body and "paths" in body:
            body = {**body, "paths": _absolute(body["paths"])}
        return "POST", f"/groups/{int(gid)}/{action}", {"json": body or {}, "timeout": PET_TIMEOUT}


def _absolute(paths: list[str]) -> list[str]:
    return [encode_path(os.path.abspath(os.path.expanduser(str(path)))) for path in paths]


def _sent(path: str | None) -> str | None:
    """A path as sent: any file name, valid UTF-8 or not, survives the JSON (petwatch.paths)."""
    return None if path is None else encode_path(path)


def _comic_url(job_id: str) -> str:
    return f"/comics/{quote(job_id, safe='')}"


PET_TIMEOUT = 300.0
GroupEdit = Literal["dismiss", "merge", "remove"]  # group_action's actions that answer the group


def _pet_url(name: str) -> str:
    return f"/pets/{quote(name, safe='')}"


class DaemonClient:
    def __init__(self, socket: Path | None = None, timeout: float = 30.0) -> None:
        self.socket = socket or locations.socket_path()
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url=BASE, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if not self.socket.exists():
            raise DaemonUnavailable(self.socket)
        try:
            response = self._http.request(method, url, **kwargs)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError):
            raise DaemonUnavailable(self.socket) from None
        except httpx.TimeoutException:
            raise PetwatchError(
                f"the daemon did not answer {method} {url} in time; see its log (journalctl --user -u petwatch)"
            ) from None
        _raise_for(response)
        return response

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        return self.request(method, url, **kwargs).json()

    def is_running(self) -> bool:
        try:
            self.call("GET", "/status")
            return True
        except DaemonUnavailable:
            return False

    # --- the API -------------------------------------------------------------------------
    def status(self) -> StatusReply:
        return self.call("GET", "/status")

    def search(
        self,
        image: str | None = None,
        photo: str | None = None,
        top_k: int | None = None,
        min_score: float | None = None,
        offset: int = 0,
        species: list[str] | None = None,
        stacks: bool = True,
        expand: bool | None = None,
    ) -> SearchReply:
        method, url, kwargs = _Api.search(image, photo, top_k, min_score, offset, species, stacks, expand)
        return self.call(method, url, **kwargs)

    def stacks(self) -> list[StackReply]:
        return self.call("GET", "/stacks")

    def stack(self, stack_id: str) -> StackReply:
        method, url, kwargs = _Api.stack(stack_id)
        return self.call(method, url, **kwargs)

    def index(self, folders: list[str]) -> ReportReply:
        method, url, kwargs = _Api.index(folders)
        return self.call(method, url, **kwargs)

    def stats(self) -> StatsReply:
        return self.call("GET", "/stats")

    def folders(self) -> list[FolderReply]:
        return self.call("GET", "/folders")

    def add_folder(self, path: str) -> list[FolderReply]:
        method, url, kwargs = _Api.folder("add", path)
        return self.call(method, url, **kwargs)

    def remove_folder(self, path: str) -> list[FolderReply]:
        method, url, kwargs = _Api.folder("remove", path)
        return self.call(method, url, **kwargs)

    def rescan(self) -> RescanReply:
        return self.call("POST", "/rescan")

    def failures(self) -> list[FailureReply]:
        return self.call("GET", "/failures")

    def photo(self, path: str) -> PhotoReply:
        method, url, kwargs = _Api.photo(path)
        return self.call(method, url, **kwargs)

    def thumbnail(self, path: str, size: int = 256) -> bytes:
        method, url, kwargs = _Api.thumbnail(path, size)
        return self.request(method, url, **kwargs).content

    # --- comics (the daemon owns the jobs) ------------------------------------------------
    def comic_submit(
        self,
        photos: list[str],
        prompt: str,
        size: str | None = None,
        quality: str | None = None,
        parent: str | None = None,
    ) -> ComicJobReply:
        method, url, kwargs = _Api.comic_submit(photos, prompt, size, quality, parent)
        return self.call(method, url, **kwargs)

    def comic_estimate(
        self,
        n: int | None = None,
        photos: list[str] | None = None,
        size: str | None = None,
        quality: str | None = None,
        parent: str | None = None,
    ) -> ComicEstimateReply:
        method, url, kwargs = _Api.comic_estimate(n, photos, size, quality, parent)
        return self.call(method, url, **kwargs)

    def comics(self) -> list[ComicJobReply]:
        return self.call("GET", "/comics")

    def comic(self, job_id: str) -> ComicShowReply:
        """The job record plus ``chain``: the refinement chain ending at it, first comic first."""
        return self.call("GET", _comic_url(job_id))

    def comic_cancel(self, job_id: str) -> ComicJobReply:
        return self.call("POST", f"{_comic_url(job_id)}/cancel")

    def comic_refine(
        self,
        job_id: str,
        prompt: str,
        photos: list[str] | None = None,
        size: str | None = None,
        quality: str | None = None,
    ) -> ComicJobReply:
        method, url, kwargs = _Api.comic_refine(job_id, prompt, photos, size, quality)
        return self.call(method, url, **kwargs)

    def comic_retry(self, job_id: str, prompt: str | None = None) -> ComicJobReply:
        method, url, kwargs = _Api.comic_retry(job_id, prompt)
        return self.call(method, url, **kwargs)

    def comic_image(self, job_id: str) -> bytes:
        return self.request("GET", f"{_comic_url(job_id)}/image").content

    # --- pet profiles (the daemon owns them) ----------------------------------------------
    def pets(self) -> list[PetReply]:
        return self.call("GET", "/pets", timeout=PET_TIMEOUT)

    def pet_add(self, name: str, photos: list[str]) -> PetReply:
        """Create a profile from example photos, or add examples to it."""
        method, url, kwargs = _Api.pet_add(name, photos)
        return self.call(method, url, **kwargs)

    def pet(self, name: str, offset: int = 0, limit: int = 0) -> PetAlbumReply:
        """The profile's summary and its album (``hits``, best first; limit 0 = all)."""
        method, url, kwargs = _Api.pet(name, offset, limit)
        return self.call(method, url, **kwargs)

    def pet_paths(self, name: str, top: int = 8) -> list[str]:
        """The ``top`` best photos of a pet, e.g. a comic's reference photos."""
        method, url, kwargs = _Api.pet_paths(name, top)
        reply: PetPathsReply = self.call(method, url, **kwargs)
        return reply["paths"]

    def pet_mark(self, name: str, paths: list[str], mark: str) -> PetReply:
        """``mark``: "yes" (my pet), "not" (not my pet) or "forget"."""
        method, url, kwargs = _Api.pet_mark(name, paths, mark)
        return self.call(method, url, **kwargs)

    def pet_remove(self, name: str) -> PetRemovedReply:
        return self.call("DELETE", _pet_url(name))

    def groups(self, include_all: bool = False) -> list[GroupReply]:
        """The pets found: groups of photos of one individual that recur, biggest first."""
        method, url, kwargs = _Api.groups(include_all)
        return self.call(method, url, **kwargs)

    def groups_why(self) -> DiscoveryWhyReply:
        """What the last search for pets saw: why no group shows, when none does."""
        method, url, kwargs = _Api.groups_why()
        return self.call(method, url, **kwargs)

    @overload
    def group_action(self, gid: int, action: Literal["name"], body: dict[str, Any] | None = None) -> PetReply: ...
    @overload
    def group_action(self, gid: int, action: GroupEdit, body: dict[str, Any] | None = None) -> GroupReply: ...
    @overload
    def group_action(self, gid: int, action: str, body: dict[str, Any] | None = None) -> PetReply | GroupReply: ...
    def group_action(self, gid: int, action: str, body: dict[str, Any] | None = None) -> PetReply | GroupReply:
        """``name`` makes a pet profile of the group (its summary); the others give the group."""
        method, url, kwargs = _Api.group_action(gid, action, body)
        return self.call(method, url, **kwargs)

    def events(self) -> Iterator[tuple[Event, EventData]]:
        """Server-pushed events as (kind, data) until the daemon goes away."""
        if not self.socket.exists():
            raise DaemonUnavailable(self.socket)
        try:
            with self._http.stream("GET", "/events", timeout=None) as response:
                if not response.is_success:
                    response.read()  # the error's body, e.g. that the daemon is starting
                _raise_for(response)
                yield from _parse_sse(response.iter_lines())
        except (httpx.ConnectError, FileNotFoundError):
            raise DaemonUnavailable(self.socket) from None
        except httpx.RemoteProtocolError:
            return


class AsyncDaemonClient:
    """The same API for asyncio callers (the TUI)."""

    def __init__(self, socket: Path | None = None, timeout: float = 30.0) -> None:
        self.socket = socket or locations.socket_path()
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.socket)), base_url=BASE, timeout=timeout
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if not self.socket.exists():
            raise DaemonUnavailable(self.socket)
        try:
            response = await self._http.request(method, url, **kwargs)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError):
            raise DaemonUnavailable(self.socket) from None
        except httpx.TimeoutException:
            raise PetwatchError(f"the daemon did not answer {method} {url} in time") from None
        _raise_for(response)
        return response

    async def call(self, method: str, url: str, **kwargs: Any) -> Any:
        return (await self.request(method, url, **kwargs)).json()

    async def status(self) -> StatusReply:
        return await self.call("GET", "/status")

    async def search(
        self,
        image: str | None = None,
        photo: str | None = None,
        top_k: int | None = None,
        min_score: float | None = None,
        offset: int = 0,
        species: list[str] | None = None,
        stacks: bool = True,
        expand: bool | None = None,
    ) -> SearchReply:
        method, url, kwargs = _Api.search(image, photo, top_k, min_score, offset, species, stacks, expand)
        return await self.call(method, url, **kwargs)

    async def stacks(self) -> list[StackReply]:
        return await self.call("GET", "/stacks")

    async def stack(self, stack_id: str) -> StackReply:
        method, url, kwargs = _Api.stack(stack_id)
        return await self.call(method, url, **kwargs)

    async def folders(self) -> list[FolderReply]:
        return await self.call("GET", "/folders")

    async def add_folder(self, path: str) -> list[FolderReply]:
        method, url, kwargs = _Api.folder("add", path)
        return await self.call(method, url, **kwargs)

    async def remove_folder(self, path: str) -> list[FolderReply]:
        method, url, kwargs = _Api.folder("remove", path)
        return await self.call(method, url, **kwargs)

    async def rescan(self) -> RescanReply:
        return await self.call("POST", "/rescan")

    async def failures(self) -> list[FailureReply]:
        return await self.call("GET", "/failures")

    async def photo(self, path: str) -> PhotoReply:
        method, url, kwargs = _Api.photo(path)
        return await self.call(method, url, **kwargs)

    async def thumbnail(self, path: str, size: int = 256) -> bytes:
        method, url, kwargs = _Api.thumbnail(path, size)
        return (await self.request(method, url, **kwargs)).content

    # --- comics (the daemon owns the jobs) ------------------------------------------------
    async def comic_submit(
        self,
        photos: list[str],
        prompt: str,
        size: str | None = None,
        quality: str | None = None,
        parent: str | None = None,
    ) -> ComicJobReply:
        method, url, kwargs = _Api.comic_submit(photos, prompt, size, quality, parent)
        return await self.call(method, url, **kwargs)

    async def comic_estimate(
        self,
        n: int | None = None,
        photos: list[str] | None = None,
        size: str | None = None,
        quality: str | None = None,
        parent: str | None = None,
    ) -> ComicEstimateReply:
        method, url, kwargs = _Api.comic_estimate(n, photos, size, quality, parent)
        return await self.call(method, url, **kwargs)

    async def comics(self) -> list[ComicJobReply]:
        return await self.call("GET", "/comics")

    async def comic(self, job_id: str) -> ComicShowReply:
        """The job record plus ``chain``: the refinement chain ending at it, first comic first."""
        return await self.call("GET", _comic_url(job_id))

    async def comic_cancel(self, job_id: str) -> ComicJobReply:
        return await self.call("POST", f"{_comic_url(job_id)}/cancel")

    async def comic_refine(
        self,
        job_id: str,
        prompt: str,
        photos: list[str] | None = None,
        size: str | None = None,
        quality: str | None = None,
    ) -> ComicJobReply:
        method, url, kwargs = _Api.comic_refine(job_id, prompt, photos, size, quality)
        return await self.call(method, url, **kwargs)

    async def comic_retry(self, job_id: str, prompt: str | None = None) -> ComicJobReply:
        method, url, kwargs = _Api.comic_retry(job_id, prompt)
        return await self.call(method, url, **kwargs)

    async def comic_image(self, job_id: str) -> bytes:
        return (await self.request("GET", f"{_comic_url(job_id)}/image")).content

    # --- pet profiles (the daemon owns them) ----------------------------------------------
    async def pets(self) -> list[PetReply]:
        return await self.call("GET", "/pets", timeout=PET_TIMEOUT)

    async def pet_add(self, name: str, photos: list[str]) -> PetReply:
        method, url, kwargs = _Api.pet_add(name, photos)
        return await self.call(method, url, **kwargs)

    async def pet(self, name: str, offset: int = 0, limit: int = 0) -> PetAlbumReply:
        method, url, kwargs = _Api.pet(name, offset, limit)
        return await self.call(method, url, **kwargs)

    async def pet_paths(self, name: str, top: int = 8) -> list[str]:
        method, url, kwargs = _Api.pet_paths(name, top)
        reply: PetPathsReply = await self.call(method, url, **kwargs)
        return reply["paths"]

    async def pet_mark(self, name: str, paths: list[str], mark: str) -> PetReply:
        method, url, kwargs = _Api.pet_mark(name, paths, mark)
        return await self.call(method, url, **kwargs)

    async def pet_remove(self, name: str) -> PetRemovedReply:
        return await self.call("DELETE", _pet_url(name))

    async def groups(self, include_all: bool = False) -> list[GroupReply]:
        method, url, kwargs = _Api.groups(include_all)
        return await self.call(method, url, **kwargs)

    async def groups_why(self) -> DiscoveryWhyReply:
        method, url, kwargs = _Api.groups_why()
        return await self.call(method, url, **kwargs)

    @overload
    async def group_action(self, gid: int, action: Literal["name"], body: dict[str, Any] | None = None) -> PetReply: ...
    @overload
    async def group_action(self, gid: int, action: GroupEdit, body: dict[str, Any] | None = None) -> GroupReply: ...
    @overload
    async def group_action(
        self, gid: int, action: str, body: dict[str, Any] | None = None
    ) -> PetReply | GroupReply: ...
    async def group_action(self, gid: int, action: str, body: dict[str, Any] | None = None) -> PetReply | GroupReply:
        method, url, kwargs = _Api.group_action(gid, action, body)
        return await self.call(method, url, **kwargs)

    async def events(self) -> AsyncIterator[tuple[Event, EventData]]:
        if not self.socket.exists():
            raise DaemonUnavailable(self.socket)
        try:
            async with self._http.stream("GET", "/events", timeout=None) as response:
                if not response.is_success:
                    await response.aread()  # the error's body, e.g. that the daemon is starting
                _raise_for(response)
                lines: list[str] = []
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line == "":
                        for item in _parse_sse(lines):
                            yield item
                        lines = []
        except (httpx.ConnectError, FileNotFoundError):
            raise DaemonUnavailable(self.socket) from None
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return
