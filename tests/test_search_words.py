"""A search in words, as a user meets it, on real photos: breeds and an object by name, a year
(from EXIF, else the file's time, said so), a place from a camera's GPS, a pet's name, words
with a photo, an unknown word named, what a hit says of its photo, the score of a photo's own
hit, and an older library upgraded to hold concepts and places."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import TEST_MODEL, dataset, run_cli
from tests.finding import find

from petwatch import library as library_module
from petwatch import locations, settings
from petwatch import store as store_module
from petwatch.concepts import MIN_PROB, TOP_K
from petwatch.embed import Embedder
from petwatch.endpoints import SearchRequest
from petwatch.errors import PetwatchError
from petwatch.library import Library
from petwatch.pets import Pets
from petwatch.search import SearchQuery, query_from
from petwatch.words import UnknownWords

BEAGLES = 4
CATS = 4
LANDSCAPES = ["LadyBird.jpg", "FreshFlower.jpg", "Aqua.jpg", "Garden.jpg"]  # no EXIF date
GPS = ["DSCN0010.jpg", "DSCN0021.jpg"]  # a Nikon in Arezzo, Tuscany, October 2008
FILE_TIME = datetime(2019, 6, 1, 12, tzinfo=UTC)  # the landscapes have no EXIF date: their file's


@pytest.fixture(scope="module")
def embedder():
    return Embedder(TEST_MODEL)


def _album(folder: Path) -> dict[str, list[Path]]:
    pets, lands = dataset("oxford-pets-sample"), dataset("landscapes")
    gps = dataset("photo-fixtures", "exif-samples", "jpg", "gps")
    sources = {
        "beagle": sorted((pets / "beagle").glob("*.jpg"))[:BEAGLES],
        "cat": sorted((pets / "Persian").glob("*.jpg"))[:CATS],
        "landscape": [lands / name for name in LANDSCAPES],
        "gps": [gps / name for name in GPS],
    }
    folder.mkdir(parents=True, exist_ok=True)
    album: dict[str, list[Path]] = {}
    for kind, paths in sources.items():
        for source in paths:
            target = folder / source.name
            shutil.copyfile(source, target)
            os.utime(target, (FILE_TIME.timestamp(), FILE_TIME.timestamp()))
            album.setdefault(kind, []).append(target)
    return album


@pytest.fixture(scope="module")
def indexed(embedder, tmp_path_factory):
    """One library of the album, shared by the tests that only search it."""
    root = Path(tempfile.mkdtemp(prefix="pw-", dir="/tmp"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PETWATCH_HOME", str(root))
        patch.setenv("PETWATCH_MODEL", TEST_MODEL)
        album = _album(tmp_path_factory.mktemp("album"))
        library = Library(settings.load(), embedder)
        library.reconcile([str(album["beagle"][0].parent)])
        pets = Pets(library, locations.state_db())
        try:
            yield library, pets, album
        finally:
            pets.close()
            library.close()
            shutil.rmtree(root, ignore_errors=True)


def _words(indexed, text: str = "", **fields) -> dict:
    library, pets, _album = indexed
    request = SearchRequest(text=text or None, **fields)
    query = query_from(request, pets=pets.names(), places_known=library.places(), album=pets.album_paths)
    return library.search(query)


def _names(reply: dict) -> list[str]:
    return [Path(hit["path"]).name for hit in reply["hits"]]


def test_a_breed_word_finds_that_breed_first_scored_by_its_probability(indexed):
    _library, _pets, album = indexed
    reply = _words(indexed, "beagle")
    beagles = {p.name for p in album["beagle"]}
    assert set(_names(reply)[:BEAGLES]) == beagles
    assert all(0 < hit["score"] <= 1 for hit in reply["hits"])
    assert [r["kind"] for r in reply["readings"]] == ["concept"]
    dogs = _words(indexed, "dogs")  # a roll-up, plural: every dog breed
    assert beagles <= set(_names(dogs)) and not {p.name for p in album["cat"]} & set(_names(dogs))


def test_an_object_word_finds_the_photo_that_shows_it(indexed):
    reply = _words(indexed, "ladybug")
    assert _names(reply)[0] == "LadyBird.jpg" and reply["hits"][0]["score"] > 0.5
    assert reply["hits"][0]["concepts"][0] == "ladybug"
    assert _names(_words(indexed, "daisy"))[0] == "FreshFlower.jpg"


def test_a_year_reads_the_exif_time_else_the_files_and_the_hit_says_which(indexed):
    _library, _pets, album = indexed
    in_2008 = _words(indexed, "2008")
    assert set(_names(in_2008)) == set(GPS)
    assert all(hit["taken_from"] == "exif" for hit in in_2008["hits"])
    assert datetime.fromtimestamp(in_2008["hits"][0]["taken"], UTC).year == 2008
    in_2019 = {hit["path"]: hit for hit in _words(indexed, "2019", top_k=100)["hits"]}
    for landscape in album["landscape"]:
        hit = in_2019[str(landscape)]
        assert hit["taken_from"] == "file" and hit["taken"] == int(FILE_TIME.timestamp())
    assert not set(GPS) & {Path(p).name for p in in_2019}
    assert _names(_words(indexed, taken="2008")) == _names(in_2008)  # --taken: the same


def test_a_place_from_a_cameras_gps_finds_its_photos_and_hits_name_it(indexed):
    library, _pets, _album = indexed
    assert {"Arezzo", "Tuscany", "Italy"} <= set(library.places())
    for words in ("arezzo", "Tuscany", "in italy"):
        reply = _words(indexed, words)
        assert set(_names(reply)) == set(GPS), words
        assert reply["hits"][0]["place"] == "Arezzo, Italy"
    assert set(_names(_words(indexed, near="tuscany"))) == set(GPS)
    assert _words(indexed, "paris")["hits"] == []  # a real place with no photo there: nothing, not an error


def test_a_pets_name_keeps_to_its_album_and_combines_with_words(indexed):
    _library, pets, album = indexed
    pets.add("Rex", [str(p) for p in album["beagle"][:3]])
    rex = set(pets.album_paths("Rex"))
    assert {str(p) for p in album["beagle"][:3]} <= rex
    reply = _words(indexed, "rex")
    assert reply["hits"] and {hit["path"] for hit in reply["hits"]} <= rex
    assert reply["readings"][0]["kind"] == "pet"
    assert {hit["path"] for hit in _words(indexed, "rex beagle")["hits"]} <= rex
    assert _words(indexed, "rex 2008")["hits"] == []  # Rex was not in Arezzo


def test_words_with_a_photo_filter_and_the_photo_ranks(indexed):
    _library, _pets, album = indexed
    beagle = str(album["beagle"][0])
    cats = {str(p) for p in album["cat"]}
    reply = _words(indexed, "cat", image=beagle)
    assert reply["hits"] and {hit["path"] for hit in reply["hits"]} <= cats
    scores = [hit["score"] for hit in reply["hits"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s < 0.99 for s in scores)  # cosines to the beagle
    own = _words(indexed, "beagle", image=beagle, expand=False)
    assert own["hits"][0]["path"] == beagle and own["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_an_unknown_word_is_named_and_stop_words_alone_are_no_search(indexed):
    with pytest.raises(UnknownWords) as raised:
        _words(indexed, "beagle zorblax")
    assert "zorblax" in str(raised.value) and "beagle" not in raised.value.words
    with pytest.raises(PetwatchError, match="nothing to search for"):
        _words(indexed, "the")


def test_an_unknown_word_from_the_cli_is_one_line_and_exit_1(home):
    done = run_cli("search", "--text", "zorblax at the beach")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "zorblax" in lines[0], done.stderr


def test_a_hit_says_when_where_and_what(indexed):
    reply = _words(indexed, "arezzo")
    hit = reply["hits"][0]
    assert {"taken", "taken_from", "place", "concepts", "city", "region", "country"} <= set(hit)
    assert (hit["city"], hit["region"], hit["country"]) == ("Arezzo", "Tuscany", "Italy")
    assert hit["concepts"] and all(isinstance(c, str) and c for c in hit["concepts"])


def test_a_photos_own_hit_scores_1_with_query_expansion_and_min_score_is_the_cosine(indexed):
    library, _pets, album = indexed
    query = str(album["beagle"][1])
    mine = library.vectors([query])[query][0]
    for expand in (False, True):
        hits = find(library, query, top_k=10, min_score=-1.0, expand=expand).hits
        assert hits[0].path == query and hits[0].score == pytest.approx(1.0, abs=1e-4), expand
        stored = library.vectors([h.path for h in hits])
        for hit in hits:  # each number is the hit's similarity to the photo given
            assert hit.score == pytest.approx(float(stored[hit.path][0] @ mine), abs=1e-4)
        cut = hits[4].score
        assert all(h.score >= cut for h in find(library, query, top_k=10, min_score=cut, expand=expand).hits)


def test_an_older_library_gets_concepts_and_places_by_upgrade_while_it_keeps_serving(home, embedder, tmp_path):
    album = _album(tmp_path / "album")
    folder = str(album["beagle"][0].parent)
    # The library an older petwatch made: its collection named by recipe alone, without places
    # or classes (the record as it was).
    older = {
        name: stored
        for name, stored in store_module.RECORD.items()
        if name not in ("city", "region", "country", "classes")
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store_module, "RECORD", older)
        patch.setattr(library_module, "collection_name", lambda base, recipe: f"{base}_{recipe}")
        old = Library(settings.load(), embedder)
        try:
            old.reconcile([folder])
            total = old.photo_count
            before = [(h.path, round(h.score, 5)) for h in find(old, str(album["beagle"][0]), 8).hits]
        finally:
            old.close()
    library = Library(settings.load(), embedder)
    try:
        assert library.upgrade_status() == {
            "from": library.store.recipe,
            "to": library.store.recipe,
            "done": 0,
            "total": total,
        }
        # A photo search is served by the older index, whole and as before; words by the new
        # one, partial (nothing in it yet).
        assert [(h.path, round(h.score, 5)) for h in find(library, str(album["beagle"][0]), 8).hits] == before
        during = library.search(SearchQuery(text="beagle", concepts=(frozenset({162}),)))
        assert during["partial"] and during["hits"] == []
        library.run_upgrade()
        assert library.upgrade is None and library.photo_count == total
        beagles = {str(p) for p in album["beagle"]}
        query = query_from(SearchRequest(text="beagle"), places_known=library.places())
        assert {hit["path"] for hit in library.search(query)["hits"][:BEAGLES]} == beagles
        assert {"Arezzo", "Italy"} <= set(library.places())
        assert [(h.path, round(h.score, 5)) for h in find(library, str(album["beagle"][0]), 8).hits] == before
    finally:
        library.close()


def test_the_sparse_classes_are_the_classifiers_top_ones(indexed, embedder):
    """What the index keeps per photo is the forward pass's own top classes (no second pass)."""
    library, _pets, album = indexed
    row = library.row(str(album["beagle"][0]))
    assert row is not None
    classes = row.photo["classes"]
    assert 1 <= len(classes) <= TOP_K and all(MIN_PROB - 1e-4 <= p <= 1 for p in classes.values())
    assert list(classes.values()) == sorted(classes.values(), reverse=True)
    assert np.isclose(sum(classes.values()), min(1.0, sum(classes.values())))


