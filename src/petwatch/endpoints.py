"""The daemon's endpoints, one table: method, path, reply type and wait of each, and the
request each takes from a caller.

The daemon registers its handlers against these entries (``petwatch.daemon.routing``); the
clients' methods are ``EndpointCalls``, written once here: each makes a ``Call`` (URL, body or
query, wait) from its arguments, and a thin transport (``petwatch.client``: sync for the CLI,
async for the TUI) sends it. A path is written here and nowhere else (tests/test_house.py
checks). What a caller sends is declared once, as the endpoint's ``request`` model: a JSON
body (``Body``) or, for a GET, its query parameters (``Query``). The daemon validates the
request with it (its limits, its defaults, its messages) and the client's method sends its
fields through it (paths encoded). No torch, no fastapi, no I/O: the CLI and the TUI import
this.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, Unpack, overload
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

from petwatch.errors import PetwatchError
from petwatch.filenames import encode_path
from petwatch.protocol import (
    FORGET,
    JOB_ID,
    MAX_ALBUM_PAGE,
    MAX_NAME,
    MAX_PHOTOS,
    MAX_PROMPT_CHARS,
    MAX_REFERENCES,
    MAX_TOP_K,
    NOT,
    SPECIES,
    YES,
    ComicEstimateReply,
    ComicJobReply,
    ComicLook,
    ComicOptions,
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
    PhotoPath,
    PhotoReply,
    ReportReply,
    RescanReply,
    SearchReply,
    StackReply,
    StatsReply,
    StatusReply,
    TopK,
    WordsReply,
)
from petwatch.settings import Settings

log = logging.getLogger(__name__)
R = TypeVar("R")
T = TypeVar("T")
P = ParamSpec("P")


class Wait(StrEnum):
    """How long a client waits for the answer."""

    USUAL = "usual"  # the client's own timeout
    LONG = "long"  # a pet's album or the groups can take a while on a big library
    UNBOUNDED = "unbounded"  # a walk of whole folders (index), the event stream


LONG_WAIT_S = 300.0


# --- the requests: the daemon validates each with its model, the client sends it -----------------
# The settings' own choices (a Literal read at run time: pydantic takes it, mypy cannot)
Size = Settings.model_fields["comic_size"].annotation
Quality = Settings.model_fields["comic_quality"].annotation
# A path in a request: sent encoded (petwatch.filenames), decoded when the daemon validates it.
SentPath = Annotated[PhotoPath, PlainSerializer(encode_path, when_used="json")]


class Body(BaseModel):
    """A request's JSON body: a field it does not declare is refused."""

    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    """A GET's query parameters: one it does not declare is refused."""

    model_config = ConfigDict(extra="forbid")


class PhotoQuery(Query):
    path: SentPath


class ThumbnailQuery(Query):
    path: SentPath
    size: int = Field(256, ge=16, le=2048)


class PetAlbumQuery(Query):
    offset: int = Field(0, ge=0, le=MAX_ALBUM_PAGE)
    limit: int = Field(0, ge=0, le=MAX_ALBUM_PAGE, description="0 = the whole album")


class PetPathsQuery(Query):
    top: int = Field(8, ge=1, le=MAX_ALBUM_PAGE)


class GroupsQuery(Query):
    all: bool = Field(False, description="dismissed and named groups too")


MAX_TEXT_CHARS = 500  # a search's words


class SearchRequest(Body):  # search.query_from makes the one query value of it
    image: SentPath | None = Field(None, description="Path of any image file")
    photo: SentPath | None = Field(None, description="Path of an indexed photo")
    text: str | None = Field(
        None, max_length=MAX_TEXT_CHARS, description="Words: what, when, where, who (with a photo: they filter)"
    )
    pet: str | None = Field(None, max_length=MAX_NAME, description="Only this pet's photos (its album)")
    taken: str | None = Field(None, max_length=100, description='When: "2023", "june 2023", "2021 to 2023"')
    near: str | None = Field(None, max_length=200, description="Where: a city, region or country")
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


