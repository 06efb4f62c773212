"""Acceptance tests for the daemon, as a user meets it.

Real everything: a real ``petwatch daemon`` process on a private PETWATCH_HOME, the real
watchdog observer (inotify), real Milvus Lite, the real Unix socket, real photos. What is
asserted is what a user notices: whether a photo is found, how soon, whether it was read
half-written or embedded twice, what status and the CLI say, how the process exits, and
that the album itself is never touched.

Waits are for conditions (``wait_until``, ``DaemonProcess.wait_idle``); the few time bounds
are generous functional ones (a photo is searchable within seconds, not minutes).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest
from PIL import Image

from conftest import DATASETS, DaemonProcess, bundled_photos, run_cli, write_photos
from petwatch import locations
from petwatch import settings as settings_module

SEARCHABLE_WITHIN = 15.0  # seconds from a copy's last write until search finds it
SMALL_PHOTOS = 80  # the backfill that is interrupted (kill -9, SIGTERM, SIGINT)


# --- helpers ---------------------------------------------------------------------------------
def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll until ``predicate()`` is truthy; return its value, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")
        time.sleep(interval)


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every entry under ``roots``: type, permissions, size, mtime and the bytes' digest.

    Directory mtimes are included, so a file petwatch created and removed again (a temp
    file, a lock) shows up as well as one it left behind.
    """
    found: dict[str, tuple] = {}
    for root in roots:
        for path in [root, *sorted(root.rglob("*"))]:
            st = os.lstat(path)
            digest = None
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path)] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_size if digest else None,
                st.st_mtime_ns,
                digest,
            )
    return found


class AlbumGuard:
    """Proves petwatch never writes, moves or deletes anything in the watched folders.

    ``mark()`` right after the test's own change records what the album must stay; ``check()``
    after the daemon has reacted compares. Every test below uses it.
    """

    def __init__(self, *roots: Path) -> None:
        self.roots = roots
        self.expected = snapshot(*roots)

    def mark(self) -> None:
        self.expected = snapshot(*self.roots)

    def check(self) -> None:
        now = snapshot(*self.roots)
        changed = sorted(p for p in set(now) | set(self.expected) if now.get(p) != self.expected.get(p))
        assert not changed, f"petwatch changed the album: {changed[:10]}"


