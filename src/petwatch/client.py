"""Talking to the daemon over its Unix socket: HTTP/1.1 + JSON, events as server-sent events.

Each endpoint's method is written once (``petwatch.endpoints.EndpointCalls``, over the endpoint
table): it makes a ``Call``, which the thin transport here sends.
``DaemonClient`` is synchronous (the CLI); ``AsyncDaemonClient`` is asyncio (the TUI). Both
raise ``DaemonUnavailable`` when no daemon listens, and ``DaemonError`` carrying the daemon's
one-line message when a request fails. Each JSON reply is checked against its endpoint's reply
type (about 1 ms for a 1,000-hit search: bench/bench_contract.py): a daemon that answers
another shape (another version) is named, with what to do, instead of failing later.
This module imports nothing heavy (no torch, no Milvus): the CLI and TUI start fast.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket as socket_module
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from petwatch import __version__, endpoints, locations
from petwatch.endpoints import Call, Endpoint, EndpointCalls, EventData, parse_events
from petwatch.errors import PetwatchError
from petwatch.protocol import Event

R = TypeVar("R")

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


def starting_daemon(lock: Path | None = None) -> DaemonStarting | None:
    """A daemon that holds its instance lock but has not bound its socket yet (the interpreter
    and the settings load first), told as starting; None when no process holds the lock.

    The lock is tried shared for an instant: the daemon's own exclusive try waits that instant
    out (daemon.run.acquire_instance_lock)."""
    path = lock or locations.daemon_lock()
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                return None
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            since = os.fstat(fd).st_mtime  # the daemon writes its pid as it takes the lock
            return DaemonStarting(int(text) if text.isdigit() else None, max(0.0, time.time() - since))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def daemon_present(socket: Path) -> bool:
    """Whether a daemon runs or is starting: its socket takes a connection (no request sent), or
    a process holds its instance lock. A socket left by a crash refuses the connection."""
    probe = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
    try:
        probe.connect(str(socket))
        return True
    except OSError:
        return starting_daemon() is not None
    finally:
        probe.close()


def _unavailable(socket: Path) -> DaemonUnavailable:
    """No socket to talk to: a daemon still starting (it holds its lock), else none."""
    return starting_daemon() or DaemonUnavailable(socket)


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


@cache
def _reply_type(endpoint: Endpoint[Any]) -> TypeAdapter[Any]:
    """The checker of an endpoint's JSON reply, built once."""
    return TypeAdapter(endpoint.reply)


def _reply(endpoint: Endpoint[Any], response: httpx.Response) -> Any:
    """The reply as sent: JSON checked against the endpoint's reply type, or an image's bytes.
    ValidationError: the daemon answered another shape. Parsed by json.loads, not pydantic's
    own parser: a file name that is not UTF-8 comes as a lone surrogate's \\u escape, which
    only json.loads takes (daemon.api.PathJSONResponse)."""
    if not endpoint.is_json:
        return response.content
    reply = response.json()
    _reply_type(endpoint).validate_python(reply)
    return reply


def _disagreement(endpoint: Endpoint[Any], error: ValidationError, daemon_version: str | None) -> PetwatchError:
    """One line: the daemon and this petwatch disagree on a reply (most likely two versions)."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    daemon = f"the daemon (petwatch {daemon_version})" if daemon_version else "the daemon"
    return PetwatchError(
        f"{daemon} and this petwatch ({__version__}) disagree on the reply to {endpoint.method} {endpoint.path} "
        f"({where + ': ' if where else ''}{first['msg']}): restart the daemon so that it runs this version "
        "(`systemctl --user restart petwatch`, or stop it and run `petwatch daemon`)"
    )


def _version(status: Any) -> str | None:
    """The daemon's version from its /status reply, as sent (unchecked)."""
    version = status.get("version") if isinstance(status, dict) else None
    return version if isinstance(version, str) else None


@contextmanager
def _talking(socket: Path, what: str) -> Iterator[None]:
    """A request's errors as the user reads them: no daemon, or no answer in time."""
    if not socket.exists():
        raise _unavailable(socket)
    try:
        yield
    except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError):
        raise _unavailable(socket) from None
    except httpx.TimeoutException:
        raise PetwatchError(
            f"the daemon did not answer {what} in time; see its log (journalctl --user -u petwatch)"
        ) from None


def _config_problem(response: httpx.Response) -> str | None:
    """The daemon's config problem as its reply's head carries it (endpoints.CONFIG_PROBLEM_HEADER)."""
    problem = response.headers.get(endpoints.CONFIG_PROBLEM_HEADER)
    return urllib.parse.unquote(problem) if problem else None


class DaemonClient(EndpointCalls):
    def __init__(self, socket: Path | None = None, timeout: float = 30.0) -> None:
        self.socket = socket or locations.socket_path()
        self.config_problem: str | None = None  # as the last reply told it
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
        self.config_problem = _config_problem(response)
        return response

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        return self.request(method, url, **kwargs).json()

    def send(self, call: Call[R]) -> R:
        response = self.request(call.endpoint.method, call.url, **call.options)
        try:
            return call.answer(_reply(call.endpoint, response))
        except ValidationError as error:
            raise _disagreement(call.endpoint, error, self._daemon_version()) from None

    def _daemon_version(self) -> str | None:
        try:
            return _version(self.call(endpoints.STATUS.method, endpoints.STATUS.path))
        except (PetwatchError, ValueError):
            return None

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
                yield from parse_events(response.iter_lines())
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return


class AsyncDaemonClient(EndpointCalls):
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
        response = await self.request(call.endpoint.method, call.url, **call.options)
        try:
            return call.answer(_reply(call.endpoint, response))
        except ValidationError as error:
            raise _disagreement(call.endpoint, error, await self._daemon_version()) from None

    async def _daemon_version(self) -> str | None:
        try:
            return _version(await self.call(endpoints.STATUS.method, endpoints.STATUS.path))
        except (PetwatchError, ValueError):
            return None

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
                            for item in parse_events(lines):
                                yield item
                            lines = []
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return
