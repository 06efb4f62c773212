"""Stacks: the bursts, edits and copies of one moment, shown once.

Three ways two photos (content hashes) join one stack, all from content and capture time:

- the same bytes in two places (two paths, one content hash);
- *copies*: perceptual hashes (``photos.Look.phash``) within ``COPY_MAX_DISTANCE`` bits, and
  the same moment when both know theirs: a re-encoded, resized, lightly cropped copy;
- *bursts*: captured within ``BURST_SECONDS`` of each other (EXIF, to the millisecond) with
  vectors at least ``burst_min_similarity`` alike (one cut per vector space).

A stack is a connected group of such links. Two moments apart (another day, another scene a
minute later) never link, however alike they look: finding those is pet search's job.

Everything is kept by content hash in the state SQLite (looks and links), not in the Milvus
collection, so a model change or ``petwatch reindex`` keeps the stacks. Nothing here touches
the user's files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from petwatch.photos import Look
from petwatch.protocol import BURST, COPIES
from petwatch.state_db import StateTables
from petwatch.store import PhotoRow

# Measured by bench/bench_stacks.py on the shared datasets (see README, "Stacks"): copies
# re-encoded (q 40-95), resized to half, cropped 3%, EXIF-rotated against different photos of
# one DogFaceNet dog and same-breed Oxford photos.
COPY_MAX_DISTANCE = 9  # of 64 pHash bits: crops of 3% reach 8, two different pictures came as close as 10
# A burst's frames are one picture moved a little: pHash a little further apart than copies
# (shifted frames reached 14), closer than two photos of one dog a second apart (16 and more
# among those the vectors could not tell apart).
BURST_MAX_DISTANCE = 14
# A burst's frames: a few per second. Two photos further apart are two moments.
BURST_SECONDS = 2.0
# Cosine similarity of two frames' view-0 vectors, one cut per vector space (a cosine means
# something only in the space it was measured in), from bench/bench_stacks.py's distributions
# of true burst frames against negatives close in time; rerun it after the space changes.
# - efficientnet_lite2 pet focus, raw (1280-d): true frames min 0.951, 5th percentile 0.963;
#   one DogFaceNet dog's different photos a second apart reached 0.967 (at 18 bits) and 0.962.
# - the same, whitened (768-d, the default): true frames 5th percentile 0.861, median 0.953;
#   negatives close in time 99th percentile 0.797, max 0.928. 0.94 sits above every negative
#   and keeps the share of shifted copies that 0.97 keeps raw (bench_whitening: raw 0.95 / 0.98
#   ~ whitened 0.89 / 0.96).
# Frames below the cut still join their burst through the frames they are closer to, or as
# copies (pHash within COPY_MAX_DISTANCE).
BURST_MIN_SIMILARITY = 0.97
BURST_MIN_SIMILARITY_WHITENED = 0.94


def burst_min_similarity(whitened: bool) -> float:
    return BURST_MIN_SIMILARITY_WHITENED if whitened else BURST_MIN_SIMILARITY


VectorsOf = Callable[[Sequence[str]], dict[str, np.ndarray]]  # path -> its stored vectors (view 0 first)


@dataclass(frozen=True)
class Stack:
    id: str
    kind: str  # COPIES or BURST
    cover: str  # the path shown for the stack
    members: list[str]  # every path, the cover first


def hamming(bits: np.ndarray, one: int) -> np.ndarray:
    """Bits differing between each of ``bits`` (int64) and ``one``."""
    return np.bitwise_count(np.bitwise_xor(bits, np.int64(one)))


def cover_key(kind: str, look: Look | None, by_bytes: bool = True) -> tuple[float, ...]:
    """What makes the best frame: a burst's sharpest (variance of the Laplacian: the frame
    without motion blur), then largest. A copy's original: the largest (not the shrunk copy a
    friend sent), then the most bytes per pixel (not a copy re-encoded at a lower quality, whose
    JPEG artefacts score as sharpness), then the earliest capture time known, then sharpest.
    ``by_bytes`` False: some look of the stack was kept without its size (before it was kept)."""
    if look is None:
        return (-1.0, -1.0, -1.0, -1.0)
    if kind == BURST:
        return (look.sharpness, float(look.pixels), 0.0, 0.0)
    per_pixel = look.bytes / look.pixels if by_bytes and look.pixels else 0.0
    earliest = -float(look.taken_ms) if look.taken_ms else -float("inf")
    return (float(look.pixels), per_pixel, earliest, look.sharpness)


class Stacks:
    """Every stack, kept current as photos are stored and removed (``Library`` calls it)."""

    def __init__(
        self,
        db_path: Path,
        paths_of: Callable[[str], list[str]],
        vectors_of: VectorsOf,
        whitened: Callable[[], bool] = lambda: False,
    ) -> None:
        self._paths_of = paths_of  # content hash -> its indexed paths (the library's catalog)
        self._vectors_of = vectors_of  # the serving index's vectors, the space of stored rows too
        self._whitened = whitened  # whether those vectors are whitened: the burst cut follows
        tables = StateTables(
            db_path,
            "CREATE TABLE IF NOT EXISTS stack_looks (content_hash TEXT PRIMARY KEY, phash INTEGER,"
            " sharpness REAL, pixels INTEGER, taken_ms INTEGER, bytes INTEGER);"
            "CREATE TABLE IF NOT EXISTS stack_links (a TEXT, b TEXT, kind TEXT, PRIMARY KEY (a, b));",
            reentrant=True,
            # No fsync per batch on the indexing thread: a look lost to a power cut is looked at
            # again by the daemon's backfill (Library.stack_backfill).
            durable=False,
        )
        self._db, self._lock = tables.db, tables.lock
        with self._lock:
            columns = [row[1] for row in self._db.execute("PRAGMA table_info(stack_looks)")]
            if "bytes" not in columns:  # kept before the file's size was: unknown (0) until seen again
                self._db.execute("ALTER TABLE stack_looks ADD COLUMN bytes INTEGER")
        self._looks: dict[str, Look] = {
            digest: Look(phash, sharpness, pixels, taken_ms, size or 0)
            for digest, phash, sharpness, pixels, taken_ms, size in self._db.execute(
                "SELECT content_hash, phash, sharpness, pixels, taken_ms, bytes FROM stack_looks"
            )
        }
        self._links: dict[str, dict[str, str]] = {}
        for a, b, kind in self._db.execute("SELECT a, b, kind FROM stack_links"):
            self._links.setdefault(a, {})[b] = kind
            self._links.setdefault(b, {})[a] = kind
        self._arrays: tuple[list[str], np.ndarray, np.ndarray] | None = None  # hashes, phash, taken_ms

    def close(self) -> None:
        self._db.close()

    # --- keeping them current ------------------------------------------------------------
    def on_stored(self, rows: Iterable[PhotoRow]) -> None:
        """Photos just stored: new pictures get their look kept and their links found."""
        fresh: dict[str, PhotoRow] = {}
        for row in rows:
            if row.view == 0 and row.look is not None:
                fresh.setdefault(row.content_hash, row)
        if not fresh:
            return
        with self._lock:
            new = [digest for digest in fresh if digest not in self._looks]
            for digest in fresh:
                self._looks[digest] = fresh[digest].look  # type: ignore[assignment]
            self._db.executemany(
                "INSERT OR REPLACE INTO stack_looks VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (d, lk.phash, lk.sharpness, lk.pixels, lk.taken_ms, lk.bytes)
                    for d in fresh
                    if (lk := self._looks[d])
                ],
            )
            self._grow_arrays(new)  # known bytes stored again (a reindex) are there already
            vectors = {digest: row.vector for digest, row in fresh.items()}
            links: list[tuple[str, str, str]] = []
            for digest in fresh:
                links += self._find_links(digest, vectors)
            # Links already kept stay (bytes known before: a reindex or a model change keeps them).
            self._add_links(links)

    def without_look(self, content_hashes: Iterable[str]) -> list[str]:
        """Those of these contents never looked at (indexed before stacks existed)."""
        with self._lock:
            return [d for d in content_hashes if d not in self._looks]

    def on_removed(self, content_hashes: Iterable[str]) -> None:
        """Contents whose last path left the index: they leave their stacks (their looks and
        links go; a stack of one left behind is no stack)."""
        with self._lock:
            gone = [d for d in set(content_hashes) if d in self._looks and not self._paths_of(d)]
            if not gone:
                return
            self._forget_links(gone)
            for digest in gone:
                del self._looks[digest]
            self._db.executemany("DELETE FROM stack_looks WHERE content_hash = ?", [(d,) for d in gone])
            self._arrays = None

    def _find_links(self, digest: str, vectors: dict[str, np.ndarray]) -> list[tuple[str, str, str]]:
        look = self._looks[digest]
        hashes, bits, taken = self._indexed_arrays()
        distance = hamming(bits, look.phash)  # one vectorised pass over every picture
        if look.taken_ms:
            moment = (taken == 0) | (np.abs(taken - look.taken_ms) <= BURST_SECONDS * 1000)
        else:
            moment = np.ones(len(hashes), dtype=bool)  # a copy without EXIF can still join
        copies = {hashes[i] for i in np.flatnonzero(moment & (distance <= COPY_MAX_DISTANCE))} - {digest}
        links = [(digest, other, COPIES) for other in copies]
        if look.taken_ms and digest in vectors:
            close = (distance > COPY_MAX_DISTANCE) & (distance <= BURST_MAX_DISTANCE)
            candidates = [hashes[i] for i in np.flatnonzero(moment & (taken != 0) & close)]
            if candidates:  # only these few need their vectors (a query of the index)
                mine, cut = vectors[digest], burst_min_similarity(self._whitened())
                for other, vector in self._vectors_for(candidates, vectors).items():
                    if float(np.dot(mine, vector)) >= cut:
                        links.append((digest, other, BURST))
        return links

    def _vectors_for(self, digests: list[str], known: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """View-0 vectors of these contents: from this batch, else from the index."""
        out = {d: known[d] for d in digests if d in known}
        path_of = {paths[0]: d for d in digests if d not in out and (paths := self._paths_of(d))}
        if path_of:
            for path, rows in self._vectors_of(list(path_of)).items():
                out[path_of[path]] = rows[0]
        return out

    def _indexed_arrays(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Every look as arrays (content hashes, pHashes, capture times), for vectorised search."""
        if self._arrays is None:
            self._arrays = self._as_arrays(list(self._looks))
        return self._arrays

    def _as_arrays(self, digests: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        bits = np.fromiter((self._looks[d].phash for d in digests), dtype=np.int64, count=len(digests))
        taken = np.fromiter((self._looks[d].taken_ms for d in digests), dtype=np.int64, count=len(digests))
        return digests, bits, taken

    def _grow_arrays(self, digests: list[str]) -> None:
        """New looks appended (a batch at a time: no rebuild of 30,000 per batch)."""
        if self._arrays is None:
            return  # built when first needed
        hashes, bits, taken = self._arrays
        more, more_bits, more_taken = self._as_arrays(digests)
        self._arrays = (hashes + more, np.concatenate([bits, more_bits]), np.concatenate([taken, more_taken]))

    def _add_links(self, links: list[tuple[str, str, str]]) -> None:
        rows = []
        for a, b, kind in links:
            a, b = min(a, b), max(a, b)
            if self._links.get(a, {}).get(b) == COPIES:
                continue  # copies say more than burst
            self._links.setdefault(a, {})[b] = kind
            self._links.setdefault(b, {})[a] = kind
            rows.append((a, b, kind))
        self._db.executemany("INSERT OR REPLACE INTO stack_links VALUES (?, ?, ?)", rows)

    def _forget_links(self, digests: Iterable[str]) -> None:
        for digest in digests:
            for other in self._links.pop(digest, {}):
                self._links.get(other, {}).pop(digest, None)
                if not self._links.get(other, True):
                    del self._links[other]
            self._db.execute("DELETE FROM stack_links WHERE a = ? OR b = ?", (digest, digest))

    # --- what they are -------------------------------------------------------------------
    def _component(self, digest: str) -> list[str]:
        """The contents linked to ``digest``, through indexed ones only: a picture no longer
        indexed (its file changed, or not back yet after a reindex) joins nothing."""
        seen, todo = {digest}, [digest] if self._paths_of(digest) else []
        while todo:
            for other in self._links.get(todo.pop(), {}):
                if other not in seen and self._paths_of(other):
                    seen.add(other)
                    todo.append(other)
        return sorted(seen)

    def _stack(self, digests: list[str]) -> Stack | None:
        members = [(path, d) for d in digests for path in self._paths_of(d)]
        if len(members) < 2:
            return None  # a stack of one is no stack
        burst = any(kind == BURST for d in digests for kind in self._links.get(d, {}).values())
        kind = BURST if burst else COPIES
        by_bytes = all((look := self._looks.get(d)) is not None and look.bytes for d in digests)
        best = max(cover_key(kind, self._looks.get(d), by_bytes) for d in digests)
        cover = min(p for p, d in members if cover_key(kind, self._looks.get(d), by_bytes) == best)
        paths = [cover] + sorted(p for p, _ in members if p != cover)
        return Stack(digests[0][:16], kind, cover, paths)

    def stack_of(self, content_hash: str) -> Stack | None:
        """The stack holding these bytes, or None (a photo on its own)."""
        with self._lock:
            return self._stack(self._component(content_hash))

    def all(self) -> list[Stack]:
        """Every stack, largest first."""
        with self._lock:
            seen: set[str] = set()
            found = []
            for digest in set(self._looks) | set(self._links):
                if digest in seen:
                    continue
                group = self._component(digest)
                seen.update(group)
                if (stack := self._stack(group)) is not None:
                    found.append(stack)
            return sorted(found, key=lambda s: (-len(s.members), s.cover))

    def find(self, stack_id: str) -> Stack | None:
        """The stack of this id (its first content hash's prefix), or None."""
        with self._lock:
            for digest in [d for d in set(self._looks) | set(self._links) if d.startswith(stack_id)]:
                stack = self._stack(self._component(digest))
                if stack is not None and stack.id == stack_id:
                    return stack
            return None

    def collapse(self, items: Sequence[tuple[str, str]]) -> list[tuple[int, Stack | None]]:
        """One item per stack from ``items`` ((path, content hash), best first): the stack's
        cover when it is among them, else its best item, at the place of its best item.
        (index into ``items``, its stack or None), in order."""
        with self._lock:
            stacks: dict[str, Stack | None] = {}  # content hash -> its stack
            shown: dict[str, int] = {}  # stack id -> the index shown for it
            order: list[tuple[int, Stack | None]] = []
            for index, (path, digest) in enumerate(items):
                if digest not in stacks:
                    stacks[digest] = self._stack(self._component(digest))
                stack = stacks[digest]
                if stack is None:
                    order.append((index, None))
                elif stack.id not in shown:
                    shown[stack.id] = len(order)
                    order.append((index, stack))
                elif path == stack.cover:
                    order[shown[stack.id]] = (index, stack)
            return order
