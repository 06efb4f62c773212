"""Pets found for you: the individuals that come back again and again in the library.

The photos that show a pet (a dog or a cat, by the classifier) are grouped by their
pet-focused vectors with **average linkage** (scipy): two groups merge only while their photos
are, on average over every pair, alike enough, so breed-mates that each look like the next no
longer chain into one group of a breed. It runs within the connected components of nearest
neighbours alike enough (scikit-learn's k-NN graph in a PCA projection, cut on the stored
cosine), which bounds its n^2 cost at 30,000 photos. A group is shown only when it recurs: at
least ``MIN_GROUP`` photos taken on at least ``MIN_MOMENTS`` different days or in different
folders.

Groups are listed **by evidence** (``Evidence``): your pet comes back on many days, in many
months, in several folders, and its photos are more alike than breed-mates' are; look-alikes
(same-breed strangers, each seen once, or a dog show's photos, all on one day) are folded last
under "look-alikes" and never announced. Each group says why in one phrase ("seen on 14 days
over 2 years").

Between two clusterings, a new photo joins the group it is most alike on average when that
reaches the link cut (what average linkage would do); the others wait, and once
``RECLUSTER_AFTER`` are waiting (or on request, e.g. after the first backfill) everything is
clustered again on a background thread. Groups keep their ids across clusterings (a new
cluster takes the id of the stored group it shares most photos with), so names, dismissals,
merges and photos moved out survive restarts and re-indexing: they are stored by content hash
in the state SQLite.
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

# Average-linkage cuts (the mean cosine of every pair across two groups that may merge) on the
# stored vectors, one per vector space (a cosine means something only in the space it was
# measured in): bench/bench_discovery.py's camera rolls, docs/pets.md "Pets found for you".
# Raw pet-focused vectors (models without a shipped whitening): on lite2's raw vectors, rolls of
# ~150 gave each pet's best group recall 0.65-0.86 at precision 0.69-0.84 (0.78: 0.45-0.81).
SIMILAR = 0.72
WHITENED_SIMILAR = 0.35


def cuts(whitened: bool) -> float:
    """The link cut for the library's vector space: groups merge while their photos are this
    alike on average, and a new photo joins the group it is this alike to on average."""
    return WHITENED_SIMILAR if whitened else SIMILAR


NEIGHBOURS = 10  # the k of the nearest-neighbour graph whose components bound average linkage
# The order (Evidence): a photo's cosine to its TYPICAL-th nearest photo outside its group says
# how alike photos of its kind (a breed, a look) are to others in this library; one animal's
# photos are more alike than that, ten breed-mates met once hardly (bench/bench_discovery.py:
# 5, 7 and 10 all ordered better than the margin; 5 best at ~150 photos, 10 at 10k+).
TYPICAL = 7
LISTED = 40  # neighbours listed to find it in (a larger group: its farthest listed outsider)
EXACT_MAX = 4000  # photos in a candidate component linked exactly (their pairs' distances: 64 MB)
# The order (Evidence): a group whose photos are not this much more alike to each other than to
# their nearest outsiders folds under "look-alikes" (camera rolls of ~150 pet photos: the
# median stranger group has a margin of 0.08, 90% of the pets' groups more than 0.14).
LOOKALIKE_MARGIN = 0.10
# Raw cosines are compressed (unrelated photos 0.3-0.5): the whitened margin scaled as the link
# cut is, (1 - 0.72) / (1 - 0.35) ~ 0.43; derived, not measured on raw camera rolls.
RAW_LOOKALIKE_MARGIN = 0.04


def lookalike_margin(whitened: bool) -> float:
    return LOOKALIKE_MARGIN if whitened else RAW_LOOKALIKE_MARGIN


PROJECTED = 128  # dimensions the neighbours are found in
MIN_GROUP = 3
MIN_MOMENTS = 2  # distinct days (EXIF date, else file time) or folders
RECLUSTER_AFTER = 50  # new pet photos that joined no group before everything is clustered again
DAY = 86_400
OPEN, DISMISSED, NAMED, MERGED = "open", "dismissed", "named", "merged"


# --- the pure middle ---------------------------------------------------------------------------
def cluster(vectors: np.ndarray, similar: float = SIMILAR, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """A cluster label per row of unit ``vectors`` (labels are arbitrary ints; a photo alike
    to no other is a cluster of its own): ``clustering``'s labels."""
    return clustering(vectors, similar, neighbours)[0]


