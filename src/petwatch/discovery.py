"""Pets found for you: the individuals that come back again and again in the library.

The photos that show a pet (a dog or a cat, by the classifier) are grouped by their
pet-focused vectors: scikit-learn finds each photo's nearest neighbours (in a PCA projection,
so that 30,000 photos cluster in seconds), photos that are mutual neighbours and alike enough
are linked, and scipy's connected components of those links are the groups. A group is shown
only when it recurs: at least ``MIN_GROUP`` photos taken on at least ``MIN_MOMENTS`` different
days or in different folders, so a stranger's dog met once on a walk forms no group.

Between two clusterings, a new photo joins the group whose centroid it is closest to when it
is close enough (``JOIN``); the others wait, and once ``RECLUSTER_AFTER`` are waiting (or on
request, e.g. after the first backfill) everything is clustered again on a background thread.
Groups keep their ids across clusterings (a new cluster takes the id of the stored group it
shares most photos with), so names, dismissals, merges and photos moved out survive
restarts and re-indexing: they are stored by content hash in the state SQLite.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from petwatch.errors import PetwatchError
from petwatch.protocol import PET_SPECIES, DiscoveryWhyReply, Event, GroupEvent, GroupReply, PublishEvent
from petwatch.state_db import StateTables
from petwatch.store import PhotoRow, unit_vector

if TYPE_CHECKING:
    from petwatch.library import Library

log = logging.getLogger(__name__)

# Cosine cuts on the stored vectors, per vector space (a cut means something only in the space
# it was tuned in). bench/bench_whitening.py, "Discovery link cut" and its table in docs/pets.md:
# 10 libraries of 3 recurring dogs among 300 met once and the Oxford sample.
# Raw pet-focused vectors (other models): 0.78 as before, now on the stored cosine: recall
# 0.90, purity 0.65 (8 of 30 found); 0.82 gives 0.72 and 0.73 (11 of 30) but keeps only 3 of
# 7 photos of a dog of tests/test_discovery.py together.
SIMILAR = 0.78
JOIN = 0.82  # a new photo this close to a group's centroid joins it without a re-clustering
# Whitened: 0.25 keeps 0.90 of each pet's photos in its group at purity 0.78 (13 of 30 found);
# 0.30 gives 0.81 and 0.82 but splits a dog of tests/test_whitening.py whose 7 photos are
# 0.15-0.38 alike. The join cut keeps 86% of a dog's photos within reach of its group's
# centroid, as raw 0.82 does: 0.314 there, 0.32 here.
WHITENED_SIMILAR = 0.25
WHITENED_JOIN = 0.32


def cuts(whitened: bool) -> tuple[float, float]:
    """(link, join) cuts for the library's vector space."""
    return (WHITENED_SIMILAR, WHITENED_JOIN) if whitened else (SIMILAR, JOIN)


NEIGHBOURS = 5  # the k of the mutual k-nearest-neighbour graph
PROJECTED = 128  # dimensions the neighbours are found in
MIN_GROUP = 3
MIN_MOMENTS = 2  # distinct days (EXIF date, else file time) or folders
RECLUSTER_AFTER = 50  # new pet photos that joined no group before everything is clustered again
DAY = 86_400
OPEN, DISMISSED, NAMED, MERGED = "open", "dismissed", "named", "merged"


# --- the pure middle ---------------------------------------------------------------------------
def cluster(vectors: np.ndarray, similar: float = SIMILAR, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """A cluster label per row of unit ``vectors`` (labels are arbitrary ints; a photo alike
    to no other is a cluster of its own): the connected components of ``links``."""
    return clustering(vectors, similar, neighbours)[0]


def clustering(vectors: np.ndarray, similar: float = SIMILAR, neighbours: int = NEIGHBOURS) -> tuple[np.ndarray, int]:
    """(``cluster``'s labels, how many pairs of rows were linked)."""
    from scipy.sparse.csgraph import connected_components

    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=int), 0
    linked = links(vectors, similar, neighbours)
    return connected_components(linked, directed=False)[1], linked.nnz // 2