class FolderRequest(Body):
    path: SentPath


class IndexRequest(Body):
    folders: list[SentPath] = Field(..., min_length=1, max_length=256)


class ComicRequest(Body):  # ComicJobs.submit's parameters, passed by name
    photos: list[SentPath] = Field(
        default_factory=list,
        max_length=MAX_REFERENCES,
        description=f"Absolute paths of 1-{MAX_REFERENCES} reference photos (may be omitted "
        "with parent: the parent's selection is used)",
    )
    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS)
    size: Size | None = None  # type: ignore[valid-type]
    quality: Quality | None = None  # type: ignore[valid-type]
    parent: str | None = Field(None, pattern=JOB_ID, description="Comic this one refines")


class EstimateRequest(Body):  # ComicJobs.estimate's parameters
    n: int | None = Field(None, ge=1, le=MAX_REFERENCES, description="Reference images")
    photos: list[SentPath] | None = Field(None, max_length=MAX_REFERENCES)
    size: Size | None = None  # type: ignore[valid-type]
    quality: Quality | None = None  # type: ignore[valid-type]
    parent: str | None = Field(None, pattern=JOB_ID)


class RefineRequest(Body):
    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS)
    photos: list[SentPath] = Field(default_factory=list, max_length=MAX_REFERENCES)
    size: Size | None = None  # type: ignore[valid-type]
    quality: Quality | None = None  # type: ignore[valid-type]


class RetryRequest(Body):
    prompt: str | None = Field(None, min_length=1, max_length=MAX_PROMPT_CHARS, description="Replaces the old prompt")


class PetAddRequest(Body):
    name: str = Field(..., min_length=1, max_length=MAX_NAME, description="The pet's name")
    photos: list[SentPath] = Field(
        ..., min_length=1, max_length=MAX_PHOTOS, description="Example photos of the pet (three or more work best)"
    )


class PetMarkRequest(Body):
    paths: list[SentPath] = Field(..., min_length=1, max_length=MAX_PHOTOS)
    mark: str = Field(
        ...,
        pattern=f"^({YES}|{NOT}|{FORGET})$",
        description="yes: my pet (add it); not: not my pet; forget: drop the mark",
    )


class NameRequest(Body):
    name: str = Field(..., min_length=1, max_length=MAX_NAME, description="The pet's name")


class MergeRequest(Body):
    other: int = Field(..., ge=1, description="The group whose photos join this one")


class RemoveRequest(Body):
    paths: list[SentPath] = Field(..., min_length=1, max_length=MAX_PHOTOS)


@dataclass(frozen=True)
class Endpoint(Generic[R]):
    """One endpoint. ``reply`` is the JSON reply's type (``bytes``: an image); ``R`` types the
    client's answer. ``path`` may hold ``{parameters}``, filled (quoted) by ``url``. ``request``:
    the model of what it takes from a caller, if anything: a GET's query, another's JSON body."""

    method: str
    path: str
    reply: Any
    wait: Wait = Wait.USUAL
    request: type[Body] | type[Query] | None = None

    def __post_init__(self) -> None:
        if self.request is not None and issubclass(self.request, Query) != (self.method == "GET"):
            raise TypeError(f"{self.method} {self.path}: a GET takes a Query, another method a Body")

    def url(self, **parameters: object) -> str:
        return self.path.format_map({k: quote(str(v), safe="") for k, v in parameters.items()})

    @property
    def is_json(self) -> bool:
        return self.reply is not bytes

    def body(self, **fields: Any) -> dict[str, Any]:
        """The JSON body of these fields, as the request model sends them (paths encoded); a
        None is left out: the daemon decides."""
        return self._sent(Body, fields)

    def query(self, **fields: Any) -> dict[str, Any]:
        """The query parameters of these fields, as ``body`` makes a body."""
        return self._sent(Query, fields)

    def _sent(self, kind: type[BaseModel], fields: dict[str, Any]) -> dict[str, Any]:
        model = self.request
        if model is None or not issubclass(model, kind):
            raise TypeError(f"{self.method} {self.path} takes no {kind.__name__.lower()}")
        unknown = set(fields) - set(model.model_fields)
        if unknown:
            raise TypeError(f"{model.__name__} has no field {', '.join(sorted(unknown))}")
        given = {name: value for name, value in fields.items() if value is not None}
        return model.model_construct(**given).model_dump(mode="json", exclude_unset=True)