def clustering(
    vectors: np.ndarray, similar: float = SIMILAR, neighbours: int = NEIGHBOURS
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """(labels, how many candidate pairs were linked, each photo's cosine to its nearest
    photo outside its cluster, and to its ``TYPICAL``-th nearest): average linkage cut at
    ``similar``.

    Two groups merge only while their photos are, on average over every pair, at least
    ``similar`` alike (scipy's average linkage), so a chain of breed-mates, each like the
    next, no longer makes one group of a breed as single links did. Average linkage needs
    every pair's distance, n^2 of them, so it runs within *candidate components*: the
    connected components of the pairs of nearest neighbours at least ``similar`` alike
    (``links``). A group average linkage makes holds such a pair between any two of its
    parts, so it never crosses a component (up to neighbours the k-NN search does not list).
    A component above ``EXACT_MAX`` photos is cut again at a stricter cut first (bounded
    memory: 4,000 photos are 64 MB of distances)."""
    from scipy.sparse.csgraph import connected_components

    count = len(vectors)
    if count < 2:
        return np.zeros(count, dtype=int), 0, np.zeros(count, np.float32), np.zeros(count, np.float32)
    unit = np.asarray(vectors, dtype=np.float32)
    index = _NeighbourIndex(unit)
    near, sims = index.nearest(neighbours)
    linked = links(unit, similar, neighbours, mutual=False, found=(near, sims))
    pairs = linked.nnz // 2
    labels = np.full(count, -1, dtype=int)
    next_label = 0
    parts = [np.arange(count)]
    strict = similar
    while parts:
        pieces = []
        for part in parts:
            _n, comp = connected_components(linked[part][:, part], directed=False)
            for c in np.unique(comp):
                pieces.append(part[comp == c])
        parts = []
        for piece in pieces:
            if len(piece) > EXACT_MAX:
                parts.append(piece)
                continue
            for sub in _average_groups(unit[piece], similar):
                labels[piece[sub]] = next_label
                next_label += 1
        if parts:  # too large to link exactly: only the closer pairs stay candidates
            strict += 0.05
            linked = _stricter(linked, unit, strict)
    # The nearest outsider among each photo's neighbours; where every neighbour is inside its
    # cluster, the farthest of them (an outsider is at most that alike).
    outside = labels[near] != labels[:, None]
    outsider = np.where(outside.any(axis=1), np.where(outside, sims, -1.0).max(axis=1), sims.min(axis=1))
    # The typical likeness, for the photos of clusters that may be shown (LISTED neighbours
    # for every photo cost as much as the clustering again at 30,000).
    sizes = np.bincount(labels)
    typical = outsider.astype(np.float32)
    rows = np.flatnonzero(sizes[labels] >= MIN_GROUP)
    if len(rows):
        wide, wide_sims = index.nearest(LISTED, rows)
        typical[rows] = _typical(labels[rows], labels[wide], wide_sims)
    return labels, pairs, outsider.astype(np.float32), typical


def _typical(labels: np.ndarray, their: np.ndarray, sims: np.ndarray) -> np.ndarray:
    """Each photo's cosine to its ``TYPICAL``-th nearest photo outside its cluster among its
    listed neighbours (``their`` labels; the farthest listed outsider where fewer are listed,
    or the farthest neighbour where none is: an outsider is at most that alike)."""
    outside = their != labels[:, None]
    ranked = -np.sort(-np.where(outside, sims, -np.inf), axis=1)  # outsiders first, nearest first
    listed = outside.sum(axis=1)
    picked = ranked[np.arange(len(labels)), np.clip(np.minimum(listed, TYPICAL) - 1, 0, None)]
    return np.where(listed > 0, picked, sims.min(axis=1)).astype(np.float32)


def _stricter(linked, unit: np.ndarray, cut: float):
    """``linked`` keeping only the pairs at least ``cut`` alike."""
    from scipy.sparse import csr_matrix

    rows, cols = linked.nonzero()
    keep = np.einsum("ij,ij->i", unit[rows], unit[cols]) >= cut
    return csr_matrix((np.ones(int(keep.sum()), np.int8), (rows[keep], cols[keep])), shape=linked.shape)


def _average_groups(unit: np.ndarray, similar: float) -> list[np.ndarray]:
    """Row indices of each group of unit rows by average linkage cut at cosine ``similar``."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    if len(unit) < 2:
        return [np.arange(len(unit))]
    tree = linkage(pdist(unit, "cosine"), method="average")
    flat = fcluster(tree, t=1.0 - similar, criterion="distance")
    return [np.flatnonzero(flat == f) for f in np.unique(flat)]


def nearest(unit: np.ndarray, neighbours: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosines) of each row's ``neighbours`` nearest other rows of unit vectors."""
    return _NeighbourIndex(unit).nearest(neighbours)


class _NeighbourIndex:
    """Nearest rows of unit vectors, found in a PCA projection to ``PROJECTED`` dimensions (6x
    less arithmetic at 768-d), but with the stored vectors' own cosines: a projection fit on
    a small library centres and rescales its space, and a fixed cut means nothing there (a
    library of 147 photos once came out as single photos)."""

    def __init__(self, unit: np.ndarray) -> None:
        from sklearn.decomposition import PCA
        from sklearn.neighbors import NearestNeighbors

        self.unit = unit
        points = unit
        if len(unit) > PROJECTED and unit.shape[1] > PROJECTED:
            points = PCA(PROJECTED, svd_solver="randomized", random_state=0).fit_transform(unit)
            points /= np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
        self.points = points
        # Euclidean on unit vectors ranks as cosine does (d^2 = 2 - 2 cos), and scikit-learn's
        # euclidean neighbour search is several times faster than its cosine one.
        self.search = NearestNeighbors().fit(points)

    def nearest(self, neighbours: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices, cosines) of the ``neighbours`` nearest other rows of each of ``rows``
        (all rows when None), nearest first."""
        count = len(self.unit)
        k = min(neighbours, count - 1)
        if rows is None:
            near = self.search.kneighbors(n_neighbors=k, return_distance=False)
        else:  # a queried row finds itself too (usually first): dropped
            found = self.search.kneighbors(self.points[rows], n_neighbors=k + 1, return_distance=False)
            itself = found == rows[:, None]
            drop = np.where(itself.any(axis=1), itself.argmax(axis=1), k)
            keep = np.arange(k + 1)[None, :] != drop[:, None]
            near = found[keep].reshape(len(rows), k)
        sims = np.empty(near.shape, np.float32)  # the stored vectors' own, in slices: bounded memory
        mine = np.arange(count) if rows is None else rows
        for start in range(0, len(near), 4096):
            part = slice(start, start + 4096)
            sims[part] = np.einsum("id,ikd->ik", self.unit[mine[part]], self.unit[near[part]])
        return near, sims


def links(
    vectors: np.ndarray,
    similar: float = SIMILAR,
    neighbours: int = NEIGHBOURS,
    mutual: bool = True,
    found: tuple[np.ndarray, np.ndarray] | None = None,
):
    """The symmetric sparse matrix of linked pairs of rows of unit ``vectors``: one is among
    the other's ``neighbours`` nearest (each is among the other's, ``mutual``) and their
    cosine is at least ``similar``. ``found``: ``nearest``'s answer, when already known."""
    from scipy.sparse import csr_matrix

    count = len(vectors)
    near, sims = found if found is not None else nearest(np.asarray(vectors, dtype=np.float32), neighbours)
    rows = np.repeat(np.arange(count), near.shape[1])
    alike = sims.ravel() >= similar
    graph = csr_matrix((np.ones(int(alike.sum()), np.int8), (rows[alike], near.ravel()[alike])), shape=(count, count))
    return graph.minimum(graph.T) if mutual else graph.maximum(graph.T)


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
    # Cosine to the nearest photo outside its group, and to its TYPICAL-th nearest, from the
    # last clustering (nan: joined since).
    outsider: float = float("nan")
    typical: float = float("nan")

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)


