"""Watchdog events turned into settled hints for the index; polling where inotify can't serve.

Events are only hints: the daemon's periodic walk remains the source of truth, so a missed
or coalesced event costs latency, never correctness. A file is handed on only once its size
and mtime have stood still for ``settle_seconds`` and no writer holds it open, so a photo
being copied is never read half-written.

What each event means for a photo file:

- created: it may still be empty, a writer may follow; settle it (an empty file waits for
  its writer);
- modified (a write): a writer holds it open; it waits for the close, then settles;
- closed after writing: the writer is done; settle it;
- moved within the watched folders: complete; hand on both names at once, so the index
  sees the new name before the old one goes and reuses the vector;
- moved in from elsewhere (``mv ~/Downloads/x.jpg``): complete; hand it on at once;
- deleted or moved out: hand it on at once (the daemon decides when to drop it).

A directory created in a watched folder is settled file by file like any new file (``cp -r``
may still be writing into it); a directory moved in, or within, is walked at once.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch
from watchdog.observers.polling import PollingObserver

from petwatch.filenames import is_under
from petwatch.photos import has_photo_extension, iter_photo_files

if TYPE_CHECKING:
    from petwatch.index import FileStat

log = logging.getLogger(__name__)

INOTIFY_HINT = "raise the limit with `sudo sysctl fs.inotify.max_user_watches=524288` (persist it in /etc/sysctl.d/)"
STALE_WRITER_SECONDS = 60.0  # a writer that never closes (crashed copy) stops blocking settle


@dataclass
class Sink:
    """Where settled hints go (the daemon's work queue)."""

    files_changed: Callable[[list[str]], None]  # each path: exists -> (re)index, missing -> remove
    tree_changed: Callable[[list[str], list[str]], None]  # (dirs to walk, dir prefixes removed)


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    since: float
    writing: bool | None = None  # True: a writer has it open; False: closed; None: unknown


@dataclass
class _Settler:
    settle_seconds: float
    pending: dict[str, _Pending] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def touch(self, path: str, writing: bool | None = None) -> None:
        """(Re)start settling ``path``; ``writing`` True/False when an event says so."""
        try:
            stat = os.stat(path)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        with self.lock:
            entry = self.pending.get(path)
            if entry is None or (entry.size, entry.mtime_ns) != (size, mtime):
                self.pending[path] = entry = _Pending(size, mtime, time.monotonic(), entry.writing if entry else None)
            if writing is not None:
                entry.writing = writing

    def holds(self, path: str) -> bool:
        with self.lock:
            return path in self.pending

    def _settled(self, entry: _Pending, now: float) -> bool:
        still = now - entry.since
        if still >= STALE_WRITER_SECONDS:  # a writer that never closes (crashed copy)
            return True
        if still < self.settle_seconds or entry.writing:
            return False
        # Created and still empty, with no close seen: its writer has not begun yet.
        return entry.writing is False or entry.size != 0

    def ready(self) -> list[str]:
        """Paths whose size and mtime stood still long enough; missing ones are ready at once."""
        now = time.monotonic()
        with self.lock:
            paths = list(self.pending)
        done = []
        for path in paths:
            try:
                stat = os.stat(path)
                current = (stat.st_size, stat.st_mtime_ns)
                regular = S_ISREG(stat.st_mode)
            except OSError:
                current, regular = None, False
            with self.lock:
                entry = self.pending.get(path)
                if entry is None:
                    continue
                if current is None or not regular:
                    # Gone, or a pipe/device named .jpg: nothing will ever be written to it, so
                    # it is handed on at once (the daemon ignores it), not held for
                    # STALE_WRITER_SECONDS as an empty file whose writer has not begun.
                    done.append(path)
                elif current != (entry.size, entry.mtime_ns):
                    entry.size, entry.mtime_ns, entry.since = *current, now
                    continue
                elif self._settled(entry, now):
                    done.append(path)
                else:
                    continue
                del self.pending[path]
        return done

    def __len__(self) -> int:
        return len(self.pending)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher, tracks_writers: bool) -> None:
        self.watcher = watcher
        self.tracks_writers = tracks_writers  # inotify reports writes and closes; polling can't

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path)
        settler, sink = self.watcher.settler, self.watcher.sink
        if isinstance(event, FileModifiedEvent):
            if has_photo_extension(src):
                settler.touch(src, writing=True if self.tracks_writers else None)
        elif isinstance(event, (FileCreatedEvent, FileAttribEvent)):
            if has_photo_extension(src):
                settler.touch(src)
        elif isinstance(event, FileClosedEvent):
            if has_photo_extension(src):
                settler.touch(src, writing=False)
        elif isinstance(event, FileDeletedEvent):
            if has_photo_extension(src):
                sink.files_changed([src])
        elif isinstance(event, FileMovedEvent):
            # "" stands for outside the watched folders (moved in, or out). One batch: the
            # index sees the new name before the old one goes, and reuses its vector.
            paths = [p for p in (dest, src) if p and has_photo_extension(p)]
            if paths:
                sink.files_changed(paths)
        elif isinstance(event, DirMovedEvent):
            sink.tree_changed([dest] if dest else [], [src] if src else [])
        elif isinstance(event, DirDeletedEvent):
            sink.tree_changed([], [src])
        elif isinstance(event, DirCreatedEvent):
            # Made here, and maybe still being filled (cp -r): settle its files one by one.
            self.watcher.settle_tree(src)