class Events:
    """The daemon's server-sent events, recorded on a thread from the moment of creation."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self._client = daemon.client()
        self.items: list[tuple[float, str, dict]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        wait_until(lambda: any(kind == "hello" for _, kind, _ in self.items), 30, "event stream")

    def _read(self) -> None:
        try:
            for kind, data in self._client.events():
                self.items.append((time.monotonic(), kind, data))
        except Exception:  # noqa: BLE001 - the stream ends when the daemon stops
            pass

    def mark(self) -> int:
        return len(self.items)

    def of(self, kind: str, since: int = 0) -> list[dict]:
        return [data for _, k, data in self.items[since:] if k == kind]

    def totals(self, since: int = 0) -> dict:
        """Sums over the 'report' events since ``since``: what the daemon did, file by file."""
        total = {"indexed": 0, "reused": 0, "removed": 0, "skipped": {}, "failed": {}}
        for report in self.of("report", since):
            for key in ("indexed", "reused", "removed"):
                total[key] += report[key]
            total["skipped"].update(report["skipped"])
            total["failed"].update(report["failed"])
        return total

    def stored(self, path: Path, since: int = 0) -> int:
        """How many times ``path`` was written to the index since ``since``."""
        return sum(data["paths"].count(str(path)) for data in self.of("indexed", since))

    def close(self) -> None:
        self._client.close()


def configure_folders(*folders: Path) -> None:
    settings_module.update_config_file(folders=[str(f) for f in folders])


def all_hits(daemon: DaemonProcess, query: Path) -> dict[str, dict]:
    """Every row in the index, by path (a search that returns everything); fails on duplicates."""
    with daemon.client() as client:
        hits = client.search(image=str(query), top_k=1000, min_score=-1.0, stacks=False)["hits"]
    paths = [hit["path"] for hit in hits]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    assert not duplicates, f"photos stored more than once: {duplicates[:5]}"
    return {hit["path"]: hit for hit in hits}


def searchable(daemon: DaemonProcess, query: Path, expected: Path) -> dict | None:
    """The hit for ``expected`` when searching with ``query``, else None."""
    with daemon.client() as client:
        hits = client.search(image=str(query), top_k=10, min_score=-1.0, stacks=False)["hits"]
    return next((hit for hit in hits if hit["path"] == str(expected)), None)


def copy_slowly(source: Path, target: Path, chunks: int = 8, pause: float = 0.3) -> float:
    """Write ``source`` to ``target`` in chunks, flushed and fsynced, pausing between them,
    as a slow USB stick or network copy does. Returns the time of the last write."""
    data = source.read_bytes()
    size = -(-len(data) // chunks)
    with open(target, "wb") as out:
        for i in range(chunks):
            out.write(data[i * size : (i + 1) * size])
            out.flush()
            os.fsync(out.fileno())
            last = time.monotonic()
            if i < chunks - 1:
                time.sleep(pause)
    return last


def photo_info(daemon: DaemonProcess, path: Path) -> dict | None:
    from petwatch.client import DaemonError

    with daemon.client() as client:
        try:
            return client.photo(str(path))
        except DaemonError:
            return None


def camera_photo(folder: Path, name: str) -> Path:
    """A real photo (not in any album yet) to copy in: a pet, else a bundled photograph."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    pets = sorted((DATASETS / "oxford-pets-sample").glob("*/*.jpg"))
    if pets:
        shutil.copyfile(pets[-1 - len(list(folder.iterdir()))], target)
    else:
        array = list(bundled_photos().values())[-1 - len(list(folder.iterdir()))]
        Image.fromarray(array).save(target, quality=92)
    return target


@pytest.fixture(scope="session")
def small_jpegs(tmp_path_factory) -> list[Path]:
    """SMALL_PHOTOS distinct small JPEGs (real pets, downscaled), made once per session."""
    out = tmp_path_factory.mktemp("small-jpegs")
    pets = sorted((DATASETS / "oxford-pets-sample").glob("*/*.jpg"))
    sources: list[Image.Image] = []
    if pets:
        step = max(1, len(pets) // SMALL_PHOTOS)
        sources = [Image.open(p).convert("RGB") for p in pets[::step][:SMALL_PHOTOS]]
    bundled = [Image.fromarray(a) for a in bundled_photos().values()]
    paths = []
    for i in range(SMALL_PHOTOS):
        image = sources[i] if i < len(sources) else bundled[i % len(bundled)].rotate(i * 7, expand=True)
        image = image.copy()
        image.thumbnail((224, 224))
        path = out / f"small_{i:03d}.jpg"
        image.save(path, quality=88)
        paths.append(path)
    assert len({hashlib.sha256(p.read_bytes()).digest() for p in paths}) == SMALL_PHOTOS
    return paths


@pytest.fixture
def albums(tmp_path) -> Path:
    """Where the user's photos live: outside PETWATCH_HOME, as in real life."""
    root = tmp_path / "Pictures"
    root.mkdir()
    return root


# --- 1. a slow copy ----------------------------------------------------------------------------
def test_slowly_copied_photo_is_searchable_soon_and_never_read_half_written(home, start_daemon, albums, tmp_path):
    album = albums / "phone"
    write_photos(album, 4)
    configure_folders(album)
    daemon = start_daemon()
    daemon.wait_idle()
    events = Events(daemon)
    guard = AlbumGuard(albums)
    camera = tmp_path / "camera"

    # Straight into the folder, and into a subfolder made just before (as `cp -r` does).
    for target in (album / "copied_slowly.jpg", album / "trip" / "copied_slowly_too.jpg"):
        source = camera_photo(camera, target.name)
        target.parent.mkdir(exist_ok=True)
        since = events.mark()
        last_write = copy_slowly(source, target)
        guard.mark()

        # Searching with the camera's own file (not the indexed copy, whose stored vector
        # would trivially match itself) finds the album copy with score ~1.0: the stored
        # vector was made from the whole file.
        hit = wait_until(
            lambda source=source, target=target: searchable(daemon, source, target),
            SEARCHABLE_WITHIN,
            f"{target.name} searchable after its last write",
            interval=0.2,
        )
        took = time.monotonic() - last_write
        assert hit["score"] == pytest.approx(1.0, abs=1e-4), hit
        daemon.wait_idle()

        with daemon.client() as client:
            failures = {f["path"]: f["reason"] for f in client.failures()}
        assert str(target) not in failures, f"read half-written: {failures[str(target)]}"
        totals = events.totals(since)
        assert str(target) not in totals["skipped"] and str(target) not in totals["failed"], totals
        assert events.stored(target, since) == 1, "embedded more than once (a partial read first?)"
        assert totals["indexed"] == 1, totals
        print(f"{target.name}: searchable {took:.2f}s after its last write")
        guard.check()
    events.close()


# --- 2. renames, moves, deletes, directory moves ---------------------------------------------------
def test_renames_moves_and_deletes_are_reflected_without_re_embedding(home, start_daemon, albums, tmp_path):
    first, second = albums / "first", albums / "second"
    photos = write_photos(first, 8)
    (first / "sub").mkdir()
    for p in photos[6:]:
        p.rename(first / "sub" / p.name)
    second.mkdir()
    query = camera_photo(tmp_path / "query", "query.jpg")
    configure_folders(first, second)
    daemon = start_daemon()
    daemon.wait_idle()
    events = Events(daemon)
    guard = AlbumGuard(albums)
    before = all_hits(daemon, query)
    assert len(before) == 8

    def settled(expect_present: list[Path], expect_gone: list[Path]) -> dict:
        def ok():
            hits = all_hits(daemon, query)
            return (
                hits
                if all(str(p) in hits for p in expect_present) and not any(str(p) in hits for p in expect_gone)
                else None
            )

        hits = wait_until(
            ok,
            30,
            f"index shows {[p.name for p in expect_present]} and not {[p.name for p in expect_gone]}",
            interval=0.2,
        )
        daemon.wait_idle()
        guard.check()
        return hits

    # A rename: found under the new name, gone under the old, the vector reused.
    old, new = first / photos[0].name, first / "renamed.jpg"
    since = events.mark()
    old.rename(new)
    guard.mark()
    settled([new], [old])
    totals = events.totals(since)
    assert (totals["indexed"], totals["reused"], totals["removed"]) == (0, 1, 1), totals
    assert photo_info(daemon, new)["content_hash"] == before[str(old)]["content_hash"]

    # A move between the two watched folders: same, across watches.
    old, new = first / photos[1].name, second / photos[1].name
    since = events.mark()
    old.rename(new)
    guard.mark()
    hits = settled([new], [old])
    totals = events.totals(since)
    assert (totals["indexed"], totals["reused"]) == (0, 1), totals
    with daemon.client() as client:
        counts = {f["path"]: f["photos"] for f in client.status()["folders"]}
    assert counts == {str(first): 7, str(second): 1}

    # A delete.
    gone = first / photos[2].name
    gone.unlink()
    guard.mark()
    hits = settled([], [gone])
    assert len(hits) == 7 and photo_info(daemon, gone) is None

    # A directory moved within the folder: every photo under its new path, none re-embedded.
    sub_photos = [first / "sub" / p.name for p in photos[6:]]
    moved = [first / "sub2" / p.name for p in photos[6:]]
    since = events.mark()
    (first / "sub").rename(first / "sub2")
    guard.mark()
    settled(moved, sub_photos)
    assert events.totals(since)["indexed"] == 0, events.totals(since)

    # A directory of photos moved in from outside (an import), then out again.
    outside = tmp_path / "import"
    imported = [p.rename(outside / f"imp_{p.name}") for p in write_photos(outside, 3)]
    since = events.mark()
    outside.rename(second / "import")
    guard.mark()
    inside = [second / "import" / p.name for p in imported]
    settled(inside, [])
    totals = events.totals(since)
    assert totals["indexed"] + totals["reused"] == 3 and not totals["skipped"], totals
    (second / "import").rename(outside)
    guard.mark()
    settled([], inside)

    # One photo moved in from outside (mv ~/Downloads/x.jpg): complete at once, no writer.
    download = camera_photo(tmp_path / "Downloads", "download.jpg")
    since = events.mark()
    target = second / "download.jpg"
    download.rename(target)
    guard.mark()
    started = time.monotonic()
    settled([target], [])
    assert time.monotonic() - started < SEARCHABLE_WITHIN

    # rm -r of a directory.
    shutil.rmtree(first / "sub2")
    guard.mark()
    hits = settled([], moved)
    assert set(hits) == {
        str(p) for p in [first / "renamed.jpg", second / photos[1].name, target, *(first / p.name for p in photos[3:6])]
    }
    with daemon.client() as client:
        status = client.status()
    assert status["indexed"] == len(hits) and status["failed"] == 0
    events.close()


# --- 3. kill -9 in the middle of a backfill -------------------------------------------------------
def _start_backfill(start_daemon, albums: Path, small_jpegs: list[Path]) -> tuple[Path, DaemonProcess, Events]:
    album = albums / "backfill"
    album.mkdir()
    for source in small_jpegs:
        shutil.copyfile(source, album / source.name)
    configure_folders(album)
    # Small batches: the backfill commits often, so an interruption lands between batches.
    daemon = start_daemon(PETWATCH_BATCH_SIZE="4", PETWATCH_DECODE_THREADS="1")
    return album, daemon, Events(daemon)


def _interrupt_backfill(
    daemon: DaemonProcess, events: Events, album: Path, sig: int, note: bool = True
) -> tuple[dict[str, int], list[str]]:
    """Wait until some photos are stored, note their indexed_at (``note``), then send ``sig``.
    Returns those notes and every photo the daemon had announced as stored by then.

    Without ``note`` the signal goes at once: on a Milvus server, reads made while the backfill
    writes take ~0.5 s each, long enough for all of it to be stored before the signal (the
    photos announced are checked after the restart all the same)."""

    def stored() -> list[str]:
        return [p for data in events.of("indexed") for p in data["paths"]]

    done = wait_until(lambda: len(stored()) >= 8 and stored(), 120, "some photos stored", interval=0.02)
    noted = {path: photo_info(daemon, Path(path))["indexed_at"] for path in done[:4]} if note else {}
    announced = stored()
    daemon.process.send_signal(sig)
    return noted, announced


def _resume_and_check(
    start_daemon, album: Path, small_jpegs: list[Path], noted: dict[str, int], announced: list[str], guard: AlbumGuard
) -> None:
    time.sleep(1.1)  # indexed_at has second resolution: a re-embed now would show
    restarted_at = int(time.time())  # rows stored before the stop are older than this
    daemon = start_daemon()
    events = Events(daemon)
    daemon.wait_idle()
    with daemon.client() as client:
        assert client.stats()["photos"] == SMALL_PHOTOS
        assert client.failures() == []
    hits = all_hits(daemon, small_jpegs[0])
    assert set(hits) == {str(album / p.name) for p in small_jpegs}
    for path, indexed_at in noted.items():
        assert photo_info(daemon, Path(path))["indexed_at"] == indexed_at, f"{path} embedded again"
    # Counted from the rows, not from a status read after the start: the restarted daemon
    # may have stored a batch or two by then.
    kept = {path for path, hit in hits.items() if hit["indexed_at"] < restarted_at}
    assert 8 <= len(kept) < SMALL_PHOTOS, f"not interrupted mid-backfill ({len(kept)} stored before the stop)"
    assert not set(announced) - kept, "photos announced as stored were embedded again"
    # Only what was missing was embedded after the restart (the events stream may miss the
    # first batches, never count one twice).
    totals = events.totals()
    assert totals["indexed"] + totals["reused"] <= SMALL_PHOTOS - len(kept), totals
    guard.check()
    events.close()


def test_kill_9_mid_backfill_resumes_without_duplicates_or_re_embedding(home, start_daemon, albums, small_jpegs):
    album, daemon, events = _start_backfill(start_daemon, albums, small_jpegs)
    guard = AlbumGuard(albums)
    milvus = psutil.Process(daemon.process.pid).children(recursive=True)
    assert milvus, "Milvus Lite runs as a child process"
    noted, announced = _interrupt_backfill(daemon, events, album, signal.SIGKILL)
    daemon.process.wait(30)
    events.close()
    # The Milvus Lite child notices its parent died and goes too (no orphan holding the DB).
    wait_until(
        lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in milvus),
        30,
        "the killed daemon's Milvus child gone",
    )
    # The crashed daemon's socket file is still there; status says how to start it all the same.
    assert locations.socket_path().exists()
    result = run_cli("status")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "petwatch daemon" in result.stderr
    _resume_and_check(start_daemon, album, small_jpegs, noted, announced, guard)


