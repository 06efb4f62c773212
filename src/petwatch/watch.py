"""Watchdog events turned into settled hints for the index; polling where inotify can't serve.

Events are only hints: the daemon's periodic walk remains the source of truth, so a missed
or coalesced event costs latency, never correctness. A file is handed on only once its size
and mtime have stood still for ``settle_seconds`` and no writer holds it open, so a photo
being copied is never read half-written.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from petwatch.photos import has_photo_extension

log = logging.getLogger(__name__)

INOTIFY_HINT = ("raise the limit with `sudo sysctl fs.inotify.max_user_watches=524288` "
                "(persist it in /etc/sysctl.d/)")
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
    writing: bool = False


@dataclass
class _Settler:
    settle_seconds: float
    pending: dict[str, _Pending] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def touch(self, path: str, writing: bool | None = None) -> None:
        try:
            stat = os.stat(path)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        with self.lock:
            entry = self.pending.get(path)
            if entry is None or (entry.size, entry.mtime_ns) != (size, mtime):
                self.pending[path] = entry = _Pending(size, mtime, time.monotonic(),
                                                      entry.writing if entry else False)
            if writing is not None:
                entry.writing = writing

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
            except OSError:
                current = None
            with self.lock:
                entry = self.pending.get(path)
                if entry is None:
                    continue
                if current is None:
                    done.append(path)
                elif current != (entry.size, entry.mtime_ns):
                    entry.size, entry.mtime_ns, entry.since = *current, now
                    continue
                elif now - entry.since >= self.settle_seconds and (
                        not entry.writing or now - entry.since >= STALE_WRITER_SECONDS):
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
        self.tracks_writers = tracks_writers  # inotify reports close-after-write; polling can't

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        settler, sink = self.watcher.settler, self.watcher.sink
        if isinstance(event, (FileCreatedEvent, FileModifiedEvent)):
            if has_photo_extension(src):
                settler.touch(src, writing=True if self.tracks_writers else None)
        elif isinstance(event, FileClosedEvent):
            if has_photo_extension(src):
                settler.touch(src, writing=False)
        elif isinstance(event, FileDeletedEvent):
            if has_photo_extension(src):
                sink.files_changed([src])
        elif isinstance(event, FileMovedEvent):
            dest = os.fsdecode(event.dest_path)
            # One batch: the index sees the new name before the old one goes, and reuses its vector.
            paths = [p for p in (dest, src) if has_photo_extension(p)]
            if paths:
                sink.files_changed(paths)
        elif isinstance(event, DirMovedEvent):
            sink.tree_changed([os.fsdecode(event.dest_path)], [src])
        elif isinstance(event, DirDeletedEvent):
            sink.tree_changed([], [src])
        elif isinstance(event, DirCreatedEvent):
            # A directory moved in from outside arrives as "created", with no events for its files.
            sink.tree_changed([src], [])


class Watcher:
    """Watches folders recursively, by inotify where possible, else by polling."""

    def __init__(self, sink: Sink, settle_seconds: float, poll_seconds: float) -> None:
        self.sink = sink
        self.settler = _Settler(settle_seconds)
        self._events = Observer()
        self._polling = PollingObserver(timeout=poll_seconds)
        self._watches: dict[str, tuple[str, object]] = {}  # folder -> (mode, watch handle)
        self._stop = threading.Event()
        self._settle_thread = threading.Thread(target=self._settle_loop, name="settle", daemon=True)

    def start(self) -> None:
        self._events.start()
        self._polling.start()
        self._settle_thread.start()

    def stop(self) -> None:
        self._stop.set()
        for observer in (self._events, self._polling):
            observer.stop()
        for observer in (self._events, self._polling):
            if observer.is_alive():
                observer.join(timeout=5)

    def watch(self, folder: str, polling: bool = False) -> str:
        """Start watching; returns the mode used: "events", "polling" or "offline"."""
        self.unwatch(folder)
        if not os.path.isdir(folder):
            return "offline"
        if not polling:
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
        return len(self.settler)

    def _settle_loop(self) -> None:
        tick = min(0.2, max(0.05, self.settler.settle_seconds / 4))
        while not self._stop.wait(tick):
            try:
                ready = self.settler.ready()
                if ready:
                    self.sink.files_changed(ready)
            except Exception:  # noqa: BLE001 - the settle loop must outlive any one bad path
                log.exception("settle loop error")
