"""The contract between the daemon and its front ends (CLI, TUI): names both sides use.

No torch, no openai: the CLI and the TUI import this without loading a model.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, TypedDict

from pydantic import AfterValidator, Field

from petwatch.paths import decode_path

# What the classifier says a photo shows (stored per photo, filterable in search).
DOG, CAT, ANIMAL, NO_PET = "dog", "cat", "animal", "none"
SPECIES = (DOG, CAT, ANIMAL, NO_PET)
PET_SPECIES = (DOG, CAT)  # "shows a pet": what --pets-only keeps

# A comic job's state (petwatch.comics); a job ends in one of the final three.
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
COMIC_STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
COMIC_FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
MAX_PATH_CHARS = 8192  # the longest path a request may carry
# A path as the clients send it: any file name, the non-UTF-8 ones as b64: (petwatch.paths),
# decoded when the daemon validates the request.
PhotoPath = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS), AfterValidator(decode_path)]
MAX_REFERENCES = 16  # reference images per comic: the image-edit API's limit on input images

# Search: the defaults a request falls back to (settings.top_k / settings.min_score override
# them per user) and the largest page a search may ask for.
DEFAULT_TOP_K = 20
DEFAULT_MIN_SCORE = 0.0
MAX_TOP_K = 1000


class Event(StrEnum):
    """The kinds of event the daemon pushes (GET /events, server-sent)."""

    HELLO = "hello"  # first on every stream: the daemon's status
    STATE = "state"  # idle / indexing / upgrading
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


# --- replies: what the daemon sends and the in-process CLI prints, one shape for both ----------
class HitReply(TypedDict):
    path: str
    score: float  # cosine similarity
    content_hash: str
    size: int
    mtime_ns: int
    width: int
    height: int
    taken_at: int
    indexed_at: int
    view: int
    pet_score: float
    species: str
    label: str
    online: bool  # the file can be opened now (its folder is not unplugged)


# An older index being re-embedded into the current recipe's collection ("from" is a keyword,
# hence the functional form).
UpgradeProgress = TypedDict("UpgradeProgress", {"from": str, "to": str, "done": int, "total": int})


class SearchReply(TypedDict):
    query: str
    hits: list[HitReply]
    took_ms: float
    upgrade: UpgradeProgress | None  # set while the index is upgraded
    partial: bool  # only the photos upgraded so far were searched (a species filter)


class FolderReply(TypedDict):
    path: str
    mode: str  # native / polling / offline, or "daemon not running"
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
