"""Whitened vectors as a user meets them, with the default model (the one a projection ships
for): photos are stored at 768 floats, an older library upgrades from its stored vectors with
nothing lost and no mixed search, search expands its query unless told not to, and "pets found
for you" finds a recurring dog in a small library and in a large one."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import dataset, run_cli
from tests.finding import find

from petwatch import discovery, settings
from petwatch.embed import DEFAULT_MODEL, PET_FOCUS_RECIPE, WHITENED_RECIPE, Embedder
from petwatch.library import Library, collection_name
from petwatch.photos import open_upright

DAY = 86_400


@pytest.fixture(scope="module")
def embedder():
    return Embedder(DEFAULT_MODEL)


@pytest.fixture
def lite2(home, monkeypatch):
    monkeypatch.setenv("PETWATCH_MODEL", DEFAULT_MODEL)
    return home


def _copy(sources: list[Path], folder: Path, day: int) -> list[Path]:
    """Copies of ``sources`` in ``folder``, dated ``day`` days after the first photo."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for source in sources:
        target = folder / f"{source.parent.name}_{source.name}"
        shutil.copyfile(source, target)
        when = 1_700_000_000 + day * DAY
        os.utime(target, (when, when))
        out.append(target)
    return out


def _dogs(min_photos: int) -> list[list[Path]]:
    """DogFaceNet dogs with at least ``min_photos`` photos, each a sorted list of its photos."""
    dogs = dataset("dogfacenet-dev")
    found = []
    for folder in sorted(p for p in dogs.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) >= min_photos:
            found.append(photos)
    return found


def test_the_default_model_stores_whitened_vectors_of_its_pet_focused_ones(embedder):
    image = open_upright(str(sorted(dataset("oxford-pets-sample", "beagle").glob("*.jpg"))[0]), 10**8, None)
    embedding = embedder.embed_query(image)
    assert embedder.recipe == WHITENED_RECIPE and embedder.dim == 768 and embedder.raw_dim == 1280
    assert embedding.vector.shape == (768,) and abs(float(np.linalg.norm(embedding.vector)) - 1) < 1e-5
    assert embedding.raw is not None
    assert np.allclose(embedding.vector, embedder.whitening.apply(embedding.raw[0]), atol=1e-6)
    # An index of an older recipe gets its own kind of vector from the same pass.
    assert embedding.rows_for(PET_FOCUS_RECIPE)[0].shape == (1280,)
    assert Embedder(DEFAULT_MODEL, whiten=False).dim == 1280


def test_an_older_library_upgrades_from_its_stored_vectors_with_nothing_lost_and_no_mixed_search(
    lite2, embedder, tmp_path
):
    album = tmp_path / "album"
    oxford = dataset("oxford-pets-sample")
    photos = _copy(sorted(oxford.glob("*/*.jpg"))[::20], album, 0)  # 19 photos, cats and dogs
    old = Library(settings.load(whiten=False), Embedder(DEFAULT_MODEL, whiten=False))
    try:
        old.indexer.reconcile([str(album)])
        assert old.store.recipe == PET_FOCUS_RECIPE and old.dim == 1280
        before = [(h.path, round(h.score, 5)) for h in find(old, str(photos[0]), 19, min_score=-1).hits]
        stored = old.vectors([str(p) for p in photos])
    finally:
        old.close()

    library = Library(settings.load(), embedder)
    try:
        assert library.upgrade_status() == {"from": PET_FOCUS_RECIPE, "to": WHITENED_RECIPE, "done": 0, "total": 19}
        # While it upgrades, searches use the older index alone, expanded or not: the same
        # photos and scores as before.
        assert [(h.path, round(h.score, 5)) for h in find(library, str(photos[0]), 19, min_score=-1).hits] == before

        def no_forward_pass(*_args, **_kwargs):
            raise AssertionError("the upgrade read a photo")

        library.embedder.embed_prepared = no_forward_pass  # type: ignore[method-assign]
        report = library.run_upgrade()
        del library.embedder.embed_prepared
        assert library.upgrade is None and report.reused == 19 and not report.failed
        assert library.store.collection == collection_name(library.settings.collection, WHITENED_RECIPE)
        assert library.stats()["dim"] == 768 and library.store.count() == 19
        assert set(library.indexer.catalog) == {str(p) for p in photos}
        assert not library.store.client.has_collection(collection_name(library.settings.collection, PET_FOCUS_RECIPE))
        # Each derived vector is what embedding the photo now gives.
        derived = library.vectors([str(photos[3])])[str(photos[3])][0]
        assert np.allclose(derived, embedder.whitening.apply(stored[str(photos[3])][0]), atol=1e-5)
        image = open_upright(str(photos[3]), library.settings.max_image_pixels, embedder.decode_min_side)
        assert float(derived @ embedder.embed_query(image).vector) > 0.999
        assert library.indexer.reconcile([str(album)]).indexed == 0  # nothing twice
        hits = find(library, str(photos[0]), 19, min_score=-1).hits
        assert hits[0].path == str(photos[0]) and len(hits) == 19
        # Whitened cosines of unlike photos go under 0; the default cuts nothing: a full page.
        assert len(find(library, str(photos[0]), 19).hits) == 19
    finally:
        library.close()