def _event_observer():
    """inotify reporting unpaired moves as moves ("" for the outside end), else the default."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux
        return Observer()
    return InotifyObserver(generate_full_events=True)


class Watcher:
    """Watches folders recursively, by inotify where possible, else by polling."""

    def __init__(self, sink: Sink, settle_seconds: float, poll_seconds: float) -> None:
        self.sink = sink
        self.settler = _Settler(settle_seconds)
        try:
            self._events = _event_observer()
        except OSError as error:  # no inotify instance left for this user
            log.warning("inotify unavailable (%s): watching by polling; %s", error, INOTIFY_HINT)
            self._events = None
        self._polling = PollingObserver(timeout=poll_seconds)
        self._watches: dict[str, tuple[str, ObservedWatch]] = {}  # folder -> (mode, watch handle)
        self._trees: list[str] = []  # new directories whose files are to be settled
        self._trees_lock = threading.Lock()
        self._stop = threading.Event()
        self._settle_thread = threading.Thread(target=self._settle_loop, name="settle", daemon=True)

    def _observers(self) -> list:
        return [o for o in (self._events, self._polling) if o is not None]

    def start(self) -> None:
        for observer in self._observers():
            observer.start()
        self._settle_thread.start()

    def stop(self) -> None:
        self._stop.set()
        for observer in self._observers():
            observer.stop()
        for observer in self._observers():
            if observer.is_alive():
                observer.join(timeout=5)

    def watch(self, folder: str, polling: bool = False) -> str:
        """Start watching; returns the mode used: "events", "polling" or "offline"."""
        self.unwatch(folder)
        if not os.path.isdir(folder):
            return "offline"
        if not polling and self._events is not None:
            try:
                handle = self._events.schedule(_Handler(self, True), folder, recursive=True)
                self._watches[folder] = ("events", handle)
                return "events"
            except OSError as error:
                if error.errno not in (errno.ENOSPC, errno.EMFILE):
                    raise
                log.warning("inotify watches ran out on %s, polling it instead: %s", folder, INOTIFY_HINT)
        handle = self._polling.schedule(_Handler(self, False), folder, recursive=True)
        self._watches[folder] = ("polling", handle)
        return "polling"

    def unwatch(self, folder: str) -> None:
        entry = self._watches.pop(folder, None)
        if entry is None:
            return
        mode, handle = entry
        observer = self._events if mode == "events" else self._polling
        try:
            observer.unschedule(handle)
        except (KeyError, OSError):  # already gone with its directory
            pass

    def mode(self, folder: str) -> str:
        entry = self._watches.get(folder)
        if entry is None or not os.path.isdir(folder):
            return "offline"
        return entry[0]

    def queued(self) -> int:
        with self._trees_lock:
            trees = len(self._trees)
        return len(self.settler) + trees

    def settle_tree(self, folder: str) -> None:
        """Settle every photo under ``folder`` as if each had just been created (walked on
        the settle thread, not the observer's)."""
        with self._trees_lock:
            self._trees.append(folder)

    def settle_files(self, paths: list[str]) -> None:
        """Settle these before they are read (a walk found them still changing)."""
        for path in paths:
            self.settler.touch(path)

    def holds(self, path: str) -> bool:
        """Whether ``path`` is settling now (it is handed on when done)."""
        return self.settler.holds(path)

    def hold_unsettled(self, files: Sequence[FileStat]) -> list[FileStat]:
        """The files a walk may read now. The rest are still being written: under a watched
        folder, settling here or modified within ``settle_seconds``. Those are settled here and
        handed on once they stand still, so a walk never reads a half-copied photo. Files
        outside the watched folders (a one-off ``petwatch index``) have nothing to wait for."""
        now_ns = time.time_ns()
        window_ns = self.settler.settle_seconds * 1e9
        watched = list(self._watches)  # folders being watched now (an offline one is not)
        ready: list[FileStat] = []
        busy: list[str] = []
        for stat in files:
            under_watch = any(is_under(stat.path, folder) for folder in watched)
            if under_watch and (self.holds(stat.path) or now_ns - stat.mtime_ns < window_ns):
                busy.append(stat.path)
            else:
                ready.append(stat)
        self.settle_files(busy)
        return ready

    def _walk_trees(self) -> None:
        with self._trees_lock:
            trees = list(self._trees)
        for tree in trees:
            for path, _stat in iter_photo_files(Path(tree)):
                self.settler.touch(str(path))
        with self._trees_lock:  # only now: queued() never reads 0 while files are on their way
            del self._trees[: len(trees)]

    def _settle_loop(self) -> None:
        tick = min(0.2, max(0.05, self.settler.settle_seconds / 4))
        while not self._stop.wait(tick):
            try:
                self._walk_trees()
                ready = self.settler.ready()
                if ready:
                    self.sink.files_changed(ready)
            except Exception:  # noqa: BLE001 - the settle loop must outlive any one bad path
                log.exception("settle loop error")