def links(vectors: np.ndarray, similar: float = SIMILAR, neighbours: int = NEIGHBOURS):
    """The symmetric sparse matrix of linked pairs of rows of unit ``vectors``.

    Two photos are linked when each is among the other's ``neighbours`` nearest and their
    cosine similarity is at least ``similar`` (mutual neighbours: a photo alike to many
    cannot chain two pets together); the clusters are the linked components. The neighbours
    are found in a PCA projection to ``PROJECTED`` dimensions (6x less arithmetic at 768-d),
    but the link is decided on the stored vectors' own cosine: a projection fit on a small
    library centres and rescales its space, and a fixed cut means nothing there (a library of
    147 photos once came out as single photos).
    """
    count = len(vectors)
    from scipy.sparse import csr_matrix
    from sklearn.decomposition import PCA
    from sklearn.neighbors import kneighbors_graph

    unit = np.asarray(vectors, dtype=np.float32)
    points = unit
    if count > PROJECTED and unit.shape[1] > PROJECTED:
        points = PCA(PROJECTED, svd_solver="randomized", random_state=0).fit_transform(unit)
        points /= np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    # Euclidean on unit vectors ranks as cosine does (d^2 = 2 - 2 cos), and scikit-learn's
    # euclidean neighbour search is several times faster than its cosine one.
    near = kneighbors_graph(points, min(neighbours, count - 1), mode="connectivity", include_self=False)
    rows, cols = near.nonzero()
    cosines = np.empty(len(rows), np.float32)  # the stored vectors' own, in slices: bounded memory
    for start in range(0, len(rows), 4096):
        part = slice(start, start + 4096)
        cosines[part] = np.einsum("ij,ij->i", unit[rows[part]], unit[cols[part]])
    alike = cosines >= similar
    graph = csr_matrix((np.ones(int(alike.sum()), np.int8), (rows[alike], cols[alike])), shape=(count, count))
    return graph.minimum(graph.T)


def moments(days: Iterable[int], folders: Iterable[str]) -> int:
    """How many distinct occasions a group's photos come from: days, or folders if more."""
    return max(len(set(days)), len(set(folders)))


def match_ids(clusters: list[set[str]], stored: dict[int, set[str]]) -> list[int | None]:
    """For each new cluster (a set of content hashes), the stored group it continues: the one
    it shares most photos with, if that is at least half of either. A stored group is taken
    by one cluster only, the one sharing most with it, except that several clusters may all
    continue one group (a merge the user made stays merged)."""
    owner: dict[str, int] = {h: gid for gid, hashes in stored.items() for h in hashes}
    picks: list[int | None] = []
    for members in clusters:
        shared = Counter(owner[h] for h in members if h in owner)
        best = next(iter(shared.most_common(1)), None)
        if best and (best[1] * 2 >= len(members) or best[1] * 2 >= len(stored[best[0]])):
            picks.append(best[0])
        else:
            picks.append(None)
    return picks


@dataclass
class PetPhoto:
    path: str
    content_hash: str
    vector: np.ndarray = field(repr=False)
    day: int  # days since the epoch: EXIF date, else the file's mtime
    species: str
    label: str

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)


@dataclass
class Group:
    id: int
    status: str
    name: str | None
    members: list[PetPhoto]

    _centroid: tuple[int, np.ndarray] | None = field(default=None, repr=False)

    def centroid(self) -> np.ndarray:
        """The unit mean of the members' vectors (kept until the members change)."""
        if self._centroid is None or self._centroid[0] != len(self.members):
            self._centroid = (len(self.members), unit_vector(np.mean([p.vector for p in self.members], axis=0)))
        return self._centroid[1]

    def recurs(self) -> bool:
        return (
            len(self.members) >= MIN_GROUP
            and moments((p.day for p in self.members), (p.folder for p in self.members)) >= MIN_MOMENTS
        )

    def summary(self) -> GroupReply:
        centroid = self.centroid()
        ranked = sorted(self.members, key=lambda p: -float(p.vector @ centroid))
        days = [p.day for p in self.members]
        return {
            "id": self.id,
            "size": len(self.members),
            "status": self.status,
            "name": self.name,
            "cover": ranked[0].path,
            "paths": [p.path for p in ranked],
            "species": Counter(p.species for p in self.members).most_common(1)[0][0],
            "breed": Counter(p.label for p in self.members).most_common(1)[0][0],
            "first_day": time.strftime("%Y-%m-%d", time.gmtime(min(days) * DAY)),
            "last_day": time.strftime("%Y-%m-%d", time.gmtime(max(days) * DAY)),
        }


