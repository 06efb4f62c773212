"""The collection's filters, on a real Milvus Lite: values a user's files can carry (quotes,
backslashes, line breaks, names that are not UTF-8) select exactly their own rows."""

from __future__ import annotations

import os

import numpy as np
import pytest

from petwatch.errors import PetwatchError
from petwatch.store import PhotoRow, Store, filter_value

HOSTILE = ['a"b', "back\\slash", 'end\\"', "line\nbreak", "t\tab", '" or view >= 0 or "', "it's", "chat 🐈 ü"]


def _row(path: str, content_hash: str, seed: int, species: str = "dog") -> PhotoRow:
    vector = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    return PhotoRow(path, content_hash, 1, 1, 1, 1, 0, 0, vector / np.linalg.norm(vector), species=species)


@pytest.fixture
def store(tmp_path):
    opened = Store(str(tmp_path / "m.db"), "photos", "test/1", 8)
    yield opened
    opened.close()


def test_filter_values_are_quoted_and_escaped():
    assert filter_value('a"b\\c') == '"a\\"b\\\\c"'
    assert filter_value([3, -4]) == "[3, -4]"
    assert filter_value(["x", 'y"']) == '["x", "y\\""]'
    with pytest.raises(TypeError):
        filter_value(True)
    with pytest.raises(PetwatchError, match="carriage return"):  # Milvus cannot parse one
        filter_value("a\rb")


def test_hostile_hashes_and_species_select_only_their_own_rows(store):
    rows = [_row(f"/p/{i}.jpg", value, i, species=value) for i, value in enumerate(HOSTILE)]
    store.upsert([*rows, _row("/p/plain.jpg", "plain", 99, species="cat")])
    for row in rows:
        assert [found.path for found in store.rows_for_hash(row.content_hash)] == [row.path]
        assert store.count(species=[row.species]) == 1
        assert [hit.path for hit in store.search(row.vector, 20, species=[row.species])] == [row.path]
    assert store.count(species=HOSTILE) == len(HOSTILE)
    assert store.rows_for_hash('" or content_hash != "') == []


def test_paths_that_are_not_utf8_are_stored_found_and_deleted(store):
    odd = os.fsdecode(b'/p/caf\xe9 "q"\\.jpg')  # Latin-1 bytes: stored as b64:
    row = _row(odd, "h-odd", 1)
    store.upsert([row, _row("/p/other.jpg", "h-other", 2)])
    assert store.get(odd).path == odd
    assert set(store.vectors([odd])) == {odd}
    assert {path for path, _ in store.iter_catalog()} == {odd, "/p/other.jpg"}
    assert store.delete_paths([odd]) == 1
    assert store.get(odd) is None and store.get("/p/other.jpg") is not None