def test_search_expands_its_query_unless_told_not_to(lite2, tmp_path):
    album = tmp_path / "album"
    dog = _dogs(7)[0]
    _copy(dog[:6], album, 0)
    _copy(sorted(dataset("oxford-pets-sample").glob("*/*.jpg"))[::40], album, 1)
    assert run_cli("index", str(album)).returncode == 0
    query = album / f"{dog[0].parent.name}_{dog[0].name}"
    plain = run_cli("search", str(query), "--no-expand", "--top-k", "5", "--json")
    expanded = run_cli("search", str(query), "--top-k", "5", "--json")
    assert plain.returncode == 0 and expanded.returncode == 0, plain.stderr + expanded.stderr
    plain_hits, expanded_hits = json.loads(plain.stdout), json.loads(expanded.stdout)
    # Expanded by its first hits (weighted by their score cubed), the query moves towards them
    # and orders the hits; each number is still the hit's similarity to the photo given: the
    # photo itself at 1, and a photo's score the same with or without expansion.
    assert plain_hits[0]["path"] == str(query) and plain_hits[0]["score"] > 0.9999
    assert expanded_hits[0]["path"] == str(query) and expanded_hits[0]["score"] > 0.9999
    plain_scores = {h["path"]: h["score"] for h in plain_hits}
    assert all(abs(h["score"] - plain_scores[h["path"]]) < 1e-4 for h in expanded_hits if h["path"] in plain_scores)
    same_dog = {str(p) for p in album.glob(f"{dog[0].parent.name}_*")}
    assert sum(h["path"] in same_dog for h in expanded_hits) >= sum(h["path"] in same_dog for h in plain_hits)
    # The default min score cuts nothing in any space: whitened cosines of unlike photos go
    # below 0, and a small library still fills its page (every photo here, top-k being 20).
    every = run_cli("search", str(query), "--no-stacks", "--json")
    assert every.returncode == 0, every.stderr
    assert len(json.loads(every.stdout)) == len(list(album.iterdir()))


def _found(library: Library, tmp_path: Path) -> list[set[str]]:
    finder = discovery.Discovery(library, tmp_path / "groups.db")
    try:
        finder.refresh()
        return [set(g["paths"]) for g in finder.groups()], finder.explain()
    finally:
        finder.close()


def test_a_dog_with_7_photos_in_2_folders_is_found_in_a_library_of_150(lite2, embedder, tmp_path):
    """It was not: above 128 pet photos the clustering's PCA rescaled the space under a fixed
    cut, and the dog came out as 6 single photos ("No pets found yet")."""
    dog = _dogs(7)[0][:7]
    mine = _copy(dog[:4], tmp_path / "album" / "summer", 0) + _copy(dog[4:], tmp_path / "album" / "winter", 150)
    others = sorted(dataset("oxford-pets-sample").glob("[a-z]*/*.jpg"))[::2][:100]  # dog breeds
    others += [photos[0] for photos in _dogs(1)[-40:]]  # 40 other dogs, one photo each
    _copy(others, tmp_path / "album" / "camera", 30)
    library = Library(settings.load(), embedder)
    try:
        library.indexer.reconcile([str(tmp_path / "album")])
        assert library.photo_count == 147
        groups, why = _found(library, tmp_path)
    finally:
        library.close()
    assert why["pet_photos"] > 128  # the size at which it failed
    wanted = {str(p) for p in mine}
    best = max(groups, key=lambda g: len(g & wanted), default=set())
    assert len(best & wanted) >= 6, (groups, why)
    assert len(best & wanted) / len(best) >= 0.8


def test_each_recurring_dog_is_found_among_1000_pet_photos(lite2, embedder, tmp_path):
    dogs = _dogs(8)[:3]
    album = tmp_path / "album"
    mine = {}
    for n, photos in enumerate(dogs):
        mine[n] = {str(p) for day, source in enumerate(photos[:8]) for p in _copy([source], album / f"dog{n}", day)}
    strangers = [photos[0] for photos in _dogs(1) if photos not in dogs][:660]
    _copy(strangers, album / "walks", 0)
    _copy(sorted(dataset("oxford-pets-sample").glob("*/*.jpg")), album / "friends", 3)
    library = Library(settings.load(), embedder)
    try:
        library.indexer.reconcile([str(album)])
        groups, why = _found(library, tmp_path)
    finally:
        library.close()
    assert why["pet_photos"] >= 1000, why
    for n, wanted in mine.items():
        best = max(groups, key=lambda g: len(g & wanted), default=set())
        assert len(best & wanted) >= 5 and len(best & wanted) / len(best) >= 0.8, (n, len(best & wanted), len(best))


def test_a_pet_profile_finds_its_dog_in_the_whitened_space(lite2, embedder, tmp_path):
    """The profile's threshold rule re-derived for whitened vectors (pets.rule): the album of 3
    example photos holds most of the dog's other photos and not the library."""
    from petwatch import pets

    dog = _dogs(8)[1][:8]
    album = tmp_path / "album"
    mine = _copy(dog, album / "rex", 0)
    _copy([photos[0] for photos in _dogs(1)[-60:]], album / "park", 1)
    _copy(sorted(dataset("oxford-pets-sample").glob("[a-z]*/*.jpg"))[::8], album / "friends", 2)
    library = Library(settings.load(), embedder)
    profiles = pets.Pets(library, tmp_path / "state.sqlite3")
    try:
        library.indexer.reconcile([str(album)])
        assert library.whitened
        profiles.add("Rex", [str(p) for p in mine[:3]])
        found = {hit["path"] for hit in profiles.album("Rex")["hits"]}
    finally:
        profiles.close()
        library.close()
    others = {str(p) for p in mine[3:]}
    assert len(found & others) >= 3, (len(found & others), len(found))
    assert len(found - {str(p) for p in mine}) <= 10, len(found)  # of ~100 other dogs' photos
