"""The photo library's part of the socket API: index, search, folders, photos.

``api.create_app`` includes ``router(daemon)``; the daemon (``core.Daemon``) does the work
through its ``Library``.

    GET  /stats                       photos indexed, dogs and cats, model, database
    POST /search                      {"image" | "photo", "text", "pet", "taken", "near", "top_k",
                                       "min_score", "offset", "species", "stacks", "expand"}
    GET  /words                       what words can name: the places of the indexed photos, the pets
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
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from petwatch import endpoints
from petwatch.daemon.core import Daemon
from petwatch.daemon.routing import route
from petwatch.endpoints import FolderRequest, IndexRequest, PhotoQuery, SearchRequest, ThumbnailQuery
from petwatch.errors import PetwatchError
from petwatch.protocol import (
    FailureReply,
    FolderReply,
    PhotoReply,
    ReportReply,
    RescanReply,
    SearchReply,
    StatsReply,
    WordsReply,
)


def router(daemon: Daemon) -> APIRouter:
    """The library's routes over the daemon."""
    routes = APIRouter(tags=["library"])

    @route(routes, endpoints.STATS)
    def stats() -> StatsReply:
        return daemon.library.stats()

    @route(routes, endpoints.SEARCH)
    def search(request: SearchRequest) -> SearchReply:
        return daemon.search(request)

    @route(routes, endpoints.WORDS)
    def words() -> WordsReply:
        return daemon.words()

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
    def photo(query: Annotated[PhotoQuery, Query()]) -> PhotoReply:
        return daemon.photo(query.path)

    @route(routes, endpoints.THUMBNAIL)
    def thumbnail(query: Annotated[ThumbnailQuery, Query()]) -> Response:
        return Response(
            daemon.thumbnail(query.path, query.size),
            media_type="image/jpeg",
            headers={"Cache-Control": "max-age=86400"},
        )

    return routes