@dataclass
class Group:
    id: int
    status: str
    name: str | None
    members: list[PetPhoto]

    least_margin: float = LOOKALIKE_MARGIN  # the vector space's look-alike margin
    merged: bool = False  # another group was merged into it: the user says it is one pet
    _mean: tuple[int, np.ndarray] | None = field(default=None, repr=False)

    def mean(self) -> np.ndarray:
        """The mean of the members' vectors (kept until the members change)."""
        if self._mean is None or self._mean[0] != len(self.members):
            self._mean = (len(self.members), np.mean([p.vector for p in self.members], axis=0))
        return self._mean[1]

    def centroid(self) -> np.ndarray:
        """The unit mean of the members' vectors."""
        return unit_vector(self.mean())

    def alike(self, vector: np.ndarray) -> float:
        """A photo's mean cosine to the members: what average linkage would join it by."""
        return float(vector @ self.mean())

    def recurs(self) -> bool:
        return (
            len(self.members) >= MIN_GROUP
            and moments((p.day for p in self.members), (p.folder for p in self.members)) >= MIN_MOMENTS
        )

    def announced(self) -> bool:
        """Whether "I found a pet" is said of it: it recurs, and not as look-alikes."""
        return self.recurs() and not self.evidence().lookalikes

    def evidence(self) -> Evidence:
        return Evidence.of(self.members, -2.0 if self.merged else self.least_margin)

    def summary(self) -> GroupReply:
        centroid = self.centroid()
        ranked = sorted(self.members, key=lambda p: -float(p.vector @ centroid))
        days = [p.day for p in self.members]
        evidence = self.evidence()
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
            "reason": evidence.reason(),
            "evidence": round(evidence.score, 4),
            "lookalikes": evidence.lookalikes,
        }


