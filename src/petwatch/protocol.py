"""The contract between the daemon and its front ends (CLI, TUI): names both sides use.

No torch, no openai: the CLI and the TUI import this without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol, overload

from pydantic import AfterValidator, Field
from typing_extensions import TypedDict  # pydantic validates replies with it (typing's, before 3.12, it cannot)

from petwatch.filenames import decode_path

# What the classifier says a photo shows (stored per photo, filterable in search).
DOG, CAT, ANIMAL, NO_PET = "dog", "cat", "animal", "none"
SPECIES = (DOG, CAT, ANIMAL, NO_PET)
PET_SPECIES = (DOG, CAT)  # "shows a pet": what --pets-only keeps

# A stack's kind (petwatch.stacks): the same picture (the same bytes, re-encoded, resized,
# cropped), or frames of one moment a few seconds apart.
COPIES, BURST = "copies", "burst"
STACK_KINDS = (COPIES, BURST)

# A comic job's state (petwatch.comics); a job ends in one of the final three.
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
COMIC_STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
COMIC_FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
MAX_PATH_CHARS = 8192  # the longest path a request may carry
# A path as the clients send it: any file name, the non-UTF-8 ones as b64: (petwatch.filenames),
# decoded when the daemon validates the request.
PhotoPath = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS), AfterValidator(decode_path)]
MAX_REFERENCES = 16  # reference images per comic: the image-edit API's limit on input images
MAX_PROMPT_CHARS = 4000  # a comic's prompt
JOB_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # a comic job's id
# Pet profiles (petwatch.pets): a name's length, the marks a request sets on a photo, the photos
# one request may name (add, mark, a group's removal) and an album page's size (and offset).
MAX_NAME = 64
YES, NOT, FORGET = "yes", "not", "forget"
MAX_PHOTOS = 1000
MAX_ALBUM_PAGE = 100_000

# Search: the defaults a request falls back to (settings.top_k / settings.min_score override
# them per user) and the largest page a search may ask for.
DEFAULT_TOP_K = 20
# No cut: a page is full whatever the scores (a cosine's scale depends on the vector space:
# whitened vectors of unlike photos score below 0, raw ones almost never did).
DEFAULT_MIN_SCORE = -1.0
MAX_TOP_K = 1000
TopK = Annotated[int, Field(ge=1, le=MAX_TOP_K)]  # a page of hits: the top_k setting's and a search's rule


class Event(StrEnum):
    """The kinds of event the daemon pushes (GET /events, server-sent); each one's data: PublishEvent."""

    HELLO = "hello"  # first on every stream: the daemon's status
    STATE = "state"  # the daemon's state changed
    STATUS = "status"  # the daemon's status once a change has settled: the numbers pushed, not asked for
    PROGRESS = "progress"  # a walk or a batch under way
    INDEXED = "indexed"  # photos stored
    REMOVED = "removed"  # photos dropped from the index
    REPORT = "report"  # a task's IndexReport
    FOLDERS = "folders"  # the watched folder list changed
    ERROR = "error"  # a task failed; the daemon goes on
    UPGRADE = "upgrade"  # an older index re-embedded, a step at a time
    PET = "pet"  # new photos joined a pet's album
    GROUP = "group"  # pets found for you: a group found, or grown
    COMIC = "comic"  # a comic job changed state


# --- the photo record: what the index keeps of a photo, declared once ---------------------------
# petwatch.store makes its Milvus columns, writes and reads from these declarations; replies carry
# the record as it is. A new field is one line here plus its producer (index.Indexer._row).
@dataclass(frozen=True)
class Stored:
    """How the index keeps a record field: its Milvus kind ("varchar", "int64", "int32", "float",
    or "sparse": a sparse float vector, {index: weight}), a varchar's longest value in characters
    (longer ones are cut), and the value a photo reads when its collection predates the field."""

    kind: str
    default: str | int | float | dict[int, float]
    max_chars: int = 0


# What a photo shows, in ImageNet-1k classes: the classifier's top classes and their probability
# (concepts.top_concepts), from the pass that embeds the photo. A word's score is the mass on its
# classes (a sparse inner product); words + photo filter on them.
Classes = dict[int, float]


