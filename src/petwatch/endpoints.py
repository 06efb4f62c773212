"""The daemon's endpoints, one table: method, path, reply type and timeout of each.

The daemon registers its handlers against these entries (``petwatch.daemon.routing``) and the
client builds its requests from them (``petwatch.client``), so a path is written here and
nowhere else (tests/test_house.py checks). Each request's model is the handler's pydantic
argument in its routes module, next to the limits the daemon enforces; the client sends the
same fields. No torch, no fastapi: the CLI and the TUI import this.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from petwatch.protocol import (
    ComicEstimateReply,
    ComicJobReply,
    ComicShowReply,
    DiscoveryWhyReply,
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

R = TypeVar("R")


class Wait(StrEnum):
    """How long a client waits for the answer."""

    USUAL = "usual"  # the client's own timeout
    LONG = "long"  # a pet's album or the groups can take a while on a big library
    UNBOUNDED = "unbounded"  # a walk of whole folders (index), the event stream


LONG_WAIT_S = 300.0


@dataclass(frozen=True)
class Endpoint(Generic[R]):
    """One endpoint. ``reply`` is the JSON reply's type (``bytes``: an image); ``R`` types the
    client's answer. ``path`` may hold ``{parameters}``, filled (quoted) by ``url``."""

    method: str
    path: str
    reply: Any
    wait: Wait = Wait.USUAL

    def url(self, **parameters: object) -> str:
        return self.path.format_map({k: quote(str(v), safe="") for k, v in parameters.items()})

    @property
    def is_json(self) -> bool:
        return self.reply is not bytes


# --- the daemon itself (daemon/api.py) -----------------------------------------------------------
STATUS: Endpoint[StatusReply] = Endpoint("GET", "/status", StatusReply)
EVENTS: Endpoint[None] = Endpoint("GET", "/events", None, Wait.UNBOUNDED)  # server-sent events
# --- the library (daemon/library_routes.py) ------------------------------------------------------
STATS: Endpoint[StatsReply] = Endpoint("GET", "/stats", StatsReply)
SEARCH: Endpoint[SearchReply] = Endpoint("POST", "/search", SearchReply)
INDEX: Endpoint[ReportReply] = Endpoint("POST", "/index", ReportReply, Wait.UNBOUNDED)
RESCAN: Endpoint[RescanReply] = Endpoint("POST", "/rescan", RescanReply)
FOLDERS: Endpoint[list[FolderReply]] = Endpoint("GET", "/folders", list[FolderReply])
FOLDER_ADD: Endpoint[list[FolderReply]] = Endpoint("POST", "/folders", list[FolderReply])
FOLDER_REMOVE: Endpoint[list[FolderReply]] = Endpoint("POST", "/folders/remove", list[FolderReply])
FAILURES: Endpoint[list[FailureReply]] = Endpoint("GET", "/failures", list[FailureReply])
PHOTO: Endpoint[PhotoReply] = Endpoint("GET", "/photo", PhotoReply)
THUMBNAIL: Endpoint[bytes] = Endpoint("GET", "/thumbnail", bytes)
# --- stacks (daemon/stack_routes.py) -------------------------------------------------------------
STACKS: Endpoint[list[StackReply]] = Endpoint("GET", "/stacks", list[StackReply])
STACK: Endpoint[StackReply] = Endpoint("GET", "/stacks/{stack_id}", StackReply)
# --- comics (daemon/comic_routes.py) -------------------------------------------------------------
COMIC_SUBMIT: Endpoint[ComicJobReply] = Endpoint("POST", "/comics", ComicJobReply)
COMIC_ESTIMATE: Endpoint[ComicEstimateReply] = Endpoint("POST", "/comics/estimate", ComicEstimateReply)
COMICS: Endpoint[list[ComicJobReply]] = Endpoint("GET", "/comics", list[ComicJobReply])
COMIC: Endpoint[ComicShowReply] = Endpoint("GET", "/comics/{job_id}", ComicShowReply)
COMIC_CANCEL: Endpoint[ComicJobReply] = Endpoint("POST", "/comics/{job_id}/cancel", ComicJobReply)
COMIC_REFINE: Endpoint[ComicJobReply] = Endpoint("POST", "/comics/{job_id}/refine", ComicJobReply)
COMIC_RETRY: Endpoint[ComicJobReply] = Endpoint("POST", "/comics/{job_id}/retry", ComicJobReply)
COMIC_IMAGE: Endpoint[bytes] = Endpoint("GET", "/comics/{job_id}/image", bytes)
# --- pet profiles (daemon/pet_routes.py) ---------------------------------------------------------
PETS: Endpoint[list[PetReply]] = Endpoint("GET", "/pets", list[PetReply], Wait.LONG)
PET_ADD: Endpoint[PetReply] = Endpoint("POST", "/pets", PetReply, Wait.LONG)
PET: Endpoint[PetAlbumReply] = Endpoint("GET", "/pets/{name}", PetAlbumReply, Wait.LONG)
PET_PATHS: Endpoint[PetPathsReply] = Endpoint("GET", "/pets/{name}/paths", PetPathsReply, Wait.LONG)
PET_MARK: Endpoint[PetReply] = Endpoint("POST", "/pets/{name}/marks", PetReply, Wait.LONG)
PET_REMOVE: Endpoint[PetRemovedReply] = Endpoint("DELETE", "/pets/{name}", PetRemovedReply)
# --- pets found (daemon/discovery_routes.py) -----------------------------------------------------
GROUPS: Endpoint[list[GroupReply]] = Endpoint("GET", "/groups", list[GroupReply], Wait.LONG)
GROUPS_WHY: Endpoint[DiscoveryWhyReply] = Endpoint("GET", "/groups/why", DiscoveryWhyReply, Wait.LONG)
GROUPS_REFRESH: Endpoint[list[GroupReply]] = Endpoint("POST", "/groups/refresh", list[GroupReply], Wait.LONG)
GROUP: Endpoint[GroupReply] = Endpoint("GET", "/groups/{gid}", GroupReply, Wait.LONG)
GROUP_NAME: Endpoint[PetReply] = Endpoint("POST", "/groups/{gid}/name", PetReply, Wait.LONG)
GROUP_DISMISS: Endpoint[GroupReply] = Endpoint("POST", "/groups/{gid}/dismiss", GroupReply, Wait.LONG)
GROUP_MERGE: Endpoint[GroupReply] = Endpoint("POST", "/groups/{gid}/merge", GroupReply, Wait.LONG)
GROUP_REMOVE: Endpoint[GroupReply] = Endpoint("POST", "/groups/{gid}/remove", GroupReply, Wait.LONG)

ENDPOINTS: tuple[Endpoint[Any], ...] = tuple(v for v in list(globals().values()) if isinstance(v, Endpoint))
