"""Stacks as a user sees them: a burst, an edited copy and the same photo in two folders are
one tile, opened on demand; different moments never stack. Real photos (the shared datasets),
a real model, a real Milvus Lite, a real daemon where the behaviour is the daemon's."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from PIL import Image
from tests.album import snapshot
from tests.conftest import dataset, run_cli
from tests.finding import search_reply
from tests.test_index import embedder, library  # noqa: F401 - the same real model and library

from petwatch import locations, photos, settings
from petwatch.library import Library

BURST = 8
T0 = 1_717_200_000  # 2024-06-01 00:00 UTC: every test photo's day differs from it


def _exif(taken_ms: int | None, subsec: bool = True, offset: str | None = None) -> bytes:
    exif = Image.Exif()
    if taken_ms is not None:
        seconds, millis = divmod(taken_ms, 1000)
        sub = exif.get_ifd(0x8769)
        sub[0x9003] = time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(seconds))
        if subsec:
            sub[0x9291] = f"{millis:03d}"
        if offset:
            sub[0x9011] = offset
    return exif.tobytes()


def write_burst(folder: Path, source: Path, start_ms: int, frames: int = BURST) -> list[Path]:
    """``frames`` frames of one photo, each shifted by a few pixels, 0.3 s apart (EXIF with sub-seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.open(source).convert("RGB")
    width, height = image.size
    out = []
    for n in range(frames):
        dx, dy = (n * 3) % 7, (n * 5) % 7
        frame = image.crop((dx, dy, width - 7 + dx, height - 7 + dy))
        path = folder / f"burst_{n}.jpg"
        frame.save(path, "JPEG", quality=90, exif=_exif(start_ms + 300 * n))
        out.append(path)
    return out


def write_photo(path: Path, source: Path, taken_ms: int | None, quality: int = 90, scale: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(source).convert("RGB")
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)))
    image.save(path, "JPEG", quality=quality, exif=_exif(taken_ms))
    return path


def oxford(count: int) -> list[Path]:
    """``count`` Oxford pet photos of different breeds."""
    breeds = sorted(p for p in dataset("oxford-pets-sample").iterdir() if p.is_dir())
    return [sorted(b.glob("*.jpg"))[0] for b in breeds[:count]]


def build_album(root: Path) -> dict[str, list[Path]]:
    """A burst of 8, a photo with a re-encoded half-size copy in another folder, different
    photos of one DogFaceNet dog a second apart, and photos of other pets on other days."""
    sources = oxford(8)
    day = 86_400_000
    album, other = root / "album", root / "other"
    burst = write_burst(album / "jump", sources[0], T0 * 1000 + 5 * day)
    original = write_photo(album / "original.jpg", sources[1], T0 * 1000 + 6 * day)
    copy = write_photo(other / "from_a_friend.jpg", sources[1], None, quality=60, scale=0.5)
    faces = sorted(p for p in dataset("dogfacenet-dev").iterdir() if p.is_dir() and len(list(p.iterdir())) >= 3)[0]
    dog = [
        write_photo(album / f"dog_{n}.jpg", face, T0 * 1000 + 7 * day + 1000 * n)
        for n, face in enumerate(sorted(faces.iterdir())[:3])
    ]
    rest = [write_photo(album / f"pet_{n}.jpg", s, T0 * 1000 + (10 + n) * day) for n, s in enumerate(sources[2:])]
    return {"burst": burst, "original": [original], "copy": [copy], "dog": dog, "rest": rest}


def _stacks_by_member(library: Library) -> dict[str, dict]:
    return {path: stack for stack in library.stacks() for path in stack["members"]}


def test_capture_time_has_milliseconds_and_zone(tmp_path):
    source = oxford(1)[0]
    taken = T0 * 1000 + 370
    plain = photos.read_photo(write_photo(tmp_path / "a.jpg", source, taken), 10**9)
    assert plain.taken_ms == taken and plain.taken_at == T0
    zoned = tmp_path / "b.jpg"
    Image.open(source).convert("RGB").save(zoned, "JPEG", exif=_exif(taken, offset="+02:00"))
    assert photos.read_photo(zoned, 10**9).taken_ms == taken - 2 * 3600 * 1000  # 14:00+02:00 is 12:00 UTC
    assert photos.read_photo(write_photo(tmp_path / "c.jpg", source, None), 10**9).taken_ms == 0


