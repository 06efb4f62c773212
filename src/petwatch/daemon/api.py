"""The socket API: HTTP/1.1 + JSON over a Unix socket (as Docker's API), events as SSE.

One error shape everywhere: ``{"error": "one line the user can act on"}``. Requests are
validated by pydantic models; bodies over MAX_BODY_BYTES are refused before they are read
into memory; only the daemon's own user may connect (SO_PEERCRED).

This module assembles the app (errors, limits, /status, /events); the library's routes (index,
search, folders, photos) are ``library_routes``, and each of the daemon's features
(``Daemon.features``) brings its own (``pet_routes``, ``discovery_routes``, ``comic_routes``,
``stack_routes``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.parse
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from petwatch import endpoints
from petwatch.daemon.core import Daemon
from petwatch.daemon.library_routes import router as library_router
from petwatch.daemon.routing import route
from petwatch.daemon.unix_socket import peer_uid
from petwatch.errors import PetwatchError
from petwatch.protocol import (
    Event,
    StatusReply,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # every request is small; a 100 MB message is refused unread


class PathJSONResponse(JSONResponse):
    """JSON in ASCII, non-ASCII characters as \\u escapes.

    A file name that is not valid UTF-8 (an old FAT stick, a Latin-1 archive) reaches
    Python as a str holding lone surrogates (os.fsdecode). The default JSON response
    encodes to UTF-8 strictly and fails on those, so one such name in an album made
    /status (its failure list), /search and /failures answer 500. Escaped, the path
    round-trips exactly: json.loads gives back the same str, os.fsencode the same bytes.
    """

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(status: int, message: str) -> JSONResponse:
    return PathJSONResponse({"error": message}, status_code=status)


class BodyLimit:
    """Pure ASGI middleware: a body over the limit is refused with 413 before the app sees
    any of it, whether announced by Content-Length or streamed (chunked).

    Every request body is small, so it is read here in full and replayed to the app; what
    comes after it (a client hanging up on a stream) still reaches the app.
    """

    def __init__(self, app, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = _error(413, f"request body over {self.limit} bytes")
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                return await too_large(scope, receive, send)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client hung up
                return None
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await too_large(scope, receive, send)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)


class ConfigProblemHeader:
    """Pure ASGI middleware: the daemon's config problem, if any, on every reply's head
    (endpoints.CONFIG_PROBLEM_HEADER), for the CLI to tell once."""

    def __init__(self, app, problem: Callable[[], str | None]) -> None:
        self.app, self.problem = app, problem

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def sending(message):
            if message["type"] == "http.response.start" and (problem := self.problem()):
                header = (endpoints.CONFIG_PROBLEM_HEADER.lower().encode(), urllib.parse.quote(problem).encode())
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        return await self.app(scope, receive, sending)


def create_app(daemon: Daemon) -> BodyLimit:
    """The app, behind BodyLimit (the ASGI app uvicorn serves)."""
    app = FastAPI(
        title="petwatch daemon", version="1", docs_url=None, redoc_url=None, default_response_class=PathJSONResponse
    )

    @app.exception_handler(PetwatchError)
    async def _petwatch_error(request: Request, error: PetwatchError):
        return _error(400, str(error))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(422, f"invalid request: {where + ': ' if where else ''}{first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException):
        if error.status_code == 404:
            return _error(404, f"unknown method: {request.method} {request.url.path}")
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception):
        log.exception("internal error on %s", request.url.path)
        return _error(500, f"internal error: {error}; see the daemon log")

    @route(app, endpoints.STATUS)
    def status() -> StatusReply:
        return daemon.status()

    @route(app, endpoints.EVENTS)
    async def events() -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            yield endpoints.format_event(Event.HELLO, daemon.status())
            async for kind, data in daemon.bus.subscribe():
                yield endpoints.format_event(kind, data)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    app.include_router(library_router(daemon))
    for feature in daemon.features:
        app.include_router(feature.routes())
    return BodyLimit(ConfigProblemHeader(app, lambda: daemon.config.problem))


FIRST_REQUEST_SECONDS = 10.0  # a connection must have sent one whole request head by then


class OwnerOnlyH11(H11Protocol):
    """uvicorn's HTTP protocol, closing any connection from another user (SO_PEERCRED),
    and any connection that has not sent a complete request head within
    FIRST_REQUEST_SECONDS.

    uvicorn's keep-alive timeout only starts after a response, so a client that connected
    and never sent anything (or sent half a request line, and stopped) held its connection
    for good; a few hundred of them filled limit_concurrency and every other client got 503.
    """

    _request_seen = False
    _first_request_timer = None

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None:
            self._request_seen = True

    def _drop_if_silent(self) -> None:
        if not self._request_seen and not self.transport.is_closing():
            log.info("dropped a connection that sent no request in %.0fs", FIRST_REQUEST_SECONDS)
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if self._first_request_timer is not None:
            self._first_request_timer.cancel()
        super().connection_lost(exc)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._first_request_timer = self.loop.call_later(FIRST_REQUEST_SECONDS, self._drop_if_silent)
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family != socket.AF_UNIX:
            return
        uid = peer_uid(sock)
        if uid is None:
            transport.close()
            return
        if uid != os.getuid():
            log.warning("refused a connection from uid %d", uid)
            transport.close()
