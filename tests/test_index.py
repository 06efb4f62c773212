"""Index and search as a user sees it: real photos, a real model, a real Milvus Lite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from tests.album import snapshot
from tests.conftest import TEST_MODEL, dataset, run_cli, write_photos
from tests.finding import find

from petwatch import settings
from petwatch.embed import Embedder
from petwatch.errors import PetwatchError
from petwatch.library import Library
from petwatch.photos import open_upright


@pytest.fixture(scope="module")
def embedder():
    return Embedder(TEST_MODEL)


@pytest.fixture
def library(home, embedder):
    opened = Library(settings.load(), embedder)
    yield opened
    opened.close()


def _edited_copy(source: Path, target: Path) -> Path:
    """A cropped, mirrored, re-compressed copy: what a messaging app makes of a photo."""
    image = ImageOps.exif_transpose(Image.open(source)).convert("RGB")
    width, height = image.size
    image = image.crop((width // 10, height // 10, width - width // 12, height - height // 8))
    ImageOps.mirror(image).save(target, "JPEG", quality=55)
    return target


def test_edited_copy_finds_its_original_first(library, tmp_path):
    album = tmp_path / "album"
    originals = write_photos(album, 60)
    report = library.indexer.reconcile([str(album)])
    assert report.indexed == len(originals) and not report.failed
    misses = []
    for original in originals[::6]:
        query = _edited_copy(original, tmp_path / f"query_{original.name}")
        hits = find(library, str(query), top_k=5).hits
        if hits[0].path != str(original):
            misses.append((original.name, [h.path for h in hits[:3]]))
    assert not misses


def test_same_breed_ranks_above_other_breeds(library):
    pets = dataset("oxford-pets-sample")
    breeds = sorted(p.name for p in pets.iterdir() if p.is_dir())[:12]
    folders = [str(pets / b) for b in breeds]
    library.indexer.reconcile(folders)
    same, other = [], []
    for breed in breeds:
        query = sorted((pets / breed).glob("*.jpg"))[0]
        for hit in find(library, str(query), top_k=1000).hits:
            if hit.path == str(query):
                continue
            (same if Path(hit.path).parent.name == breed else other).append(hit.score)
    assert np.mean(same) > np.mean(other) + 0.05, (np.mean(same), np.mean(other))


def test_scores_are_cosine_similarities(library, tmp_path):
    album = tmp_path / "album"
    originals = write_photos(album, 12)
    library.indexer.reconcile([str(album)])
    stored = library.store.vectors([str(p) for p in originals])
    query = library.query_vector(str(originals[0]))
    expected = {path: float(vectors[0] @ query) for path, vectors in stored.items()}
    # The store searches by inner product of unit vectors: an unnormalised query (a pet
    # profile's mean, say) must score the same as its unit vector, and the scores are cosines.
    for hit in library.store.search(3.7 * query, top_k=12):
        assert hit.score == pytest.approx(expected[hit.path], abs=1e-5)
    assert max(expected, key=expected.get) == str(originals[0])


def test_index_made_by_an_older_version_searches_the_same(home, embedder, tmp_path):
    """Before IP search, a local DB's vector index was FLAT/COSINE: such a DB is upgraded in
    place on open (no photo re-embedded) and answers with the same photos and scores."""
    album = tmp_path / "album"
    originals = write_photos(album, 20)
    library = Library(settings.load(), embedder)
    library.indexer.reconcile([str(album)])
    before = [(h.path, h.score) for h in find(library, str(originals[3]), top_k=20).hits]
    store = library.store
    store.client.release_collection(store.collection)
    store.client.drop_index(store.collection, "vector")
    old = store.client.prepare_index_params()
    old.add_index("vector", index_type="FLAT", metric_type="COSINE")
    store.client.create_index(store.collection, old)
    library.close()

    reopened = Library(settings.load(), embedder)
    try:
        assert reopened.store.metric == "IP"
        assert reopened.store.count() == len(originals)
        after = [(h.path, h.score) for h in find(reopened, str(originals[3]), top_k=20).hits]
        assert [path for path, _ in after] == [path for path, _ in before]
        assert np.allclose([s for _, s in after], [s for _, s in before], atol=1e-5)
        assert reopened.indexer.reconcile([str(album)]).indexed == 0  # nothing re-embedded
    finally:
        reopened.close()


def test_second_run_skips_unchanged_and_follows_changes(library, tmp_path):
    album = tmp_path / "album"
    photos = write_photos(album, 8)
    first = library.indexer.reconcile([str(album)])
    assert first.indexed == 8
    again = library.indexer.reconcile([str(album)])
    assert (again.indexed, again.unchanged, again.removed) == (0, 8, 0)

    # changed in place: re-embedded; deleted: dropped; renamed: vector reused, not re-embedded
    Image.open(photos[1]).rotate(90, expand=True).save(photos[0], "JPEG", quality=90)
    photos[2].unlink()
    photos[3].rename(album / "renamed.jpg")
    changed = library.indexer.reconcile([str(album)])
    assert (changed.indexed, changed.reused, changed.removed) == (1, 1, 2)
    assert library.stats()["photos"] == 7
    paths = {h.path for h in find(library, str(album / "renamed.jpg"), top_k=20).hits}
    assert str(album / "renamed.jpg") in paths and str(photos[3]) not in paths


def test_identical_bytes_under_two_names_are_embedded_once(library, tmp_path):
    album = tmp_path / "album"
    [photo] = write_photos(album, 1)
    shutil.copyfile(photo, album / "copy.jpg")
    report = library.indexer.reconcile([str(album)])
    assert (report.indexed, report.reused) == (1, 1)
    scores = {Path(h.path).name: h.score for h in find(library, str(photo), top_k=2).hits}
    assert scores[photo.name] == pytest.approx(scores["copy.jpg"], abs=1e-5)


def test_missing_folder_keeps_its_rows(library, tmp_path):
    album = tmp_path / "album"
    write_photos(album, 3)
    library.indexer.reconcile([str(album)])
    album.rename(tmp_path / "unplugged")
    report = library.indexer.reconcile([str(album)])
    assert report.offline == [str(album)] and report.removed == 0
    assert library.stats()["photos"] == 3


def test_bad_files_are_skipped_with_reasons_and_the_run_finishes(library, tmp_path):
    album = tmp_path / "album"
    write_photos(album, 2)
    (album / "zero.jpg").write_bytes(b"")
    (album / "text.jpg").write_text("not a photo")
    Image.new("1", (20000, 20000)).save(album / "bomb.png")
    good = (album / sorted(os.listdir(album))[0]).read_bytes()
    (album / "truncated.jpg").write_bytes(good[: len(good) // 2])
    report = library.indexer.reconcile([str(album)])
    assert report.indexed == 2
    reasons = {Path(p).name: r for p, r in report.skipped.items()}
    assert "empty" in reasons["zero.jpg"]
    assert "not a supported image" in reasons["text.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    assert "truncated" in reasons["truncated.jpg"]
    # Skipped files are not retried while unchanged.
    again = library.indexer.reconcile([str(album)])
    assert again.indexed == 0 and set(again.skipped) == set(report.skipped)


def test_a_changed_photo_that_fails_is_not_read_again_by_a_hint_or_a_walk(library, tmp_path):
    """ "Does this file need reading" is one rule for a walk and the watcher's hints: an indexed
    photo overwritten with broken bytes fails once; the next hint (the daemon's
    needing_index) passed it to be read, and fail, again on every hint."""
    album = tmp_path / "album"
    photo = write_photos(album, 2)[0]
    library.reconcile([str(album)])
    photo.write_bytes(photo.read_bytes()[:200])  # an interrupted save over an indexed photo
    stat = library.stat(str(photo))
    assert library.needing_index([stat]) == [stat]  # changed: read it
    report = library.index_files([stat])
    assert str(photo) in report.failed or str(photo) in report.skipped, report
    assert library.needing_index([stat]) == []  # the same bytes failed: the hint reads nothing
    walk = library.indexer.reconcile([str(album)])
    assert walk.indexed == 0 and str(photo) in walk.skipped  # the walk, by the same rule
    photo.write_bytes((album / sorted(os.listdir(album))[1]).read_bytes())  # fixed: read again
    assert library.needing_index([library.stat(str(photo))]) != []


def test_folder_counts_follow_photos_stored_and_removed(library, tmp_path):
    """Status's photos per folder, kept per directory as photos come and go (not counted by
    testing every photo against every folder on each status)."""
    one, two = tmp_path / "one", tmp_path / "two"
    write_photos(one / "2024" / "june", 2)
    write_photos(two, 3)
    folders = [str(one), str(two), str(tmp_path / "none")]
    library.reconcile([str(one), str(two)])
    assert library.folder_counts(folders) == {str(one): 2, str(two): 3, str(tmp_path / "none"): 0}
    inner = str(one / "2024")  # a folder inside another: its photos count toward both
    assert library.folder_counts([str(one), inner]) == {str(one): 2, inner: 2}
    gone = sorted((two).iterdir())[0]
    gone.unlink()
    library.reconcile([str(two)])
    assert library.folder_counts(folders)[str(two)] == 2
    reopened = Library(library.settings, library.embedder)
    try:
        assert reopened.folder_counts(folders) == library.folder_counts(folders)  # counted from the catalog
    finally:
        reopened.close()


def test_fixtures_are_each_indexed_or_skipped(library):
    fixtures = dataset("photo-fixtures")
    report = library.indexer.reconcile([str(fixtures)])
    assert report.indexed + report.reused >= 100 and not report.failed
    assert all(reason for reason in report.skipped.values())
    assert any("broken" in p for p in report.skipped)


def test_model_change_is_refused_with_how_to_reindex(home, embedder, tmp_path):
    Library(settings.load(), embedder).close()
    with pytest.raises(PetwatchError, match="reindex"):
        Library(settings.load(model="efficientnet_lite1"))


def test_indexing_never_writes_into_the_album(home, tmp_path):
    album = tmp_path / "album"
    write_photos(album, 4)
    (album / "sub").mkdir()
    Image.new("RGB", (32, 32)).save(album / "sub" / "x.png")
    for path in [album, album / "sub", *album.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = snapshot(album)
    result = run_cli("index", str(album))
    assert result.returncode == 0, result.stderr
    assert snapshot(album) == before
    for path in [album, *album.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_cli_index_search_stats_json(home, tmp_path):
    album = tmp_path / "album"
    photos = write_photos(album, 6)
    indexed = run_cli("index", "--json", str(album))
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["indexed"] == 6
    assert "indexed 6" in indexed.stderr or "6/6" in indexed.stderr  # progress on stderr

    found = run_cli("search", "--json", "--top-k", "3", str(photos[2]))
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert len(hits) == 3 and hits[0]["path"] == str(photos[2]) and os.path.isabs(hits[0]["path"])
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]

    strict = json.loads(run_cli("search", "--json", "--min-score", "0.99", str(photos[2])).stdout)
    assert [h["path"] for h in strict] == [str(photos[2])]

    stats = json.loads(run_cli("stats", "--json").stdout)
    assert stats["photos"] == 6 and stats["model"] == TEST_MODEL and stats["dim"] == 1280
    assert stats["db"].startswith(str(home)) and stats["db_bytes"] > 0


def test_cli_exit_codes(home, tmp_path):
    assert run_cli("search", str(tmp_path / "nope.jpg")).returncode == 1
    usage = run_cli("search", "x.jpg", "--top-k", "0")
    assert usage.returncode == 2
    missing = run_cli("index", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1


def test_unreadable_directory_is_reported_not_fatal(home, tmp_path):
    """Run as an unprivileged user, since root reads everything."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    try:
        subprocess.run(
            [sys.executable, "-c", "import petwatch"], user=65534, check=True, capture_output=True, timeout=60
        )
    except (PermissionError, subprocess.CalledProcessError):
        pytest.skip("this Python install is not usable by an unprivileged user (e.g. under /root)")
    album = tmp_path / "album"
    write_photos(album, 2)
    (album / "private").mkdir()
    shutil.copy(next(album.glob("*.jpg")), album / "private" / "secret.jpg")
    (album / "private").chmod(0o000)
    for path in (tmp_path, album, home):
        path.chmod(0o777)
    for path in album.glob("*.jpg"):
        path.chmod(0o644)
    env = {**os.environ, "HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-m", "petwatch", "index", str(album)],
        capture_output=True,
        text=True,
        env=env,
        user=65534,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "indexed 2" in result.stdout and "cannot list directory" in result.stdout


