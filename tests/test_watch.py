"""The watcher on its own: real inotify (watchdog) on real folders, a recording sink instead
of the daemon. Fast: no model, no Milvus. Time bounds are generous functional ones."""

from __future__ import annotations

import os
import threading
import time

import pytest

from petwatch.watch import STALE_WRITER_SECONDS, Sink, Watcher, _Pending, _Settler

SETTLE = 0.3
BOUND = 10.0  # "soon": well under STALE_WRITER_SECONDS, the fallback for a writer that never closes
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40


class Recorder:
    def __init__(self) -> None:
        self.files: list[list[str]] = []
        self.trees: list[tuple[list[str], list[str]]] = []
        self.lock = threading.RLock()

    def sink(self) -> Sink:
        return Sink(self._files, self._tree)

    def _files(self, paths: list[str]) -> None:
        with self.lock:
            self.files.append(list(paths))

    def _tree(self, added: list[str], removed: list[str]) -> None:
        with self.lock:
            self.trees.append((list(added), list(removed)))

    def hinted(self) -> list[str]:
        with self.lock:
            return [p for batch in self.files for p in batch]

    def wait(self, predicate, what: str, timeout: float = BOUND):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"{what}: not within {timeout}s; files={self.files} trees={self.trees}")


@pytest.fixture
def watched(tmp_path):
    folder = tmp_path / "album"
    folder.mkdir()
    recorder = Recorder()
    watcher = Watcher(recorder.sink(), settle_seconds=SETTLE, poll_seconds=0.2)
    watcher.start()
    assert watcher.watch(str(folder)) == "events"
    yield folder, watcher, recorder
    watcher.stop()


def test_a_file_being_written_is_handed_on_only_after_its_writer_closes_it(watched):
    folder, watcher, recorder = watched
    target = folder / "slow.jpg"
    with open(target, "wb") as out:
        for i in range(4):
            out.write(JPEG[i * 2000 : (i + 1) * 2000])
            out.flush()
            os.fsync(out.fileno())
            time.sleep(SETTLE * 2)  # pauses longer than the settle time: the open writer counts
        assert str(target) not in recorder.hinted()
        assert watcher.queued() >= 1
    recorder.wait(lambda: str(target) in recorder.hinted(), "hinted after close")
    assert recorder.hinted().count(str(target)) == 1
    recorder.wait(lambda: watcher.queued() == 0, "nothing left settling")


def test_a_photo_moved_in_from_outside_is_handed_on_without_waiting_for_a_writer(watched, tmp_path):
    folder, watcher, recorder = watched
    outside = tmp_path / "Downloads" / "cat.jpg"
    outside.parent.mkdir()
    outside.write_bytes(JPEG)
    os.rename(outside, folder / "cat.jpg")
    recorder.wait(lambda: str(folder / "cat.jpg") in recorder.hinted(), "moved-in photo hinted")
    recorder.wait(lambda: watcher.queued() == 0, "nothing left settling")


def test_a_rename_hands_on_both_names_in_one_batch_new_first(watched):
    folder, watcher, recorder = watched
    (folder / "a.jpg").write_bytes(JPEG)
    recorder.wait(lambda: str(folder / "a.jpg") in recorder.hinted(), "created")
    os.rename(folder / "a.jpg", folder / "b.jpg")
    batch = recorder.wait(lambda: next((b for b in recorder.files if str(folder / "b.jpg") in b), None), "renamed")
    assert batch == [str(folder / "b.jpg"), str(folder / "a.jpg")]


def test_a_photo_moved_out_or_deleted_is_handed_on_at_once(watched, tmp_path):
    folder, watcher, recorder = watched
    for name in ("out.jpg", "gone.jpg"):
        (folder / name).write_bytes(JPEG)
    recorder.wait(lambda: len(recorder.hinted()) >= 2, "created")
    os.rename(folder / "out.jpg", tmp_path / "out.jpg")
    (folder / "gone.jpg").unlink()
    recorder.wait(
        lambda: [str(folder / "out.jpg")] in recorder.files and [str(folder / "gone.jpg")] in recorder.files,
        "moved out and deleted",
    )


