"""A search: one query value (``SearchQuery``), made once at the boundary from a request (the
daemon's ``SearchRequest``, the CLI's flags) and passed down to the store's filter.

What a query can hold: a photo (it ranks: cosine similarity), words (``words.parse``: concepts,
a time, places, pets), a pet, a time range, a place, species. Words alone rank by the probability
mass of each photo's classes on the words' classes (a sparse inner product in Milvus); words and
a photo: the words filter, the photo ranks. A new filter is a field of ``SearchRequest``
(endpoints), of ``store.PhotoFilter`` (its expression) and a line in ``query_from`` below.

The Library is the facade (``Library.search``); ``Searcher`` does the work on its parts.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from petwatch import concepts, places, words
from petwatch.endpoints import SearchRequest
from petwatch.errors import PetwatchError
from petwatch.filenames import is_under
from petwatch.index import FileStat
from petwatch.protocol import MAX_TOP_K, HitReply, ReadingReply, SearchReply, StackRef, UpgradeProgress
from petwatch.stacks import Stack, Stacks
from petwatch.store import Hit, PhotoFilter, Store, photo_id, unit_vector

# A search collapsing stacks asks Milvus for more hits until it has top-k tiles, up to this many.
STACK_FETCH_LIMIT = 16_384  # Milvus's own limit on one search's top-k
QUERIES_KEPT = 8  # query vectors kept for the next pages of a search (a page costs one Milvus search)
# Query expansion (bench/bench_whitening.py): the query plus its top 3 hits weighted by their
# score cubed, searched again. On whitened vectors mAP gains +0.004 to +0.014 on every test
# (docs/pets.md); a near-duplicate of the query adds its own weight, an unlike hit almost none.
EXPAND_TOP = 3
EXPAND_POWER = 3.0
# A filter alone (a pet, a date, a place; no photo, no concept) lists its photos newest first,
# up to this many.
FILTER_LIMIT = 16_384


@dataclass(frozen=True)
class SearchQuery:
    """One search, declared once. ``image``: a photo's path (it ranks); ``text``: the words as
    typed, read into ``words``; ``only``: every filter the store applies (species, concepts,
    time, places, a pet's photos)."""

    image: str | None = None
    text: str = ""
    concepts: tuple[frozenset[int], ...] = ()  # the words' concepts (each: any of its classes)
    only: PhotoFilter = field(default_factory=PhotoFilter)
    readings: tuple[words.Reading, ...] = ()
    top_k: int | None = None  # None: settings.top_k
    min_score: float | None = None  # None: settings.min_score
    offset: int = 0
    stacks: bool = True  # one hit per stack
    expand: bool | None = None  # None: where it measured better (whitened vectors)

    def __post_init__(self) -> None:
        if not self.image and not self.text and self.only == PhotoFilter():
            raise PetwatchError("give a query: an image path, an indexed photo, or words (--text)")


def query_from(
    request: SearchRequest,
    *,
    pets: Collection[str] = (),
    places_known: Collection[str] = (),
    album: Callable[[str], Collection[str]] | None = None,
    now: datetime | None = None,
) -> SearchQuery:
    """The query a request asks: its text read by ``words.parse`` (``pets``: the pet names,
    ``places_known``: the places of the indexed photos), a pet resolved to its album's photos by
    ``album`` (the pets feature, above the library), ``taken`` by ``words.parse_taken``.
    An unknown word raises ``words.UnknownWords``."""
    image = request.photo or request.image
    read = words.parse(request.text, pets=pets, places=places_known, now=now) if request.text else None
    named_pets = [*(read.pets if read else ()), *([request.pet] if request.pet else [])]
    taken = read.taken if read else None
    if request.taken:
        taken = words.parse_taken(request.taken, now=now)
    chosen_places = list(read.places if read else ())
    if request.near:
        chosen_places.append(_place_named(request.near, places_known))
    photo_ids: frozenset[int] | None = None
    for name in named_pets:
        if album is None:
            raise PetwatchError("searching for a pet needs the daemon: start it with `petwatch daemon`")
        ids = frozenset(photo_id(path) for path in album(name))
        photo_ids = ids if photo_ids is None else photo_ids & ids
    found = tuple(c.classes for c in read.concepts) if read else ()
    only = PhotoFilter(
        species=tuple(sorted(set(request.species or ()))),
        # With a photo, the words' concepts filter; alone they rank (and filter when several).
        concepts=found if image or len(found) > 1 else (),
        taken=taken,
        places=tuple(chosen_places),
        photo_ids=photo_ids,
    )
    if not image and not found and only == PhotoFilter():
        if not request.text:
            raise PetwatchError("give a query: an image path, an indexed photo, or words (text)")
        raise PetwatchError(
            f"nothing to search for in {request.text!r}: type what, when, where or who "
            '("rex at the beach 2023"), or give a photo'
        )
    return SearchQuery(
        image=image,
        text=request.text or "",
        concepts=found,
        only=only,
        readings=read.readings if read else (),
        top_k=request.top_k,
        min_score=request.min_score,
        offset=request.offset,
        stacks=request.stacks,
        expand=request.expand,
    )


def _place_named(name: str, known: Collection[str]) -> str:
    """``--near``'s place as the index spells it (case aside); one the index has no photo of
    is kept as typed (it finds nothing), as words read a real place."""
    wanted = name.strip().casefold()
    return next((place for place in known if place.casefold() == wanted), name.strip())


def expand_query(query: np.ndarray, hits: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The expanded query: unit(query + sum of each hit's vector x its score^EXPAND_POWER)."""
    weights = np.clip(np.asarray(scores, np.float32), 0.0, None) ** EXPAND_POWER
    return unit_vector(query + weights @ np.asarray(hits, np.float32).reshape(len(weights), -1))


def hit_reply(hit: Hit, plugged_in: Sequence[str] = (), stack: Stack | None = None) -> HitReply:
    """A hit as replies carry it: ``online`` when its file can be opened now (under one of the
    ``plugged_in`` folders, or there), so a front end can say "offline" instead of failing to show it;
    ``stack`` the stack it stands for or belongs to; when and where it was taken, what it shows."""
    online = any(is_under(hit.path, f) for f in plugged_in) or os.path.exists(hit.path)
    photo = hit.photo
    return {
        **photo,
        "score": hit.score,
        "view": hit.view,
        "online": online,
        "stack": stack_ref(stack),
        "taken": _taken(hit),
        "taken_from": "exif" if photo["taken_at"] > 0 else "file",
        "place": places.Place(photo["city"], photo["region"], photo["country"]).label(),
        "concepts": [concepts.concept_name(index) for index in photo["classes"]],
    }


def stack_ref(stack: Stack | None) -> StackRef | None:
    return None if stack is None else {"id": stack.id, "size": len(stack.members)}


def reading_reply(reading: words.Reading) -> ReadingReply:
    return {"words": reading.words, "kind": reading.kind, "meaning": reading.meaning}


@dataclass(frozen=True)
class _Asked:
    """A query as made once for its pages: the collection searched, the (expanded) vector."""

    store: Store
    vector: np.ndarray | None  # None: words or filters alone
    query: np.ndarray | None  # the photo's own vector: what a hit's score is measured against
    partial: UpgradeProgress | None


class Searcher:
    """Runs SearchQuery values on a Library's parts: which collection answers
    (``index_for``), a photo's query vector (``query_vector``), files' freshness (``stat``),
    how many views a photo has (``views``), stacks, and the upgrade under way."""

    def __init__(
        self,
        *,
        index_for: Callable[[PhotoFilter], tuple[Store, UpgradeProgress | None]],
        query_vector: Callable[[str, Store], np.ndarray],
        stat: Callable[[str], FileStat | None],
        views: Callable[[], int],
        stacks: Stacks,
        upgrade_status: Callable[[], UpgradeProgress | None],
        defaults: Callable[[], tuple[int, float]],  # the settings' top_k and min_score, read at each search
    ) -> None:
        self._index_for, self._query_vector, self._stat, self._views = index_for, query_vector, stat, views
        self._stacks, self._upgrade_status, self._defaults = stacks, upgrade_status, defaults
        # The last searches' query vectors (embedded, expanded), for their further pages:
        # keyed by the query file as it is, the collection searched, the filter and expand.
        self._queries: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._queries_lock = threading.Lock()

    def forget_queries(self) -> None:
        """Drop the kept query vectors (the index changed space: an upgrade finished)."""
        with self._queries_lock:
            self._queries.clear()

    @staticmethod
    def expands(store: Store) -> bool:
        """Whether a search of this index expands its query by default: on whitened vectors,
        where it measured better (bench/bench_whitening.py)."""
        from petwatch.embed import WHITENED_RECIPE

        return store.recipe == WHITENED_RECIPE

    # --- the query, made once ----------------------------------------------------------------
    def _ask(self, query: SearchQuery, depth: int, next_page: bool) -> _Asked:
        if not 1 <= depth <= MAX_TOP_K:
            raise PetwatchError(f"top-k must be between 1 and {MAX_TOP_K}, not {depth}")
        needs = replace(query.only, concepts=query.concepts)  # words alone rank on classes too
        store, partial = self._index_for(needs)
        if query.image is None:
            return _Asked(store, None, None, partial)
        expands = self.expands(store) if query.expand is None else query.expand
        path = os.path.abspath(query.image)
        file = self._stat(path)  # a changed file is a new query
        key = (path, file.size, file.mtime_ns, store.collection, store.recipe, query.only, expands) if file else None
        with self._queries_lock:
            kept = self._queries.get(key) if next_page and key else None
        if kept is None:
            own = self._query_vector(query.image, store)
            kept = (self._expanded(store, own, path, query.only) if expands else own, own)
        if key:
            with self._queries_lock:
                self._queries[key] = kept
                self._queries.move_to_end(key)
                while len(self._queries) > QUERIES_KEPT:
                    self._queries.popitem(last=False)
        return _Asked(store, kept[0], kept[1], partial)

    def _expanded(self, store: Store, vector: np.ndarray, query: str, only: PhotoFilter) -> np.ndarray:
        """The query expanded by its first hits: one search, which brings their vectors back."""
        hits = store.search(vector, EXPAND_TOP + 1, -1.0, only=only, with_vectors=True)
        known = [(h.vector, h.score) for h in hits if h.path != query and h.vector is not None][:EXPAND_TOP]
        if not known:
            return vector
        return expand_query(vector, np.stack([v for v, _ in known]), np.array([score for _, score in known]))

    # --- the hits ------------------------------------------------------------------------------
    def _nearest(self, asked: _Asked, query: SearchQuery, top_k: int, min_score: float) -> list[Hit]:
        """The ``top_k`` best photos, best first. By photo: ranked by the (expanded) vector,
        scored by cosine similarity to the photo itself. Words alone: by the mass on their
        classes. A filter alone: newest first, scored 0."""
        store, only = asked.store, query.only
        if only.photo_ids is not None and not only.photo_ids:
            return []  # a pet with no photo yet
        if asked.vector is None:
            if query.concepts:
                weights = {index: 1.0 for classes in query.concepts for index in classes}
                return [h for h in store.search_classes(weights, top_k, only) if h.score >= min_score]
            listed = store.filtered(only, FILTER_LIMIT)
            listed.sort(key=lambda h: (-_taken(h), h.path))
            return listed[:top_k]
        expanded = asked.vector is not asked.query
        views = self._views()
        rows = store.search(
            asked.vector,
            top_k * views,  # a photo has at most `views` rows: the top k * views rows hold the top k photos
            -1.0 if expanded else min_score,
            whole_image_only=views == 1,
            only=only,
            with_vectors=expanded,
        )
        own = unit_vector(asked.query) if expanded and asked.query is not None else None
        best: dict[str, Hit] = {}
        for hit in rows:  # rows come best first: a photo scores its best view
            if own is not None and hit.vector is not None:
                # The order is the expanded query's; the number is the similarity to the photo given.
                hit = replace(hit, score=min(1.0, float(hit.vector @ own)), vector=None)
                if hit.score < min_score:
                    continue
            best.setdefault(hit.path, hit)
        return list(best.values())[:top_k]

    def hits(self, query: SearchQuery) -> tuple[list[Hit], UpgradeProgress | None]:
        """The top-k hits of a query (no stacks, no paging) and the upgrade when only part of
        the library was searched: what tests and benchmarks look at."""
        top_k, min_score = self._settled(query)
        asked = self._ask(query, top_k, next_page=False)
        return self._nearest(asked, query, top_k, min_score), asked.partial

    def _settled(self, query: SearchQuery) -> tuple[int, float]:
        top_k, min_score = self._defaults()
        return query.top_k or top_k, min_score if query.min_score is None else query.min_score

    def reply(self, query: SearchQuery, folders: Sequence[str] = ()) -> SearchReply:
        """A search as the daemon answers it and ``search --json`` prints it, daemon or not:
        hits ``offset`` to ``offset + top_k``, each marked online when its file can be opened.
        With ``stacks``, a stack is one hit (its cover, or its best photo) and hits count tiles."""
        started = time.monotonic()
        plugged_in = [f for f in folders if os.path.isdir(f)]  # once per reply, not per hit
        top_k, min_score = self._settled(query)
        wanted = top_k + query.offset
        asked = self._ask(query, wanted, next_page=query.offset > 0)
        hits = self._nearest(asked, query, wanted, min_score)
        if query.stacks:
            tiles = self._stacks.collapse([(hit.path, hit.content_hash) for hit in hits])
            fetched = wanted
            # Collapsed members leave gaps: ask for more until there are enough tiles or no more
            # hits (the same query vector: nothing embedded or expanded again).
            while len(tiles) < wanted and len(hits) == fetched and fetched < STACK_FETCH_LIMIT:
                fetched = min(STACK_FETCH_LIMIT, fetched + 4 * (wanted - len(tiles)) + len(hits))
                hits = self._nearest(asked, query, fetched, min_score)
                tiles = self._stacks.collapse([(hit.path, hit.content_hash) for hit in hits])
            shown = [hit_reply(hits[index], plugged_in, stack) for index, stack in tiles]
        else:
            shown = [hit_reply(hit, plugged_in, self._stacks.stack_of(hit.content_hash)) for hit in hits]
        return {
            "query": os.path.abspath(query.image) if query.image else query.text,
            "hits": shown[query.offset : wanted],
            "took_ms": round((time.monotonic() - started) * 1000, 1),
            # Set while the index is upgraded: "partial" when only the photos upgraded so far
            # were searched (a filter the older index cannot answer), else the results come
            # from the complete older index.
            "upgrade": self._upgrade_status(),
            "partial": asked.partial is not None,
            "readings": [reading_reply(r) for r in query.readings],
        }


def _taken(hit: Hit) -> int:
    """When a hit was taken: its EXIF time, else its file's (a hit says which, ``taken_from``)."""
    return hit.photo["taken_at"] or hit.photo["mtime_ns"] // 1_000_000_000
