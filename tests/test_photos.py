"""What counts as a photo, and every bad file is indexed or skipped with a reason."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image
from tests.conftest import bundled_photos, dataset

from petwatch import photos

LIMIT = 180_000_000


def _jpeg(array: np.ndarray, **save) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "JPEG", quality=90, **save)
    return out.getvalue()


def test_format_is_decided_by_content(tmp_path):
    png = io.BytesIO()
    Image.fromarray(bundled_photos()["coffee"]).save(png, "PNG")
    disguised = tmp_path / "really_a_png.jpg"
    disguised.write_bytes(png.getvalue())
    assert photos.read_photo(disguised, LIMIT).format == "PNG"
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo")
    with pytest.raises(photos.PhotoError, match="not a supported image"):
        photos.read_photo(text, LIMIT)


def test_zero_byte_and_missing_files_give_reasons(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(photos.PhotoError, match="empty"):
        photos.read_photo(empty, LIMIT)
    with pytest.raises(photos.PhotoError, match="vanished"):
        photos.read_photo(tmp_path / "gone.jpg", LIMIT)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 400 MP in a few kB
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(photos.PhotoError, match="decompression bomb"):
        photos.read_photo(bomb, LIMIT)


def test_exif_orientation_gives_the_same_upright_picture():
    folder = dataset("photo-fixtures", "exif-samples", "jpg", "orientation")
    for kind in ("landscape", "portrait"):
        reference = np.asarray(photos.open_upright(folder / f"{kind}_1.jpg", LIMIT), dtype=float)
        for tag in range(2, 9):
            image = photos.open_upright(folder / f"{kind}_{tag}.jpg", LIMIT)
            assert image.size == (reference.shape[1], reference.shape[0]), (kind, tag)
            # Re-encoded variants differ by ~14 grey levels; a wrong rotation by 50-80.
            difference = np.abs(np.asarray(image, dtype=float) - reference).mean()
            assert difference < 25, (kind, tag, difference)


def test_draft_decoding_keeps_at_least_the_asked_size():
    array = np.asarray(Image.fromarray(bundled_photos()["retina"]).resize((4000, 3000)))
    data = _jpeg(array)
    small = photos.decode(data, min_side=300)
    assert min(small.size) >= 300 and max(small.size) < 4000
    assert photos.decode(data).size == (4000, 3000)


def test_every_fixture_is_indexed_or_skipped_with_a_reason():
    root = dataset("photo-fixtures")
    outcomes = {}
    for path, _stat in photos.iter_photo_files(root):
        try:
            photos.decode(photos.read_photo(path, LIMIT), 300)
            outcomes[path] = "ok"
        except photos.PhotoError as error:
            outcomes[path] = str(error)
            assert str(error), path
    assert sum(1 for o in outcomes.values() if o == "ok") >= 100
    broken = [p for p in outcomes if "broken" in str(p)]
    assert broken and all(outcomes[p] != "ok" for p in broken)
    heic = [p for p in outcomes if p.suffix.lower() in (".heic", ".heif")]
    assert heic and all(outcomes[p] == "ok" for p in heic)


def test_special_images_decode_to_rgb(tmp_path):
    cases = {
        "cmyk.jpg": Image.new("CMYK", (64, 48), (0, 128, 255, 0)),
        "gray16.png": Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20),
        "tiny.png": Image.new("RGB", (1, 1), (10, 20, 30)),
        "strip.png": Image.new("RGB", (30000, 200), (10, 20, 30)),
        "alpha.png": Image.new("RGBA", (64, 48), (10, 20, 30, 0)),
    }
    for name, image in cases.items():
        image.save(tmp_path / name)
        decoded = photos.open_upright(tmp_path / name, LIMIT, min_side=300)
        assert decoded.mode == "RGB", name


def test_iter_photo_files_reports_unreadable_dirs_and_skips_symlink_loops(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every directory; unreadable directories cannot be made")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.jpg").write_bytes(b"x")
    locked.chmod(0)
    try:
        problems = []
        list(photos.iter_photo_files(tmp_path, on_error=lambda p, r: problems.append((p, r))))
        assert problems and "cannot list" in problems[0][1]
    finally:
        locked.chmod(0o700)


def test_symlink_loop_does_not_hang(tmp_path):
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "one.jpg")
    found = [p.name for p, _ in photos.iter_photo_files(tmp_path)]
    assert found == ["one.jpg"]


def test_the_camera_is_read_from_exif_make_and_model():
    folder = dataset("photo-fixtures", "exif-samples", "jpg")
    cameras = {
        "Canon_40D.jpg": "Canon EOS 40D",  # the model names the maker already
        "Nikon_D70.jpg": "NIKON D70",  # "NIKON CORPORATION" + "NIKON D70"
        "Pentax_K10D.jpg": "PENTAX K10D",  # padded with spaces in the file
        "mobile/HMD_Nokia_8.3_5G.jpg": "HMD Global Nokia 8.3 5G",
        "WWL_(Polaroid)_ION230.jpg": "WWL ION230",  # a NUL ends the model
        "PaintTool_sample.jpg": "",  # no camera: made by an editor
    }
    found = {name: photos.read_photo(folder / name, LIMIT).camera for name in cameras}
    assert found == cameras