# --- what the user decided, by content hash ----------------------------------------------------
class GroupBook:
    """Groups, their members and the user's decisions, in the state SQLite."""

    def __init__(self, path: Path) -> None:
        tables = StateTables(
            path,
            """
            CREATE TABLE IF NOT EXISTS pet_groups (id INTEGER PRIMARY KEY AUTOINCREMENT,
                status TEXT NOT NULL, name TEXT, merged_into INTEGER, created REAL);
            CREATE TABLE IF NOT EXISTS pet_group_members (content_hash TEXT PRIMARY KEY,
                group_id INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS pet_group_exclusions (group_id INTEGER, content_hash TEXT,
                PRIMARY KEY (group_id, content_hash));
            """,
        )
        self._db, self._lock = tables.db, tables.lock

    def close(self) -> None:
        self._db.close()

    def new_group(self) -> int:
        with self._lock:
            cursor = self._db.execute("INSERT INTO pet_groups (status, created) VALUES (?, ?)", (OPEN, time.time()))
            assert cursor.lastrowid is not None  # an INSERT into a rowid table has one
            return cursor.lastrowid

    def groups(self) -> dict[int, tuple[str, str | None, int | None]]:
        """id -> (status, name, merged into)."""
        with self._lock:
            rows = self._db.execute("SELECT id, status, name, merged_into FROM pet_groups").fetchall()
        return {gid: (status, name, into) for gid, status, name, into in rows}

    def resolve(self, gid: int) -> int:
        """The group a merged group now lives on (itself if not merged)."""
        groups = self.groups()
        seen = set()
        while gid in groups and groups[gid][0] == MERGED and gid not in seen:
            seen.add(gid)
            gid = groups[gid][2] or gid
        return gid

    def members(self) -> dict[int, set[str]]:
        with self._lock:
            rows = self._db.execute("SELECT content_hash, group_id FROM pet_group_members").fetchall()
        found: dict[int, set[str]] = {}
        for content_hash, gid in rows:
            found.setdefault(gid, set()).add(content_hash)
        return found

    def exclusions(self) -> set[tuple[int, str]]:
        with self._lock:
            return set(self._db.execute("SELECT group_id, content_hash FROM pet_group_exclusions").fetchall())

    def set_members(self, assignment: dict[str, int]) -> None:
        """Make the memberships ``assignment`` (content hash -> group id), writing only what
        changed: a clustering that finds the same groups writes nothing."""
        with self._lock:
            current = dict(self._db.execute("SELECT content_hash, group_id FROM pet_group_members").fetchall())
            gone = [(h,) for h in current if h not in assignment]
            changed = [(h, gid) for h, gid in assignment.items() if current.get(h) != gid]
            if not gone and not changed:
                return
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM pet_group_members WHERE content_hash = ?", gone)
            self._db.executemany("INSERT OR REPLACE INTO pet_group_members VALUES (?, ?)", changed)
            self._db.execute("COMMIT")

    def add_member(self, content_hash: str, gid: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO pet_group_members VALUES (?, ?)", (content_hash, gid))

    def set_status(self, gid: int, status: str, name: str | None = None, into: int | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE pet_groups SET status = ?, name = ?, merged_into = ? WHERE id = ?", (status, name, into, gid)
            )

    def exclude(self, gid: int, content_hash: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO pet_group_exclusions VALUES (?, ?)", (gid, content_hash))
            self._db.execute(
                "DELETE FROM pet_group_members WHERE content_hash = ? AND group_id = ?", (content_hash, gid)
            )


def _announce_nowhere(kind: Event, data: Mapping[str, Any]) -> None:
    """A Discovery without a daemon (tests, benchmarks) announces to no one."""


# --- the service the daemon runs ---------------------------------------------------------------
class Discovery:
    """Groups over an opened Library; ``publish(kind, data)`` announces found and grown groups."""

    def __init__(
        self,
        library: Library,
        db_path: Path,
        publish: PublishEvent | None = None,
    ) -> None:
        self.library = library
        self.book = GroupBook(db_path)
        self.publish: PublishEvent = publish or _announce_nowhere
        self._lock = threading.RLock()
        self._photos: dict[str, PetPhoto] | None = None  # content hash -> photo, loaded lazily
        self._groups: dict[int, Group] = {}
        self._waiting = 0  # new pet photos that joined no group since the last clustering
        self._refreshing = threading.Lock()
        self._stopping = threading.Event()
        self.last_refresh_s: float | None = None
        self._last = (0, 0, 0)  # the last clustering's pet photos, linked pairs, largest cluster

    def close(self, wait: float = 15.0) -> None:
        """Stop: no new clustering starts, the one under way is waited for (it reads the index,
        which closes next)."""
        self._stopping.set()
        if self._refreshing.acquire(timeout=wait):
            self._refreshing.release()
        self.book.close()

    def drop_cache(self) -> None:
        """The library's vectors changed wholesale (an upgrade): read them again, cluster again."""
        with self._lock:
            self._photos, self._groups = None, {}
        self.refresh_soon()

    # --- photos ---------------------------------------------------------------------------
    def _load(self) -> dict[str, PetPhoto]:
        if self._photos is None:
            self._photos = {}
            for row in self.library.pet_rows():
                self._photos[row.content_hash] = _pet_photo(row)
        return self._photos

    def on_stored(self, rows: Sequence[PhotoRow]) -> None:
        """Freshly indexed photos: pets join their group at once, or wait for a clustering."""
        if self._photos is None:
            return  # not loaded yet: the first refresh reads them from the index
        grown: dict[int, Group] = {}
        with self._lock:
            shown = {gid for gid, group in self._groups.items() if group.recurs()}
            excluded = self.book.exclusions()
            for row in rows:
                if row.view != 0 or row.photo["species"] not in PET_SPECIES or row.content_hash in self._photos:
                    continue
                photo = _pet_photo(row)
                self._photos[row.content_hash] = photo
                group = self._nearest(photo, excluded)
                if group is None:
                    self._waiting += 1
                    continue
                group.members.append(photo)
                self.book.add_member(photo.content_hash, group.id)
                if group.status == OPEN and group.recurs():
                    grown[group.id] = group
            waiting = self._waiting
        for gid, group in grown.items():  # found: it recurs now, and did not before
            self.publish(Event.GROUP, {"id": gid, "size": len(group.members), "found": gid not in shown})
        if waiting >= RECLUSTER_AFTER:
            self.refresh_soon()

    def _nearest(self, photo: PetPhoto, excluded: set[tuple[int, str]]) -> Group | None:
        best, best_score = None, cuts(self.library.whitened)[1]
        for group in self._groups.values():
            if group.status == MERGED or (group.id, photo.content_hash) in excluded:
                continue
            score = float(photo.vector @ group.centroid())
            if score >= best_score:
                best, best_score = group, score
        return best

    # --- clustering -------------------------------------------------------------------------
    def refresh_soon(self) -> None:
        """Cluster everything again on a thread of its own (one at a time), so indexing goes on."""
        if self._refreshing.locked() or self._stopping.is_set():
            return
        threading.Thread(target=self._refresh_in_background, name="discovery", daemon=True).start()

    def _refresh_in_background(self) -> None:
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - grouping is best effort: the next walk tries again
            if not self._stopping.is_set():
                log.exception("finding the pets in the library failed")

    def refresh(self) -> list[GroupEvent]:
        """Cluster every pet photo again, keep the stored groups' ids, and announce the groups
        that appeared or grew; returns those announcements."""
        with self._refreshing:
            if self._stopping.is_set():
                return []
            started = time.monotonic()
            with self._lock:
                photos = self._load()
                self._drop_gone(photos)
                hashes = list(photos)
            vectors = np.stack([photos[h].vector for h in hashes]) if hashes else np.zeros((0, 1))
            labels, pairs = clustering(vectors, cuts(self.library.whitened)[0])
            clusters: dict[int, set[str]] = {}
            for content_hash, label in zip(hashes, labels, strict=True):
                clusters.setdefault(int(label), set()).add(content_hash)
            self._last = (len(hashes), int(pairs), max((len(c) for c in clusters.values()), default=0))
            announcements = self._apply([c for c in clusters.values() if len(c) >= 2])
            self.last_refresh_s = time.monotonic() - started
            log.info(
                "pets found: %d groups among %d pet photos (%.1fs)",
                sum(1 for g in self._groups.values() if g.status == OPEN and g.recurs()),
                len(hashes),
                self.last_refresh_s,
            )
        for announcement in announcements:
            self.publish(Event.GROUP, announcement)
        return announcements

    def _drop_gone(self, photos: dict[str, PetPhoto]) -> None:
        for content_hash in [h for h, p in photos.items() if self.library.entry(p.path) is None]:
            del photos[content_hash]

    def _apply(self, clusters: list[set[str]]) -> list[GroupEvent]:
        if self.library.write_problem():  # a full disk: nothing written, groups as they were
            return []
        with self._lock:
            photos = self._load()
            before = {gid: len(g.members) for gid, g in self._groups.items() if g.status == OPEN and g.recurs()}
            stored = {self.book.resolve(gid): hashes for gid, hashes in self.book.members().items()}
            excluded = self.book.exclusions()
            picks = match_ids(clusters, stored)
            statuses = self.book.groups()
            assignment: dict[str, int] = {}
            for members, gid in zip(clusters, picks, strict=True):
                if gid is None:
                    gid = self.book.new_group()
                    statuses[gid] = (OPEN, None, None)
                for content_hash in members:
                    if (gid, content_hash) not in excluded:
                        assignment[content_hash] = gid
            self.book.set_members(assignment)
            self._waiting = 0
            groups: dict[int, Group] = {}
            for content_hash, gid in assignment.items():
                if content_hash in photos:
                    status, name, _into = statuses.get(gid, (OPEN, None, None))
                    groups.setdefault(gid, Group(gid, status, name, [])).members.append(photos[content_hash])
            self._groups = groups
            return [
                {"id": gid, "size": len(group.members), "found": gid not in before}
                for gid, group in groups.items()
                if group.status == OPEN and group.recurs() and len(group.members) > before.get(gid, 0)
            ]

    # --- what the user sees and decides -----------------------------------------------------------
    def groups(self, include_all: bool = False) -> list[GroupReply]:
        """The groups that recur, biggest first (``include_all``: dismissed and named too)."""
        self._settled()
        with self._lock:
            shown = [g for g in self._groups.values() if g.recurs() and (include_all or g.status == OPEN)]
            return [g.summary() for g in sorted(shown, key=lambda g: (-len(g.members), g.id))]

    def explain(self) -> DiscoveryWhyReply:
        """What the last clustering saw, for saying why no group shows: how many photos show a
        pet, how many pairs of them were alike enough to link, the largest cluster, and the rule."""
        self._settled()
        with self._lock:
            photos, pairs, largest = self._last
            shown = sum(1 for g in self._groups.values() if g.recurs() and g.status == OPEN)
            one_moment = sum(1 for g in self._groups.values() if len(g.members) >= MIN_GROUP and not g.recurs())
        return {
            "pet_photos": photos,
            "close_pairs": pairs,
            "largest": largest,
            "one_moment": one_moment,
            "groups": shown,
            "min_group": MIN_GROUP,
            "min_moments": MIN_MOMENTS,
            "similar": cuts(self.library.whitened)[0],
        }

    def _settled(self) -> None:
        """Clustered at least once, and not in the middle of it (its result is on its way)."""
        if self._photos is None:
            self.refresh()
        with self._refreshing:
            pass

    def group(self, gid: int) -> Group:
        self._settled()
        with self._lock:
            found = self._groups.get(self.book.resolve(gid))
        if found is None or not found.recurs():
            raise PetwatchError(f"no group {gid}: see `petwatch pets discover` for the groups found")
        return found

    def dismiss(self, gid: int) -> GroupReply:
        """ "Not my pet": the group is hidden, and stays hidden as it grows."""
        group = self.group(gid)
        with self._lock:
            group.status = DISMISSED
            self.book.set_status(group.id, DISMISSED)
        return group.summary()

    def named(self, gid: int, name: str) -> None:
        with self._lock:
            group = self._groups.get(self.book.resolve(gid))
            if group is not None:
                group.status, group.name = NAMED, name
            self.book.set_status(self.book.resolve(gid), NAMED, name)

    def merge(self, gid: int, other: int) -> GroupReply:
        """Two groups that are the same pet: ``other``'s photos join ``gid``."""
        into, source = self.group(gid), self.group(other)
        if into.id == source.id:
            raise PetwatchError(f"groups {gid} and {other} are already one")
        with self._lock:
            for photo in source.members:
                self.book.add_member(photo.content_hash, into.id)
            into.members.extend(source.members)
            self.book.set_status(source.id, MERGED, into=into.id)
            del self._groups[source.id]
        return into.summary()

    def move_out(self, gid: int, paths: Sequence[str]) -> GroupReply:
        """Photos that are not this pet leave the group, and never join it again."""
        group = self.group(gid)
        wanted = {os.path.abspath(p) for p in paths}
        leaving = [p for p in group.members if p.path in wanted]
        if not leaving:
            raise PetwatchError(f"none of those photos is in group {gid}")
        with self._lock:
            for photo in leaving:
                self.book.exclude(group.id, photo.content_hash)
            group.members = [p for p in group.members if p.path not in wanted]
        return group.summary()


def _pet_photo(row: PhotoRow) -> PetPhoto:
    photo = row.photo
    when = photo["taken_at"] or photo["mtime_ns"] // 1_000_000_000
    day = int(when // DAY)
    return PetPhoto(row.path, row.content_hash, unit_vector(row.vector), day, photo["species"], photo["label"])
