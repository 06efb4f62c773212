"""Search in words on the Milvus server tier's 2.3.5, which has no sparse vectors: the classes
live in their class and weight columns alone. Words + photo and the filters work as on the
local DB; words alone rank by where the words' classes stand among a photo's top classes.
Tests that take ``home`` from tests/test_search_words.py run again here, on the server
(an older library's upgrade among them: its new collection is made in the 2.3 form)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from tests.test_search_words import (  # noqa: F401 - collected here, on the server
    BEAGLES,
    _album,
    embedder,
    test_an_older_library_gets_concepts_and_places_by_upgrade_while_it_keeps_serving,
    test_the_cli_searches_words_without_a_daemon_and_explains_them,
    test_the_daemon_answers_words_names_what_they_can_name_and_refuses_an_unknown_word,
)

from petwatch import concepts, locations, settings
from petwatch import store as store_module
from petwatch.concepts import MIN_PROB
from petwatch.endpoints import SearchRequest
from petwatch.library import Library
from petwatch.pets import Pets
from petwatch.search import query_from
from petwatch.store import class_columns

pytestmark = pytest.mark.server  # the Milvus server tier: -m server


def _words(library: Library, pets: Pets, text: str, **fields) -> dict:
    request = SearchRequest(text=text, **fields)
    return library.search(query_from(request, pets=pets.names(), places_known=library.places(), album=pets.album_paths))


def _standing(classes: dict[int, float], wanted: set[int]) -> int:
    """Where the first of ``wanted`` stands among a photo's classes (0: its top class)."""
    return next(n for n, index in enumerate(classes) if index in wanted)


def test_words_on_a_server_without_sparse_vectors_rank_by_standing_and_keep_the_probabilities(
    home, server, embedder, tmp_path, caplog, monkeypatch
):
    monkeypatch.setattr(store_module, "_TOLD_HOW_WORDS_RANK", set())  # said once a process: earlier tests may have
    album = _album(tmp_path / "album")
    folder = album["beagle"][0].parent
    with caplog.at_level(logging.INFO, logger="petwatch.store"):
        library = Library(settings.load(), embedder)
    pets = Pets(library, locations.state_db())
    try:
        store = library.store
        assert not store.sparse and "classes" in store.fields  # 2.3: kept in columns alone
        told = [r.message for r in caplog.records if "no sparse vectors" in r.message]
        assert len(told) == 1 and "where the words' classes stand" in told[0]
        library.reconcile([str(folder)])

        # A photo's classes read back whole: the classifier's top ones with their probabilities.
        row = library.row(str(album["beagle"][0]))
        assert row is not None
        classes = row.photo["classes"]
        assert 1 <= len(classes) <= len(class_columns("classes"))
        assert all(MIN_PROB - 1e-4 <= p <= 1 for p in classes.values())
        assert list(classes.values()) == sorted(classes.values(), reverse=True)

        # Words alone: the beagles first, by standing, each scored by its mass on the words.
        reply = _words(library, pets, "beagle")
        beagles = {p.name for p in album["beagle"]}
        names = [Path(hit["path"]).name for hit in reply["hits"]]
        assert set(names[:BEAGLES]) == beagles
        wanted = set(concepts.lookup("beagle") or ())
        standings = [_standing(library.row(hit["path"]).photo["classes"], wanted) for hit in reply["hits"]]
        assert standings == sorted(standings)
        for hit in reply["hits"]:
            mass = sum(p for index, p in library.row(hit["path"]).photo["classes"].items() if index in wanted)
            assert 0 < hit["score"] <= 1 and abs(hit["score"] - mass) < 1e-4
        dogs = {Path(hit["path"]).name for hit in _words(library, pets, "dogs")["hits"]}
        assert beagles <= dogs and not {p.name for p in album["cat"]} & dogs

        # Words + photo: the words filter, the photo ranks.
        photo = _words(library, pets, "beagle", image=str(album["beagle"][0]))
        assert {Path(hit["path"]).name for hit in photo["hits"]} == beagles

        # A copy reuses the stored row (no forward pass): its classes come along, so words find it.
        copy = folder / "copy-of-a-beagle.jpg"
        shutil.copyfile(album["beagle"][0], copy)
        library.reconcile([str(folder)])
        copied = library.row(str(copy))
        assert copied is not None and copied.photo["classes"] == classes
        found = store.search_classes(dict.fromkeys(wanted, 1.0), top_k=20)  # the reply stacks copies
        assert str(copy) in {hit.path for hit in found}
    finally:
        pets.close()
        library.close()
