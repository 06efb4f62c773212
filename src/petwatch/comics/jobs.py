"""The comic job record and its persistence: one JSON sidecar per job beside its PNG.

Every file is written atomically (a temporary file, fsync, rename), so a crash leaves the old
record or the new one, never half of either.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from petwatch import locations
from petwatch.protocol import QUEUED, RUNNING, SUCCEEDED, ComicJobReply

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ComicJob:
    """One comic request; also the JSON sidecar of its PNG."""

    id: str
    prompt: str  # the user's words for this turn
    photos: list[str]  # the selection, absolute paths, kept for resubmitting
    parent: str | None  # the comic this one refines
    model: str
    size: str
    quality: str
    input_fidelity: str | None  # None when the model takes no such parameter
    created_at: str  # ISO 8601, UTC
    full_prompt: str = ""  # exactly what is sent
    references: list[str] = field(default_factory=list)  # what is sent, in order (parent comic first)
    state: str = QUEUED
    progress: str = "queued"
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 0
    image: str | None = None  # the comic PNG, in comics_dir()
    estimated_cost_usd: float = 0.0
    usage: dict[str, Any] | None = None  # the API's token usage, as returned
    cost_usd: float | None = None  # from usage, when the API reported it
    error: str | None = None  # what happened and what to do, for the user
    error_kind: str | None = None  # no_key, rejected, bad_request, auth, forbidden, not_found,
    # quota, rate_limit, server, timeout, network, bad_photo, bad_response, interrupted, internal

    def to_dict(self) -> ComicJobReply:
        record = asdict(self)  # typed dict[str, Any]: the fields above
        record["spent_usd"] = self.spent_usd  # derived; from_dict drops it again
        return cast(ComicJobReply, record)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComicJob:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def copy(self) -> ComicJob:
        return ComicJob.from_dict(json.loads(json.dumps(self.to_dict())))

    @property
    def chargeable_usd(self) -> float:
        """What this job counts against today's budget."""
        if self.cost_usd is not None:
            return self.cost_usd
        return self.estimated_cost_usd if self.state in (QUEUED, RUNNING, SUCCEEDED) else 0.0

    @property
    def spent_usd(self) -> float | None:
        """What this job cost, once finished: a failed or cancelled one without reported usage
        spent nothing (the estimate is not a charge); None while it may still spend."""
        return None if self.state in (QUEUED, RUNNING) else self.chargeable_usd


class JobFiles:
    """The records in one private directory: ``<id>.json`` and, once drawn, ``<id>.png``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = locations.ensure_private_dir(directory or locations.comics_dir())

    def image_path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.png"

    def save_image(self, job_id: str, png: bytes) -> None:
        _write_atomically(self.image_path(job_id), png)

    def save(self, job: ComicJob) -> None:
        data = json.dumps(job.to_dict(), indent=2, ensure_ascii=False).encode() + b"\n"
        _write_atomically(self.directory / f"{job.id}.json", data)

    def load(self) -> list[ComicJob]:
        """Every readable record, by file name; unreadable ones are skipped with a warning."""
        for leftover in self.directory.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)  # a write cut short by a crash; the old file stands
        jobs = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                jobs.append(ComicJob.from_dict(json.loads(path.read_text())))
            except (OSError, ValueError, TypeError) as error:
                log.warning("skipping unreadable comic record %s: %s", path, error)
        return jobs


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