MAX_PATH_FIELD_CHARS = 4096  # Linux's PATH_MAX
MAX_LABEL_CHARS = 64
MAX_PLACE_CHARS = 100


class PhotoRecord(TypedDict):
    """An indexed photo, as the index stores it and replies carry it (store.PhotoRow, less its vector)."""

    path: Annotated[str, Stored("varchar", "", MAX_PATH_FIELD_CHARS)]
    content_hash: Annotated[str, Stored("varchar", "", 32)]  # photos.content_hash: 16 bytes in hex
    size: Annotated[int, Stored("int64", 0)]
    mtime_ns: Annotated[int, Stored("int64", 0)]
    width: Annotated[int, Stored("int32", 0)]  # upright, after EXIF orientation
    height: Annotated[int, Stored("int32", 0)]
    taken_at: Annotated[int, Stored("int64", 0)]  # Unix seconds from EXIF, 0 when unknown
    indexed_at: Annotated[int, Stored("int64", 0)]
    # What the classifier said (embed.PetSignal).
    pet_score: Annotated[float, Stored("float", 0.0)]
    species: Annotated[str, Stored("varchar", NO_PET, 32)]
    label: Annotated[str, Stored("varchar", "", MAX_LABEL_CHARS)]  # the top ImageNet class (a breed, for a pet)
    camera: Annotated[str, Stored("varchar", "", 64)]  # EXIF Make and Model, "" when unknown
    # Where it was taken: EXIF GPS reverse-geocoded offline at index time (places.place_at).
    city: Annotated[str, Stored("varchar", "", MAX_PLACE_CHARS)]
    region: Annotated[str, Stored("varchar", "", MAX_PLACE_CHARS)]
    country: Annotated[str, Stored("varchar", "", MAX_PLACE_CHARS)]
    classes: Annotated[Classes, Stored("sparse", {})]  # its top ImageNet classes: {index: probability}


# --- replies: what the daemon sends and the in-process CLI prints, one shape for both ----------
class IndexedPhotoReply(PhotoRecord):
    """What a reply says of an indexed photo."""

    online: bool  # the file can be opened now (its folder is not unplugged)


class StackRef(TypedDict):
    """The stack a photo belongs to (bursts, edits and copies of one moment), on a hit or album photo."""

    id: str
    size: int  # photos in it, this one included


class StackReply(TypedDict):
    """One stack, as ``petwatch stacks --json`` lists it."""

    id: str
    kind: str  # one of STACK_KINDS
    cover: str  # the photo shown for it (the sharpest frame of a burst, the largest copy)
    members: list[str]  # every path, the cover first


class HitReply(IndexedPhotoReply):
    # A search by photo: its cosine similarity to the photo you gave (with query expansion too:
    # the order comes from the expanded query, the number is still the similarity to your
    # photo, so the photo itself shows 1.00). Words alone: the probability mass of the photo's
    # classes on the words' classes (0 to 1).
    score: float
    view: int
    stack: StackRef | None  # None: a photo on its own
    taken: int  # Unix seconds: the EXIF capture time, else the file's modification time
    taken_from: str  # "exif" or "file"
    place: str  # "Lisbon, Portugal"; "" when unknown
    concepts: list[str]  # the photo's top concepts, best first ("golden retriever", "seashore")


class ReadingReply(TypedDict):
    """How one word (or phrase) of a search's text was read (words.Reading)."""

    words: str
    kind: str  # concept, pet, taken, place or ignored
    meaning: str


class WordsReply(TypedDict):
    """GET /words: what a query's words can name beyond concepts (the TUI completes them)."""

    places: list[str]  # cities, regions and countries of the indexed photos
    pets: list[str]  # pet profile names


# An older index being re-embedded into the current recipe's collection ("from" is a keyword,
# hence the functional form).
UpgradeProgress = TypedDict("UpgradeProgress", {"from": str, "to": str, "done": int, "total": int})


class SearchReply(TypedDict):
    query: str  # the photo searched by (absolute path), else the text
    hits: list[HitReply]
    took_ms: float
    upgrade: UpgradeProgress | None  # set while the index is upgraded
    partial: bool  # only the photos upgraded so far were searched (a species filter, words)
    readings: list[ReadingReply]  # how each word of the text was read ([] without text)


