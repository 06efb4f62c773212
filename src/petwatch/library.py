"""The opened photo library: model, store and indexer together, as one process owns them.

The daemon holds one Library for its lifetime; without a daemon, the CLI opens one for a
single command. Nothing else opens the Milvus Lite DB.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from petwatch import locations, photos
from petwatch.embed import CAT, DOG, PET_FOCUS_RECIPE, WHOLE_RECIPE, Embedder, PetFocus
from petwatch.errors import PetwatchError
from petwatch.index import FailureLog, FileStat, Indexer, IndexReport, Progress, failed_unchanged
from petwatch.protocol import PET_SPECIES
from petwatch.settings import Settings
from petwatch.store import CatalogEntry, Hit, PhotoRow, Store, petwatch_collections

log = logging.getLogger(__name__)
MAX_TOP_K = 1000
UPGRADE_STEP = 64  # photos per upgrade step: new photos wait at most one step to be indexed
SPECIES_COUNT_SECONDS = 10.0


def open_embedder(settings: Settings, recipes: Sequence[str | None] = ()) -> Embedder:
    """The settings' model; with pet focus where the settings ask for it or an index being
    upgraded holds pet-focused vectors (the queries for it need them)."""
    focus = settings.pet_focus or PET_FOCUS_RECIPE in recipes
    return Embedder(
        settings.model,
        settings.model_weights,
        settings.device,
        settings.batch_size,
        settings.decode_threads,
        settings.region_views,
        settings.precision,
        PetFocus() if focus else None,
    )


def collection_name(base: str, recipe: str) -> str:
    """Collections are named by recipe: an upgrade builds the new one beside the old."""
    return f"{base}_{recipe}"


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


@dataclass
class Stats:
    photos: int
    model: str
    dim: int
    db: str
    db_bytes: int | None
    failures: int
    dogs: int
    cats: int
    recipe: str
    upgrade: dict | None

    def to_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class Found:
    """A search's hits, and whether they come from an index still being upgraded."""

    hits: list[Hit]
    partial: dict | None = None  # Upgrade.status() when only part of the library was searched


class Upgrade:
    """Re-embeds the photos of an older index into the collection of the current recipe.

    Its indexer receives every change the main one makes (``Indexer.mirror``); ``step``
    embeds the photos it does not hold yet, a few at a time, so the daemon stays responsive.
    """

    def __init__(self, indexer: Indexer, source: Indexer) -> None:
        self.indexer, self.source = indexer, source

    def pending(self) -> list[str]:
        """Photos of the older index not yet in the new one."""
        done = self.indexer.catalog
        return [path for path in list(self.source.catalog) if path not in done]

    def status(self) -> dict:
        total = len(self.source.catalog)
        return {
            "from": self.source.store.recipe or WHOLE_RECIPE,
            "to": self.indexer.store.recipe,
            "done": total - len(self.pending()),
            "total": total,
        }

    def step(
        self, limit: int, progress: Progress | None = None, should_stop: Callable[[], bool] = lambda: False
    ) -> tuple[IndexReport, bool]:
        """Embed up to ``limit`` pending photos; (report, whether nothing is left to embed).
        A photo that cannot be read now (an offline folder) waits; one that fails is
        recorded as a failure, as a new photo would be."""
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


