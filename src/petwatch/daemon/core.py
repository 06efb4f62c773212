"""The daemon's state and work: one worker thread applies changes to the library in order.

Everything that changes the index (walks, watch hints, folder changes, CLI index requests)
goes through one queue, so the store is written by one thread at a time.

A photo that disappears is dropped at once only when another path still holds its bytes
(a rename: the vector lives on); otherwise it is dropped after a short grace, so that the
other half of a move (between two watched folders, or out and back in) finds its vector
still stored and reuses it instead of embedding the photo again.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from petwatch import __version__, locations, photos
from petwatch import settings as settings_module
from petwatch.daemon.comic_jobs import ComicJobs
from petwatch.daemon.comic_routes import ComicsFeature
from petwatch.daemon.config_watch import ConfigWatch
from petwatch.daemon.discovery_routes import DiscoveryFeature
from petwatch.daemon.events import EventBus
from petwatch.daemon.features import Feature
from petwatch.daemon.pet_routes import PetsFeature
from petwatch.daemon.stack_routes import StacksFeature
from petwatch.discovery import Discovery
from petwatch.endpoints import SearchRequest
from petwatch.errors import PetwatchError
from petwatch.filenames import is_under
from petwatch.index import IndexReport
from petwatch.library import Library
from petwatch.pets import Pets
from petwatch.protocol import (
    CAT,
    DOG,
    Event,
    FailureReply,
    FolderReply,
    PhotoReply,
    ProgressReply,
    SearchReply,
    StatusReply,
    WordsReply,
)
from petwatch.search import query_from
from petwatch.settings import Settings
from petwatch.store import PhotoRow
from petwatch.watch import Sink, Watcher

log = logging.getLogger(__name__)

MAX_FILES_PER_BATCH = 2000
THUMBNAIL_SIZES = (128, 256, 512, 1024)
FOLDER_CHECK_SECONDS = 2.0  # how soon a vanished or returned folder is noticed
REMOVE_GRACE_SECONDS = 2.0  # on top of settle_seconds: the other half of a move arrives first
WRITE_RETRY_SECONDS = 10.0  # after a failed index write, how often a walk may retry it


@dataclass
class _Task:
    kind: str  # "reconcile" | "files" | "tree" | "remove_folder"
    folders: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    done: Future | None = None


@dataclass
class _Progress:
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    current: str = ""

    def to_dict(self) -> ProgressReply:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else None
        return {
            "done": self.done,
            "total": self.total,
            "rate": round(rate, 2),
            "eta_s": round(eta, 1) if eta is not None else None,
            "current": self.current,
        }


class Daemon:
    def __init__(self, settings: Settings, library: Library | None = None) -> None:
        self.settings = settings
        self.started = time.monotonic()
        self.bus = EventBus()
        comics = ComicJobs(settings, self.bus)  # comic jobs: their own worker thread
        self.library = library or Library(settings)
        pets = self.pets = Pets(self.library, locations.state_db())
        # Each feature hears what happens to the library, in this order (daemon/features.py), and
        # api.create_app serves its routes: one more is appended before create_app and start().
        # Stacks are the Library's own, kept current with or without a daemon (a search from the
        # CLI shows a burst once too): the daemon only serves them.
        self.features: list[Feature] = [
            PetsFeature(pets, self.bus),
            DiscoveryFeature(Discovery(self.library, locations.state_db(), self.bus.publish), pets),
            ComicsFeature(comics),
            StacksFeature(self.library),
        ]
        self.library.listen(stored=self._on_stored, removed=self._on_removed)
        self.folders: list[str] = [str(f) for f in settings.folders]
        self._tasks: queue.Queue[_Task] = queue.Queue()
        self._stopping = threading.Event()
        self._busy = False
        self.progress: _Progress | None = None
        self.watcher = Watcher(Sink(self._hint_files, self._hint_tree), settings.settle_seconds, settings.poll_seconds)
        self._worker = threading.Thread(target=self._work_loop, name="indexer", daemon=True)
        self._clock = threading.Thread(target=self._clock_loop, name="clock", daemon=True)
        self._last_walk = time.monotonic()  # the walk start() asks for counts: no second one at once
        self._folder_modes: dict[str, str] = {}
        self._removals: dict[str, float] = {}  # path -> when to drop it if still missing
        self._grace = settings.settle_seconds + REMOVE_GRACE_SECONDS
        self._last_write_retry = 0.0
        self._upgrade_paused = False  # until the next walk: what is left of an upgrade can't be read
        self._backfill_left = True  # photos indexed before stacks may be waiting for their look
        self._server_problem: str | None = None  # a Milvus server not answering, checked by the clock
        self.config = ConfigWatch(settings)  # an edited config file: applied, or reported

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self.watcher.start()
        for folder in self.folders:
            self._watch(folder)
        self._worker.start()
        self._clock.start()
        for feature in self.features:
            feature.start()
        self.request_reconcile()

    def stop(self) -> None:
        """Finish the batch in flight, drop the rest (the next start's walk picks it up)."""
        self._stopping.set()
        self.watcher.stop()
        for feature in self.features:
            feature.stopping()  # comics: their worker stops taking jobs
        if self._worker.is_alive():
            self._worker.join(timeout=20)
        while True:  # requests still waiting get an answer instead of hanging
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task.done and not task.done.done():
                task.done.set_exception(
                    PetwatchError("the daemon stopped before this was done; start it again and it resumes")
                )
        # Last started, first closed: discovery waits for a clustering under way (it reads the
        # library and the pets) before the pets' database closes.
        for feature in reversed(self.features):
            feature.close()
        if not self._worker.is_alive():
            self.library.close()

    def _watch(self, folder: str) -> None:
        polling = any(is_under(folder, str(p)) for p in self.settings.poll_folders)
        mode = self.watcher.watch(folder, polling=polling)
        self._folder_modes[folder] = mode
        if mode == "offline":
            log.warning("folder %s is missing (unplugged?); its photos stay indexed, marked offline", folder)

    # --- hints from the watcher (any thread) ------------------------------------------------
    def _hint_files(self, paths: list[str]) -> None:
        self._tasks.put(_Task("files", paths=paths))

    def _hint_tree(self, added: list[str], removed: list[str]) -> None:
        self._tasks.put(_Task("tree", folders=added, removed=removed))

    # --- requests (API threads) -----------------------------------------------------------
    def request_reconcile(self, folders: list[str] | None = None) -> Future:
        done: Future = Future()
        self._tasks.put(_Task("reconcile", folders=folders or [], done=done))
        return done

    def rescan(self) -> Future:
        """Re-read the folder list from the config (hand edits count), then walk everything."""
        try:
            fresh = settings_module.load()
            self._set_folders([str(f) for f in fresh.folders])
        except PetwatchError as error:
            log.warning("config not re-read: %s", error)
        return self.request_reconcile()

    def add_folder(self, path: str) -> list[FolderReply]:
        folder = os.path.abspath(os.path.expanduser(path))
        if not os.path.isdir(folder):
            raise PetwatchError(f"{folder} is not a directory")
        if folder in self.folders:
            return self.folder_list()
        for existing in self.folders:
            if is_under(folder, existing):
                raise PetwatchError(f"{folder} is already watched as part of {existing}")
        self._set_folders([*self.folders, folder], persist=True)
        self.request_reconcile([folder])
        return self.folder_list()

    def remove_folder(self, path: str) -> list[FolderReply]:
        folder = os.path.abspath(os.path.expanduser(path))
        if folder not in self.folders:
            raise PetwatchError(f"{folder} is not a watched folder (see `petwatch folders list`)")
        self._set_folders([f for f in self.folders if f != folder], persist=True)
        self._tasks.put(_Task("remove_folder", folders=[folder]))
        return self.folder_list()

    def _apply_config_folders(self, folders: list[str] | None) -> None:
        """Folders edited in the config file by hand: as `petwatch folders add/remove` would."""
        if folders is None or folders == self.folders:
            return  # unchanged, or the daemon's own write
        new = [f for f in folders if f not in self.folders]
        gone = [f for f in self.folders if f not in folders]
        log.info("config file changed: folders now %s", ", ".join(folders) or "none")
        self._set_folders(folders)
        for folder in gone:
            self._tasks.put(_Task("remove_folder", folders=[folder]))
        if new:
            self.request_reconcile(new)

    def _set_folders(self, folders: list[str], persist: bool = False) -> None:
        if persist:
            settings_module.update_config_file(folders=folders)
        for gone in set(self.folders) - set(folders):
            self.watcher.unwatch(gone)
            self._folder_modes.pop(gone, None)
        for new in [f for f in folders if f not in self.folders]:
            self._watch(new)
        self.folders = folders
        self.bus.publish(Event.FOLDERS, {"folders": self.folder_list()})

    # --- reads ---------------------------------------------------------------------------
    def state(self) -> str:
        busy = self._busy or not self._tasks.empty() or self.watcher.queued() or self._removals
        if busy:
            return "indexing"
        return "upgrading" if self.library.upgrade is not None and not self._upgrade_paused else "idle"

    def status(self) -> StatusReply:
        pets = self.library.species_counts()
        return {
            "state": self.state(),
            "indexed": self.library.photo_count,
            "queued": self.watcher.queued()
            + self._queued_work()
            + len(self._removals)
            + (self.progress.total - self.progress.done if self.progress else 0),
            "failed": self.library.failure_count(),
            "folders": self.folder_list(),
            "model": self.library.model,
            "engine": self.library.engine,
            "dim": self.library.dim,
            "dogs": pets[DOG],
            "cats": pets[CAT],
            "uptime_s": round(time.monotonic() - self.started, 1),
            "progress": self.progress.to_dict() if self.progress else None,
            "pid": os.getpid(),
            "version": __version__,
            "db": self.library.db,
            # Why the index cannot be written right now (disk full, server gone), else None.
            "write_error": self.library.write_error or self._server_problem,
            # {"from", "to", "done", "total"} while an older index is re-embedded, else None.
            "upgrade": self.library.upgrade_status(),
            # The config file changed and is broken, or names settings that need a restart.
            "config_problem": self.config.problem,
            "top_k": self.settings.top_k,
            "min_score": self.settings.min_score,
        }

    def _queued_work(self) -> int:
        """Files waiting in queued tasks (a flood of hints is one task of thousands of paths)."""
        with self._tasks.mutex:
            tasks = list(self._tasks.queue)
        return sum(len(task.paths) if task.kind == "files" else 1 for task in tasks)

    def folder_list(self) -> list[FolderReply]:
        counts = self.library.folder_counts(self.folders)
        return [
            {"path": f, "mode": self.watcher.mode(f), "online": os.path.isdir(f), "photos": counts.get(f, 0)}
            for f in self.folders
        ]

    def failures(self) -> list[FailureReply]:
        return self.library.failures()

    def search(self, request: SearchRequest) -> SearchReply:
        """None for top_k or min_score: the settings' value; ``stacks``: one hit per stack; for
        expand: the library's default. Words naming a pet, or ``pet``, keep to its album."""
        if request.photo and self.library.entry(request.photo) is None:
            raise PetwatchError(f"{request.photo} is not an indexed photo")
        query = query_from(
            request, pets=self.pets.names(), places_known=self.library.places(), album=self.pets.album_paths
        )
        return self.library.search(query, self.folders)

    def words(self) -> WordsReply:
        """What a search's words can name beyond concepts: the places of the indexed photos, the pets."""
        return {"places": self.library.places(), "pets": self.pets.names()}

    def photo(self, path: str) -> PhotoReply:
        path = os.path.abspath(path)
        row = self.library.row(path)
        if row is None:
            raise PetwatchError(f"{path} is not an indexed photo")
        return {
            **row.photo,
            "online": os.path.exists(path),
            "folder": next((f for f in self.folders if is_under(path, f)), os.path.dirname(path)),
        }

    def thumbnail(self, path: str, size: int) -> bytes:
        path = os.path.abspath(path)
        entry = self.library.entry(path)
        if entry is None:
            raise PetwatchError(f"{path} is not an indexed photo")
        size = min((s for s in THUMBNAIL_SIZES if s >= size), default=THUMBNAIL_SIZES[-1])
        cached = locations.thumbnails_dir() / f"{entry.content_hash}-{size}.jpg"
        if cached.exists():
            return cached.read_bytes()
        try:
            data = photos.thumbnail(photos.read_photo(path, self.settings.max_image_pixels), size)
        except photos.PhotoError as error:
            raise PetwatchError(f"no thumbnail for {path}: {error}") from None
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, cached)
        return data

    # --- the worker ----------------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._remove_due()
            except Exception:  # noqa: BLE001 - the daemon outlives any one task
                log.exception("dropping removed photos failed")
            try:
                task = self._tasks.get(timeout=self._idle_wait())
            except queue.Empty:
                self._upgrade_step()
                self._stack_backfill()
                continue
            self._busy = True
            try:
                if task.kind == "files":
                    self._drain_files(task)
                self._run(task)
            except Exception as error:  # noqa: BLE001 - the daemon outlives any one task
                log.exception("task %s failed", task.kind)
                self.bus.publish(Event.ERROR, {"message": str(error)})
                if task.done and not task.done.done():
                    task.done.set_exception(error)
            finally:
                self._busy = False
                self.progress = None
                if self._tasks.empty():
                    self._settled()

    def _drain_files(self, task: _Task) -> None:
        """Coalesce queued file hints into one batch: a burst becomes one embed run."""
        while len(task.paths) < MAX_FILES_PER_BATCH:
            try:
                more = self._tasks.queue[0]  # peek: only merge hints, keep other tasks in order
            except IndexError:
                return
            if more.kind != "files":
                return
            self._tasks.get_nowait()
            task.paths.extend(more.paths)

    def _run(self, task: _Task) -> None:
        library = self.library
        if task.kind == "reconcile":
            folders = task.folders or self.folders
            self.progress = _Progress()
            self.bus.publish(Event.STATE, {"state": "indexing"})
            report = self._walk(folders)
            self._last_walk = time.monotonic()
            self._upgrade_paused = False
            for feature in self.features:
                feature.walked(report)  # discovery clusters again, on its own thread
            self._finish(report, task)
        elif task.kind == "files":
            paths = list(dict.fromkeys(p for p in task.paths if self._watched(p)))
            present = [s for s in map(library.stat, paths) if s is not None]
            missing = [p for p in paths if not os.path.lexists(p)]
            changed = library.needing_index(present)
            self.progress = _Progress(total=len(changed)) if changed else None
            report = library.index_files(changed, self._on_progress, self._stopping.is_set)
            report.removed += self._drop(missing)
            # A failed file deleted or moved away is off the failure list (it was only ever
            # cleared when an indexed photo was removed, so a deleted bad file stayed listed).
            self._forget_failures(missing)
            self._finish(report, task)
        elif task.kind == "tree":
            self.progress = _Progress()
            report = IndexReport()
            walk_roots = [d for d in task.folders if self._watched(d) and os.path.isdir(d)]
            if walk_roots:
                report = self._walk(walk_roots)
            gone = [p for p in library.indexed_paths(task.removed) if not os.path.lexists(p)]
            report.removed += self._drop(gone)
            self._forget_failures_under(task.removed)
            self._finish(report, task)
        elif task.kind == "remove_folder":
            folder = task.folders[0]
            if not any(is_under(folder, f) for f in self.folders):  # not still covered by a parent
                self._forget_failures_under([folder], check_gone=False)
                removed = library.remove(library.indexed_paths([folder]))
                log.info("folder %s removed from the list: %d photos dropped from the index", folder, removed)

    def _walk(self, folders: list[str]) -> IndexReport:
        """The walk (the CLI's too): files still being written are left to the watcher, which
        hands them on once they stand still."""
        return self.library.reconcile(folders, self._on_progress, self._stopping.is_set, self.watcher.hold_unsettled)

    def _drop(self, paths: list[str]) -> int:
        """Drop these vanished photos from the index: now when another path holds the same
        bytes (nothing is lost), else after a grace (the other half of a move may come)."""
        now: list[str] = []
        later: list[str] = []
        for path in paths:
            entry = self.library.entry(path)
            if entry is None:
                continue
            (now if len(self.library.paths_with_content(entry.content_hash)) > 1 else later).append(path)
        due = time.monotonic() + self._grace
        for path in later:
            self._removals.setdefault(path, due)
        return self.library.remove(now)

    def _remove_due(self) -> None:
        if not self._removals:
            return
        now = time.monotonic()
        due = [path for path, when in self._removals.items() if when <= now]
        if not due:
            return
        gone = [path for path in due if not os.path.lexists(path) and self._folder_online(path)]
        removed = self.library.remove(gone)
        for path in due:
            del self._removals[path]
        if removed:
            log.info("removed %d photos", removed)
            self.bus.publish(Event.REPORT, IndexReport(removed=removed).to_dict())
        if self._tasks.empty() and not self._removals:
            self._settled()

    def _told_of_config(self) -> tuple[object, ...]:
        """What the status tells of the config file: its problem, the search settings' values."""
        return self.config.problem, self.settings.top_k, self.settings.min_score

    def _settled(self) -> None:
        """The queue ran dry: the state, and the status with it, pushed once to every front end
        (each pulled it, twice per change)."""
        self.bus.publish(Event.STATE, {"state": self.state()})
        if self.bus.listened:
            self.bus.publish(Event.STATUS, self.status())

    def _upgrade_step(self) -> None:
        """Between tasks, re-embed a few photos of an older index (library.Upgrade)."""
        if self.library.upgrade is None or self._stopping.is_set() or self._upgrade_paused:
            return
        try:
            before = self.library.upgrade_status()
            report = self.library.upgrade_step(should_stop=self._stopping.is_set)
            after = self.library.upgrade_status()
            if after is None:
                for feature in self.features:
                    feature.upgraded()  # what they kept of the older index is stale now
                self.bus.publish(
                    Event.UPGRADE,
                    {
                        "done": before["total"] if before else 0,
                        "total": self.library.photo_count,
                        "finished": True,
                    },
                )
            else:
                self.bus.publish(Event.UPGRADE, {**after, "finished": False})
                # Only photos that cannot be read now are left (an offline folder): wait for
                # the next walk instead of checking them again and again.
                self._upgrade_paused = report is not None and not (report.indexed or report.reused or report.skipped)
            if report and (report.skipped or report.failed):
                self._finish(report, _Task("upgrade"))
        except Exception as error:  # noqa: BLE001 - the daemon outlives any one step
            log.exception("upgrading the index failed")
            self.bus.publish(Event.ERROR, {"message": f"upgrading the index: {error}"})
            self._upgrade_paused = True

    def _stack_backfill(self) -> None:
        """Between tasks, once the index is current, stack a few photos indexed before stacks."""
        if not self._backfill_left or self.library.upgrade is not None or self._stopping.is_set():
            return
        try:
            self._backfill_left = self.library.stack_backfill() > 0
        except Exception:  # noqa: BLE001 - the daemon outlives any one task
            log.exception("stacking photos indexed before stacks failed")
            self._backfill_left = False

    def _idle_wait(self) -> float:
        if self.library.upgrade is not None and not self._upgrade_paused:
            return 0.01
        if self._backfill_left:
            return 0.01
        if not self._removals:
            return 0.5
        wait = min(self._removals.values()) - time.monotonic()
        return min(0.5, max(0.02, wait))

    def _folder_online(self, path: str) -> bool:
        """False when the watched folder holding ``path`` is itself missing (unplugged)."""
        folder = next((f for f in self.folders if is_under(path, f)), None)
        return folder is None or os.path.isdir(folder)

    def _watched(self, path: str) -> bool:
        return any(is_under(path, folder) for folder in self.folders)

    def _forget_failures(self, paths: list[str], check_gone: bool = True) -> None:
        self.library.forget_failures([p for p in paths if not (check_gone and os.path.lexists(p))])

    def _forget_failures_under(self, prefixes: list[str], check_gone: bool = True) -> None:
        self._forget_failures(
            [p for p in self.library.failed_paths() if any(is_under(p, x) for x in prefixes)], check_gone
        )

    def _on_removed(self, paths: list[str]) -> None:
        self.bus.publish(Event.REMOVED, {"paths": paths[:100], "count": len(paths), "total": self.library.photo_count})
        for feature in self.features:
            feature.removed(paths)

    def _on_progress(self, done: int, total: int, current: str) -> None:
        if self.progress is None:
            self.progress = _Progress()
        self.progress.done, self.progress.total, self.progress.current = done, total, current
        self.bus.publish(Event.PROGRESS, self.progress.to_dict())

    def _on_stored(self, rows: list[PhotoRow]) -> None:
        paths = [row.path for row in rows if row.view == 0]
        self.bus.publish(Event.INDEXED, {"paths": paths[:100], "count": len(paths), "total": self.library.photo_count})
        for feature in self.features:
            feature.stored(rows)  # a new photo of a pet joins its album, or its group of pets found

    def _finish(self, report: IndexReport, task: _Task) -> None:
        for path, reason in report.skipped.items():
            log.info("skipped %s: %s", path, reason)
        for path, reason in report.failed.items():
            log.error("failed %s: %s", path, reason)
        if report.indexed or report.reused or report.removed:
            log.info(
                "indexed %d, reused %d, removed %d, unchanged %d in %.2fs",
                report.indexed,
                report.reused,
                report.removed,
                report.unchanged,
                report.seconds,
            )
        elif task.kind == "reconcile":  # a walk that found nothing to do still says it ran
            log.info(
                "walked the folders: nothing changed (%d photos unchanged) in %.2fs", report.unchanged, report.seconds
            )
        self.bus.publish(Event.REPORT, report.to_dict())
        if task.done and not task.done.done():
            task.done.set_result(report)

    # --- the clock: periodic walks, offline folders coming back ----------------------------
    def _retry_after_write_error(self) -> None:
        """Writes were refused (disk full or read-only, or the server down): once they can
        succeed again, walk everything, which stores what was left out and drops what went
        meanwhile. At most every WRITE_RETRY_SECONDS."""
        library = self.library
        if not library.write_paused or self._busy or not self._tasks.empty():
            return
        if time.monotonic() - self._last_write_retry < WRITE_RETRY_SECONDS:
            return
        if library.write_problem():
            return
        self._last_write_retry = time.monotonic()
        again = "there is room for the index again" if library.write_refused else "the Milvus server answers again"
        log.info("%s: retrying (%s)", again, library.write_error)
        library.forget_write_error()  # the walk sets it again if a write still fails
        self.request_reconcile()

    def _clock_loop(self) -> None:
        while not self._stopping.wait(FOLDER_CHECK_SECONDS):
            for folder in list(self.folders):
                was = self._folder_modes.get(folder)
                online = os.path.isdir(folder)
                if was == "offline" and online:
                    log.info("folder %s is back", folder)
                    self._watch(folder)
                    self.request_reconcile([folder])
                elif was != "offline" and not online:
                    log.warning("folder %s went offline; its photos stay indexed", folder)
                    self.watcher.unwatch(folder)
                    self._folder_modes[folder] = "offline"
            if not self.library.is_lite:  # a server can go away, and come back, at any time
                self._server_problem = self.library.write_problem()
            self._retry_after_write_error()
            told = self._told_of_config()
            self._apply_config_folders(self.config.check())
            if self._told_of_config() != told and self.bus.listened:
                self.bus.publish(Event.STATUS, self.status())  # told at once, not at the next change
            interval = self.settings.rescan_minutes * 60
            if interval and time.monotonic() - self._last_walk > interval and self._tasks.empty():
                self._last_walk = time.monotonic()
                self.request_reconcile()
