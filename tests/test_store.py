"""The collection on a real Milvus Lite: its columns are the photo record's declared fields; an
index made before a field was declared keeps working; and the filters: values a user's files
can carry (quotes, backslashes, line breaks, names that are not UTF-8) select exactly their own rows."""

from __future__ import annotations

import json
import os
from typing import get_type_hints

import numpy as np
import pytest

from petwatch.errors import PetwatchError
from petwatch.protocol import PhotoRecord
from petwatch.store import (
    PhotoRow,
    Store,
    class_columns,
    filter_value,
    photo_id,
    photo_record,
    row_pk,
    server_has_sparse,
)

HOSTILE = ['a"b', "back\\slash", 'end\\"', "line\nbreak", "t\tab", '" or view >= 0 or "', "it's", "chat 🐈 ü"]


def _row(path: str, content_hash: str, seed: int, species: str = "dog") -> PhotoRow:
    vector = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    photo = photo_record(path=path, content_hash=content_hash, size=1, mtime_ns=1, width=1, height=1, species=species)
    return PhotoRow(photo, vector / np.linalg.norm(vector))


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
        assert store.count(species=[row.photo["species"]]) == 1
        assert [hit.path for hit in store.search(row.vector, 20, species=[row.photo["species"]])] == [row.path]
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


def test_the_collection_holds_the_record_fields_and_the_row_columns_only(store):
    """Each field of protocol.PhotoRecord is a column of its declared kind; a row adds its key,
    its photo's id, its view and its vector, and nothing else is stored."""
    from pymilvus import DataType

    columns = {column["name"]: column["type"] for column in store.client.describe_collection("photos")["fields"]}
    record = get_type_hints(PhotoRecord, include_extras=True)
    # A sparse field (the classes a photo shows) has its ids beside it, to filter on.
    sparse = [name for name, hint in record.items() if hint.__metadata__[0].kind == "sparse"]
    expected = [column for name in record for column in ([name, *class_columns(name)] if name in sparse else [name])]
    assert list(columns) == ["pk", "photo_id", "view", *expected, "vector"]
    kinds = {"sparse": "SPARSE_FLOAT_VECTOR"}
    for name, hint in record.items():
        kind = hint.__metadata__[0].kind
        assert columns[name] == DataType[kinds.get(kind, kind.upper())], name
    assert all(columns[column] == DataType.INT16 for name in sparse for column in class_columns(name))


def _schema_2_collection(client, name: str, dim: int) -> None:
    """The collection petwatch made before the camera field (schema 2), written out as that
    version made it: a later change to the record cannot change what this test opens."""
    from pymilvus import DataType, MilvusClient

    recorded = {"petwatch_schema": 2, "model": "test/1", "dim": dim, "recipe": None, "upgrading_from": None}
    schema = MilvusClient.create_schema(auto_id=False, description=json.dumps(recorded))
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("photo_id", DataType.INT64)
    schema.add_field("view", DataType.INT8)
    schema.add_field("path", DataType.VARCHAR, max_length=16384)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
    for field in ("size", "mtime_ns", "taken_at", "indexed_at"):
        schema.add_field(field, DataType.INT64)
    schema.add_field("width", DataType.INT32)
    schema.add_field("height", DataType.INT32)
    schema.add_field("pet_score", DataType.FLOAT)
    schema.add_field("species", DataType.VARCHAR, max_length=16)
    schema.add_field("label", DataType.VARCHAR, max_length=256)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="IP")
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")


def test_an_index_made_before_the_camera_field_opens_searches_and_stores_with_nothing_lost(tmp_path):
    uri = str(tmp_path / "m.db")
    made = Store(uri, "photos", "test/1", 8)
    made.drop()
    _schema_2_collection(made.client, "photos", 8)
    old = photo_record(path="/p/old.jpg", content_hash="h-old", size=1234, mtime_ns=5, width=640, height=480)
    old.update(taken_at=77, indexed_at=88, pet_score=0.75, species="cat", label="tabby")
    vector = _row("/p/old.jpg", "h-old", 1).vector
    later = ("camera", "city", "region", "country", "classes")
    written = {name: value for name, value in old.items() if name not in later}  # what schema 2 stored
    ids = {"pk": row_pk("/p/old.jpg", 0), "photo_id": photo_id("/p/old.jpg"), "view": 0}
    made.client.insert("photos", [{**written, **ids, "vector": vector.tolist()}])

    store = Store(uri, "photos", "test/1", 8)
    try:
        assert "camera" not in store.fields and store.has_pet_fields
        assert store.get("/p/old.jpg").photo == old  # every stored value; the camera unknown: ""
        new = _row("/p/new.jpg", "h-new", 2)
        new.photo["camera"] = "Canon EOS 40D"
        new.photo.update(city="Lisbon", classes={207: 0.9})
        store.upsert([new])  # the fields the collection lacks are not written
        assert store.get("/p/new.jpg").photo == {**new.photo, "camera": "", "city": "", "classes": {}}
        assert store.count() == 2 and store.count(species=["cat"]) == 1
        hits = store.search(new.vector, 5)
        assert [hit.path for hit in hits] == ["/p/new.jpg", "/p/old.jpg"] and hits[1].photo["label"] == "tabby"
        assert {row.path for row in store.iter_rows()} == {"/p/old.jpg", "/p/new.jpg"}
    finally:
        store.close()


def test_free_text_is_cut_to_its_declared_length_and_a_long_path_never(store):
    path = "/p/" + "d" * 4500 + ".jpg"  # longer than any varchar's cut: the key is kept whole
    row = _row(path, "h-long", 1)
    row.photo.update(label="tabby " * 20, camera="Camera " * 20)
    store.upsert([row])
    photo = store.get(path).photo
    assert photo["path"] == path and photo["label"] == ("tabby " * 20)[:64] and photo["camera"] == ("Camera " * 20)[:64]


def test_sparse_vectors_are_used_from_milvus_2_4_on():
    """A 2.3 server keeps the classes in columns alone; 2.4+, Zilliz Cloud and an unknown one get a sparse vector."""
    assert not server_has_sparse("v2.3.5") and not server_has_sparse("2.3.21")
    assert server_has_sparse("v2.4.0") and server_has_sparse("v2.5.4") and server_has_sparse("v3.0.0")
    assert server_has_sparse("Zilliz Cloud Vector Database(Compatible with Milvus 2.5)") and server_has_sparse("")