# --- 8. SIGTERM / SIGINT mid-batch ---------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_mid_batch_exits_cleanly_and_resumes(home, start_daemon, albums, small_jpegs, sig):
    album, daemon, events = _start_backfill(start_daemon, albums, small_jpegs)
    guard = AlbumGuard(albums)
    noted, announced = _interrupt_backfill(daemon, events, album, sig, note=False)
    started = time.monotonic()
    code = daemon.process.wait(30)
    took = time.monotonic() - started
    assert code == 0, f"exit {code} on {sig!r}:\n{daemon.log.read_text()[-3000:]}"
    assert took < 20, f"took {took:.1f}s to stop"
    assert not locations.socket_path().exists(), "socket left behind"
    log = daemon.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    events.close()
    _resume_and_check(start_daemon, album, small_jpegs, noted, announced, guard)


def test_sigterm_while_loading_exits_cleanly(home):
    """systemctl stop during the (slow) start: exit 0, nothing left behind."""
    configure_folders()
    daemon = DaemonProcess()
    with open(daemon.log, "ab") as log:
        daemon.process = subprocess.Popen(
            [sys.executable, "-m", "petwatch", "daemon"], env=daemon.env, stdout=log, stderr=log
        )
    lock = locations.daemon_lock()
    wait_until(
        lambda: lock.exists() and lock.read_text().strip() == str(daemon.process.pid), 60, "the instance lock taken"
    )
    time.sleep(0.5)
    children = psutil.Process(daemon.process.pid).children(recursive=True)
    daemon.process.send_signal(signal.SIGTERM)
    try:
        assert daemon.process.wait(30) == 0, daemon.log.read_text()[-3000:]
    finally:
        daemon.kill()  # never leave a daemon behind, whatever went wrong
    assert not locations.socket_path().exists()
    wait_until(
        lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children), 30, "no child left"
    )
    assert "Traceback" not in daemon.log.read_text()


