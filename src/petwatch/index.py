"""Keeping the store equal to the folders: walk, compare, embed what is new, drop what is gone.

The walk is the source of truth; anything else (watch events) only says where to look first.
A photo is embedded once per distinct content: a rename or a byte-identical copy reuses the
vector already stored for that content hash.

A file's way in (``Indexer.index_files``): stat, read, hash and claim its content, decode and
prepare its tensors (on a thread pool, a window of two batches ahead); the embedder's vectors
(as many batches at once as the engine runs side by side); then, a batch at a time and in
order, the rows, the store, the listeners, while the next batches embed.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import os
import sqlite3
import stat as stat_module
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

from petwatch import photos, places
from petwatch.embed import NO_SIGNAL, Embedding, EmbeddingModel, PetSignal, Prepared
from petwatch.errors import StoreFull, StoreRefused
from petwatch.filenames import is_under
from petwatch.protocol import PhotoRecord, ReportReply
from petwatch.state_db import StateTables
from petwatch.store import CatalogEntry, PhotoRow, Store

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (done, total, current path)


@dataclass
class IndexReport:
    indexed: int = 0  # embedded now
    reused: int = 0  # new path, known bytes (rename or copy): vector reused, not re-embedded
    unchanged: int = 0
    removed: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason (bad or unsupported file)
    failed: dict[str, str] = field(default_factory=dict)  # path -> reason (petwatch or DB error)
    offline: list[str] = field(default_factory=list)  # folders that are missing right now
    seconds: float = 0.0

    def merge(self, other: IndexReport) -> None:
        self.indexed += other.indexed
        self.reused += other.reused
        self.unchanged += other.unchanged
        self.removed += other.removed
        self.skipped.update(other.skipped)
        self.failed.update(other.failed)
        self.offline += [f for f in other.offline if f not in self.offline]
        self.seconds += other.seconds

    def to_dict(self) -> ReportReply:
        return {
            "indexed": self.indexed,
            "reused": self.reused,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "skipped": self.skipped,
            "failed": self.failed,
            "offline": self.offline,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class FileStat:
    path: str
    size: int
    mtime_ns: int


class FailureLog:
    """Files that could not be indexed, with why; retried only once the file changes."""

    def __init__(self, path: Path) -> None:
        tables = StateTables(
            path,
            "CREATE TABLE IF NOT EXISTS failures (path BLOB PRIMARY KEY, size INTEGER,"
            " mtime_ns INTEGER, reason TEXT, at REAL)",
        )
        self._db, self._lock = tables.db, tables.lock

    def record(self, stat: FileStat, reason: str) -> None:
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?)",
                    (os.fsencode(stat.path), stat.size, stat.mtime_ns, reason, time.time()),
                )
        except sqlite3.Error as error:  # disk full: the file is just tried again next time
            log.warning("could not record the failure of %s (%s): %s", stat.path, reason, error)

    def clear(self, paths: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM failures WHERE path = ?", [(os.fsencode(p),) for p in paths])

    def known(self) -> dict[str, tuple[int, int, str]]:
        with self._lock:
            rows = self._db.execute("SELECT path, size, mtime_ns, reason FROM failures").fetchall()
        return {os.fsdecode(path): (size, mtime, reason) for path, size, mtime, reason in rows}

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM failures").fetchone()[0]

    def close(self) -> None:
        self._db.close()


@functools.lru_cache(maxsize=1024)
def _place(gps: tuple[float, float] | None) -> places.Place:
    """Where a photo's GPS points, reverse-geocoded offline (once per spot however many views);
    every part "" where unknown."""
    return (places.place_at(*gps) if gps is not None else None) or places.Place("", "", "")


def failed_unchanged(known: dict[str, tuple[int, int, str]], stat: FileStat) -> str | None:
    """Why this file failed before, if it failed with these very bytes (same size and mtime):
    then it is not tried again until it changes."""
    earlier = known.get(stat.path)
    return earlier[2] if earlier and earlier[:2] == (stat.size, stat.mtime_ns) else None


class _Work:
    """One file on its way through read, decode and embed."""

    __slots__ = ("stat", "_photo", "copy_of_hash", "look")

    def __init__(self, stat: FileStat) -> None:
        self.stat = stat
        self._photo: photos.PhotoFile | None = None  # what was read of it (its bytes dropped)
        self.copy_of_hash: str | None = None  # its bytes are stored or embedded by another file
        self.look: photos.Look | None = None  # from the image decoded for the model (stacks)

    @property
    def was_read(self) -> bool:
        return self._photo is not None

    @property
    def photo(self) -> photos.PhotoFile:
        """What was read of the file; only asked of a file that was read."""
        if self._photo is None:
            raise RuntimeError(f"{self.stat.path} was not read")
        return self._photo

    @photo.setter
    def photo(self, photo: photos.PhotoFile) -> None:
        self._photo = photo


@dataclass(frozen=True)
class _Decoded:
    """A file out of the decode pool: its tensors, or None (a copy: no vector needed), or why not."""

    work: _Work
    prepared: Prepared | None
    error: str | None


def _decoded(work: _Work, future: Future[Prepared | None]) -> _Decoded:
    try:
        return _Decoded(work, future.result(), None)
    except photos.PhotoError as error:
        return _Decoded(work, None, str(error))
    except Exception as error:  # noqa: BLE001 - one bad file never stops a run
        return _Decoded(work, None, f"cannot decode: {error}")


def _decode_pipeline(
    works: Iterable[_Work], prepare: Callable[[_Work], Prepared | None], batch_size: int, threads: int
) -> Generator[list[_Decoded], None, None]:
    """``works`` in batches of ``batch_size``, in order, ``prepare`` running on a pool of
    ``threads`` meanwhile (the next batches decode while the consumer embeds this one).

    At most two batches of decoded images are held at once, whatever the input size. Closing
    the generator drops what was not yet handed out.
    """
    window = 2 * batch_size
    source = iter(works)
    with ThreadPoolExecutor(threads, thread_name_prefix="decode") as pool:
        pending: deque[tuple[_Work, Future[Prepared | None]]] = deque()

        def top_up() -> None:  # keep the decoders busy
            while len(pending) < window and (work := next(source, None)) is not None:
                pending.append((work, pool.submit(prepare, work)))

        top_up()
        while pending:
            batch: list[_Decoded] = []
            while pending and len(batch) < batch_size:
                batch.append(_decoded(*pending.popleft()))
                top_up()
            yield batch


def _embed_pipeline(
    batches: Iterable[list[_Decoded]],
    embed: Callable[[list[_Decoded]], dict[str, Embedding]],
    parallel_runs: Callable[[], int],
) -> Generator[tuple[list[_Decoded], dict[str, Embedding]], None, None]:
    """Each batch with its vectors, in order. ``parallel_runs()`` (asked at the first batch: a
    run with nothing to embed loads no model) above 1: that many batches embed at once on
    threads, the next ones while the consumer stores one; closing the generator drops the
    batches not yet started and waits for those running. 1 (torch, which spreads a batch over
    every core by itself): each batch embeds in turn on the consumer's thread, as always."""
    source = iter(batches)
    first = next(source, None)
    if first is None:
        return
    runs = parallel_runs()
    source = itertools.chain([first], source)
    if runs <= 1:
        for batch in source:
            yield batch, embed(batch)
        return
    pending: deque[tuple[list[_Decoded], Future[dict[str, Embedding]]]] = deque()
    pool = ThreadPoolExecutor(runs, thread_name_prefix="embed")

    def top_up() -> None:
        while len(pending) < runs and (batch := next(source, None)) is not None:
            pending.append((batch, pool.submit(embed, batch)))

    try:
        # numpy's BLAS on one thread meanwhile: with the cores busy running the network, a
        # BLAS call's helper threads (whitening's matrix product) wait for a core, then spin
        # on it after each call (a fifth of a profile's samples before this).
        with threadpool_limits(limits=1, user_api="blas"):
            top_up()
            while pending:
                batch, future = pending.popleft()
                top_up()  # the embedder never waits for the store
                yield batch, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Run:
    """What one ``index_files`` call keeps from batch to batch."""

    claimed: dict[str, _Work] = field(default_factory=dict)  # content hash -> the file embedding it
    claim_lock: threading.Lock = field(default_factory=threading.Lock)
    # Copies whose embedding file comes in a later batch wait for it here (decoding runs in
    # parallel, so the file that claimed a hash is not always the first in order).
    waiting: dict[str, list[_Work]] = field(default_factory=dict)
    source_errors: dict[str, str] = field(default_factory=dict)  # content hash -> why its file failed


