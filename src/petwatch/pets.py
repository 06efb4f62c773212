"""Pet profiles: example photos of one pet, the album of every indexed photo that shows it,
and what the user taught it (marks).

A profile holds positive vectors (the example photos, and photos the user confirmed with
``pets mark --yes``) and negative ones (photos the user rejected with ``--not``). What was
measured to work best (``bench/bench_pets.py``, numbers in docs/pets.md):

* the prototype is the normalised **mean** of the positives: it beats any single example,
  and beats max-similarity over the examples (several prototypes);
* a photo's similarity is the best cosine similarity of **any of its stored views** to the
  prototype: view 0 is the whole image, higher views are crops where the index has them;
* rejected photos demote what looks more like them than like the pet (re-ranking):
  ``score = pos - max(0, neg - pos + SUPPRESS_MARGIN)``, ``neg`` the best similarity to any
  rejected photo;
* the threshold sits between what the library's photos typically score (the median of a
  sample) and what the example photos score against the others (leave-one-out):
  ``t = median + GAMMA * (mean LOO - median)``; rejected photos that still clear it pull it
  halfway up towards them. Confirmed photos sharpen the prototype but do not raise the bar
  (they are the easy ones, and the album is meant to hold *all* the photos of the pet).

The album is every indexed photo whose score reaches the threshold, found by range search
(no top-k: all of them, 5 or 5,000), plus the confirmed photos, minus the rejected ones.

Marks are kept in the state SQLite by content hash (the path is kept for display and for
re-embedding), together with the vector they contributed and the model that made it: they
survive a daemon restart, a rename and a re-index. After a model change their vectors are
taken again from the new index (same bytes) or re-embedded from the file.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from petwatch.errors import PetwatchError
from petwatch.protocol import (
    FORGET,
    MAX_NAME,
    NOT,
    PET_SPECIES,
    YES,
    PetAlbumReply,
    PetEvent,
    PetHitReply,
    PetRemovedReply,
    PetReply,
)
from petwatch.state_db import StateTables
from petwatch.store import PhotoRow, unit_vector

if TYPE_CHECKING:  # the daemon's Library; pets only use its store, embedder and catalog
    from petwatch.library import Library

log = logging.getLogger(__name__)

EXAMPLE = "example"  # beside the marks a request sets (YES, NOT)
KINDS = (EXAMPLE, YES, NOT)
POSITIVE = (EXAMPLE, YES)

GAMMA = 0.75  # where between the library's median and the pet's LOO mean the threshold sits
SUPPRESS_MARGIN = 0.05  # a photo within this of a rejected photo's similarity is demoted
LOO_ONE_EXAMPLE = 0.6  # assumed LOO mean with a single positive (typical for 3+, see bench)
# The rule in the whitened space (bench/bench_whitening.py, "Pet profiles": 3 examples of an
# Oxford breed, its other photos to find): gamma 0.55 keeps the recall the raw rule had at 0.75
# (0.937) with precision 0.46 instead of 0.42; a 3-example LOO mean is typically 0.44 there.
WHITENED_GAMMA = 0.55
WHITENED_LOO_ONE_EXAMPLE = 0.44


def rule(whitened: bool) -> tuple[float, float]:
    """(gamma, assumed LOO mean with one example) for the library's vector space."""
    return (WHITENED_GAMMA, WHITENED_LOO_ONE_EXAMPLE) if whitened else (GAMMA, LOO_ONE_EXAMPLE)


BACKGROUND_SAMPLE = 256  # photos sampled from the library for its median score
MAX_NEGATIVES = 256  # the most recent rejections used for re-ranking
_NAME = re.compile(r"^[^\x00-\x1f\x7f/\\]+$")


# --- the pure middle: vectors in, scores and thresholds out ---------------------------------
def prototype(positives: np.ndarray) -> np.ndarray:
    """The normalised mean of the positive vectors."""
    return unit_vector(np.asarray(positives, dtype=np.float32).mean(axis=0))