# --- the daemon itself (daemon/api.py) -----------------------------------------------------------
STATUS: Endpoint[StatusReply] = Endpoint("GET", "/status", StatusReply)
EVENTS: Endpoint[None] = Endpoint("GET", "/events", None, Wait.UNBOUNDED)  # server-sent events
# --- the library (daemon/library_routes.py) ------------------------------------------------------
STATS: Endpoint[StatsReply] = Endpoint("GET", "/stats", StatsReply)
SEARCH: Endpoint[SearchReply] = Endpoint("POST", "/search", SearchReply, request=SearchRequest)
WORDS: Endpoint[WordsReply] = Endpoint("GET", "/words", WordsReply)  # what words can name: places, pets
INDEX: Endpoint[ReportReply] = Endpoint("POST", "/index", ReportReply, Wait.UNBOUNDED, IndexRequest)
RESCAN: Endpoint[RescanReply] = Endpoint("POST", "/rescan", RescanReply)
FOLDERS: Endpoint[list[FolderReply]] = Endpoint("GET", "/folders", list[FolderReply])
FOLDER_ADD: Endpoint[list[FolderReply]] = Endpoint("POST", "/folders", list[FolderReply], request=FolderRequest)
FOLDER_REMOVE: Endpoint[list[FolderReply]] = Endpoint(
    "POST", "/folders/remove", list[FolderReply], request=FolderRequest
)
FAILURES: Endpoint[list[FailureReply]] = Endpoint("GET", "/failures", list[FailureReply])
PHOTO: Endpoint[PhotoReply] = Endpoint("GET", "/photo", PhotoReply, request=PhotoQuery)
THUMBNAIL: Endpoint[bytes] = Endpoint("GET", "/thumbnail", bytes, request=ThumbnailQuery)
# --- stacks (daemon/stack_routes.py) -------------------------------------------------------------
STACKS: Endpoint[list[StackReply]] = Endpoint("GET", "/stacks", list[StackReply])
STACK: Endpoint[StackReply] = Endpoint("GET", "/stacks/{stack_id}", StackReply)
# --- comics (daemon/comic_routes.py) -------------------------------------------------------------
COMIC_SUBMIT: Endpoint[ComicJobReply] = Endpoint("POST", "/comics", ComicJobReply, request=ComicRequest)
COMIC_ESTIMATE: Endpoint[ComicEstimateReply] = Endpoint(
    "POST", "/comics/estimate", ComicEstimateReply, request=EstimateRequest
)
COMICS: Endpoint[list[ComicJobReply]] = Endpoint("GET", "/comics", list[ComicJobReply])
COMIC: Endpoint[ComicShowReply] = Endpoint("GET", "/comics/{job_id}", ComicShowReply)
COMIC_CANCEL: Endpoint[ComicJobReply] = Endpoint("POST", "/comics/{job_id}/cancel", ComicJobReply)
COMIC_REFINE: Endpoint[ComicJobReply] = Endpoint(
    "POST", "/comics/{job_id}/refine", ComicJobReply, request=RefineRequest
)
COMIC_RETRY: Endpoint[ComicJobReply] = Endpoint("POST", "/comics/{job_id}/retry", ComicJobReply, request=RetryRequest)
COMIC_IMAGE: Endpoint[bytes] = Endpoint("GET", "/comics/{job_id}/image", bytes)
# --- pet profiles (daemon/pet_routes.py) ---------------------------------------------------------
PETS: Endpoint[list[PetReply]] = Endpoint("GET", "/pets", list[PetReply], Wait.LONG)
PET_ADD: Endpoint[PetReply] = Endpoint("POST", "/pets", PetReply, Wait.LONG, PetAddRequest)
PET: Endpoint[PetAlbumReply] = Endpoint("GET", "/pets/{name}", PetAlbumReply, Wait.LONG, PetAlbumQuery)
PET_PATHS: Endpoint[PetPathsReply] = Endpoint("GET", "/pets/{name}/paths", PetPathsReply, Wait.LONG, PetPathsQuery)
PET_MARK: Endpoint[PetReply] = Endpoint("POST", "/pets/{name}/marks", PetReply, Wait.LONG, PetMarkRequest)
PET_REMOVE: Endpoint[PetRemovedReply] = Endpoint("DELETE", "/pets/{name}", PetRemovedReply)
# --- pets found (daemon/discovery_routes.py) -----------------------------------------------------
GROUPS: Endpoint[list[GroupReply]] = Endpoint("GET", "/groups", list[GroupReply], Wait.LONG, GroupsQuery)
GROUPS_WHY: Endpoint[DiscoveryWhyReply] = Endpoint("GET", "/groups/why", DiscoveryWhyReply, Wait.LONG)
GROUPS_REFRESH: Endpoint[list[GroupReply]] = Endpoint("POST", "/groups/refresh", list[GroupReply], Wait.LONG)
GROUP: Endpoint[GroupReply] = Endpoint("GET", "/groups/{gid}", GroupReply, Wait.LONG)
GROUP_NAME: Endpoint[PetReply] = Endpoint("POST", "/groups/{gid}/name", PetReply, Wait.LONG, NameRequest)
GROUP_DISMISS: Endpoint[GroupReply] = Endpoint("POST", "/groups/{gid}/dismiss", GroupReply, Wait.LONG)
GROUP_MERGE: Endpoint[GroupReply] = Endpoint("POST", "/groups/{gid}/merge", GroupReply, Wait.LONG, MergeRequest)
GROUP_REMOVE: Endpoint[GroupReply] = Endpoint("POST", "/groups/{gid}/remove", GroupReply, Wait.LONG, RemoveRequest)