@dataclass(frozen=True)
class Evidence:
    """What says a group is one animal you live with, not look-alikes met once.

    Photos of one animal are more alike among themselves than to anything outside the group;
    breed-mates met once are a loose cloud whose group is about as alike to the breed-mates
    left outside it as to each other. A group under ``least_margin`` of *margin* (its
    cohesion, the mean cosine of its pairs of photos, minus the mean cosine of each photo to
    its nearest photo outside the group) is look-alikes. The list's order is the group's
    *score*: its cohesion minus the likeness typical of its kind (the mean cosine of each photo
    to its ``TYPICAL``-th nearest outsider). The margin alone put a whole distinctive breed
    (ten pugs, each met once, that nothing else in a small library resembles: no near
    outsider) above a dog of your own; the typical likeness does not hinge on the one nearest
    outsider, so what orders is how much more alike the photos are than photos of their kind
    usually are (bench/bench_discovery.py). Dates count too: a group whose photos are all from
    one day (a dog show, an afternoon at a friend's) is folded under "look-alikes" however
    alike; more days, months and a longer span did not order groups better on their own
    (bench/bench_discovery.py: strangers there are dated on as many days as the pets) and
    are what the reason says. Bursts are on one day, so they count as one."""

    days: int
    months: int
    span_days: int
    folders: int
    cohesion: float
    outside: float  # the mean cosine of a member to its nearest non-member
    typical: float  # the mean cosine of a member to its TYPICAL-th nearest non-member
    least_margin: float = LOOKALIKE_MARGIN  # below it: look-alikes (the vector space's)

    @classmethod
    def of(cls, members: Sequence[PetPhoto], least_margin: float = LOOKALIKE_MARGIN) -> Evidence:
        days = sorted({p.day for p in members})
        months = {time.strftime("%Y-%m", time.gmtime(d * DAY)) for d in days}
        vectors = np.stack([p.vector for p in members])
        n = len(members)
        total = vectors.sum(axis=0)
        cohesion = float((total @ total - n) / (n * (n - 1))) if n > 1 else 1.0
        known = [p.outsider for p in members if not np.isnan(p.outsider)]
        outside = float(np.mean(known)) if known else 0.0
        typical = [p.typical for p in members if not np.isnan(p.typical)]
        folders = len({p.folder for p in members})
        return cls(
            len(days),
            len(months),
            days[-1] - days[0],
            folders,
            cohesion,
            outside,
            float(np.mean(typical)) if typical else 0.0,
            least_margin,
        )

    @property
    def margin(self) -> float:
        """How much more alike the photos are to each other than to their nearest outsiders."""
        return self.cohesion - self.outside

    @property
    def score(self) -> float:
        """The order: how much more alike the photos are than photos of their kind usually are."""
        return self.cohesion - self.typical

    @property
    def lookalikes(self) -> bool:
        return self.days < 2 or self.margin < self.least_margin

    def reason(self) -> str:
        if self.days < 2:
            return "look-alikes: all on one day"
        if self.margin < self.least_margin:
            return f"look-alikes: seen on {_plural(self.days, 'day')}, but as alike to others as to each other"
        return f"seen on {_plural(self.days, 'day')} over {_span(self.span_days)}"