class FolderReply(TypedDict):
    path: str
    mode: str  # events / polling / offline (watch.Watcher.watch), or "daemon not running"
    online: bool
    photos: int | None


class ProgressReply(TypedDict):
    done: int
    total: int
    rate: float
    eta_s: float | None
    current: str


class StatusReply(TypedDict):
    state: str
    indexed: int
    queued: int
    failed: int
    folders: list[FolderReply]
    model: str
    engine: str  # what runs the model: "onnx (ONNX Runtime 1.32.0, CPU, float32)", "torch 2.x (cuda, float32)"
    dim: int
    dogs: int
    cats: int
    uptime_s: float
    progress: ProgressReply | None
    pid: int
    version: str
    db: str
    write_error: str | None  # why the index cannot be written now (disk full, server gone)
    upgrade: UpgradeProgress | None
    config_problem: str | None  # the config file changed: broken, or settings that need a restart
    top_k: int  # the settings a search without its own takes (live: an edited config file)
    min_score: float  # DEFAULT_MIN_SCORE: no cut


class StatsReply(TypedDict):
    photos: int
    model: str
    dim: int
    db: str
    db_bytes: int | None
    failures: int
    dogs: int
    cats: int
    recipe: str
    upgrade: UpgradeProgress | None


class FailureReply(TypedDict):
    path: str
    reason: str
    size: int


class ReportReply(TypedDict):
    """What an index run did (index.IndexReport)."""

    indexed: int
    reused: int
    unchanged: int
    removed: int
    skipped: dict[str, str]
    failed: dict[str, str]
    offline: list[str]
    seconds: float


class PhotoReply(IndexedPhotoReply):
    """One indexed photo (GET /photo)."""

    folder: str  # the watched folder holding it, else its directory


class RescanReply(TypedDict):
    queued: bool


# --- comics (comics/jobs.py ComicJob, comics/studio.py estimate) --------------------------------
class ComicLook(TypedDict, total=False):
    """A comic's size and quality (None or left out: the settings')."""

    size: str | None
    quality: str | None


class ComicOptions(ComicLook, total=False):
    """A new comic's options beside its photos and prompt: the client's and the daemon's."""

    parent: str | None  # the comic it refines


class ComicJobReply(TypedDict):
    """A comic job's record (ComicJob.to_dict): also the data of a ``comic`` event."""

    id: str
    prompt: str
    photos: list[str]
    parent: str | None
    model: str
    size: str
    quality: str
    input_fidelity: str | None
    created_at: str  # ISO 8601, UTC
    full_prompt: str
    references: list[str]
    state: str  # one of COMIC_STATES
    progress: str
    started_at: str | None
    finished_at: str | None
    attempts: int
    image: str | None
    estimated_cost_usd: float
    usage: dict[str, Any] | None
    cost_usd: float | None
    spent_usd: float | None  # once finished: reported usage, the estimate if drawn, else 0
    error: str | None
    error_kind: str | None


class ComicShowReply(ComicJobReply):
    """GET /comics/{id}: the record plus the refinement chain ending at it, first comic first."""

    chain: list[ComicJobReply]


class ComicEstimateReply(TypedDict):
    model: str
    references: int
    size: str
    quality: str
    input_fidelity: str | None
    output_usd: float
    input_usd: float
    usd: float
    spent_today_usd: float
    budget_usd: float
    within_budget: bool
    basis: str
    no_key: str | None  # why nothing can be sent (no OpenAI API key) and what to do; None when one is set


# --- pet profiles (pets.py Pets.summary, album) and pets found (discovery.py Group.summary) -----
class PetReply(TypedDict):
    """A pet profile's summary."""

    name: str
    created_at: float  # seconds since the epoch
    examples: int
    confirmed: int
    rejected: int
    threshold: float
    count: int  # photos in the album
    stale: list[str]  # marks whose photo has no vector in the index now
    example_paths: list[str]


