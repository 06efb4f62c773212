"""Pet focus as a user sees it: the index knows which photos show a pet, finds a pet that is
small in the frame, filters by species inside Milvus, and upgrades an older library."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import TEST_MODEL, dataset, embed_images, run_cli
from tests.finding import find

from petwatch import settings
from petwatch.embed import Embedder
from petwatch.library import Library, collection_name
from petwatch.protocol import PET_SPECIES
from petwatch.store import Store

# Photos the test model labels with margin to spare (pet score > 0.8 for the cats, < 0.05 for
# the landscapes), so that the test checks petwatch, not a borderline classification.
CATS = ["Persian/Persian_106.jpg", "Persian/Persian_131.jpg", "Siamese/Siamese_108.jpg", "Siamese/Siamese_115.jpg"]
DOGS = ["beagle/beagle_100.jpg", "pug/pug_101.jpg", "samoyed/samoyed_102.jpg", "boxer/boxer_101.jpg"]
LANDSCAPES = ["Aqua.jpg", "FreshFlower.jpg", "Storm.jpg", "Wood.jpg", "YellowFlower.jpg", "Elephants.jpg"]


@pytest.fixture(scope="module")
def embedder():
    return Embedder(TEST_MODEL)


def _album(folder: Path) -> dict[str, list[Path]]:
    pets, lands = dataset("oxford-pets-sample"), dataset("landscapes")
    folder.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[Path]] = {"cat": [], "dog": [], "none": []}
    for kind, names, root in (("cat", CATS, pets), ("dog", _dogs(pets), pets), ("none", LANDSCAPES, lands)):
        for name in names:
            target = folder / Path(name).name
            shutil.copyfile(root / name, target)
            found[kind].append(target)
    return found


def _dogs(pets: Path) -> list[str]:
    """The first photo of each of four dog breeds (names differ between samples)."""
    return [
        f"{breed}/{sorted((pets / breed).glob('*.jpg'))[0].name}" for breed in ("beagle", "pug", "samoyed", "boxer")
    ]


def test_a_cat_is_stored_as_a_cat_and_a_landscape_as_no_pet(home, embedder, tmp_path):
    album = _album(tmp_path / "album")
    library = Library(settings.load(), embedder)
    try:
        library.indexer.reconcile([str(tmp_path / "album")])
        for kind, paths in album.items():
            for path in paths:
                row = library.store.get(str(path))
                assert row is not None and row.photo["species"] == kind, (path.name, row and row.photo["species"])
                if kind == "cat":
                    assert row.photo["pet_score"] > 0.5 and "cat" in row.photo["label"].lower()
                if kind == "none":
                    assert row.photo["pet_score"] < 0.2
        stats = library.stats()
        assert (stats["dogs"], stats["cats"], stats["photos"]) == (4, 4, 14)
    finally:
        library.close()
    # `petwatch stats` says it too
    shown = run_cli("stats")
    assert shown.returncode == 0, shown.stderr
    assert "showing a dog 4, a cat 4" in shown.stdout


def test_a_small_dog_on_a_landscape_is_found_by_a_tight_crop_of_the_same_dog(home, embedder, tmp_path):
    pets, lands = dataset("oxford-pets-sample"), dataset("landscapes")
    album = tmp_path / "album"
    album.mkdir()
    dog = Image.open(pets / _dogs(pets)[0]).convert("RGB")
    # The dog at a fifth of a 1600x1000 meadow; the same meadow without it; other landscapes.
    meadow = Image.open(lands / "GreenMeadow.jpg").convert("RGB").resize((1600, 1000))
    small = dog.resize((320, 320 * dog.height // dog.width))
    with_dog = meadow.copy()
    with_dog.paste(small, (1000, 560))
    with_dog.save(album / "meadow_with_dog.jpg", quality=92)
    meadow.save(album / "meadow.jpg", quality=92)
    for name in LANDSCAPES:
        shutil.copyfile(lands / name, album / name)
    width, height = dog.size
    query = tmp_path / "query.jpg"  # the dog cropped tight: what a user's best photo of it is
    dog.crop((width // 8, height // 10, width - width // 8, height - height // 10)).save(query, quality=92)

    library = Library(settings.load(), embedder)
    try:
        library.indexer.reconcile([str(album)])
        assert library.store.get(str(album / "meadow_with_dog.jpg")).photo["species"] == "dog"
        hits = find(library, str(query), top_k=10, min_score=-1.0).hits
        ranked = [Path(hit.path).name for hit in hits]
        assert ranked[0] == "meadow_with_dog.jpg", ranked
        scores = {Path(hit.path).name: hit.score for hit in hits}
        assert scores["meadow_with_dog.jpg"] > scores["meadow.jpg"] + 0.1
        # The crop pass is what finds it: the whole-image vector alone scores it far lower.
        whole_only = Embedder(TEST_MODEL, pet_focus=None)
        vectors = embed_images(whole_only, [Image.open(query), Image.open(album / "meadow_with_dog.jpg")])
        assert scores["meadow_with_dog.jpg"] > float(vectors[0] @ vectors[1]) + 0.05
    finally:
        library.close()


def test_pets_only_returns_no_photo_without_a_pet_and_filters_inside_milvus(home, embedder, tmp_path):
    album = _album(tmp_path / "album")
    library = Library(settings.load(), embedder)
    try:
        library.indexer.reconcile([str(tmp_path / "album")])
    finally:
        library.close()
    query = album["none"][0]  # a landscape: unfiltered, the other landscapes come first
    plain = run_cli("search", str(query), "--top-k", "8", "--min-score", "-1", "--json")
    assert plain.returncode == 0, plain.stderr
    assert any(hit["species"] == "none" for hit in json.loads(plain.stdout))
    # top-k 8 = every pet: a filter applied after a top-k search would return fewer
    only = run_cli("search", str(query), "--top-k", "8", "--min-score", "-1", "--pets-only", "--json")
    assert only.returncode == 0, only.stderr
    hits = json.loads(only.stdout)
    assert len(hits) == 8 and {hit["species"] for hit in hits} <= set(PET_SPECIES)
    assert {Path(hit["path"]).name for hit in hits} == {p.name for p in album["cat"] + album["dog"]}
    cats = json.loads(run_cli("search", str(album["dog"][0]), "--species", "cat", "--json").stdout)
    assert cats and {hit["species"] for hit in cats} == {"cat"}


def _make_old_format(library: Library, tmp_path: Path) -> dict[str, np.ndarray]:
    """Turn a library into what petwatch 0.1 wrote: one schema-1 collection named after the
    setting, whole-image vectors, no species. Returns each photo's vector."""
    base = library.settings.collection
    store = library.store
    rows = {path: store.get(path) for path in library.indexer.catalog}
    client = store.client
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(
        auto_id=False,
        description=json.dumps({"petwatch_schema": 1, "model": library.embedder.identity, "dim": library.embedder.dim}),
    )
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("photo_id", DataType.INT64)
    schema.add_field("view", DataType.INT8)
    schema.add_field("path", DataType.VARCHAR, max_length=16384)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
    for name in ("size", "mtime_ns", "taken_at", "indexed_at"):
        schema.add_field(name, DataType.INT64)
    schema.add_field("width", DataType.INT32)
    schema.add_field("height", DataType.INT32)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=library.embedder.dim)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="IP")
    client.create_collection(base, schema=schema, index_params=index)
    old = Store(store.uri, base, library.embedder.identity, library.embedder.dim, create=False)
    assert old.fields == ("path", "content_hash", "size", "mtime_ns", "width", "height", "taken_at", "indexed_at")
    assert not old.has_pet_fields
    old.upsert(list(rows.values()))
    store.drop()
    return {path: row.vector for path, row in rows.items()}