def test_burst_and_copies_stack_and_nothing_else(library, tmp_path):
    made = build_album(tmp_path)
    before = snapshot(tmp_path)
    library.reconcile([str(tmp_path / "album"), str(tmp_path / "other")])
    stacks = _stacks_by_member(library)
    burst = stacks[str(made["burst"][0])]
    assert sorted(burst["members"]) == sorted(str(p) for p in made["burst"])
    assert burst["cover"] in burst["members"]
    copies = stacks[str(made["original"][0])]
    assert copies["kind"] == "copies"
    # The original (full size) is the cover, not the half-size copy a friend sent.
    assert copies["members"] == [str(made["original"][0]), str(made["copy"][0])]
    # One dog's different photos a second apart, and other pets on other days: no stack.
    for path in made["dog"] + made["rest"]:
        assert str(path) not in stacks
    assert len(library.stacks()) == 2
    assert snapshot(tmp_path) == before  # the albums are only read


def test_search_shows_a_burst_once_and_still_fills_top_k(library, tmp_path):
    made = build_album(tmp_path)
    library.reconcile([str(tmp_path / "album"), str(tmp_path / "other")])
    query = str(made["burst"][3])
    total = 8 + 2 + 3 + 6
    reply = search_reply(library, query, top_k=5)
    hits = reply["hits"]
    assert len(hits) == 5  # top-k tiles, though the 8 frames fill the top 8 photos
    frames = [h for h in hits if h["path"] in {str(p) for p in made["burst"]}]
    assert len(frames) == 1 and frames[0]["stack"]["size"] == BURST
    assert frames[0]["path"] == library.stack(frames[0]["stack"]["id"])["cover"]
    assert len({h["path"] for h in hits}) == 5
    every = search_reply(library, query, top_k=total, stacks=False)["hits"]
    assert len(every) == total
    assert sum(h["path"] in {str(p) for p in made["burst"]} for h in every) == BURST
    assert all(h["stack"] and h["stack"]["size"] == BURST for h in every[:BURST])


def test_deleting_the_original_leaves_the_copy_a_plain_photo(library, tmp_path):
    made = build_album(tmp_path)
    folders = [str(tmp_path / "album"), str(tmp_path / "other")]
    library.reconcile(folders)
    copy = str(made["copy"][0])
    assert copy in _stacks_by_member(library)
    made["original"][0].unlink()
    library.reconcile(folders)
    assert copy not in _stacks_by_member(library)
    hit = next(h for h in search_reply(library, copy, top_k=3)["hits"] if h["path"] == copy)
    assert hit["stack"] is None
    # Deleting a burst frame leaves a burst of 7.
    made["burst"][0].unlink()
    library.reconcile(folders)
    assert len(_stacks_by_member(library)[str(made["burst"][1])]["members"]) == BURST - 1


def test_same_bytes_in_two_folders_are_one_stack(library, tmp_path):
    source = oxford(1)[0]
    a = write_photo(tmp_path / "a" / "photo.jpg", source, T0 * 1000)
    b = tmp_path / "b" / "photo.jpg"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    library.reconcile([str(tmp_path / "a"), str(tmp_path / "b")])
    assert [s["members"] for s in library.stacks()] == [[str(a), str(b)]]


def test_reindex_keeps_stacks(home, embedder, tmp_path):
    made = build_album(tmp_path)
    folders = [str(tmp_path / "album"), str(tmp_path / "other")]
    library = Library(settings.load(), embedder)
    try:
        library.reconcile(folders)
        before = sorted(library.stacks(), key=lambda s: s["id"])
    finally:
        library.close()
    assert len(before) == 2
    library = Library.reset(settings.load())  # what `petwatch reindex` does
    try:
        assert library.stacks() == []  # nothing indexed yet: no stack to show
        library.reconcile(folders)
        assert sorted(library.stacks(), key=lambda s: s["id"]) == before
    finally:
        library.close()
    assert made


