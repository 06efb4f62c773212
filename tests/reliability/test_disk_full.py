"""The index's disk fills up, or turns read-only, while the daemon runs.

PETWATCH_HOME's data dir (the Milvus Lite DB and the state DB) is put on its own small
tmpfs, so filling it fills nothing else; that needs root (``mount``), and the test skips
with the reason where it cannot mount. (A chmod'ed directory would not do: root writes
into it all the same.)

Milvus Lite 2.5.1 itself answers writes on a full disk with success and loses them when it
stops, so petwatch checks the room before each write (store.MIN_FREE_BYTES). What a user
sees: the daemon says why it cannot index (status ``write_error``, the log), keeps serving
searches on what is indexed, stops writing, and catches up by itself once there is room,
with the result on disk (checked in the DB after a stop), not just in memory.

A data dir turned read-only mid-run is refused the same way (Store.write_problem checks
the mount's read-only flag and write access), but is not tested here: root ignores a
chmod, and a tmpfs with files open for writing cannot be remounted read-only ("busy").
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import run_cli
from petwatch.store import MIN_FREE_BYTES
from reliability.helpers import (
    AlbumGuard,
    alive,
    assert_index_equals,
    assert_live_index_equals,
    configure_folders,
    make_jpegs,
    photo_files,
    wait_until,
)

TMPFS_SIZE = MIN_FREE_BYTES + (48 << 20)


@pytest.fixture
def small_data_dir(home):
    """home/data on its own tmpfs of TMPFS_SIZE bytes; unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs for the data dir")
    data = home / "data"
    data.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(data)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield data
    subprocess.run(["umount", "-l", str(data)], capture_output=True)


def _fill(folder) -> None:
    """Fill the filesystem under ``folder`` to the last byte."""
    subprocess.run(["dd", "if=/dev/zero", f"of={folder / 'filler'}", "bs=1M"], capture_output=True)
    assert os.statvfs(folder).f_bavail == 0


def _status(daemon) -> dict:
    with daemon.client() as client:
        return client.status()


def test_full_disk_is_reported_searches_go_on_and_indexing_resumes_when_space_returns(
    home, small_data_dir, start_daemon, albums
):
    album = albums / "album"
    photos = make_jpegs(album, 6, "old")
    configure_folders(album)
    daemon = start_daemon()
    daemon.wait_idle()
    guard = AlbumGuard(albums)

    _fill(small_data_dir)
    db_files = {p.name: p.stat().st_size for p in small_data_dir.rglob("*") if p.is_file() and p.name != "filler"}
    new = make_jpegs(album, 5, "new", seed=3)
    photos[0].unlink()
    guard.mark()

    # Reported: in status (and `petwatch status --json`), and in the log.
    problem = wait_until(lambda: _status(daemon)["write_error"], 60, "the full disk reported")
    assert "disk full" in problem, problem
    result = run_cli("status", "--json")
    assert result.returncode == 0 and "disk full" in json.loads(result.stdout)["write_error"]
    wait_until(lambda: "disk full" in daemon.log.read_text(), 10, "the full disk in the log")
    daemon.wait_idle()

    # Still serving searches on what is indexed; nothing new stored, nothing dropped.
    with daemon.client() as client:
        hits = {h["path"] for h in client.search(photo=str(photos[1]), top_k=50, min_score=-1.0, stacks=False)["hits"]}
    assert hits == {str(p) for p in photos}
    assert _status(daemon)["indexed"] == len(photos)
    assert alive(daemon)

    # Stopped writing: the data dir's files did not grow (Milvus Lite's own included).
    now = {p.name: p.stat().st_size for p in small_data_dir.rglob("*") if p.is_file() and p.name != "filler"}
    assert all(now.get(name, 0) <= size for name, size in db_files.items()), (db_files, now)

    # Space comes back: the daemon catches up by itself, no rescan asked for.
    (small_data_dir / "filler").unlink()
    expected = photo_files(album)
    wait_until(
        lambda: _status(daemon)["write_error"] is None and _status(daemon)["indexed"] == len(expected),
        90,
        "indexing resumed once space was freed",
        interval=0.5,
    )
    daemon.wait_idle()
    assert_live_index_equals(daemon, expected)
    assert {str(p) for p in new} <= expected
    assert daemon.stop() == 0
    assert_index_equals(home, expected)  # on disk, not only in Milvus Lite's memory
    guard.check()