def loo_scores(positives: np.ndarray) -> list[float]:
    """Each positive's similarity to the prototype of the others (leave-one-out)."""
    positives = np.asarray(positives, dtype=np.float32)
    if len(positives) < 2:
        return []
    total = positives.sum(axis=0)
    return [float(p @ unit_vector(total - p)) for p in positives]


def score_views(
    views: np.ndarray, proto: np.ndarray, negatives: np.ndarray | None = None, margin: float = SUPPRESS_MARGIN
) -> tuple[float, int]:
    """(score, best view) of one photo's views (views x dim) against a profile."""
    sims = np.asarray(views, dtype=np.float32) @ proto
    best = int(np.argmax(sims))
    return suppress(float(sims[best]), best_negative(views, negatives), margin), best


def best_negative(views: np.ndarray, negatives: np.ndarray | None) -> float:
    if negatives is None or len(negatives) == 0:
        return -1.0
    return float((np.asarray(views, dtype=np.float32) @ np.asarray(negatives).T).max())


def suppress(positive: float, negative: float, margin: float = SUPPRESS_MARGIN) -> float:
    """Demote a photo that looks more like a rejected photo than like the pet."""
    return positive - max(0.0, negative - positive + margin)


def threshold(
    background: Sequence[float],
    examples: np.ndarray,
    rejected: Sequence[float] = (),
    gamma: float = GAMMA,
    one_example: float = LOO_ONE_EXAMPLE,
) -> float:
    """The album's cut: between the library's median score and the examples' own (LOO)
    scores (``one_example`` stands in for them with a single example), raised halfway
    towards rejected photos that would still clear it."""
    loo = loo_scores(examples)
    anchor = float(np.mean(loo)) if loo else one_example
    median = float(np.median(background)) if len(background) else 0.0
    cut = median + gamma * (anchor - median)
    if len(rejected):
        cut = max(cut, 0.5 * (cut + float(np.mean(rejected))))
    return cut


def rejected_scores(proto: np.ndarray, negatives: np.ndarray, margin: float = SUPPRESS_MARGIN) -> list[float]:
    """Each rejected vector's score with itself left out of the negatives (leave-one-out)."""
    scores = []
    for i, vector in enumerate(negatives):
        others = np.delete(negatives, i, axis=0)
        scores.append(suppress(float(vector @ proto), best_negative(vector[None], others), margin))
    return scores


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or not _NAME.match(name) or name.startswith("-"):
        raise PetwatchError(
            f"a pet's name is 1 to {MAX_NAME} characters, without / \\ or control "
            f"characters, not starting with '-': {name!r}"
        )
    return name


# --- persistence: the profiles and marks in the state SQLite --------------------------------
@dataclass
class Mark:
    """One photo a profile knows: an example, a confirmed or a rejected photo."""

    content_hash: str
    path: str
    kind: str
    vector: np.ndarray | None = field(repr=False)  # None: made by another model, not re-derived yet
    model: str = ""
    at: float = 0.0


@dataclass
class Profile:
    name: str
    created_at: float
    marks: list[Mark]

    def vectors(self, kinds: Iterable[str]) -> np.ndarray:
        wanted = set(kinds)
        rows = [m.vector for m in self.marks if m.kind in wanted and m.vector is not None]
        return np.asarray(rows, dtype=np.float32) if rows else np.zeros((0, 0), np.float32)

    def hashes(self, kinds: Iterable[str]) -> set[str]:
        wanted = set(kinds)
        return {m.content_hash for m in self.marks if m.kind in wanted}

    def count(self, kind: str) -> int:
        return sum(1 for m in self.marks if m.kind == kind)


