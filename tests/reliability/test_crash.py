"""kill -9 at seeded points of a backfill, of a rescan after edits and of a delete burst.

After each crash the daemon is started again and left to settle; the index must then equal
what indexing the folders from scratch gives: exactly the photo files on disk, each once,
as they are now (size, mtime), no row for a file that is gone. It is checked twice: through
the API while the daemon runs, and in the Milvus Lite DB itself once it has stopped.

(tests/test_daemon.py covers the plain kill -9 mid-backfill resume without re-embedding;
this file is about the end state after crashes at varied points of varied work.)
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from reliability.helpers import (
    AlbumGuard,
    Events,
    assert_index_equals,
    assert_live_index_equals,
    configure_folders,
    jpeg_bytes,
    make_jpegs,
    photo_files,
    wait_until,
)

SEED = 20261201


def _crash(daemon, events: Events) -> None:
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(30)
    events.close()


def _kill_after_stored(daemon, events: Events, count: int) -> int:
    """kill -9 once ``count`` photos were stored since the events began (or the work ended)."""

    def stored() -> int:
        return sum(data["count"] for data in events.of("indexed"))

    def reached():
        if stored() >= count:
            return True
        with daemon.client() as client:
            status = client.status()
        return status["state"] == "idle" and status["queued"] == 0 and events.of("report")

    wait_until(reached, 180, f"{count} photos stored", interval=0.02)
    done = stored()
    _crash(daemon, events)
    return done


def _kill_during_work(start_daemon, count: int) -> int:
    """Start a daemon that works in small batches and kill -9 it after ``count`` stored photos."""
    daemon = start_daemon(PETWATCH_BATCH_SIZE="4", PETWATCH_DECODE_THREADS="1")
    return _kill_after_stored(daemon, Events(daemon), count)


def _restart_and_check(start_daemon, home, roots, guard: AlbumGuard) -> None:
    daemon = start_daemon(PETWATCH_BATCH_SIZE="4")
    daemon.wait_idle(timeout=240)
    expected = photo_files(*roots)
    assert_live_index_equals(daemon, expected)
    with daemon.client() as client:
        assert client.failures() == []
    assert daemon.stop() == 0
    assert_index_equals(home, expected)
    guard.check()


def test_kill_9_at_seeded_points_leaves_an_index_equal_to_a_fresh_one(home, start_daemon, albums):
    rng = random.Random(SEED)
    album = albums / "album"
    photos = make_jpegs(album / "2024", 24, "a") + make_jpegs(album / "2025", 16, "b", seed=1)
    configure_folders(album)
    guard = AlbumGuard(albums)

    # 1. A backfill, killed after a seeded number of stored photos (batches of 4).
    point = rng.randint(4, 28)
    stored = _kill_during_work(start_daemon, point)
    print(f"backfill: killed after {stored} stored (aimed at {point})")
    _restart_and_check(start_daemon, home, [album], guard)

    # 2. Edits while the daemon is down, then the start's rescan killed mid-way.
    for i, path in enumerate(photos[:6]):  # rewritten in place: new bytes, same name
        path.write_bytes(jpeg_bytes(500 + i))
    added = make_jpegs(album / "2025" / "new", 8, "c", seed=2)
    for path in photos[6:10]:
        path.unlink()
    for path in photos[10:13]:
        path.rename(path.with_name("renamed_" + path.name))
    (album / "2024" / "a_00020.jpg").rename(album / "moved_up.jpg")
    time.sleep(0.6)  # older than settle_seconds: the walk takes them, not the watcher
    guard.mark()
    point = rng.randint(1, 12)
    stored = _kill_during_work(start_daemon, point)
    print(f"rescan after edits: killed after {stored} stored (aimed at {point})")
    _restart_and_check(start_daemon, home, [album], guard)

    # 3. A delete burst with the daemon running, killed at a seeded moment: before, during or
    #    after the removal grace (2.5 s here).
    daemon = start_daemon(PETWATCH_BATCH_SIZE="4")
    daemon.wait_idle()
    events = Events(daemon)
    doomed = sorted(photo_files(album))[::2][:14] + [str(p) for p in added[:2]]
    for path in doomed:
        os.unlink(path)
    guard.mark()
    delay = rng.uniform(0.0, 4.0)
    time.sleep(delay)  # the seeded crash point itself, not a wait for a condition
    removed = sum(data["count"] for data in events.of("removed"))
    _crash(daemon, events)
    print(f"delete burst: killed {delay:.2f}s after, {removed} removals seen")
    _restart_and_check(start_daemon, home, [album], guard)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_kill_9_repeatedly_during_one_backfill(home, start_daemon, albums, seed):
    """Many crashes in a row, each at a seeded point of the same unfinished backfill."""
    rng = random.Random(SEED + seed)
    album = albums / "album"
    make_jpegs(album, 60, "r", seed=seed)
    configure_folders(album)
    guard = AlbumGuard(albums)
    for _ in range(4):
        _kill_during_work(start_daemon, rng.randint(1, 12))
    _restart_and_check(start_daemon, home, [album], guard)