class Library:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        started = time.monotonic()
        uri, token, base = settings.effective_milvus_uri, settings.milvus_token, settings.collection
        found = petwatch_collections(uri, token)
        target_recipe = PET_FOCUS_RECIPE if settings.pet_focus else WHOLE_RECIPE
        source, stale = plan_collections(found, base, collection_name(base, target_recipe))
        source_recipe = found[source].get("recipe") if source else None
        self.embedder = embedder or open_embedder(settings, [source_recipe] if source else [])
        if not self.embedder.pet_focus:
            target_recipe = WHOLE_RECIPE  # a model without an ImageNet classifier: no pet focus
            source, stale = plan_collections(found, base, collection_name(base, target_recipe))
        self.failures = FailureLog(locations.state_db())
        identity, dim = self.embedder.identity, self.embedder.dim
        # The older index first: a different model is refused before anything is made.
        older = Store(uri, source, identity, dim, token, create=False) if source else None
        for name in stale:
            log.info("dropping %s, left by an upgrade that did not finish", name)
            Store.drop_named(uri, token, name)
        store = Store(
            uri, collection_name(base, target_recipe), identity, dim, token, recipe=target_recipe, upgrading_from=source
        )
        indexer = self._indexer(store)
        self.upgrade: Upgrade | None = None
        self._species_counts: tuple[tuple[str, int, int, int], dict[str, int]] | None = None
        if older is None:
            self.store, self.indexer = store, indexer
        else:
            self.store, self.indexer = older, self._indexer(older, mirror=indexer)
            self.upgrade = Upgrade(indexer, self.indexer)
            log.info(
                "upgrading the index from %s to %s vectors in the background: %s",
                older.recipe or WHOLE_RECIPE,
                target_recipe,
                self.upgrade.status(),
            )
        log.info(
            "library open: %d photos, model %s, %.1fs",
            len(self.indexer.catalog),
            self.identity,
            time.monotonic() - started,
        )

    def _indexer(self, store: Store, mirror: Indexer | None = None) -> Indexer:
        return Indexer(
            store,
            self.embedder,
            self.failures,
            self.settings.max_image_pixels,
            self.settings.draft_decode,
            mirror=mirror,
        )

    @property
    def identity(self) -> str:
        """What made the vectors searches use: the model, and the serving index's recipe."""
        return f"{self.embedder.identity}/{self.store.recipe or WHOLE_RECIPE}"

    def close(self) -> None:
        self.store.close()  # one connection per URI: this closes an upgrade's store too
        self.failures.close()

    # --- freshness -------------------------------------------------------------------------
    def entry(self, path: str) -> CatalogEntry | None:
        """The indexed photo at ``path`` (its size, mtime and hash when indexed), or None."""
        return self.indexer.catalog.get(os.path.abspath(path))

    def is_current(self, path: str) -> bool:
        """Whether ``path`` is indexed and unchanged since (same size and mtime)."""
        entry = self.entry(path)
        return entry is not None and entry.matches(self.indexer.stat(os.path.abspath(path)))

    # --- the upgrade -----------------------------------------------------------------------
    def upgrade_status(self) -> dict | None:
        return None if self.upgrade is None else self.upgrade.status()

    def upgrade_step(
        self,
        limit: int = UPGRADE_STEP,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] = lambda: False,
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
        older.drop()  # not closed: its connection is the new index's too (one per URI)
        log.info("index upgraded to %s vectors: %d photos", self.store.recipe, len(self.indexer.catalog))

    def run_upgrade(
        self, progress: Progress | None = None, should_stop: Callable[[], bool] = lambda: False
    ) -> IndexReport:
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

    # --- search --------------------------------------------------------------------------
    def _index_for(self, species: Sequence[str] | None) -> tuple[Store, dict | None]:
        """The collection a search uses: the serving one, or, for a species filter while the
        older index (which has no species) is upgraded, the new one, partial as it is."""
        if species and self.upgrade is not None and not self.store.has_pet_fields:
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
            image = photos.open_upright(
                path,
                self.settings.max_image_pixels,
                self.embedder.decode_min_side if self.settings.draft_decode else None,
            )
        except photos.PhotoError as error:
            raise PetwatchError(f"cannot use {image_path} as a query: {error}") from None
        focused, whole = self.embedder.embed_query(image)
        return whole if store.recipe in (None, WHOLE_RECIPE) else focused

    def find(
        self,
        image_path: str,
        top_k: int | None = None,
        min_score: float | None = None,
        species: Sequence[str] | None = None,
    ) -> Found:
        """The photos most like ``image_path``, best first (of these species, when given)."""
        top_k = top_k or self.settings.top_k
        if not 1 <= top_k <= MAX_TOP_K:
            raise PetwatchError(f"top-k must be between 1 and {MAX_TOP_K}, not {top_k}")
        min_score = self.settings.min_score if min_score is None else min_score
        store, partial = self._index_for(species)
        vector = self.query_vector(image_path, store)
        if self.embedder.views == 1:
            return Found(store.search(vector, top_k, min_score, species=species), partial)
        # Region views: a photo scores its best view. It has at most `views` rows, so the
        # top k * views rows hold the top k photos.
        best: dict[str, Hit] = {}
        for hit in store.search(
            vector, top_k * self.embedder.views, min_score, whole_image_only=False, species=species
        ):
            best.setdefault(hit.path, hit)  # rows come best first
        return Found(list(best.values())[:top_k], partial)

    def search(
        self,
        image_path: str,
        top_k: int | None = None,
        min_score: float | None = None,
        species: Sequence[str] | None = None,
    ) -> list[Hit]:
        return self.find(image_path, top_k, min_score, species).hits

    def pet_rows(self) -> Iterator[PhotoRow]:
        """Every photo that shows a pet, with its vector (none from an index older than species)."""
        if self.store.has_pet_fields:
            yield from self.store.iter_rows(PET_SPECIES)

    def species_counts(self) -> dict[str, int]:
        """Photos that show a dog, and a cat (from the new index while an older one is upgraded:
        the older one has no species). Cached briefly: status asks often."""
        counted, _partial = self._index_for([DOG])
        upgraded = len(self.upgrade.indexer.catalog) if self.upgrade is not None else -1
        key = (counted.collection, len(self.indexer.catalog), upgraded, int(time.monotonic() // SPECIES_COUNT_SECONDS))
        if self._species_counts is None or self._species_counts[0] != key:
            try:
                counts = {name: counted.count([name]) if counted.has_pet_fields else 0 for name in (DOG, CAT)}
            except PetwatchError:  # a server gone: status must still answer, with what it knew
                return self._species_counts[1] if self._species_counts else {DOG: 0, CAT: 0}
            self._species_counts = (key, counts)
        return self._species_counts[1]

    def stats(self) -> Stats:
        counts = self.species_counts()
        return Stats(
            photos=len(self.indexer.catalog),
            model=self.embedder.name,
            dim=self.embedder.dim,
            db=self.store.uri if not self.store.is_lite else str(Path(self.store.uri)),
            db_bytes=self.store.disk_bytes(),
            failures=self.failures.count(),
            dogs=counts[DOG],
            cats=counts[CAT],
            recipe=self.store.recipe or WHOLE_RECIPE,
            upgrade=self.upgrade_status(),
        )