def test_an_old_format_library_is_upgraded_with_nothing_lost_and_no_mixed_search(home, embedder, tmp_path):
    album_dir = tmp_path / "album"
    album = _album(album_dir)
    whole = Library(settings.load(pet_focus=False), Embedder(TEST_MODEL, pet_focus=None))
    whole.indexer.reconcile([str(album_dir)])
    vectors = _make_old_format(whole, tmp_path)
    query = album["dog"][0]
    old = Store(whole.store.uri, whole.settings.collection, whole.embedder.identity, whole.embedder.dim, create=False)
    before = [(h.path, round(h.score, 5)) for h in old.search(vectors[str(query)], 14)]
    whole.close()

    library = Library(settings.load(), embedder)
    try:
        status = library.upgrade_status()
        assert status == {"from": "whole", "to": "petfocus1", "done": 0, "total": 14}
        # While it upgrades, searches use the older index alone: the same photos and scores.
        during = find(library, str(query), 14)
        assert during.partial is None
        assert [(h.path, round(h.score, 5)) for h in during.hits] == before
        # A species filter needs the new index: it says its results are partial.
        assert find(library, str(query), 5, species=["dog"]).partial is not None
        # A photo added meanwhile is searchable at once, in both indexes.
        late = album_dir / "late_dog.jpg"
        shutil.copyfile(album["dog"][1], late)
        assert library.indexer.index_files([library.indexer.stat(str(late))]).reused == 1
        assert str(late) in {h.path for h in find(library, str(late), 3).hits}
        # Step by step, as the daemon does it, never more than asked.
        library.upgrade_step(limit=5)
        assert library.upgrade_status()["done"] == 5
        report = library.run_upgrade()
        assert library.upgrade is None and not report.failed
        assert library.store.collection == collection_name(library.settings.collection, "petfocus1")
        assert not library.store.client.has_collection(library.settings.collection)  # the old one is gone
        assert library.store.count() == 15 and set(library.indexer.catalog) == {
            str(p) for paths in album.values() for p in paths
        } | {str(late)}
        assert library.indexer.reconcile([str(album_dir)]).indexed == 0  # nothing twice
        after = find(library, str(query), 15, species=list(PET_SPECIES))
        assert after.partial is None and {h.photo["species"] for h in after.hits} <= set(PET_SPECIES)
        assert len(after.hits) == 9  # 4 cats, 4 dogs and the late dog
    finally:
        library.close()
    reopened = Library(settings.load(), embedder)  # and it stays upgraded
    try:
        assert reopened.upgrade is None and reopened.store.count() == 15
    finally:
        reopened.close()


