"""Bad files dropped into a watched folder while the daemon runs.

Each one is indexed, or listed as a failure with a reason (``petwatch status --json``), or,
when it is not a photo by name at all, ignored; the daemon stays up throughout. A failed
file is not retried until it changes: a rescan leaves it alone, replacing it with a good
photo gets it indexed and off the failure list, deleting it takes it off the list.

(In-process decoding of every dataset fixture is tests/test_photos.py's; this is the same
kind of trouble arriving live, through the watcher, into a running daemon.)
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DATASETS, run_cli
from reliability.helpers import (
    AlbumGuard,
    alive,
    configure_folders,
    failure_times,
    jpeg_bytes,
    make_jpegs,
    wait_until,
)


def _png_bomb() -> bytes:
    """A valid PNG header declaring 100000 x 100000 pixels (10 gigapixels) over a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def _photo_array(side: int = 128) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg_bytes(1, side=side))).convert("RGB"))


def _bad_files() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, expected: 'indexed' | 'failed' | 'ignored')."""
    good = jpeg_bytes(3)
    rgb = Image.fromarray(_photo_array())
    files = {
        "truncated.jpg": (good[: len(good) // 2], "failed"),
        "zero.jpg": (b"", "failed"),
        "text.jpg": (b"this is not a photo, just some notes\n" * 20, "failed"),
        "png named.jpg": (_save(rgb, "PNG"), "indexed"),
        "bomb.png": (_png_bomb(), "failed"),
        "one_pixel.png": (_save(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), "indexed"),
        "panorama_30000x200.jpg": (_save(rgb.resize((30000, 200)), "JPEG", quality=70), "indexed"),
        "cmyk.jpg": (_save(rgb.convert("CMYK"), "JPEG"), "indexed"),
        "sixteen_bit.png": (
            _save(Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257), "PNG"),
            "indexed",
        ),
        "animated.gif": (_save(rgb, "GIF", save_all=True, append_images=[rgb.rotate(90)]), "ignored"),
        "animated_gif_named.jpg": (_save(rgb, "GIF", save_all=True, append_images=[rgb.rotate(90)]), "failed"),
        "animated.webp": (_save(rgb, "WEBP", save_all=True, append_images=[rgb.rotate(90)]), "indexed"),
        "name with spaces.jpg": (jpeg_bytes(10), "indexed"),
        "name\nwith\nnewlines.jpg": (jpeg_bytes(11), "indexed"),
        "x" * 251 + ".jpg": (jpeg_bytes(12), "indexed"),  # a 255-byte name, the most a name may be
        "unicode ŝnûfflé 🐈.jpg": (jpeg_bytes(13), "indexed"),
    }
    broken = DATASETS / "photo-fixtures" / "broken" / "truncated-1.jpg"
    if broken.exists():
        files["real_truncated.jpg"] = (broken.read_bytes(), "failed")
    heic = DATASETS / "photo-fixtures" / "immich-test-assets" / "formats" / "heic" / "IMG_2682.heic"
    if heic.exists():
        files["iphone.heic"] = (heic.read_bytes(), "indexed")
    return files


NON_UTF8 = b"caf\xe9 latin-1 name.jpg"  # a name from an old FAT stick: not valid UTF-8


def test_bad_files_dropped_in_are_indexed_or_failed_with_a_reason_and_retried_only_when_changed(
    home, start_daemon, albums
):
    album = albums / "live"
    make_jpegs(album, 4, "ok")
    configure_folders(album)
    daemon = start_daemon()
    daemon.wait_idle()
    guard = AlbumGuard(albums)

    files = _bad_files()
    for name, (data, _) in files.items():
        (album / name).write_bytes(data)
    bad_dir = album / "nasty"
    bad_dir.mkdir()
    raw_name = os.path.join(os.fsencode(bad_dir), NON_UTF8)
    with open(raw_name, "wb") as out:
        out.write(jpeg_bytes(20))
    non_utf8 = os.fsdecode(raw_name)
    raw_bad = os.path.join(os.fsencode(bad_dir), b"broken \xff\xfe.jpg")
    with open(raw_bad, "wb") as out:
        out.write(b"\xff\xd8\xff" + b"\0" * 50)  # a JPEG signature and nothing after it
    # A symlink loop, as files and as a directory, and a link to a photo outside.
    os.symlink("loop_b.jpg", bad_dir / "loop_a.jpg")
    os.symlink("loop_a.jpg", bad_dir / "loop_b.jpg")
    os.symlink(".", bad_dir / "self")
    # A file deleted right after it was made.
    flash = album / "flash.jpg"
    flash.write_bytes(jpeg_bytes(21))
    flash.unlink()
    # A file still being written: half now, the rest after the daemon had a look.
    growing = album / "growing.jpg"
    whole = jpeg_bytes(22, side=160)
    writer = open(growing, "wb")
    writer.write(whole[: len(whole) // 2])
    writer.flush()
    # An unreadable file: root reads anything, so there it is simply indexed.
    locked = album / "locked.jpg"
    locked.write_bytes(jpeg_bytes(23))
    locked.chmod(0o000)
    files["locked.jpg"] = (b"", "indexed" if os.geteuid() == 0 else "failed")

    with daemon.client() as client:
        client.rescan()  # a walk while the writer is mid-file, too
    time.sleep(1.0)  # the daemon sees a half-written file for a while (settle is 0.5 s)
    writer.write(whole[len(whole) // 2 :])
    writer.close()
    guard.mark()

    expected = {str(album / n): how for n, (_, how) in files.items()}
    expected[non_utf8] = "indexed"
    expected[os.fsdecode(raw_bad)] = "failed"
    expected[str(growing)] = "indexed"
    indexed = sorted(p for p, how in expected.items() if how == "indexed")
    failed = sorted(p for p, how in expected.items() if how == "failed")

    def settled() -> bool:
        with daemon.client() as client:
            known = {f["path"] for f in client.failures()}
        return known >= set(failed) and _all_indexed(daemon, album) >= set(indexed)

    wait_until(settled, 120, "every bad file indexed or failed", interval=0.5)
    daemon.wait_idle()
    assert alive(daemon)

    # A named pipe called .jpg: ignored, as the walk ignores it. Reading it would block the
    # indexer forever; the watcher once held it for STALE_WRITER_SECONDS (60) as an empty
    # file whose writer had not begun, the daemon "indexing" all that while.
    os.mkfifo(bad_dir / "pipe.jpg")
    guard.mark()
    daemon.wait_idle(timeout=45)  # generous, yet under the 60 s the pipe was once held

    # What `petwatch status --json` says: each failure with its reason, and only those.
    result = run_cli("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    reasons = {f["path"]: f["reason"] for f in status["failures"]}
    assert sorted(reasons) == failed, sorted(set(reasons) ^ set(failed))
    assert all(reason and "\n" not in reason for reason in reasons.values()), reasons
    assert "decompression bomb" in reasons[str(album / "bomb.png")]
    assert "empty" in reasons[str(album / "zero.jpg")]
    assert "not a supported image" in reasons[str(album / "text.jpg")]
    assert status["failed"] == len(failed)
    assert status["indexed"] == 4 + len(indexed)
    with daemon.client() as client:
        hits = client.search(image=str(album / "ok_00000.jpg"), top_k=100, min_score=-1.0, stacks=False)["hits"]
    assert sorted(h["path"] for h in hits) == sorted([*indexed, *(str(album / f"ok_{i:05d}.jpg") for i in range(4))])
    assert not any(word in h["path"] for h in hits for word in ("loop", "flash", "pipe"))
    # The non-UTF-8 names round-trip through the API as the same bytes.
    assert any(os.fsencode(h["path"]) == raw_name for h in hits)
    assert any(os.fsencode(p) == raw_bad for p in reasons)
    # The status command a person reads also copes with every one of these names.
    human = subprocess.run([sys.executable, "-m", "petwatch", "status"], capture_output=True, timeout=120)
    assert human.returncode == 0, human.stderr
    assert raw_bad in human.stdout  # a terminal shows the name's own bytes, as ls does

    # A rescan does not retry a bad file that did not change.
    before = failure_times(home)
    with daemon.client() as client:
        client.rescan()
    daemon.wait_idle()
    assert failure_times(home) == before, "unchanged bad files were read again"

    # Replaced by a good photo: indexed, and off the failure list. Deleted: off the list too.
    fixed = album / "truncated.jpg"
    fixed.write_bytes(jpeg_bytes(30))
    (album / "text.jpg").unlink()
    guard.mark()
    wait_until(lambda: str(fixed) in _all_indexed(daemon, album), 30, "the repaired file indexed")
    daemon.wait_idle()
    with daemon.client() as client:
        left = {f["path"] for f in client.failures()}
    assert str(fixed) not in left
    assert str(album / "text.jpg") not in left, "a deleted file is still listed as failed"
    assert left == set(failed) - {str(fixed), str(album / "text.jpg")}
    assert alive(daemon)
    assert "Traceback" not in daemon.log.read_text()
    locked.chmod(0o644)  # the test's own change, undone so the album can be cleaned up
    guard.mark()
    daemon.wait_idle()
    guard.check()


def test_unreadable_file_is_failed_with_permission_denied(home, start_daemon, albums):
    if os.geteuid() == 0:
        pytest.skip("runs as root, which reads a chmod 000 file anyway: nothing to refuse")
    album = albums / "a"
    make_jpegs(album, 2, "ok")
    configure_folders(album)
    daemon = start_daemon()
    daemon.wait_idle()
    locked = album / "locked.jpg"
    locked.write_bytes(jpeg_bytes(5))
    locked.chmod(0o000)
    with daemon.client() as client:
        wait_until(lambda: any(f["path"] == str(locked) for f in client.failures()), 30, "failure listed")
        reason = next(f["reason"] for f in client.failures() if f["path"] == str(locked))
    assert "permission denied" in reason
    locked.chmod(0o644)


def _all_indexed(daemon, album: Path) -> set[str]:
    """Every indexed path (a search that returns everything)."""
    with daemon.client() as client:
        hits = client.search(image=str(album / "ok_00000.jpg"), top_k=100, min_score=-1.0, stacks=False)["hits"]
    return {h["path"] for h in hits}
