"""The opened photo library: model, store and indexer together, as one process owns them.

The daemon holds one Library for its lifetime; without a daemon, the CLI opens one for a
single command. Nothing else opens the Milvus Lite DB.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from petwatch import locations, photos
from petwatch.embed import Embedder
from petwatch.errors import PetwatchError
from petwatch.index import FailureLog, Indexer
from petwatch.settings import Settings
from petwatch.store import Hit, Store

log = logging.getLogger(__name__)
MAX_TOP_K = 1000


@dataclass
class Stats:
    photos: int
    model: str
    dim: int
    db: str
    db_bytes: int | None
    failures: int

    def to_dict(self) -> dict:
        return self.__dict__.copy()


class Library:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        started = time.monotonic()
        self.embedder = embedder or Embedder(
            settings.model, settings.model_weights, settings.device,
            settings.batch_size, settings.decode_threads, settings.region_views, settings.precision,
        )
        self.store = Store(settings.effective_milvus_uri, settings.collection,
                           self.embedder.identity, self.embedder.dim, settings.milvus_token)
        self.failures = FailureLog(locations.state_db())
        self.indexer = Indexer(self.store, self.embedder, self.failures,
                               settings.max_image_pixels, settings.draft_decode)
        log.info("library open: %d photos, model %s, %.1fs", len(self.indexer.catalog),
                 self.embedder.identity, time.monotonic() - started)

    def close(self) -> None:
        self.store.close()
        self.failures.close()

    # --- search --------------------------------------------------------------------------
    def query_vector(self, image_path: str) -> np.ndarray:
        """The vector of an indexed photo when it is unchanged, else embedded from the file."""
        path = os.path.abspath(image_path)
        entry = self.indexer.catalog.get(path)
        if entry is not None:
            current = self.indexer.stat(path)
            if current and (current.size, current.mtime_ns) == (entry.size, entry.mtime_ns):
                row = self.store.get(path)
                if row is not None:
                    return row.vector
        try:
            image = photos.open_upright(path, self.settings.max_image_pixels,
                                        self.embedder.decode_min_side if self.settings.draft_decode else None)
        except photos.PhotoError as error:
            raise PetwatchError(f"cannot use {image_path} as a query: {error}") from None
        return self.embedder.embed_images([image])[0]

    def search(self, image_path: str, top_k: int | None = None, min_score: float | None = None) -> list[Hit]:
        top_k = top_k or self.settings.top_k
        if not 1 <= top_k <= MAX_TOP_K:
            raise PetwatchError(f"top-k must be between 1 and {MAX_TOP_K}, not {top_k}")
        min_score = self.settings.min_score if min_score is None else min_score
        vector = self.query_vector(image_path)
        if self.embedder.views == 1:
            return self.store.search(vector, top_k, min_score)
        # Region views: a photo scores its best view. It has at most `views` rows, so the
        # top k * views rows hold the top k photos.
        best: dict[str, Hit] = {}
        for hit in self.store.search(vector, top_k * self.embedder.views, min_score, whole_image_only=False):
            best.setdefault(hit.path, hit)  # rows come best first
        return list(best.values())[:top_k]

    def stats(self) -> Stats:
        return Stats(
            photos=len(self.indexer.catalog), model=self.embedder.name, dim=self.embedder.dim,
            db=self.store.uri if not self.store.is_lite else str(Path(self.store.uri)),
            db_bytes=self.store.disk_bytes(), failures=self.failures.count(),
        )
