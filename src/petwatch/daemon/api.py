"""The socket API: HTTP/1.1 + JSON over a Unix socket (as Docker's API), events as SSE.

One error shape everywhere: ``{"error": "one line the user can act on"}``. Requests are
validated by pydantic models; bodies over MAX_BODY_BYTES are refused before they are read
into memory; only the daemon's own user may connect (SO_PEERCRED).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from petwatch.daemon.comic_routes import router as comics_router
from petwatch.daemon.discovery_routes import router as discovery_router
from petwatch.daemon.pet_routes import router as pets_router
from petwatch.daemon.run import peer_uid
from petwatch.daemon.service import Daemon
from petwatch.errors import PetwatchError
from petwatch.paths import decode_path
from petwatch.protocol import (
    MAX_PATH_CHARS,
    MAX_TOP_K,
    SPECIES,
    Event,
    FailureReply,
    FolderReply,
    PhotoPath,
    PhotoReply,
    ReportReply,
    RescanReply,
    SearchReply,
    StatsReply,
    StatusReply,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20  # every request is small; a 100 MB message is refused unread


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Strict):
    image: PhotoPath | None = Field(None, description="Path of any image file")
    photo: PhotoPath | None = Field(None, description="Path of an indexed photo")
    # None (or left out): the daemon's settings.top_k / settings.min_score
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K)
    min_score: float | None = Field(None, ge=-1.0, le=1.0)
    offset: int = Field(0, ge=0, le=MAX_TOP_K)
    species: list[str] | None = Field(
        None, max_length=len(SPECIES), description=f"Only photos of these species ({', '.join(SPECIES)})"
    )

    @field_validator("species")
    @classmethod
    def _known_species(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - set(SPECIES))
        if unknown:
            raise ValueError(f"unknown species {', '.join(unknown)}: use {', '.join(SPECIES)}")
        return value


class FolderRequest(_Strict):
    path: PhotoPath


class IndexRequest(_Strict):
    folders: list[PhotoPath] = Field(..., min_length=1, max_length=256)


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

    # The replies are typed (petwatch.protocol) but sent as they are made: response_model says
    # so, instead of FastAPI validating each against its TypedDict. The casts mark producers
    # (service.py, library.py) that return a bare dict still: drop each once its own return
    # is annotated with the reply type (warn_redundant_casts points them out).
    @app.get("/status", response_model=dict)
    def status() -> StatusReply:
        return daemon.status()

    @app.get("/stats", response_model=dict)
    def stats() -> StatsReply:
        return daemon.library.stats()

    @app.post("/search", response_model=dict)
    def search(request: SearchRequest) -> SearchReply:
        # None: the daemon's own settings (top_k, min_score)
        return daemon.search(
            request.image, request.photo, request.top_k, request.min_score, request.offset, request.species
        )

    @app.post("/index", response_model=dict)
    def index(request: IndexRequest) -> ReportReply:
        folders = [os.path.abspath(f) for f in request.folders]
        missing = [f for f in folders if not os.path.isdir(f)]
        if missing:
            raise PetwatchError(f"not a directory: {missing[0]}")
        return daemon.request_reconcile(folders).result().to_dict()

    @app.post("/rescan", response_model=dict)
    def rescan() -> RescanReply:
        daemon.rescan()
        return {"queued": True}

    @app.get("/folders", response_model=list[dict])
    def folders() -> list[FolderReply]:
        return daemon.folder_list()

    @app.post("/folders", response_model=list[dict])
    def add_folder(request: FolderRequest) -> list[FolderReply]:
        return daemon.add_folder(request.path)

    @app.post("/folders/remove", response_model=list[dict])
    def remove_folder(request: FolderRequest) -> list[FolderReply]:
        return daemon.remove_folder(request.path)

    @app.get("/failures", response_model=list[dict])
    def failures() -> list[FailureReply]:
        return daemon.failures()

    @app.get("/photo", response_model=dict)
    def photo(path: str = Query(..., max_length=MAX_PATH_CHARS)) -> PhotoReply:
        return cast(PhotoReply, daemon.photo(_sent_path(path)))

    @app.get("/thumbnail")
    def thumbnail(
        path: str = Query(..., max_length=MAX_PATH_CHARS), size: int = Query(256, ge=16, le=2048)
    ) -> Response:
        return Response(
            daemon.thumbnail(_sent_path(path), size),
            media_type="image/jpeg",
            headers={"Cache-Control": "max-age=86400"},
        )

    @app.get("/events")
    async def events() -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            yield _sse(Event.HELLO, daemon.status())
            async for kind, data in daemon.bus.subscribe():
                yield _sse(kind, data)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    app.include_router(comics_router(daemon.comics))
    app.include_router(pets_router(daemon.pets))
    app.include_router(discovery_router(daemon.discovery, daemon.pets))
    return BodyLimit(app)


def _sent_path(path: str) -> str:
    """A path from a query string (PhotoPath's decoding, for parameters outside a body)."""
    try:
        return decode_path(path)
    except ValueError:
        raise PetwatchError(f"not a path: {path[:80]!r} (b64: names a file name in base64)") from None


def _sse(kind: Event, data: Mapping[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


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