def _plural(value: int, word: str) -> str:
    return f"{value} {word}{'' if value == 1 else 's'}"


def _span(days: int) -> str:
    if days >= 730:
        return _plural(round(days / 365), "year")
    if days >= 60:
        return _plural(round(days / 30.4), "month")
    if days >= 14:
        return _plural(round(days / 7), "week")
    return _plural(days + 1, "day")


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
            shown = {gid for gid, group in self._groups.items() if group.announced()}
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
                if group.status == OPEN and group.announced():
                    grown[group.id] = group
            waiting = self._waiting
        for gid, group in grown.items():  # found: it recurs now, and did not before
            self.publish(Event.GROUP, {"id": gid, "size": len(group.members), "found": gid not in shown})
        if waiting >= RECLUSTER_AFTER:
            self.refresh_soon()

    def _nearest(self, photo: PetPhoto, excluded: set[tuple[int, str]]) -> Group | None:
        """The group the photo is most alike on average (what the clustering's average linkage
        would merge it into), if that reaches the link cut."""
        best, best_score = None, cuts(self.library.whitened)
        for group in self._groups.values():
            if group.status == MERGED or (group.id, photo.content_hash) in excluded:
                continue
            score = group.alike(photo.vector)
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
            labels, pairs, outsider, typical = clustering(vectors, cuts(self.library.whitened))
            for content_hash, alike, usual in zip(hashes, outsider, typical, strict=True):
                photos[content_hash].outsider, photos[content_hash].typical = float(alike), float(usual)
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
            before = {gid: len(g.members) for gid, g in self._groups.items() if g.status == OPEN and g.announced()}
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
            margin = lookalike_margin(self.library.whitened)
            merged = {into for status, _name, into in statuses.values() if status == MERGED}
            for content_hash, gid in assignment.items():
                if content_hash in photos:
                    status, name, _into = statuses.get(gid, (OPEN, None, None))
                    group = groups.setdefault(gid, Group(gid, status, name, [], margin, gid in merged))
                    group.members.append(photos[content_hash])
            self._groups = groups
            return [
                {"id": gid, "size": len(group.members), "found": gid not in before}
                for gid, group in groups.items()
                if group.status == OPEN and group.announced() and len(group.members) > before.get(gid, 0)
            ]

    # --- what the user sees and decides -----------------------------------------------------------
    def groups(self, include_all: bool = False) -> list[GroupReply]:
        """The groups that recur, by evidence: the likeliest pets of yours first, look-alikes
        last (``include_all``: dismissed and named too)."""
        self._settled()
        with self._lock:
            shown = [g for g in self._groups.values() if g.recurs() and (include_all or g.status == OPEN)]
            replies = [g.summary() for g in shown]
        return sorted(replies, key=lambda r: (r["lookalikes"], -r["evidence"], -r["size"], r["id"]))

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
            "similar": cuts(self.library.whitened),
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
            into.merged = True
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