def test_daemon_search_album_and_stacks_command(start_daemon, tmp_path):
    made = build_album(tmp_path)
    folders = f'["{tmp_path / "album"}", "{tmp_path / "other"}"]'
    daemon = start_daemon(PETWATCH_FOLDERS=folders)
    daemon.wait_idle()
    burst = {str(p) for p in made["burst"]}
    out = run_cli("search", str(made["burst"][2]), "--top-k", "4", "--json")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert len(hits) == 4
    tiles = [h for h in hits if h["path"] in burst]
    assert len(tiles) == 1 and tiles[0]["stack"]["size"] == BURST
    out = run_cli("search", str(made["burst"][2]), "--top-k", "8", "--no-stacks", "--json")
    assert {h["path"] for h in json.loads(out.stdout)} == burst
    out = run_cli("stacks", "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    opened = next(s for s in listed if s["id"] == tiles[0]["stack"]["id"])
    assert set(opened["members"]) == burst and opened["cover"] == opened["members"][0]
    assert set(opened) == {"id", "kind", "cover", "members"}
    one = json.loads(run_cli("stacks", opened["id"], "--json").stdout)
    assert one == opened
    unknown = run_cli("stacks", "0123456789abcdef")
    assert unknown.returncode == 1 and "petwatch stacks" in unknown.stderr and unknown.stderr.count("\n") == 1
    # An album: the pet's examples are three frames of the burst; the album shows it once.
    with daemon.client() as client:
        client.pet_add("Jumper", [str(p) for p in made["burst"][:3]])
        album = client.pet("Jumper")["hits"]
    in_album = [h for h in album if h["path"] in burst]
    assert len(in_album) == 1 and in_album[0]["stack"]["size"] == BURST


def test_the_same_view_on_two_days_is_two_moments(library, tmp_path):
    """However alike (here: the very same picture), photos taken on different days never stack."""
    source = oxford(1)[0]
    monday = write_photo(tmp_path / "a" / "monday.jpg", source, T0 * 1000)
    tuesday = write_photo(tmp_path / "a" / "tuesday.jpg", source, T0 * 1000 + 86_400_000, quality=80)
    library.reconcile([str(tmp_path / "a")])
    assert library.stacks() == []
    hits = search_reply(library, str(monday), top_k=2)["hits"]
    assert {h["path"] for h in hits} == {str(monday), str(tuesday)}


def test_photos_indexed_before_stacks_are_stacked_in_the_background(home, embedder, tmp_path):
    build_album(tmp_path)
    folders = [str(tmp_path / "album"), str(tmp_path / "other")]
    library = Library(settings.load(), embedder)
    try:
        library.reconcile(folders)
        stacked = sorted(library.stacks(), key=lambda s: s["id"])
    finally:
        library.close()
    with sqlite3.connect(locations.state_db()) as db:  # as an index made before stacks leaves it
        db.execute("DELETE FROM stack_looks")
        db.execute("DELETE FROM stack_links")
    library = Library(settings.load(), embedder)
    try:
        assert library.stacks() == []
        while library.stack_backfill(limit=5):  # what the daemon does a step at a time when idle
            pass
        assert sorted(library.stacks(), key=lambda s: s["id"]) == stacked
    finally:
        library.close()


def test_the_cover_of_a_camera_photo_and_its_re_encoded_copy_is_the_original(library, tmp_path):
    """Of a camera photo and a copy re-encoded at quality 70 (same pixels, same EXIF), the cover
    was the copy: its JPEG artefacts score as sharpness (668 against the original's 664). The
    original has the most bytes per pixel."""
    source = dataset("photo-fixtures", "exif-samples", "jpg", "exif-org", "kodak-dc240.jpg")
    original = tmp_path / "camera" / "dc240.jpg"
    original.parent.mkdir()
    original.write_bytes(source.read_bytes())
    copy = tmp_path / "shared" / "dc240 (copy).jpg"
    copy.parent.mkdir()
    image = Image.open(source)
    image.save(copy, "JPEG", quality=70, exif=image.info.get("exif", b""))
    assert Image.open(copy).size == image.size
    library.reconcile([str(original.parent), str(copy.parent)])
    stack = _stacks_by_member(library)[str(copy)]
    assert stack["kind"] == "copies"
    assert stack["cover"] == str(original), stack
    assert stack["members"] == [str(original), str(copy)]