GROUP_ACTIONS: dict[str, Endpoint[Any]] = {
    "name": GROUP_NAME,
    "dismiss": GROUP_DISMISS,
    "merge": GROUP_MERGE,
    "remove": GROUP_REMOVE,
}

ENDPOINTS: tuple[Endpoint[Any], ...] = tuple(v for v in list(globals().values()) if isinstance(v, Endpoint))

# On every reply while the config file is broken or names settings that need a restart: the
# daemon's config problem, percent-encoded (a header is Latin-1), so the CLI can tell it without
# asking /status before each command.
CONFIG_PROBLEM_HEADER = "Petwatch-Config-Problem"


# --- the event stream's framing (GET /events, server-sent events), both sides --------------------
EventData = dict[str, Any]  # by kind: the data TypedDicts in petwatch.protocol (hello: StatusReply)
KNOWN_EVENTS = frozenset(Event)


def format_event(kind: Event, data: Mapping[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


def parse_events(lines: Iterable[str]) -> Iterator[tuple[Event, EventData]]:
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


# --- the requests: each endpoint's method on both clients, written once ---------------------------
Request = dict[str, Any]  # a call's JSON body ("json"), query ("params") and path parameters
# group_action's endpoint is its action's; the reply is a PetReply (name) or a GroupReply
ANY_GROUP_ACTION: Endpoint[Any] = GROUP_NAME


class Sends(Protocol):
    """A transport that answers a call (the CLI's)."""

    def send(self, call: Call[T]) -> T: ...


class SendsLater(Protocol):
    """A transport whose answer is awaited (the TUI's)."""

    def send(self, call: Call[T]) -> Awaitable[T]: ...


class Call(Generic[R]):
    """One request to an endpoint: its URL (path parameters quoted), JSON body or query, wait."""

    def __init__(self, endpoint: Endpoint[Any], pick: Callable[[Any], R], request: Request) -> None:
        endpoint = request.pop("endpoint", endpoint)  # one of several (a group's actions)
        options = {key: request.pop(key) for key in ("json", "params") if request.get(key) is not None}
        if endpoint.wait is not Wait.USUAL:
            options["timeout"] = LONG_WAIT_S if endpoint.wait is Wait.LONG else None
        self.endpoint, self.url, self.options, self.pick = endpoint, endpoint.url(**request), options, pick

    def answer(self, reply: Any) -> R:
        """The method's answer from the endpoint's reply (its JSON, checked; or an image's bytes)."""
        return self.pick(reply)


class _Method(Generic[P, R]):
    """An endpoint's method on both clients: DaemonClient's answers, AsyncDaemonClient's awaits.
    The reply's type is the table's; ``build`` makes the request from the method's arguments."""

    def __init__(
        self, endpoint: Endpoint[Any], build: Callable[Concatenate[Any, P], Request], pick: Callable[[Any], R]
    ) -> None:
        self.endpoint, self.build, self.pick, self.__doc__ = endpoint, build, pick, build.__doc__

    @overload
    def __get__(self, client: Sends, owner: type) -> Callable[P, R]: ...
    @overload
    def __get__(self, client: SendsLater, owner: type) -> Callable[P, Awaitable[R]]: ...
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
    """Photo paths as sent to the daemon: absolute in the caller's cwd."""
    return [os.path.abspath(os.path.expanduser(str(path))) for path in paths]


def _get(endpoint: Endpoint[R]) -> _Method[[], R]:
    """The method of an endpoint without parameters."""
    return _Method(endpoint, lambda client: {}, _same)


def _on(endpoint: Endpoint[R], parameter: str) -> _Method[[str], R]:
    """The method of an endpoint whose only parameter is in its path (a job id, a pet's name)."""
    return _Method(endpoint, lambda client, value: {parameter: value}, _same)


class EndpointCalls:
    """Every endpoint's method, written once: it builds the Call, the client's transport sends it."""

    status = _get(STATUS)

    @_sends(SEARCH)
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
        text: str | None = None,
        pet: str | None = None,
        taken: str | None = None,
        near: str | None = None,
    ) -> Request:
        """``top_k`` / ``min_score`` / ``expand`` None: left out, the daemon decides."""
        fields = {"top_k": top_k, "min_score": min_score, "offset": offset, "species": species, "expand": expand}
        words = {"text": text, "pet": pet, "taken": taken, "near": near}
        return {"json": SEARCH.body(image=image, photo=photo, stacks=stacks, **fields, **words)}

    words = _get(WORDS)

    stacks = _get(STACKS)
    stack = _on(STACK, "stack_id")

    # --- photos and folders: paths as the daemon decodes them (petwatch.filenames)
    @_sends(INDEX)
    def index(self, folders: list[str]) -> Request:
        return {"json": INDEX.body(folders=folders)}

    stats = _get(STATS)
    folders = _get(FOLDERS)

    @_sends(FOLDER_ADD)
    def add_folder(self, path: str) -> Request:
        return {"json": FOLDER_ADD.body(path=path)}

    @_sends(FOLDER_REMOVE)
    def remove_folder(self, path: str) -> Request:
        return {"json": FOLDER_REMOVE.body(path=path)}

    rescan = _get(RESCAN)
    failures = _get(FAILURES)

    @_sends(PHOTO)
    def photo(self, path: str) -> Request:
        return {"params": PHOTO.query(path=path)}

    @_sends(THUMBNAIL)
    def thumbnail(self, path: str, size: int = 256) -> Request:
        return {"params": THUMBNAIL.query(path=path, size=size)}

    # --- comics (the daemon owns the jobs); photo paths made absolute here, in the caller's cwd
    @_sends(COMIC_SUBMIT)
    def comic_submit(self, photos: list[str], prompt: str, **options: Unpack[ComicOptions]) -> Request:
        return {"json": COMIC_SUBMIT.body(photos=_absolute(photos), prompt=prompt, **options)}

    @_sends(COMIC_ESTIMATE)
    def comic_estimate(
        self, n: int | None = None, photos: list[str] | None = None, **options: Unpack[ComicOptions]
    ) -> Request:
        return {"json": COMIC_ESTIMATE.body(n=n, photos=_absolute(photos) if photos else None, **options)}

    comics = _get(COMICS)
    # the job record plus ``chain``: the refinement chain ending at it, first comic first
    comic = _on(COMIC, "job_id")
    comic_cancel = _on(COMIC_CANCEL, "job_id")

    @_sends(COMIC_REFINE)
    def comic_refine(
        self, job_id: str, prompt: str, photos: list[str] | None = None, **look: Unpack[ComicLook]
    ) -> Request:
        return {"json": COMIC_REFINE.body(prompt=prompt, photos=_absolute(photos or []), **look), "job_id": job_id}

    @_sends(COMIC_RETRY)
    def comic_retry(self, job_id: str, prompt: str | None = None) -> Request:
        return {"json": COMIC_RETRY.body(prompt=prompt), "job_id": job_id}

    comic_image = _on(COMIC_IMAGE, "job_id")
    # --- pet profiles (the daemon owns them)
    pets = _get(PETS)

    @_sends(PET_ADD)
    def pet_add(self, name: str, photos: list[str]) -> Request:
        """Create a profile from example photos, or add examples to it."""
        return {"json": PET_ADD.body(name=name, photos=_absolute(photos))}

    @_sends(PET)
    def pet(self, name: str, offset: int = 0, limit: int = 0) -> Request:
        """The profile's summary and its album (``hits``, best first; limit 0 = all)."""
        return {"params": PET.query(offset=offset, limit=limit), "name": name}

    @_picks(PET_PATHS, lambda reply: reply["paths"])
    def pet_paths(self, name: str, top: int = 8) -> Request:
        """The ``top`` best photos of a pet, e.g. a comic's reference photos."""
        return {"params": PET_PATHS.query(top=top), "name": name}

    @_sends(PET_MARK)
    def pet_mark(self, name: str, paths: list[str], mark: str) -> Request:
        """``mark``: "yes" (my pet), "not" (not my pet) or "forget"."""
        return {"json": PET_MARK.body(paths=_absolute(paths), mark=mark), "name": name}

    pet_remove = _on(PET_REMOVE, "name")

    # --- pets found
    @_sends(GROUPS)
    def groups(self, include_all: bool = False) -> Request:
        """The pets found: groups of photos of one individual that recur, biggest first."""
        return {"params": GROUPS.query(all=include_all)}

    groups_why = _get(GROUPS_WHY)  # what the last search for pets saw: why no group shows

    @_sends(ANY_GROUP_ACTION)
    def group_action(self, gid: int, action: str, body: dict[str, Any] | None = None) -> Request:
        """``action``: name {"name"} answers the new pet profile (PetReply); dismiss, merge
        {"other"} and remove {"paths"} answer the group (GroupReply)."""
        endpoint = GROUP_ACTIONS.get(action)
        if endpoint is None:
            raise PetwatchError(f"unknown group action {action!r}: use {', '.join(GROUP_ACTIONS)}")
        if body and "paths" in body:
            body = {**body, "paths": _absolute(body["paths"])}
        sent = endpoint.body(**(body or {})) if endpoint.request else {}
        return {"endpoint": endpoint, "json": sent, "gid": int(gid)}