@dataclass
class _Batch:
    """One batch's rows, ready for the store."""

    rows: list[PhotoRow] = field(default_factory=list)
    mirrored: list[PhotoRow] = field(default_factory=list)  # the same photos with the mirror's recipe
    embedded: int = 0
    reused: int = 0


class Indexer:
    """Compares folders with the store and brings the store up to date."""

    def __init__(
        self,
        store: Store,
        embedder: EmbeddingModel,
        failures: FailureLog,
        max_pixels: int = 180_000_000,
        draft_decode: bool = True,
        mirror: Indexer | None = None,
        decode_threads: int = 0,
    ) -> None:
        self.store = store
        # While this index is upgraded to a new embedding recipe, the upgrade's own indexer:
        # every photo stored or removed here is stored or removed there too, each with the
        # vector of its own recipe, so the new index never falls behind (library.Upgrade).
        self.mirror = mirror
        self.embedder = embedder
        self.failures = failures
        self.max_pixels = max_pixels
        self.draft_decode = draft_decode
        # Threads that read, decode and prepare photos while the embedder runs a batch.
        self.decode_threads = decode_threads or os.cpu_count() or 1
        self.catalog: dict[str, CatalogEntry] = dict(store.iter_catalog())
        self.paths_by_hash: dict[str, set[str]] = {}
        self._per_directory: dict[str, int] = {}  # indexed photos in each directory (folder_counts)
        for path, entry in self.catalog.items():
            self.paths_by_hash.setdefault(entry.content_hash, set()).add(path)
            self._per_directory[os.path.dirname(path)] = self._per_directory.get(os.path.dirname(path), 0) + 1
        self._lock = threading.Lock()
        self.last_write_error: Exception | None = None  # the last store write's failure; None once one succeeds

    # --- the walk ------------------------------------------------------------------------
    def walk(self, folder: str, report: IndexReport) -> dict[str, FileStat]:
        found: dict[str, FileStat] = {}

        def problem(path: Path, reason: str) -> None:
            report.skipped[str(path)] = reason

        for path, stat in photos.iter_photo_files(Path(folder), on_error=problem):
            found[str(path)] = FileStat(str(path), stat.st_size, stat.st_mtime_ns)
        return found

    def plan(self, folders: Sequence[str], report: IndexReport) -> tuple[list[FileStat], list[str]]:
        """(files to read, indexed paths that are gone) for these folders."""
        seen: dict[str, FileStat] = {}
        online: list[str] = []
        for folder in folders:
            if not os.path.isdir(folder):
                report.offline.append(folder)  # unplugged drive: keep its rows until it returns
                continue
            online.append(folder)
            seen.update(self.walk(folder, report))
        failed_before = self.failures.known()
        todo = self.to_read(seen.values(), report, failed_before)

        def vanished(path: str) -> bool:  # under a folder walked just now, and not found there
            return path not in seen and any(is_under(path, folder) for folder in online)

        # A bad file that is gone is no longer a failure: without this, one deleted (or
        # renamed) while the daemon was down stayed on the failure list for good.
        self.failures.clear([path for path in failed_before if vanished(path)])
        return todo, [path for path in self.catalog if vanished(path)]

    def to_read(
        self,
        files: Iterable[FileStat],
        report: IndexReport | None = None,
        failed: dict[str, tuple[int, int, str]] | None = None,
    ) -> list[FileStat]:
        """The one rule of "does this file need reading": not when it is indexed as it is now,
        nor when these very bytes failed before (indexed once or never: a changed file that
        fails is not read again on every hint). The report, if any, counts what is passed over."""
        failed = self.failures.known() if failed is None else failed
        todo = []
        for stat in files:
            entry = self.catalog.get(stat.path)
            if entry and entry.matches(stat):
                if report is not None:
                    report.unchanged += 1
            elif reason := failed_unchanged(failed, stat):
                if report is not None:
                    report.skipped[stat.path] = reason  # same bytes failed before: not retried
            else:
                todo.append(stat)
        return todo

    def reconcile(
        self,
        folders: Sequence[str],
        progress: Progress | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_stored: Callable[[list[PhotoRow]], None] | None = None,
        hold: Callable[[list[FileStat]], list[FileStat]] | None = None,
        on_removed: Callable[[dict[str, str]], None] | None = None,
    ) -> IndexReport:
        """Walk ``folders``: embed what is new or changed, drop what is gone. ``hold`` returns
        the files that may be read now; the caller keeps the rest (a watcher settles files
        still being written). ``on_removed`` gets the paths dropped, with their content hashes."""
        started = time.monotonic()
        report = IndexReport()
        todo, gone = self.plan([os.path.abspath(f) for f in folders], report)
        if hold is not None:
            todo = hold(todo)
        # New paths first: a rename then finds its bytes still stored and reuses the vector.
        report.merge(self.index_files(todo, progress, should_stop, on_stored))
        if not should_stop():
            hashes = {p: entry.content_hash for p in gone if (entry := self.catalog.get(p)) is not None}
            removed = self.remove(list(hashes))
            if removed and on_removed is not None:
                on_removed(hashes)
            report.removed += removed
        report.seconds = time.monotonic() - started
        return report

    # --- changes -------------------------------------------------------------------------
    def remove(self, paths: Iterable[str]) -> int:
        paths = [p for p in paths if p in self.catalog]
        if not paths:
            return 0
        try:
            self.store.delete_paths(paths)
        except StoreRefused as error:  # kept in the catalog: the walk once writes return drops them
            self._write_failed(error)
            return 0
        self.last_write_error = None
        with self._lock:
            for path in paths:
                entry = self.catalog.pop(path)
                self._count_in_directory(path, -1)
                same = self.paths_by_hash.get(entry.content_hash)
                if same:
                    same.discard(path)
                    if not same:
                        del self.paths_by_hash[entry.content_hash]
        self.failures.clear(paths)
        if self.mirror is not None:
            self.mirror.remove(paths)
        return len(paths)

    def stat(self, path: str) -> FileStat | None:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        if not stat_module.S_ISREG(st.st_mode):  # as the walk: a pipe or device named .jpg is no photo
            return None
        return FileStat(path, st.st_size, st.st_mtime_ns)

    def index_files(
        self,
        files: Sequence[FileStat],
        progress: Progress | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_stored: Callable[[list[PhotoRow]], None] | None = None,
    ) -> IndexReport:
        """Read, embed and store these files, one batch at a time (a batch is the unit of work:
        a stop finishes the batch being stored and drops the rest). ``on_stored`` gets each
        batch's stored rows (every view, vectors included)."""
        started = time.monotonic()  # the daemon's hinted files are reported with this alone
        report = IndexReport()
        if not files:
            return report  # nothing to embed: no model loaded for it (library.LazyModel)
        run = _Run()
        if progress:
            progress(0, len(files), "")  # the work starts now: rates count from here
        done = 0
        decoded = _decode_pipeline(
            (_Work(stat) for stat in files),
            lambda work: self._read(work, run),
            self.embedder.batch_size,
            self.decode_threads,
        )
        embedded = _embed_pipeline(decoded, self._embed, lambda: self.embedder.parallel_runs)
        try:
            for batch, fresh in embedded:
                batch_rows = self._batch_rows(batch, fresh, run, report)
                full = self._store(batch_rows, report, on_stored)
                done += len(batch)
                if progress:
                    progress(done, len(files), batch[-1].work.stat.path)
                if should_stop() or full:
                    break  # finish this batch, drop the rest: the next walk resumes
        finally:
            embedded.close()
            decoded.close()
        for works in run.waiting.values():  # only after a stop: their source was never reached
            for work in works:
                report.failed[work.stat.path] = "not indexed: stopped before its content was embedded"
        report.seconds = time.monotonic() - started
        return report

    def _read(self, work: _Work, run: _Run) -> Prepared | None:
        """On a decode thread: stat, read, hash and claim the content, decode and prepare. None
        for a copy of bytes that are stored or claimed already: no vector needed."""
        # Stat right before reading: what is stored is never newer than what was read.
        fresh = self.stat(work.stat.path)
        if fresh is None:
            raise photos.PhotoError("file vanished before it could be read")
        work.stat = fresh
        photo = photos.read_photo(fresh.path, self.max_pixels)
        work.photo = dataclasses.replace(photo, data=b"")
        with run.claim_lock:
            if photo.content_hash in self.paths_by_hash or photo.content_hash in run.claimed:
                work.copy_of_hash = photo.content_hash
                return None
            run.claimed[photo.content_hash] = work
        image, work.look = self.decode(photo)  # the one decode serves stacks too
        return self.embedder.prepare(image)

    @property
    def decode_min_side(self) -> int | None:
        """The shorter side a photo is draft-decoded to for the model (None: decoded whole).
        Read from the embedder when a photo is decoded, not before: a walk that finds nothing
        to embed does not load the model (library.LazyModel)."""
        return self.embedder.decode_min_side if self.draft_decode else None

    def decode(self, photo: photos.PhotoFile) -> tuple[Image.Image, photos.Look]:
        """A photo decoded for the model, and its look (stacks) from that same decode."""
        image = photos.decode(photo, self.decode_min_side)
        return image, photos.look(image, photo)

    def _embed(self, batch: list[_Decoded]) -> dict[str, Embedding]:
        """The batch's prepared tensors through the embedder: content hash -> its vectors."""
        hashes: list[str] = []
        prepared: list[Prepared] = []
        for item in batch:
            if item.prepared is not None:
                hashes.append(item.work.photo.content_hash)
                prepared.append(item.prepared)
        return dict(zip(hashes, self.embedder.embed_prepared(prepared), strict=True))

    def _batch_rows(self, batch: list[_Decoded], fresh: dict[str, Embedding], run: _Run, report: IndexReport) -> _Batch:
        """The rows of a batch's photos and of the copies whose content is known by now; the
        failures recorded; copies of a content still to come left waiting in ``run``."""
        out = _Batch()
        now = int(time.time())
        copies: list[tuple[str, _Work]] = []  # (content hash, the copy)
        for item in batch:
            work = item.work
            if item.error is not None:
                self._skip(work, item.error, report)
                if work.was_read and run.claimed.get(digest := work.photo.content_hash) is work:
                    run.source_errors[digest] = item.error
                    for copy in run.waiting.pop(digest, []):
                        self._skip(copy, item.error, report)
                continue
            if work.copy_of_hash is not None:
                copies.append((work.copy_of_hash, work))
                continue
            digest = work.photo.content_hash
            self._add_rows(out, work, fresh[digest], now)
            out.embedded += 1
            copies.extend((digest, copy) for copy in run.waiting.pop(digest, []))
        for digest, work in copies:
            if digest in run.source_errors:
                self._skip(work, run.source_errors[digest], report)
            elif digest in fresh:
                self._add_rows(out, work, fresh[digest], now)
                out.reused += 1
            elif digest in self.paths_by_hash and (stored := self.store.rows_for_hash(digest)):
                out.rows.extend(self._copy(work, row, now) for row in stored)
                if self.mirror is not None:  # else the upgrade embeds it in its turn
                    mirror_rows = self.mirror.store.rows_for_hash(digest)
                    out.mirrored.extend(self._copy(work, row, now) for row in mirror_rows)
                out.reused += 1
            else:
                run.waiting.setdefault(digest, []).append(work)
        return out

    def _add_rows(self, out: _Batch, work: _Work, embedding: Embedding, now: int) -> None:
        out.rows.extend(self._rows(work, embedding, now))
        if self.mirror is not None:
            out.mirrored.extend(self.mirror._rows(work, embedding, now))

    def _store(self, batch: _Batch, report: IndexReport, on_stored: Callable[[list[PhotoRow]], None] | None) -> bool:
        """Write a batch's rows (and the mirror's), then tell ``on_stored``. True when the disk
        is full or the server down: the run stops, since what cannot be stored need not be
        embedded either."""
        try:
            self.store.upsert(batch.rows)
        except Exception as error:  # noqa: BLE001 - the DB refused (disk full, server down)
            for row in batch.rows:
                report.failed[row.path] = f"could not write to the index: {error}"
            self._write_failed(error)
            # The rest waits for the walk that runs once space is back (Daemon._clock_loop).
            return isinstance(error, StoreRefused)
        if batch.rows:
            self.last_write_error = None
        self._write_mirror(batch.mirrored)
        report.indexed += batch.embedded
        report.reused += batch.reused
        self._remember(batch.rows)
        if on_stored and batch.rows:
            on_stored(batch.rows)
        return False

    @property
    def write_error(self) -> str | None:
        """Why the last write to the store failed; None once one succeeds."""
        return None if self.last_write_error is None else str(self.last_write_error)

    @property
    def write_refused(self) -> bool:
        """The last write was refused because the local disk is full or read-only (StoreFull)."""
        return isinstance(self.last_write_error, StoreFull)

    @property
    def write_paused(self) -> bool:
        """The last write was refused for a reason that clears by itself (StoreRefused: disk
        full or read-only, or the server down)."""
        return isinstance(self.last_write_error, StoreRefused)

    def _write_failed(self, error: Exception) -> None:
        if self.write_error != str(error):  # logged once, not once per batch
            log.error("index write failed: %s", error)
        self.last_write_error = error

    def _skip(self, work: _Work, reason: str, report: IndexReport) -> None:
        report.skipped[work.stat.path] = reason
        self.failures.record(work.stat, reason)

    def _write_mirror(self, rows: list[PhotoRow]) -> None:
        if self.mirror is None or not rows:
            return
        try:
            self.mirror.store.upsert(rows)
        except Exception as error:  # noqa: BLE001 - the upgrade embeds them again in its turn
            log.warning("could not add %d photos to the index being upgraded: %s", len(rows), error)
            return
        self.mirror._remember(rows)

    def _row(self, work: _Work, vector: np.ndarray, now: int, view: int = 0, pet: PetSignal = NO_SIGNAL) -> PhotoRow:
        photo = work.photo
        where = _place(photo.gps)
        record: PhotoRecord = {
            "path": work.stat.path,
            "content_hash": photo.content_hash,
            "size": work.stat.size,
            "mtime_ns": work.stat.mtime_ns,
            "width": photo.width,
            "height": photo.height,
            "taken_at": photo.taken_at,
            "indexed_at": now,
            "pet_score": pet.pet_score,
            "species": pet.species,
            "label": pet.label,
            "camera": photo.camera,
            "city": where.city,
            "region": where.region,
            "country": where.country,
            "classes": dict(pet.classes),
        }
        return PhotoRow(record, vector, view, look=work.look)

    def _rows(self, work: _Work, embedding: Embedding, now: int) -> list[PhotoRow]:
        """A photo's rows in this index's recipe: view 0, then the region views (1, 2, ...)
        when the embedder makes them."""
        vectors = embedding.vectors_for(self.store.recipe)
        return [self._row(work, vector, now, n, embedding.pet) for n, vector in enumerate(vectors)]

    def _copy(self, work: _Work, row: PhotoRow, now: int) -> PhotoRow:
        """A stored row's vector and pet fields under this file's path (a rename or a copy)."""
        classes = tuple(row.photo["classes"].items())
        signal = PetSignal(row.photo["pet_score"], row.photo["species"], row.photo["label"], classes)
        return self._row(work, row.vector, now, row.view, signal)

    def adopt(self, rows: list[PhotoRow]) -> None:
        """Store rows made without reading their files (an upgrade that derives its vectors
        from another index's) and count their photos as indexed."""
        self.store.upsert(rows)
        self._remember(rows)

    def _remember(self, rows: list[PhotoRow]) -> None:
        with self._lock:
            for row in rows:
                if row.view != 0:
                    continue
                old = self.catalog.get(row.path)
                if old and old.content_hash != row.content_hash:
                    self.paths_by_hash.get(old.content_hash, set()).discard(row.path)
                if old is None:
                    self._count_in_directory(row.path, 1)
                self.catalog[row.path] = CatalogEntry(row.photo["size"], row.photo["mtime_ns"], row.content_hash)
                self.paths_by_hash.setdefault(row.content_hash, set()).add(row.path)
        self.failures.clear(row.path for row in rows)

    def _count_in_directory(self, path: str, change: int) -> None:
        """Keep the photos per directory as the catalog changes (under the lock)."""
        directory = os.path.dirname(path)
        left = self._per_directory.get(directory, 0) + change
        if left > 0:
            self._per_directory[directory] = left
        else:
            self._per_directory.pop(directory, None)

    def folder_counts(self, folders: Sequence[str]) -> dict[str, int]:
        """Indexed photos under each folder, from the photos per directory kept as they change:
        status asks often, and each photo against each folder cost photos x folders prefix tests
        (~0.2-0.4 s for 100k photos in 5 folders, on every status)."""
        with self._lock:
            per_directory = list(self._per_directory.items())
        counts = dict.fromkeys(folders, 0)
        for directory, photos_there in per_directory:
            for folder in folders:  # a folder inside another counts toward both, as it always did
                if is_under(directory, folder):
                    counts[folder] += photos_there
        return counts