def test_the_daemon_answers_words_names_what_they_can_name_and_refuses_an_unknown_word(home, start_daemon, tmp_path):
    from petwatch.client import DaemonError

    album = _album(tmp_path / "album")
    settings.update_config_file(folders=[str(album["gps"][0].parent)])
    daemon = start_daemon()
    daemon.wait_idle()
    with daemon.client() as client:
        names = client.words()
        assert {"Arezzo", "Tuscany", "Italy"} <= set(names["places"]) and names["pets"] == []
        reply = client.search(text="beagle in tuscany")
        assert reply["hits"] == [] and {"concept", "place"} <= {r["kind"] for r in reply["readings"]}
        reply = client.search(text="ladybug", top_k=1)
        assert [Path(h["path"]).name for h in reply["hits"]] == ["LadyBird.jpg"]
        assert reply["hits"][0]["taken_from"] == "file"
        photo = client.search(image=str(album["beagle"][0]), text="beagle", taken="2019")
        assert {h["path"] for h in photo["hits"]} <= {str(p) for p in album["beagle"]}
        with pytest.raises(DaemonError) as refused:
            client.search(text="zorblax")
        assert refused.value.status == 400 and "zorblax" in str(refused.value)


def test_the_cli_searches_words_without_a_daemon_and_explains_them(home, tmp_path):
    import json

    album = _album(tmp_path / "album")
    assert run_cli("index", str(album["gps"][0].parent)).returncode == 0
    done = run_cli("search", "--text", "arezzo 2008", "--json", "--explain")
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)
    assert {Path(h["path"]).name for h in hits} == set(GPS)
    assert all(h["place"] == "Arezzo, Italy" and h["taken_from"] == "exif" and h["concepts"] for h in hits)
    assert "'arezzo': place" in done.stderr and "'2008': taken" in done.stderr
