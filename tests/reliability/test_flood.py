"""Floods into a watched folder: a big copy-in, a mass delete, a big directory renamed, one
file rewritten over and over. The end state must be exact, each content embedded once,
and the daemon's memory (with its Milvus Lite child) bounded by a constant, not by the
size of the flood.

The default run uses 1,000 / 500 / 300 files; the same test at 10,000 / 5,000 / 2,000 is
marked slow (``pytest -m slow tests/reliability``). Region views are off here: this is
about the watcher, the queue and the store under load, not about the model's cost.
"""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest

from petwatch.photos import content_hash
from reliability.helpers import (
    AlbumGuard,
    Events,
    assert_index_equals,
    assert_live_index_equals,
    configure_folders,
    jpeg_bytes,
    make_jpegs,
    photo_files,
    rss_bytes,
    wait_until,
)

MEMORY_HEADROOM = 1536 * 1024 * 1024  # peak RSS over the idle daemon's, whatever the flood size


class MemoryWatch:
    """Samples the daemon's RSS (with children) on a thread; ``peak`` is the highest seen."""

    def __init__(self, daemon) -> None:
        self.daemon, self.peak, self._stop = daemon, rss_bytes(daemon), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.peak = max(self.peak, rss_bytes(self.daemon))
            except Exception:  # noqa: BLE001 - the process may be stopping
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def _flood(home, start_daemon, albums, tmp_path, copies: int, deletes: int, renamed: int, distinct: int):
    album = albums / "album"
    album.mkdir()
    configure_folders(album)
    daemon = start_daemon(PETWATCH_REGION_VIEWS="false", PETWATCH_BATCH_SIZE="32")
    daemon.wait_idle()
    baseline = rss_bytes(daemon)
    memory = MemoryWatch(daemon)
    events = Events(daemon)
    guard = AlbumGuard(albums)

    def settled_on(expected: set[str], what: str, timeout: float) -> None:
        def done():
            with daemon.client() as client:
                status = client.status()
            return status["indexed"] == len(expected) and status["state"] == "idle" and status["queued"] == 0

        wait_until(done, timeout, what, interval=0.5)
        daemon.wait_idle(timeout=timeout)
        assert_live_index_equals(daemon, expected)
        guard.check()

    # 1. ``copies`` files copied in at once: ``distinct`` contents, the rest byte copies of
    #    them under other names (as a camera import with duplicates), some in a subfolder.
    staging = tmp_path / "staging"
    sources = make_jpegs(staging, distinct, "src")
    started = time.monotonic()
    for i in range(copies):
        folder = album / "sub" if i < renamed else album
        folder.mkdir(exist_ok=True)
        shutil.copyfile(sources[i % distinct], folder / f"img_{i:05d}.jpg")
    guard.mark()
    settled_on(photo_files(album), f"{copies} copied files indexed", timeout=60 + copies * 0.5)
    totals = events.totals()
    assert totals["indexed"] == distinct, totals  # each content embedded once
    assert totals["indexed"] + totals["reused"] == copies and not totals["failed"], totals
    print(f"{copies} copied in: indexed in {time.monotonic() - started:.1f}s")

    # 2. ``deletes`` of them deleted at once.
    since = events.mark()
    for path in sorted(album.glob("img_*.jpg"))[:deletes]:
        path.unlink()
    guard.mark()
    settled_on(photo_files(album), f"{deletes} deletions applied", timeout=60 + deletes * 0.1)
    assert events.totals(since)["indexed"] == 0

    # 3. The directory of ``renamed`` photos renamed: every photo under its new path, none
    #    embedded again.
    since = events.mark()
    (album / "sub").rename(album / "sub renamed")
    guard.mark()
    settled_on(photo_files(album), f"directory of {renamed} renamed", timeout=60 + renamed * 0.1)
    assert events.totals(since)["indexed"] == 0, events.totals(since)

    # 4. One file rewritten 100 times in 10 s: the index ends with its last bytes, and it was
    #    not embedded a hundred times on the way.
    hot = album / "hot.jpg"
    since = events.mark()
    versions = [jpeg_bytes(2000 + i) for i in range(100)]
    for data in versions:
        tmp = hot.with_name(".hot.tmp")  # some writers replace the file...
        if len(data) % 2:
            tmp.write_bytes(data)
            os.replace(tmp, hot)
        else:  # ...and some write it in place
            hot.write_bytes(data)
        time.sleep(0.1)
    guard.mark()
    settled_on(photo_files(album), "the rewritten file settled", timeout=60)
    with daemon.client() as client:
        assert client.photo(str(hot))["content_hash"] == content_hash(versions[-1])
    # An atomic replace hands on a complete file at once (each may be embedded: it is a new
    # version, whole); in-place writes are settled first, so they add only a few.
    replaces = sum(len(data) % 2 for data in versions)
    stored = events.stored(hot, since)
    assert stored <= replaces + 10, f"embedded {stored} times for {replaces} replaces"
    totals = events.totals(since)
    assert str(hot) not in totals["skipped"] and str(hot) not in totals["failed"], "read half-written"

    peak = memory.stop()
    events.close()
    print(f"RSS idle {baseline / 1e6:.0f} MB, peak {peak / 1e6:.0f} MB")
    assert peak - baseline < MEMORY_HEADROOM, f"RSS grew {(peak - baseline) / 1e6:.0f} MB"
    assert "Traceback" not in daemon.log.read_text()
    expected = photo_files(album)
    assert daemon.stop() == 0
    assert_index_equals(home, expected)
    guard.check()


@pytest.mark.timeout(600)
def test_flood_of_copies_deletes_renames_and_rewrites(home, start_daemon, albums, tmp_path):
    _flood(home, start_daemon, albums, tmp_path, copies=1000, deletes=500, renamed=300, distinct=100)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_full_size_flood(home, start_daemon, albums, tmp_path):
    _flood(home, start_daemon, albums, tmp_path, copies=10_000, deletes=5_000, renamed=2_000, distinct=1000)