def test_a_new_directory_filled_afterwards_has_each_file_settled(watched):
    folder, watcher, recorder = watched
    trip = folder / "trip"
    trip.mkdir()
    # Being written as the directory appears (as cp -r does): its first bytes may land before
    # the new directory is watched; the writes after that are seen, and hold it back.
    with open(trip / "one.jpg", "wb") as out:
        for i in range(6):
            out.write(JPEG[i * 100 : (i + 1) * 100])
            out.flush()
            time.sleep(SETTLE / 3)
        time.sleep(SETTLE * 2)
        assert str(trip / "one.jpg") not in recorder.hinted()
        out.write(JPEG[600:])
    (trip / "two.jpg").write_bytes(JPEG)
    recorder.wait(lambda: {str(trip / "one.jpg"), str(trip / "two.jpg")} <= set(recorder.hinted()), "both settled")
    assert not any(added for added, _ in recorder.trees), "a new directory is not walked while it fills"


def test_directories_moved_in_out_and_within(watched, tmp_path):
    folder, watcher, recorder = watched
    outside = tmp_path / "import"
    outside.mkdir()
    (outside / "x.jpg").write_bytes(JPEG)
    os.rename(outside, folder / "import")
    recorder.wait(lambda: ([str(folder / "import")], []) in recorder.trees, "moved in: walked")
    os.rename(folder / "import", folder / "renamed")
    recorder.wait(lambda: ([str(folder / "renamed")], [str(folder / "import")]) in recorder.trees, "moved within")
    os.rename(folder / "renamed", tmp_path / "back")
    recorder.wait(lambda: ([], [str(folder / "renamed")]) in recorder.trees, "moved out")
    recorder.wait(lambda: watcher.queued() == 0, "nothing left settling")


def test_other_files_are_ignored(watched):
    folder, watcher, recorder = watched
    (folder / "notes.txt").write_text("x")
    (folder / "clip.mp4").write_bytes(b"\0" * 100)
    (folder / "pic.jpg").write_bytes(JPEG)
    recorder.wait(lambda: str(folder / "pic.jpg") in recorder.hinted(), "photo hinted")
    assert recorder.hinted() == [str(folder / "pic.jpg")]


# --- the settle rule, without the clock --------------------------------------------------------
@pytest.mark.parametrize(
    ("writing", "size", "still", "settled"),
    [
        (None, 100, SETTLE * 2, True),  # created (or moved in by a poll), stood still
        (False, 100, SETTLE * 2, True),  # closed after writing, stood still
        (True, 100, SETTLE * 10, False),  # a writer holds it open
        (None, 0, SETTLE * 10, False),  # created empty, its writer has not begun
        (False, 0, SETTLE * 2, True),  # closed empty: it really is empty (indexing reports why not)
        (None, 100, SETTLE / 2, False),  # still changing
        (True, 100, STALE_WRITER_SECONDS, True),  # a writer that never closes stops blocking
    ],
)
def test_settle_rule(writing, size, still, settled):
    settler = _Settler(SETTLE)
    entry = _Pending(size=size, mtime_ns=1, since=100.0, writing=writing)
    assert settler._settled(entry, 100.0 + still) is settled


def test_polling_sees_new_moved_and_deleted_photos(tmp_path):
    folder = tmp_path / "nas"
    folder.mkdir()
    recorder = Recorder()
    watcher = Watcher(recorder.sink(), settle_seconds=SETTLE, poll_seconds=0.2)
    watcher.start()
    try:
        assert watcher.watch(str(folder), polling=True) == "polling"
        assert watcher.mode(str(folder)) == "polling"
        (folder / "a.jpg").write_bytes(JPEG)
        recorder.wait(lambda: str(folder / "a.jpg") in recorder.hinted(), "new photo polled")
        os.rename(folder / "a.jpg", folder / "b.jpg")
        recorder.wait(lambda: str(folder / "b.jpg") in recorder.hinted(), "rename polled")
        (folder / "b.jpg").unlink()
        recorder.wait(lambda: recorder.hinted().count(str(folder / "b.jpg")) >= 2, "delete polled")
    finally:
        watcher.stop()
