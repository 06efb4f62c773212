"""Helpers for the reliability suite: distinct photos made fast, the index read back whole,
the album snapshot, raw socket requests, and the daemon's memory.

The album guard, ``wait_until`` and the event recorder are the acceptance tests' own
(tests/test_daemon.py), reused here so both suites mean the same thing by "untouched".
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from conftest import DATASETS, DaemonProcess, bundled_photos
from petwatch import locations
from test_daemon import AlbumGuard, Events, configure_folders, snapshot, wait_until  # noqa: F401


# --- photos ----------------------------------------------------------------------------------
def _bases() -> list[np.ndarray]:
    pets = sorted((DATASETS / "oxford-pets-sample").glob("*/*.jpg"))[::37][:10]
    if pets:
        return [np.asarray(Image.open(p).convert("RGB").resize((256, 256))) for p in pets]
    return [np.asarray(Image.fromarray(a).convert("RGB").resize((256, 256))) for a in bundled_photos().values()]


def make_jpegs(folder: Path, count: int, prefix: str = "p", side: int = 96, seed: int = 0) -> list[Path]:
    """``count`` small JPEGs with distinct bytes (crops of real photos), written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    bases = _bases()
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        base = bases[i % len(bases)]
        x, y = rng.integers(0, 256 - side, size=2)
        crop = base[y : y + side, x : x + side].copy()
        crop[0, 0] = [i % 251, (i // 251) % 251, seed % 251]  # distinct bytes even for equal crops
        path = folder / f"{prefix}_{i:05d}.jpg"
        Image.fromarray(crop).save(path, quality=85)
        paths.append(path)
    return paths


def jpeg_bytes(seed: int, side: int = 96) -> bytes:
    """One small real-photo JPEG's bytes, different for each ``seed``."""
    base = _bases()[seed % len(_bases())]
    rng = np.random.default_rng(seed + 1000)
    x, y = rng.integers(0, 256 - side, size=2)
    crop = base[y : y + side, x : x + side].copy()
    crop[0, 0] = [seed % 251, (seed // 251) % 251, 7]
    out = io.BytesIO()
    Image.fromarray(crop).save(out, "JPEG", quality=85)
    return out.getvalue()


def copy_tree(files: list[Path], target: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(f, target / f.name)) for f in files]


def photo_files(*roots: Path) -> set[str]:
    """What a from-scratch index of these folders holds: every file with a photo extension."""
    from petwatch.photos import iter_photo_files

    return {str(p) for root in roots for p, _ in iter_photo_files(root)}


# --- the index, read back ------------------------------------------------------------------------
def stored_rows(home: Path) -> list[dict]:
    """Every row in the Milvus Lite DB of ``home`` (path, view, pk), read with the daemon stopped.

    This is the index itself, not the daemon's in-memory catalog: duplicates or orphans
    would show here even if the catalog hid them.
    """
    from petwatch.store import decode_path

    script = (
        "import json, sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from petwatch.milvus_lite import milvus_client_class\n"  # its logs and socket kept out of /tmp
        "c = milvus_client_class()(uri=sys.argv[1])\n"
        "rows = []\n"
        "for name in c.list_collections():\n"
        "    it = c.query_iterator(name, batch_size=4000, filter='view >= 0', output_fields=['pk', 'path', 'view'])\n"
        "    while batch := it.next():\n"
        "        rows += [{'pk': r['pk'], 'path': r['path'], 'view': r['view']} for r in batch]\n"
        "    it.close()\n"
        "c.close()\n"
        "print(json.dumps(rows))\n"
    )
    db = home / "data" / "milvus.db"
    done = subprocess.run([sys.executable, "-c", script, str(db)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    for row in rows:
        row["path"] = decode_path(row["path"])
    return rows


def assert_index_equals(home: Path, expected: set[str]) -> None:
    """The stopped daemon's index holds exactly ``expected``: one whole-image row per path."""
    rows = [r for r in stored_rows(home) if r["view"] == 0]
    paths = [r["path"] for r in rows]
    duplicates = sorted({p for p in paths if paths.count(p) > 1}) if len(set(paths)) != len(paths) else []
    assert not duplicates, f"stored more than once: {duplicates[:5]}"
    orphans, missing = sorted(set(paths) - expected), sorted(expected - set(paths))
    assert not orphans and not missing, f"orphans {orphans[:5]} missing {missing[:5]}"


def assert_live_index_equals(daemon: DaemonProcess, expected: set[str]) -> None:
    """Through the API: the count matches and every expected photo is there, as it is on disk."""
    with daemon.client() as client:
        status = client.status()
        assert status["indexed"] == len(expected), (status["indexed"], len(expected))
        for path in sorted(expected):
            info = client.photo(path)
            st = os.stat(path)
            assert (info["size"], info["mtime_ns"]) == (st.st_size, st.st_mtime_ns), path


# --- failures -------------------------------------------------------------------------------------
def failure_times(home: Path) -> dict[str, float]:
    """When each failure was (last) recorded: unchanged means the file was not retried."""
    db = sqlite3.connect(f"file:{home / 'data' / 'state.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT path, at FROM failures").fetchall()
    finally:
        db.close()
    return {os.fsdecode(path): at for path, at in rows}


# --- the process ----------------------------------------------------------------------------------
def rss_bytes(daemon: DaemonProcess) -> int:
    """Resident memory of the daemon and its children (Milvus Lite), together."""
    root = psutil.Process(daemon.process.pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def alive(daemon: DaemonProcess) -> bool:
    if daemon.process.poll() is not None:
        return False
    with daemon.client() as client:
        return client.status()["pid"] == daemon.process.pid


# --- raw socket --------------------------------------------------------------------------------
def raw_request(
    method: str, target: str, body: bytes = b"", headers: dict | None = None, timeout: float = 30
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a fresh connection to the daemon's socket: (status, body)."""
    head = [f"{method} {target} HTTP/1.1", "Host: petwatch", "Connection: close", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(locations.socket_path()))
        sock.sendall("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    _headers, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), payload


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