def test_the_daemon_upgrades_an_old_library_in_the_background_and_says_so(home, embedder, tmp_path, start_daemon):
    from petwatch.settings import update_config_file

    album_dir = tmp_path / "album"
    album = _album(album_dir)
    whole = Library(settings.load(pet_focus=False), Embedder(TEST_MODEL, pet_focus=None))
    whole.indexer.reconcile([str(album_dir)])
    _make_old_format(whole, tmp_path)
    whole.close()
    update_config_file(folders=[str(album_dir)])
    query = tmp_path / "query.jpg"  # a photo of one of the dogs, from outside the album
    shutil.copyfile(album["dog"][2], query)
    away = tmp_path / "away"
    album_dir.rename(away)  # the drive is unplugged: the upgrade must wait, losing nothing

    daemon = start_daemon()
    status = daemon.wait_idle()
    assert status["upgrade"] == {"from": "whole", "to": "petfocus1", "done": 0, "total": 14}
    assert status["indexed"] == 14
    with daemon.client() as client:
        reply = client.search(image=str(query), top_k=20, min_score=-1)
        assert reply["upgrade"]["done"] == 0 and reply["partial"] is False
        assert len(reply["hits"]) == 14  # every photo, from the older index
        assert reply["hits"][0]["path"] == str(album["dog"][2])
        filtered = client.search(image=str(query), top_k=20, species=["dog"])
        assert filtered["partial"] is True and filtered["hits"] == []  # nothing upgraded yet
    shown = run_cli("status")
    assert "being upgraded to pet-focused vectors (0 of 14 photos so far)" in shown.stdout

    away.rename(album_dir)  # plugged back in: the daemon notices, walks, and upgrades
    deadline = time.monotonic() + 120
    with daemon.client() as client:
        while client.status()["upgrade"] is not None:
            assert time.monotonic() < deadline, client.status()
            time.sleep(0.2)
        stats = client.stats()
        assert (stats["recipe"], stats["photos"], stats["dogs"], stats["cats"]) == ("petfocus1", 14, 4, 4)
        dogs = client.search(image=str(query), top_k=20, species=["dog"])
        assert dogs["upgrade"] is None and dogs["partial"] is False
        assert {Path(h["path"]).name for h in dogs["hits"]} == {p.name for p in album["dog"]}
    assert daemon.wait_idle()["state"] == "idle"