# --- 4. single instance --------------------------------------------------------------------------
def test_second_daemon_on_the_same_home_exits_with_a_clear_message(home, start_daemon, albums):
    album = albums / "a"
    write_photos(album, 2)
    configure_folders(album)
    daemon = start_daemon()
    second = subprocess.run(
        [sys.executable, "-m", "petwatch", "daemon"], capture_output=True, text=True, env=os.environ.copy(), timeout=120
    )
    assert second.returncode != 0
    message = second.stderr.strip()
    assert "already running" in message and str(daemon.process.pid) in message, message
    assert len(message.splitlines()) == 1, message
    with daemon.client() as client:  # the first one is unharmed, its socket still there
        assert client.status()["pid"] == daemon.process.pid


# --- 5. the socket ------------------------------------------------------------------------------
def test_socket_is_private_and_bad_requests_get_one_error_shape(home, start_daemon, albums):
    album = albums / "a"
    write_photos(album, 2)
    configure_folders(album)
    daemon = start_daemon()
    daemon.wait_idle()
    sock = locations.socket_path()
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700

    http = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://petwatch", timeout=30)
    json_headers = {"content-type": "application/json"}

    def too_big():
        for _ in range(40):
            yield b"x" * 65536

    bad = [
        ("POST", "/search", {"content": b'{"image": "/x.jpg"', "headers": json_headers}, 422),
        ("POST", "/search", {"content": b"\xff\xfe\x00garbage", "headers": json_headers}, 422),
        ("POST", "/search", {"json": []}, 422),
        ("POST", "/search", {"json": {"image": str(album), "top_k": "many"}}, 422),
        ("POST", "/search", {"json": {"image": 5}}, 422),
        ("POST", "/search", {"json": {"image": "/x.jpg", "colour": "red"}}, 422),
        ("POST", "/search", {"json": {"image": "/x.jpg", "top_k": 10**9}}, 422),
        ("POST", "/search", {"json": {}}, 400),
        ("POST", "/search", {"json": {"image": "/etc/hostname"}}, 400),
        ("POST", "/search", {"json": {"image": "/no/such/photo.jpg"}}, 400),
        ("POST", "/folders", {"json": {"path": "/no/such/folder"}}, 400),
        ("POST", "/folders", {"json": {"path": 7}}, 422),
        ("POST", "/index", {"json": {"folders": "not a list"}}, 422),
        ("GET", "/photo", {}, 422),
        ("GET", "/photo", {"params": {"path": "/not/indexed.jpg"}}, 400),
        ("GET", "/thumbnail", {"params": {"path": "/x.jpg", "size": "huge"}}, 422),
        ("GET", "/no/such/method", {}, 404),
        ("GET", "/search", {}, 405),
        ("DELETE", "/status", {}, 405),
        ("POST", "/search", {"content": b"{}" + b" " * (2 << 20), "headers": json_headers}, 413),
        ("POST", "/search", {"content": too_big(), "headers": json_headers}, 413),
    ]
    for method, url, kwargs, code in bad:
        response = http.request(method, url, **kwargs)
        label = f"{method} {url} {str(kwargs)[:60]}"
        assert response.status_code == code, f"{label}: {response.status_code} {response.text[:200]}"
        body = response.json()
        assert set(body) == {"error"} and isinstance(body["error"], str), f"{label}: {body}"
        assert body["error"] and "\n" not in body["error"], f"{label}: {body}"
        assert http.get("/status").status_code == 200, f"daemon stopped serving after {label}"
    # A GET's query is validated by its model as a body is: the parameter at fault is named.
    for url, params, said in [
        ("/thumbnail", {"path": "/x.jpg", "colour": "red"}, "query.colour: Extra inputs are not permitted"),
        ("/thumbnail", {"path": "/x.jpg", "size": 4}, "query.size: Input should be greater than or equal to 16"),
        ("/photo", {"path": "b64:!!"}, "query.path: Value error, b64: is not followed by a base64 file name"),
        ("/pets/Cola", {"limit": -1}, "query.limit: Input should be greater than or equal to 0"),
        ("/pets/Cola/paths", {"top": 0}, "query.top: Input should be greater than or equal to 1"),
        ("/groups", {"all": "maybe"}, "query.all: Input should be a valid boolean"),
    ]:
        response = http.get(url, params=params)
        assert response.status_code == 422 and said in response.json()["error"], f"{url} {params}: {response.text}"
    http.close()
    assert daemon.process.poll() is None

    # A raw connection that sends garbage, or hangs up half-way, does not hurt either.
    for junk in (b"NOT HTTP AT ALL\r\n\r\n", b"POST /search HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.settimeout(10)
            raw.connect(str(sock))
            raw.sendall(junk)
    with daemon.client() as client:
        assert client.status()["state"] in ("idle", "indexing")


def test_status_without_a_daemon_says_how_to_start_it(home):
    result = run_cli("status")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "petwatch daemon" in lines[0], result.stderr
    assert result.stdout == ""


# --- 6. folders through the CLI, and a folder that goes away ---------------------------------------
def test_folders_cli_persists_and_applies_live_and_missing_folder_goes_offline(home, start_daemon, albums, tmp_path):
    one, two = albums / "one", albums / "two"
    one_photos = write_photos(one, 3)
    two.mkdir()
    for p in write_photos(tmp_path / "staging", 4)[1:]:  # [0] is one's first photo
        p.rename(two / f"two_{p.name}")
    query = camera_photo(tmp_path / "query", "query.jpg")
    configure_folders()
    daemon = start_daemon()
    guard = AlbumGuard(albums)

    def config_folders() -> list[str]:
        return [str(f) for f in settings_module.load().folders]

    def cli(*args: str) -> str:
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    cli("folders", "add", str(one))
    cli("folders", "add", str(two))
    assert config_folders() == [str(one), str(two)]
    wait_until(lambda: len(all_hits(daemon, query)) == 6, 60, "both folders indexed", interval=0.3)
    listed = json.loads(cli("folders", "list", "--json"))
    assert [(f["path"], f["mode"], f["photos"]) for f in listed] == [(str(one), "events", 3), (str(two), "events", 3)]
    assert str(one) in cli("folders", "list")

    # Watched live: a new photo in a folder added a moment ago is found.
    extra = camera_photo(tmp_path / "camera", "new.jpg")
    shutil.copyfile(extra, two / "new.jpg")
    guard.mark()
    wait_until(lambda: searchable(daemon, extra, two / "new.jpg"), SEARCHABLE_WITHIN, "new photo in a new folder")

    cli("folders", "remove", str(one))
    assert config_folders() == [str(two)]
    wait_until(
        lambda: not any(str(p) in all_hits(daemon, query) for p in one_photos), 30, "removed folder's photos dropped"
    )
    assert [f["path"] for f in json.loads(cli("folders", "list", "--json"))] == [str(two)]
    result = run_cli("folders", "remove", str(one))
    assert result.returncode == 1 and "not a watched folder" in result.stderr
    daemon.wait_idle()
    guard.check()

    # The folder goes away (renamed, like an unplugged drive): its photos stay, marked offline.
    away = albums / "two-away"
    two.rename(away)
    guard = AlbumGuard(albums)

    def folder_state() -> dict:
        with daemon.client() as client:
            return client.status()["folders"][0]

    wait_until(lambda: not folder_state()["online"], 30, "folder shown offline")
    assert folder_state()["mode"] == "offline" and folder_state()["photos"] == 4
    hits = all_hits(daemon, query)
    assert len(hits) == 4 and not any(h["online"] for h in hits.values())
    with daemon.client() as client:
        assert client.rescan()["queued"]
    daemon.wait_idle()
    assert len(all_hits(daemon, query)) == 4, "a rescan dropped the offline folder's photos"

    # A photo added while it was away is found when it comes back.
    shutil.copyfile(one_photos[0], away / "while_away.jpg")
    away.rename(two)
    guard = AlbumGuard(albums)
    wait_until(lambda: folder_state()["online"] and folder_state()["mode"] == "events", 30, "folder back online")
    wait_until(lambda: len(all_hits(daemon, query)) == 5, 30, "photo added while away indexed")
    daemon.wait_idle()
    assert all(h["online"] for h in all_hits(daemon, query).values())
    # And it is watched again.
    shutil.copyfile(extra, two / "after_return.jpg")
    wait_until(lambda: searchable(daemon, extra, two / "after_return.jpg"), SEARCHABLE_WITHIN, "watched again")
    assert config_folders() == [str(two)]
    guard.mark()
    daemon.wait_idle()
    guard.check()

    # The config survives a restart, with no daemon running in between.
    assert daemon.stop() == 0
    assert "daemon not running" in cli("folders", "list")
    daemon = start_daemon()
    assert [f["path"] for f in daemon.wait_idle()["folders"]] == [str(two)]


# --- 9. the album is read, never written ------------------------------------------------------------
def test_album_is_never_written_by_anything_petwatch_does(home, start_daemon, albums, tmp_path):
    album = albums / "a"
    photos = write_photos(album, 4)
    (album / "notes.txt").write_text("not a photo\n")
    (album / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 100)
    os.chmod(photos[0], 0o444)
    configure_folders(album)
    guard = AlbumGuard(albums)
    daemon = start_daemon()
    daemon.wait_idle()
    with daemon.client() as client:
        client.search(image=str(photos[1]))
        client.search(photo=str(photos[2]))
        for size in (64, 256, 1024):
            assert client.thumbnail(str(photos[0]), size)[:3] == b"\xff\xd8\xff"
        client.photo(str(photos[3]))
        client.rescan()
        assert any(f["path"] == str(album / "broken.jpg") for f in client.failures())
    daemon.wait_idle()
    assert daemon.stop() == 0
    daemon = start_daemon()
    daemon.wait_idle()
    daemon.stop()
    guard.check()


def test_search_json_has_one_shape_with_and_without_a_daemon(home, start_daemon):
    """A script reads `petwatch search --json` the same way whether or not a daemon runs: the
    same hits with the same fields (the in-process path had no ``online``)."""
    album = home / "album"
    photos = write_photos(album, 4)
    settings_module.update_config_file(folders=[str(album)])
    assert run_cli("index", str(album)).returncode == 0  # no daemon: the CLI opens the index
    alone = run_cli("search", "--json", str(photos[0]))
    assert alone.returncode == 0, alone.stderr
    daemon = start_daemon()
    daemon.wait_idle()
    served = run_cli("search", "--json", str(photos[0]))
    assert served.returncode == 0, served.stderr
    without, with_daemon = json.loads(alone.stdout), json.loads(served.stdout)
    assert [sorted(hit) for hit in without] == [sorted(hit) for hit in with_daemon]
    assert [(h["path"], round(h["score"], 4)) for h in without] == [
        (h["path"], round(h["score"], 4)) for h in with_daemon
    ]
    assert without[0]["path"] == str(photos[0]) and all(hit["online"] for hit in without)


# --- the photo record: a field read from the file reaches every reply ---------------------------
def test_a_photos_camera_is_in_its_photo_reply_and_its_search_hits(home, start_daemon, albums):
    """The camera (EXIF Make and Model) is stored with each photo and shown by GET /photo and
    in search hits; a photo that names no camera shows ""."""
    fixtures = DATASETS / "photo-fixtures" / "exif-samples" / "jpg"
    pets = sorted((DATASETS / "oxford-pets-sample").glob("*/*.jpg"))
    if not fixtures.is_dir() or not pets:
        pytest.skip(f"the camera fixtures are absent from {DATASETS}")
    album = albums / "cameras"
    album.mkdir()
    cameras = {"Canon_40D.jpg": "Canon EOS 40D", "Nikon_D70.jpg": "NIKON D70", "pet.jpg": ""}
    shutil.copyfile(fixtures / "Canon_40D.jpg", album / "Canon_40D.jpg")
    shutil.copyfile(fixtures / "Nikon_D70.jpg", album / "Nikon_D70.jpg")
    shutil.copyfile(pets[0], album / "pet.jpg")  # no EXIF
    configure_folders(album)
    daemon = start_daemon()
    daemon.wait_idle()
    with daemon.client() as client:
        assert {name: client.photo(str(album / name))["camera"] for name in cameras} == cameras
        hits = client.search(photo=str(album / "Canon_40D.jpg"), top_k=10, stacks=False)["hits"]
    assert {os.path.basename(hit["path"]): hit["camera"] for hit in hits} == cameras
