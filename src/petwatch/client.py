"""Talking to the daemon over its Unix socket: HTTP/1.1 + JSON, events as server-sent events.

Each endpoint's method is written once (``_Endpoints``), from the endpoint table
(``petwatch.endpoints``): it builds a ``Call``, which a thin transport sends.
``DaemonClient`` is synchronous (the CLI); ``AsyncDaemonClient`` is asyncio (the TUI). Both
raise ``DaemonUnavailable`` when no daemon listens, and ``DaemonError`` carrying the daemon's
one-line message when a request fails. This module imports nothing heavy (no torch, no
Milvus): the CLI and TUI start fast.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import httpx

from petwatch import endpoints, locations
from petwatch.endpoints import LONG_WAIT_S, Endpoint, Wait
from petwatch.errors import PetwatchError
from petwatch.paths import encode_path
from petwatch.protocol import Event

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


R = TypeVar("R")
T = TypeVar("T")
P = ParamSpec("P")


Request = dict[str, Any]  # a call's JSON body ("json"), query ("params") and path parameters


class Call(Generic[R]):
    """One request to an endpoint: its URL (path parameters quoted), JSON body or query, wait."""

    def __init__(self, endpoint: Endpoint[Any], pick: Callable[[Any], R], request: Request) -> None:
        endpoint = request.pop("endpoint", endpoint)  # one of several (a group's actions)
        options = {key: request.pop(key) for key in ("json", "params") if request.get(key) is not None}
        if endpoint.wait is not Wait.USUAL:
            options["timeout"] = LONG_WAIT_S if endpoint.wait is Wait.LONG else None
        self.endpoint, self.url, self.options, self.pick = endpoint, endpoint.url(**request), options, pick

    def answer(self, response: httpx.Response) -> R:
        return self.pick(response.json() if self.endpoint.is_json else response.content)


class _Method(Generic[P, R]):
    """An endpoint's method on both clients: DaemonClient's answers, AsyncDaemonClient's awaits.
    The reply's type is the table's; ``build`` makes the request from the method's arguments."""

    def __init__(
        self, endpoint: Endpoint[Any], build: Callable[Concatenate[Any, P], Request], pick: Callable[[Any], R]
    ) -> None:
        self.endpoint, self.build, self.pick, self.__doc__ = endpoint, build, pick, build.__doc__

    @overload
    def __get__(self, client: DaemonClient, owner: type) -> Callable[P, R]: ...
    @overload
    def __get__(self, client: AsyncDaemonClient, owner: type) -> Callable[P, Awaitable[R]]: ...
    def __get__(self, client: Any, owner: type) -> Any:
        def send(*args: P.args, **kwargs: P.kwargs) -> Any:
            return client.send(Call(self.endpoint, self.pick, self.build(client, *args, **kwargs)))

        send.__doc__ = self.__doc__
        return send


def _sends(endpoint: Endpoint[R]) -> Callable[[Callable[Concatenate[Any, P], Request]], _Method[P, R]]:
    """Decorate the function making an endpoint's request: the client's method for it."""
    return lambda build: _Method(endpoint, build, _same)


def _picks(
    endpoint: Endpoint[R], pick: Callable[[R], T]
) -> Callable[[Callable[Concatenate[Any, P], Request]], _Method[P, T]]:
    """As ``_sends``, the method answering ``pick(reply)``."""
    return lambda build: _Method(endpoint, build, pick)


def _same(reply: Any) -> Any:
    return reply


def _absolute(paths: list[str]) -> list[str]:
    """Photo paths as sent to the daemon: absolute in the caller's cwd, encoded (petwatch.paths)."""
    return [encode_path(os.path.abspath(os.path.expanduser(str(path)))) for path in paths]


def _sent(path: str | None) -> str | None:
    """A path as sent: any file name, valid UTF-8 or not, survives the JSON (petwatch.paths)."""
    return None if path is None else encode_path(path)


def _given(**fields: Any) -> dict[str, Any]:
    """The fields the caller set: a None is left out, and the daemon decides."""
    return {name: value for name, value in fields.items() if value is not None}


def _get(endpoint: Endpoint[R]) -> _Method[[], R]:
    """The method of an endpoint without parameters."""
    return _Method(endpoint, lambda client: {}, _same)