def test_many_copies_in_one_run_are_embedded_once(library, tmp_path):
    """Decoding runs in parallel, so a copy may be seen before the file that embeds its bytes."""
    album = tmp_path / "album"
    others = write_photos(album, 5)
    for n in range(40):
        shutil.copyfile(others[0], album / f"copy_{n:02d}.jpg")
    report = library.indexer.reconcile([str(album)])
    assert (report.indexed, report.reused, report.failed) == (5, 40, {})
    assert library.stats()["photos"] == 45


@pytest.mark.parametrize("cause", ["disk full", "server down"])
def test_refused_writes_wait_and_only_a_full_disk_counts_as_refused(library, tmp_path, monkeypatch, cause):
    """A full (or read-only) disk and a Milvus server that is down both leave the index as it
    was and wait to be retried; only the first is ``write_refused`` (disk full or read-only):
    a server that is merely down must not be reported as a full disk."""
    from petwatch.errors import StoreUnavailable
    from petwatch.store import Store

    album = tmp_path / "album"
    photos = write_photos(album, 3)
    library.reconcile([str(album)])
    if cause == "disk full":
        monkeypatch.setattr(Store, "write_problem", lambda self: "disk full: 1.0 MB free on /data")
    else:  # what the server proxy raises once the server stops answering (milvus_remote)

        def down(self, *args, **kwargs):
            raise StoreUnavailable("the Milvus server at http://milvus:19530 does not answer")

        monkeypatch.setattr(Store, "upsert", down)
        monkeypatch.setattr(Store, "delete_paths", down)
    photos[0].unlink()
    shutil.copyfile(photos[1], album / "copy.jpg")
    report = library.reconcile([str(album)])
    assert report.removed == 0 and str(album / "copy.jpg") in report.failed
    assert library.stats()["photos"] == 3  # as it was: nothing lost, nothing half-done
    assert library.write_paused
    assert library.write_refused is (cause == "disk full")
    monkeypatch.undo()
    library.forget_write_error()
    again = library.reconcile([str(album)])
    assert (again.removed, again.reused) == (1, 1) and not library.write_paused
    assert library.stats()["photos"] == 3