class PetHitReply(TypedDict):
    path: str
    score: float
    content_hash: str
    mark: str | None  # example / yes / not, or None
    stack: StackRef | None  # an album shows one photo per stack


class PetAlbumReply(PetReply):
    offset: int
    hits: list[PetHitReply]


class PetPathsReply(TypedDict):
    name: str
    paths: list[str]


class PetRemovedReply(TypedDict):
    removed: str


class GroupReply(TypedDict):
    """A group of photos of one pet that recurs (pets found)."""

    id: int
    size: int
    status: str
    name: str | None  # once named
    cover: str
    paths: list[str]  # best first
    species: str
    breed: str
    first_day: str  # YYYY-MM-DD
    last_day: str
    reason: str  # why it is listed where it is, in one phrase: "seen on 14 days over 2 years"
    evidence: float  # the list's order: photos more alike than photos of their kind usually are, first
    lookalikes: bool  # too loose, or seen on one day: listed last, under "look-alikes"


class DiscoveryWhyReply(TypedDict):
    """What the last search for pets saw (GET /groups/why): why no group shows, when none does."""

    pet_photos: int  # photos that show a dog or a cat
    close_pairs: int  # pairs of nearest neighbours alike enough to link (cosine >= similar)
    largest: int  # photos in the largest linked cluster
    one_moment: int  # clusters big enough but from one day and one folder
    groups: int  # groups shown
    min_group: int  # the rule: at least this many photos of one pet ...
    min_moments: int  # ... from this many different days or folders
    similar: float  # the cosine two photos need to be linked


# --- event data (GET /events): each kind's payload, then the one table of kind -> payload -----
class PetEvent(TypedDict):
    name: str
    new: list[str]  # the first 100
    count: int  # the album's size now


class GroupEvent(TypedDict):
    id: int
    size: int
    found: bool  # a new group, else it grew


class StateEvent(TypedDict):
    state: str  # idle / indexing / upgrading


class IndexedEvent(TypedDict):
    paths: list[str]  # the first 100
    count: int
    total: int  # photos in the index now


class RemovedEvent(TypedDict):
    paths: list[str]  # the first 100
    count: int
    total: int  # photos in the index now


class FoldersEvent(TypedDict):
    folders: list[FolderReply]


class ErrorEvent(TypedDict):
    message: str


# The models of an upgrade under way; a finished upgrade's event leaves them out.
_UpgradeModels = TypedDict("_UpgradeModels", {"from": str, "to": str}, total=False)


class UpgradeEvent(_UpgradeModels):
    done: int
    total: int
    finished: bool


class PublishEvent(Protocol):
    """The event kinds and their data, declared once: what a publisher may send, which mypy
    checks per kind (the daemon's EventBus.publish); the front ends read the same shapes."""

    @overload
    def __call__(self, kind: Literal[Event.HELLO], data: StatusReply) -> None: ...
    @overload
    def __call__(self, kind: Literal[Event.STATE], data: StateEvent) -> None: ...
    @overload
    def __call__(self, kind: Literal[Event.STATUS], data: StatusReply) -> None: ...
    @overload
    def __call__(self, kind: Literal[Event.PROGRESS], data: ProgressReply) -> None: ...
    @overload
    def __call__(self, kind: Literal[Event.INDEXED], data: IndexedEvent) -> None: ...
    @overload
    def __call__(self, kind: Literal[Event.REMOVED], data: RemovedEvent) -> None: ...
    @overload
    def __call__(self, kind: Literal[Event.REPORT], data: ReportReply) -> None: ...
    @overload
    def __call__(self, kind: Literal[Event.FOLDERS], data: FoldersEvent) -> None: ...
    @overload
    def __call__(self, kind: Literal[Event.ERROR], data: ErrorEvent) -> None: ...
    @overload
    def __call__(self, kind: Literal[Event.UPGRADE], data: UpgradeEvent) -> None: ...
    @overload
    def __call__(self, kind: Literal[Event.PET], data: PetEvent) -> None: ...
    @overload
    def __call__(self, kind: Literal[Event.GROUP], data: GroupEvent) -> None: ...
    @overload
    def __call__(self, kind: Literal[Event.COMIC], data: ComicJobReply) -> None: ...