def _on(endpoint: Endpoint[R], parameter: str) -> _Method[[str], R]:
    """The method of an endpoint whose only parameter is in its path (a job id, a pet's name)."""
    return _Method(endpoint, lambda client, value: {parameter: value}, _same)


# group_action's endpoint is its action's; the reply is a PetReply (name) or a GroupReply
ANY_GROUP_ACTION: Endpoint[Any] = endpoints.GROUP_NAME


class _Endpoints:
    """Every endpoint's method, written once: it builds the Call, the client's transport sends it."""

    status = _get(endpoints.STATUS)

    @_sends(endpoints.SEARCH)
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
    ) -> Request:
        """``top_k`` / ``min_score`` / ``expand`` None: left out, the daemon decides."""
        body = {"image": _sent(image), "photo": _sent(photo), **_given(top_k=top_k, min_score=min_score, expand=expand)}
        return {"json": body | {"offset": offset, "species": species, "stacks": stacks}}

    stacks = _get(endpoints.STACKS)
    stack = _on(endpoints.STACK, "stack_id")

    # --- photos and folders: paths as the daemon decodes them (petwatch.paths)
    @_sends(endpoints.INDEX)
    def index(self, folders: list[str]) -> Request:
        return {"json": {"folders": [encode_path(f) for f in folders]}}

    stats = _get(endpoints.STATS)
    folders = _get(endpoints.FOLDERS)

    @_sends(endpoints.FOLDER_ADD)
    def add_folder(self, path: str) -> Request:
        return {"json": {"path": encode_path(path)}}

    @_sends(endpoints.FOLDER_REMOVE)
    def remove_folder(self, path: str) -> Request:
        return {"json": {"path": encode_path(path)}}

    rescan = _get(endpoints.RESCAN)
    failures = _get(endpoints.FAILURES)

    @_sends(endpoints.PHOTO)
    def photo(self, path: str) -> Request:
        return {"params": {"path": encode_path(path)}}

    @_sends(endpoints.THUMBNAIL)
    def thumbnail(self, path: str, size: int = 256) -> Request:
        return {"params": {"path": encode_path(path), "size": size}}

    # --- comics (the daemon owns the jobs); photo paths made absolute here, in the caller's cwd
    @_sends(endpoints.COMIC_SUBMIT)
    def comic_submit(
        self,
        photos: list[str],
        prompt: str,
        size: str | None = None,
        quality: str | None = None,
        parent: str | None = None,
    ) -> Request:
        body = {"photos": _absolute(photos), "prompt": prompt, "size": size, "quality": quality, "parent": parent}
        return {"json": body}

    @_sends(endpoints.COMIC_ESTIMATE)
    def comic_estimate(
        self,
        n: int | None = None,
        photos: list[str] | None = None,
        size: str | None = None,
        quality: str | None = None,
        parent: str | None = None,
    ) -> Request:
        body = {"n": n, "photos": _absolute(photos) if photos else None, "size": size, "quality": quality}
        return {"json": body | {"parent": parent}}

    comics = _get(endpoints.COMICS)
    # the job record plus ``chain``: the refinement chain ending at it, first comic first
    comic = _on(endpoints.COMIC, "job_id")
    comic_cancel = _on(endpoints.COMIC_CANCEL, "job_id")

    @_sends(endpoints.COMIC_REFINE)
    def comic_refine(
        self,
        job_id: str,
        prompt: str,
        photos: list[str] | None = None,
        size: str | None = None,
        quality: str | None = None,
    ) -> Request:
        body = {"prompt": prompt, "photos": _absolute(photos or []), "size": size, "quality": quality}
        return {"json": body, "job_id": job_id}

    @_sends(endpoints.COMIC_RETRY)
    def comic_retry(self, job_id: str, prompt: str | None = None) -> Request:
        return {"json": {"prompt": prompt}, "job_id": job_id}

    comic_image = _on(endpoints.COMIC_IMAGE, "job_id")
    # --- pet profiles (the daemon owns them)
    pets = _get(endpoints.PETS)

    @_sends(endpoints.PET_ADD)
    def pet_add(self, name: str, photos: list[str]) -> Request:
        """Create a profile from example photos, or add examples to it."""
        return {"json": {"name": name, "photos": _absolute(photos)}}

    @_sends(endpoints.PET)
    def pet(self, name: str, offset: int = 0, limit: int = 0) -> Request:
        """The profile's summary and its album (``hits``, best first; limit 0 = all)."""
        return {"params": {"offset": offset, "limit": limit}, "name": name}

    @_picks(endpoints.PET_PATHS, lambda reply: reply["paths"])
    def pet_paths(self, name: str, top: int = 8) -> Request:
        """The ``top`` best photos of a pet, e.g. a comic's reference photos."""
        return {"params": {"top": top}, "name": name}

    @_sends(endpoints.PET_MARK)
    def pet_mark(self, name: str, paths: list[str], mark: str) -> Request:
        """``mark``: "yes" (my pet), "not" (not my pet) or "forget"."""
        return {"json": {"paths": _absolute(paths), "mark": mark}, "name": name}

    pet_remove = _on(endpoints.PET_REMOVE, "name")

    # --- pets found
    @_sends(endpoints.GROUPS)
    def groups(self, include_all: bool = False) -> Request:
        """The pets found: groups of photos of one individual that recur, biggest first."""
        return {"params": {"all": include_all}}

    groups_why = _get(endpoints.GROUPS_WHY)  # what the last search for pets saw: why no group shows

    @_sends(ANY_GROUP_ACTION)
    def group_action(self, gid: int, action: str, body: dict[str, Any] | None = None) -> Request:
        """``action``: name {"name"} answers the new pet profile (PetReply); dismiss, merge
        {"other"} and remove {"paths"} answer the group (GroupReply)."""
        endpoint = GROUP_ACTIONS.get(action)
        if endpoint is None:
            raise PetwatchError(f"unknown group action {action!r}: use {', '.join(GROUP_ACTIONS)}")
        if body and "paths" in body:
            body = {**body, "paths": _absolute(body["paths"])}
        return {"endpoint": endpoint, "json": body or {}, "gid": int(gid)}


