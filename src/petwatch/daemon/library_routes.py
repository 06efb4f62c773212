"""The photo library's part of the socket API: index, search, folders, photos.

``api.create_app`` includes ``router(daemon)``; the daemon (``service.Daemon``) does the work
through its ``Library``.

    GET  /stats                       photos indexed, dogs and cats, model, database
    POST /search                      {"image" | "photo", "top_k", "min_score", "offset", "species", "stacks", "expand"}
    POST /index                       {"folders"}: walk them now, answer with the report
    POST /rescan                      re-read the folder list, walk everything (queued)
    GET  /folders                     the watched folders
    POST /folders, /folders/remove    {"path"}: add or remove a watched folder
    GET  /failures                    files that could not be indexed, and why
    GET  /photo?path                  an indexed photo's row
    GET  /thumbnail?path&size         a JPEG thumbnail of an indexed photo
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from petwatch import endpoints
from petwatch.daemon.routing import route
from petwatch.daemon.service import Daemon
from petwatch.errors import PetwatchError
from petwatch.paths import decode_path
from petwatch.protocol import (
    MAX_PATH_CHARS,
    MAX_TOP_K,
    SPECIES,
    FailureReply,
    FolderReply,
    PhotoPath,
    PhotoReply,
    ReportReply,
    RescanReply,
    SearchReply,
    StatsReply,
    TopK,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Strict):
    image: PhotoPath | None = Field(None, description="Path of any image file")
    photo: PhotoPath | None = Field(None, description="Path of an indexed photo")
    # None (or left out): the daemon's settings.top_k / settings.min_score
    top_k: TopK | None = None
    min_score: float | None = Field(None, ge=-1.0, le=1.0)
    offset: int = Field(0, ge=0, le=MAX_TOP_K)
    # None: the library's default (query expansion where it measured better)
    expand: bool | None = Field(None, description="Search again with the query expanded by its first hits")
    species: list[str] | None = Field(
        None, max_length=len(SPECIES), description=f"Only photos of these species ({', '.join(SPECIES)})"
    )
    stacks: bool = Field(True, description="One hit per stack (bursts, copies); false: every photo")

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


def router(daemon: Daemon) -> APIRouter:
    """The library's routes over the daemon."""
    routes = APIRouter(tags=["library"])

    @route(routes, endpoints.STATS)
    def stats() -> StatsReply:
        return daemon.library.stats()

    @route(routes, endpoints.SEARCH)
    def search(request: SearchRequest) -> SearchReply:
        return daemon.search(**request.model_dump())  # its fields are Daemon.search's parameters

    @route(routes, endpoints.INDEX)
    def index(request: IndexRequest) -> ReportReply:
        folders = [os.path.abspath(f) for f in request.folders]
        missing = [f for f in folders if not os.path.isdir(f)]
        if missing:
            raise PetwatchError(f"not a directory: {missing[0]}")
        return daemon.request_reconcile(folders).result().to_dict()

    @route(routes, endpoints.RESCAN)
    def rescan() -> RescanReply:
        daemon.rescan()
        return {"queued": True}

    @route(routes, endpoints.FOLDERS)
    def folders() -> list[FolderReply]:
        return daemon.folder_list()

    @route(routes, endpoints.FOLDER_ADD)
    def add_folder(request: FolderRequest) -> list[FolderReply]:
        return daemon.add_folder(request.path)

    @route(routes, endpoints.FOLDER_REMOVE)
    def remove_folder(request: FolderRequest) -> list[FolderReply]:
        return daemon.remove_folder(request.path)

    @route(routes, endpoints.FAILURES)
    def failures() -> list[FailureReply]:
        return daemon.failures()

    @route(routes, endpoints.PHOTO)
    def photo(path: str = Query(..., max_length=MAX_PATH_CHARS)) -> PhotoReply:
        return daemon.photo(_sent_path(path))

    @route(routes, endpoints.THUMBNAIL)
    def thumbnail(
        path: str = Query(..., max_length=MAX_PATH_CHARS), size: int = Query(256, ge=16, le=2048)
    ) -> Response:
        return Response(
            daemon.thumbnail(_sent_path(path), size),
            media_type="image/jpeg",
            headers={"Cache-Control": "max-age=86400"},
        )

    return routes


def _sent_path(path: str) -> str:
    """A path from a query string (PhotoPath's decoding, for parameters outside a body)."""
    try:
        return decode_path(path)
    except ValueError:
        raise PetwatchError(f"not a path: {path[:80]!r} (b64: names a file name in base64)") from None