class _Watched:
    """The embedder as the indexer sees it, counting the batches it embeds at once."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.running = self.most_at_once = 0

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def embed_prepared(self, batch):
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(0.05)  # a batch that is quick to embed must still overlap the next one
            return self._inner.embed_prepared(batch)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture(scope="module", params=["onnx", "torch"])
def engine_embedder(request):
    return Embedder(TEST_MODEL, engine=request.param, batch_size=3)


def test_batches_embed_side_by_side_and_each_photo_keeps_its_own_vector(home, engine_embedder, tmp_path):
    """ONNX Runtime embeds two batches at once (torch one, on every core): every photo is still
    stored with its own vector (as if embedded alone), and batches reach the store in order."""
    album = tmp_path / "album"
    photos = sorted(write_photos(album, 12))  # 8 without the shared datasets: 3 batches all the same
    watched = _Watched(engine_embedder)
    library = Library(settings.load(), watched)  # type: ignore[arg-type]
    stored_order: list[str] = []
    try:
        files = [stat for p in photos if (stat := library.indexer.stat(str(p))) is not None]
        report = library.indexer.index_files(files, on_stored=lambda rows: stored_order.extend(r.path for r in rows))
        assert (report.indexed, report.failed, report.skipped) == (len(photos), {}, {})
        two_cores = (os.cpu_count() or 1) >= 2
        runs = 2 if engine_embedder.session.engine == "onnx" and two_cores else 1
        assert watched.most_at_once == engine_embedder.parallel_runs == runs
        assert stored_order == [str(p) for p in photos]
        stored = library.store.vectors([str(p) for p in photos])
        for path in photos:
            image = open_upright(path, 10**9, engine_embedder.decode_min_side)  # as the indexer decodes it
            alone = engine_embedder.embed_query(image).vectors_for(library.store.recipe)[0]
            assert float(stored[str(path)][0] @ alone) > 0.9999, path.name
    finally:
        library.close()


def test_a_stop_stores_the_batch_in_hand_and_the_next_walk_finishes(home, engine_embedder, tmp_path):
    album = tmp_path / "album"
    count = len(write_photos(album, 12))
    library = Library(settings.load(), engine_embedder)
    batch = engine_embedder.batch_size
    try:
        first = library.reconcile([str(album)], should_stop=lambda: True)
        assert first.indexed == batch and first.failed == {}
        assert library.stats()["photos"] == batch
        rest = library.reconcile([str(album)])
        assert (rest.indexed, rest.unchanged) == (count - batch, batch)
        assert library.stats()["photos"] == count
    finally:
        library.close()