class PetBook:
    """Profiles and marks in SQLite (the state DB): what must survive restarts and re-indexing."""

    def __init__(self, path: Path) -> None:
        tables = StateTables(
            path,
            "CREATE TABLE IF NOT EXISTS pets (name TEXT PRIMARY KEY COLLATE NOCASE, created_at REAL);"
            "CREATE TABLE IF NOT EXISTS pet_marks ("
            " pet TEXT NOT NULL COLLATE NOCASE REFERENCES pets(name) ON DELETE CASCADE,"
            " content_hash TEXT NOT NULL, path BLOB NOT NULL, kind TEXT NOT NULL,"
            " model TEXT NOT NULL, vector BLOB, at REAL NOT NULL,"
            " PRIMARY KEY (pet, content_hash));",
        )
        self._db, self._lock = tables.db, tables.lock

    def close(self) -> None:
        self._db.close()

    def names(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT name FROM pets ORDER BY name COLLATE NOCASE")]

    def find(self, name: str) -> str | None:
        """The stored spelling of ``name`` (names are case-insensitive), or None."""
        with self._lock:
            row = self._db.execute("SELECT name FROM pets WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def create(self, name: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO pets VALUES (?, ?)", (name, time.time()))

    def delete(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM pets WHERE name = ?", (name,)).rowcount > 0

    def load(self, name: str) -> Profile | None:
        with self._lock:
            row = self._db.execute("SELECT name, created_at FROM pets WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            marks = [
                Mark(
                    content_hash,
                    os.fsdecode(path),
                    kind,
                    None if blob is None else np.frombuffer(blob, dtype=np.float32).copy(),
                    model,
                    at,
                )
                for content_hash, path, kind, model, blob, at in self._db.execute(
                    "SELECT content_hash, path, kind, model, vector, at FROM pet_marks WHERE pet = ? ORDER BY at",
                    (row[0],),
                )
            ]
        return Profile(row[0], row[1], marks)

    def put(self, name: str, marks: Sequence[Mark]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO pet_marks VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        name,
                        m.content_hash,
                        os.fsencode(m.path),
                        m.kind,
                        m.model,
                        None if m.vector is None else np.asarray(m.vector, np.float32).tobytes(),
                        m.at,
                    )
                    for m in marks
                ],
            )

    def forget(self, name: str, hashes: Iterable[str]) -> int:
        with self._lock:
            return sum(
                self._db.execute("DELETE FROM pet_marks WHERE pet = ? AND content_hash = ?", (name, h)).rowcount
                for h in hashes
            )


# --- the service the daemon runs --------------------------------------------------------------
@dataclass
class _State:
    """What an album needs, derived from a profile and the library; dropped when either changes."""

    profile: Profile
    proto: np.ndarray
    negatives: np.ndarray | None
    threshold: float
    library_size: int
    album: dict[str, float] | None = None  # path -> score, when computed