GROUP_ACTIONS: dict[str, Endpoint[Any]] = {
    "name": endpoints.GROUP_NAME,
    "dismiss": endpoints.GROUP_DISMISS,
    "merge": endpoints.GROUP_MERGE,
    "remove": endpoints.GROUP_REMOVE,
}


@contextmanager
def _talking(socket: Path, what: str) -> Iterator[None]:
    """A request's errors as the user reads them: no daemon, or no answer in time."""
    if not socket.exists():
        raise DaemonUnavailable(socket)
    try:
        yield
    except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError):
        raise DaemonUnavailable(socket) from None
    except httpx.TimeoutException:
        raise PetwatchError(
            f"the daemon did not answer {what} in time; see its log (journalctl --user -u petwatch)"
        ) from None


class DaemonClient(_Endpoints):
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
        with _talking(self.socket, f"{method} {url}"):
            response = self._http.request(method, url, **kwargs)
        _raise_for(response)
        return response

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        return self.request(method, url, **kwargs).json()

    def send(self, call: Call[R]) -> R:
        return call.answer(self.request(call.endpoint.method, call.url, **call.options))

    def is_running(self) -> bool:
        try:
            self.status()
            return True
        except DaemonUnavailable:
            return False

    def events(self) -> Iterator[tuple[Event, EventData]]:
        """Server-pushed events as (kind, data) until the daemon goes away."""
        events = endpoints.EVENTS
        try:
            with (
                _talking(self.socket, events.path),
                self._http.stream(events.method, events.path, timeout=None) as response,
            ):
                if not response.is_success:
                    response.read()  # the error's body, e.g. that the daemon is starting
                _raise_for(response)
                yield from _parse_sse(response.iter_lines())
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return


class AsyncDaemonClient(_Endpoints):
    """The same API for asyncio callers (the TUI)."""

    def __init__(self, socket: Path | None = None, timeout: float = 30.0) -> None:
        self.socket = socket or locations.socket_path()
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.socket)), base_url=BASE, timeout=timeout
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        with _talking(self.socket, f"{method} {url}"):
            response = await self._http.request(method, url, **kwargs)
        _raise_for(response)
        return response

    async def call(self, method: str, url: str, **kwargs: Any) -> Any:
        return (await self.request(method, url, **kwargs)).json()

    async def send(self, call: Call[R]) -> R:
        return call.answer(await self.request(call.endpoint.method, call.url, **call.options))

    async def events(self) -> AsyncIterator[tuple[Event, EventData]]:
        events = endpoints.EVENTS
        try:
            with _talking(self.socket, events.path):
                async with self._http.stream(events.method, events.path, timeout=None) as response:
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
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return