class Pets:
    """Profiles over an opened Library: albums by range search, marks, live matching."""

    def __init__(self, library: Library, db_path: Path) -> None:
        self.library = library
        self.book = PetBook(db_path)
        self._lock = threading.RLock()
        self._states: dict[str, _State] = {}
        self._known: dict[str, set[str]] = {}  # album members already seen, per pet: "new" is news
        self._background: tuple[int, list[np.ndarray]] | None = None

    def close(self) -> None:
        self.book.close()

    def drop_cache(self) -> None:
        """Drop every derived state (the library's vectors changed wholesale: an upgrade)."""
        with self._lock:
            self._states.clear()
            self._known.clear()
            self._background = None

    # --- shortcuts into the library -----------------------------------------------------------
    @property
    def _identity(self) -> str:
        return self.library.identity

    def _name(self, name: str) -> str:
        stored = self.book.find(name.strip())
        if stored is None:
            known = ", ".join(self.book.names()) or "none yet"
            raise PetwatchError(
                f"no pet named {name!r} (known: {known}); create one with `petwatch pets add NAME --photo PHOTO...`"
            )
        return stored

    # --- commands -------------------------------------------------------------------------------
    def add(self, name: str, photos: Sequence[str]) -> PetReply:
        """Create a profile from example photos, or add examples to an existing one."""
        name = check_name(name)
        if not photos:
            raise PetwatchError("give at least one example photo (--photo PATH); three or more work best")
        marks = [self._mark_for(path, EXAMPLE, None) for path in photos]
        with self._lock:
            name = self.book.find(name) or name
            self.book.create(name)
            self.book.put(name, marks)
            self._states.pop(name, None)
        return self.summary(name)

    def remove(self, name: str) -> PetRemovedReply:
        with self._lock:
            name = self._name(name)
            self.book.delete(name)
            self._states.pop(name, None)
            self._known.pop(name, None)
        return {"removed": name}

    def mark(self, name: str, paths: Sequence[str], kind: str) -> PetReply:
        """Teach a profile: ``yes`` (my pet: add it), ``not`` (not my pet) or ``forget``."""
        if kind not in (YES, NOT, FORGET):
            raise PetwatchError(f"a mark is yes, not or forget, not {kind!r}")
        with self._lock:
            name = self._name(name)
            if kind == FORGET:
                self.book.forget(name, self._hashes_to_forget(name, paths))
            else:
                state = self._state(name)
                self.book.put(name, [self._mark_for(path, kind, state.proto) for path in paths])
            self._states.pop(name, None)
        return self.summary(name)

    def names(self) -> list[str]:
        return self.book.names()

    def album_paths(self, name: str) -> list[str]:
        """Every photo of a pet's album (a search for the pet keeps to them)."""
        with self._lock:
            return list(self._album(self._state(self._name(name))))

    def _hashes_to_forget(self, name: str, paths: Sequence[str]) -> list[str]:
        profile = self.book.load(name)
        by_path = {m.path: m.content_hash for m in profile.marks} if profile else {}
        hashes = []
        for path in paths:
            path = os.path.abspath(os.path.expanduser(path))
            if path in by_path:
                hashes.append(by_path[path])
            elif os.path.isfile(path):
                hashes.append(self._hash_of(path))
            else:
                raise PetwatchError(f"{path}: no such photo, and {name} has no mark for it")
        return hashes

    def summaries(self) -> list[PetReply]:
        return [self.summary(name) for name in self.book.names()]

    def summary(self, name: str) -> PetReply:
        with self._lock:
            name = self._name(name)
            state = self._state(name)
            album = self._album(state)
        profile = state.profile
        stale = [m.path for m in profile.marks if m.vector is None]
        return {
            "name": name,
            "created_at": profile.created_at,
            "examples": profile.count(EXAMPLE),
            "confirmed": profile.count(YES),
            "rejected": profile.count(NOT),
            "threshold": round(state.threshold, 4),
            "count": len(album),
            "stale": stale,
            "example_paths": [m.path for m in profile.marks if m.kind == EXAMPLE],
        }

    def album(self, name: str, offset: int = 0, limit: int | None = None) -> PetAlbumReply:
        """The profile and its album: every matching indexed photo, best first."""
        with self._lock:
            name = self._name(name)
            state = self._state(name)
            album = dict(self._album(state))
            self._known[name] = set(album)
        summary = self.summary(name)
        ranked = sorted(album, key=lambda path: -album[path])
        # One photo per stack: a burst of one jump is one photo of the album (and one reference of a comic).
        window = self.library.one_per_stack(ranked)[offset : offset + limit if limit else None]
        marks = {m.content_hash: m.kind for m in state.profile.marks}
        hits: list[PetHitReply] = []
        for path, stack in window:
            entry = self.library.entry(path)
            content_hash = entry.content_hash if entry else ""
            score = round(album[path], 4)
            hits.append(
                {
                    "path": path,
                    "score": score,
                    "content_hash": content_hash,
                    "mark": marks.get(content_hash),
                    "stack": stack,
                }
            )
        return {**summary, "offset": offset, "hits": hits}

    def top_paths(self, name: str, count: int) -> list[str]:
        """The ``count`` best photos of a pet: reference photos for a comic."""
        return [hit["path"] for hit in self.album(name, 0, count)["hits"]]

    # --- the daemon's hook: photos just stored in the index -----------------------------------
    def on_stored(self, rows: Sequence[PhotoRow]) -> list[PetEvent]:
        """Match freshly indexed photos (their stored rows) against every profile; one event
        per pet with new photos. Only photos that show a pet can join an album (rows of an
        index older than species: every photo).

        Runs on the indexer's thread: a failure is logged, never raised into indexing.
        """
        views: dict[str, list[PhotoRow]] = {}
        for row in rows:
            views.setdefault(row.path, []).append(row)
        pets_only = self.library.has_species
        vectors = {
            path: np.asarray([r.vector for r in sorted(found, key=lambda r: r.view)], dtype=np.float32)
            for path, found in views.items()
            if not pets_only or found[0].photo["species"] in PET_SPECIES
        }
        try:
            return self._match_new(vectors)
        except Exception:  # noqa: BLE001 - a profile problem must never stop indexing
            log.exception("matching new photos against pet profiles failed")
            return []

    def _match_new(self, vectors: dict[str, np.ndarray]) -> list[PetEvent]:
        names = self.book.names()
        if not names or not vectors:
            return []
        events: list[PetEvent] = []
        with self._lock:
            for name in names:
                state = self._state(name)
                album = self._album(state)
                known = self._known.get(name)
                if known is None:  # album computed just now: the fresh photos are in it already
                    known = set(album) - set(vectors)
                rejected = state.profile.hashes([NOT])
                confirmed = state.profile.hashes(POSITIVE)
                new = []
                for path, views in vectors.items():
                    entry = self.library.entry(path)
                    content_hash = entry.content_hash if entry else ""
                    if content_hash in rejected:
                        album.pop(path, None)
                        continue
                    score, _view = score_views(views, state.proto, state.negatives)
                    if score >= state.threshold or content_hash in confirmed:
                        if path not in known:
                            new.append(path)
                        album[path] = score
                    else:
                        album.pop(path, None)
                self._drop_missing(album)
                self._known[name] = set(album)
                if new:
                    events.append({"name": name, "new": new[:100], "count": len(album)})
        return events

    # --- derived state ----------------------------------------------------------------------------
    def _state(self, name: str) -> _State:
        size = self.library.photo_count
        state = self._states.get(name)
        if state is not None and not _grew(state.library_size, size):
            return state
        profile = self.book.load(name)
        if profile is None:
            raise PetwatchError(f"no pet named {name!r}")
        self._refresh_vectors(profile)
        positives = profile.vectors(POSITIVE)
        if len(positives) == 0:
            raise PetwatchError(
                f"{name} has no usable example photos left; add some with `petwatch pets add {name} --photo PHOTO...`"
            )
        proto = prototype(positives)
        rejected_vectors = profile.vectors([NOT])[-MAX_NEGATIVES:]
        negatives = rejected_vectors if len(rejected_vectors) else None
        background = [score_views(views, proto, negatives)[0] for views in self._background_sample()]
        rejected = rejected_scores(proto, negatives) if negatives is not None else []
        examples = profile.vectors([EXAMPLE])
        cut = threshold(background, examples if len(examples) else positives, rejected, *rule(self.library.whitened))
        state = _State(profile, proto, negatives, cut, size)
        self._states[name] = state
        return state

    def _background_sample(self) -> list[np.ndarray]:
        """Vectors of a random sample of indexed photos (what a photo typically scores)."""
        size = self.library.photo_count
        if self._background is None or _grew(self._background[0], size):
            paths = self.library.indexed_paths()
            sample = random.Random(0).sample(paths, min(BACKGROUND_SAMPLE, len(paths)))
            self._background = (size, list(self.library.vectors(sample).values()))
        return self._background[1]

    def _album(self, state: _State) -> dict[str, float]:
        if state.album is None:
            state.album = self._search(state)
        self._drop_missing(state.album)
        return state.album

    def _drop_missing(self, album: dict[str, float]) -> None:
        for path in [p for p in album if self.library.entry(p) is None]:
            del album[path]

    def _search(self, state: _State) -> dict[str, float]:
        """Range search: every indexed photo that shows a pet and whose best view clears the
        threshold (an index older than species: every photo)."""
        positive = self.library.photos_within(state.proto, state.threshold)
        negative: dict[str, float] = {}
        if state.negatives is not None and positive:
            for vector in state.negatives:
                for path, score in self.library.photos_within(vector, state.threshold - SUPPRESS_MARGIN).items():
                    negative[path] = max(score, negative.get(path, -1.0))
        rejected = state.profile.hashes([NOT])
        album = {}
        for path, score in positive.items():
            entry = self.library.entry(path)
            if entry is None or entry.content_hash in rejected:
                continue
            final = suppress(score, negative.get(path, -1.0))
            if final >= state.threshold:
                album[path] = final
        # Confirmed photos belong to the album whatever they score.
        confirmed_paths = [
            p for h in state.profile.hashes(POSITIVE) for p in self.library.paths_with_content(h) if p not in album
        ]
        for path, views in self.library.vectors(confirmed_paths).items():
            album[path] = score_views(views, state.proto, state.negatives)[0]
        return album

    # --- marks' vectors -------------------------------------------------------------------------
    def _mark_for(self, path: str, kind: str, proto: np.ndarray | None) -> Mark:
        """A mark for a photo file: its hash and the vector it contributes.

        An example contributes its whole-image vector. A confirmed or rejected photo
        contributes the view that best matches the pet (a crop showing the dog, where the
        index has crops), since that view is what made it match or miss.
        """
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isfile(path):
            raise PetwatchError(f"photo not found: {path}")
        content_hash = self._hash_of(path)
        views = self._indexed_views(path)
        if views is None:
            views = np.asarray([self.library.query_vector(path)], dtype=np.float32)
        if kind == EXAMPLE or proto is None:
            vector = views[0]
        else:
            vector = views[int(np.argmax(views @ proto))]
        return Mark(content_hash, path, kind, np.asarray(vector, np.float32), self._identity, time.time())

    def _hash_of(self, path: str) -> str:
        if self.library.is_current(path) and (entry := self.library.entry(path)) is not None:
            return entry.content_hash
        from petwatch import photos

        try:
            return photos.read_photo(path, self.library.settings.max_image_pixels).content_hash
        except photos.PhotoError as error:
            raise PetwatchError(f"cannot use {path}: {error}") from None

    def _indexed_views(self, path: str) -> np.ndarray | None:
        """The stored views of an indexed, unchanged photo (or of any photo with its bytes)."""
        if not self.library.is_current(path):
            return None
        return self.library.vectors([path]).get(path)

    def _refresh_vectors(self, profile: Profile) -> None:
        """Marks made by another model (the index was rebuilt): take their vectors again.

        Examples first (their whole-image vector), then confirmed and rejected photos (the
        view that best matches the refreshed prototype), from the index where it holds the
        same bytes, else embedded from the file.
        """
        stale = [m for m in profile.marks if m.model != self._identity or m.vector is None]
        if not stale:
            return
        for mark in stale:
            mark.vector = None
        fixed = []
        for mark in sorted(stale, key=lambda m: m.kind != EXAMPLE):
            positives = profile.vectors(POSITIVE)
            proto = prototype(positives) if mark.kind != EXAMPLE and len(positives) else None
            for path in self._paths_with(mark):
                try:
                    if self._hash_of(path) != mark.content_hash:
                        continue
                    views = self._indexed_views(path)
                    if views is None:
                        views = np.asarray([self.library.query_vector(path)], dtype=np.float32)
                except PetwatchError:
                    continue
                mark.vector = views[0] if proto is None else views[int(np.argmax(views @ proto))]
                mark.model = self._identity
                fixed.append(mark)
                break
        if fixed:
            self.book.put(profile.name, fixed)
            log.info("pet %s: %d marks re-derived for model %s", profile.name, len(fixed), self._identity)
        missing = [m.path for m in stale if m.vector is None]
        if missing:
            log.warning(
                "pet %s: %d marks were made by another model and their photos are gone: %s",
                profile.name,
                len(missing),
                ", ".join(missing[:5]),
            )

    def _paths_with(self, mark: Mark) -> list[str]:
        """Where a mark's photo may be now: its own path first, then any path with its bytes."""
        others = [p for p in self.library.paths_with_content(mark.content_hash) if p != mark.path]
        return [mark.path, *others]


def _grew(before: int, now: int) -> bool:
    """Whether the library changed enough that its median score must be sampled again."""
    return abs(now - before) > max(20, before // 4)
