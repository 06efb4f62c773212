"""Photo rows and their vectors in Milvus: a local Milvus Lite file, or a server by URI.

One row per (photo file, view). View 0 is the whole image; higher views are left for
crops of the same photo, so a photo can carry several vectors without a schema change.
The collection's description records which model made its vectors; a Store refuses to
open it for another model rather than mix vectors that cannot be compared.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_type_hints

import numpy as np

from petwatch.concepts import TOP_K
from petwatch.errors import PetwatchError, StoreFull
from petwatch.filenames import decode_path, encode_path  # the rows' path scheme, shared with the socket
from petwatch.milvus_lite import milvus_client_class
from petwatch.milvus_remote import ServerClient
from petwatch.protocol import PhotoRecord, Stored

if TYPE_CHECKING:
    from petwatch.photos import Look

log = logging.getLogger(__name__)

# 2: per-photo pet fields (pet_score, species, label) and the embedding recipe in the description.
# 3: the camera field. 4: places (city, region, country) and the classes a photo shows (a sparse
# vector, with its class ids beside it in int columns to filter on): a second vector field, so a
# collection of its own (library.collection_name), filled by the upgrade. The fields a collection
# has are read from the collection itself (Store.fields), not from this number: an older one is
# opened as it is, its missing fields read as their defaults.
SCHEMA_VERSION = 4
# Rows per write. Milvus Lite 2.5.1's insert cost grows faster than its batch: 20k rows of
# 1280-d took 3 s in 256-row batches and 110 s in 2000-row ones.
WRITE_BATCH = 256
# A server takes 256- to 2000-row writes at about one rate (20k rows of 1280-d, two rounds:
# 2.5k-2.9k rows/s, 1000 a little ahead in both); 1000 is 4x fewer round trips than Lite's size.
SERVER_WRITE_BATCH = 1000
RANGE_PAGE = 16384  # the most hits Milvus returns from one search
# Every stored and query vector is L2-normalised (embed makes them so, and the Store
# normalises again on the way in), so their inner product *is* their cosine similarity.
# Milvus Lite's FLAT scan computes it as IP 1.5x faster than as COSINE (bench/bench_search.py,
# 100k x 1280-d, one run: p95 72.5 -> 49.0 ms), so a local DB uses IP. A server keeps
# COSINE: there HNSW visits a few thousand vectors, not all of them.
LITE_METRIC = "IP"
SERVER_METRIC = "COSINE"
WHOLE_IMAGE = 0
# The photo record's fields and how each is stored, in declaration order (protocol.PhotoRecord).
# A row adds its own columns: pk, photo_id, view and vector.
RECORD: dict[str, Stored] = {
    name: next(meta for meta in hint.__metadata__ if isinstance(meta, Stored))
    for name, hint in get_type_hints(PhotoRecord, include_extras=True).items()
}


# A sparse field's class ids, kept beside it in MAX_CLASSES int columns (classes_1 ... classes_5,
# best first, -1 for none): Milvus filters on those, not on a sparse vector's keys. Measured on
# Milvus Lite 2.5.1, 10k photos, "dog" (118 classes) filtering a 768-d search: p50 6.1 ms on int
# columns, 75.9 ms on a JSON list (json_contains_any), 4.4 ms unfiltered. Not an ARRAY column:
# in Lite 2.5.1 any query that matches no row then fails ("Unsupported data type: 0").
MAX_CLASSES = TOP_K  # the most classes a photo keeps (concepts.top_concepts)
NO_CLASS = -1


def class_columns(name: str) -> list[str]:
    """The int columns beside a sparse field that hold its class ids, best first."""
    return [f"{name}_{n}" for n in range(1, MAX_CLASSES + 1)]


def weight_columns(name: str) -> list[str]:
    """The float columns that hold a sparse field's weights, beside its class columns, on a
    server without sparse vectors (SPARSE_SINCE): the record then reads back whole."""
    return [f"{name}_weight_{n}" for n in range(1, MAX_CLASSES + 1)]


# Milvus has sparse vectors since 2.4 (Milvus Lite 2.4 too). On an older server (2.3) a sparse
# field is kept in its class and weight columns alone: words + photo filter on them as
# anywhere, words alone rank by where the words' classes stand among a photo's top classes
# (Store.search_classes), not by their probability mass.
SPARSE_SINCE = (2, 4)


def server_has_sparse(version: str) -> bool:
    """Whether a server of this version ("v2.3.5"; Zilliz Cloud's names its Milvus) has sparse
    vectors; one whose version does not parse is taken to have them (any current one does)."""
    found = re.search(r"(\d+)\.(\d+)", version or "")
    return found is None or (int(found[1]), int(found[2])) >= SPARSE_SINCE


def photo_record(**values: Any) -> PhotoRecord:
    """A record of these values, each field not given at its declared default."""
    unknown = values.keys() - RECORD.keys()
    if unknown:
        raise TypeError(f"not photo record fields: {sorted(unknown)}")
    return cast(PhotoRecord, {name: values.get(name, _default(stored)) for name, stored in RECORD.items()})


def _default(stored: Stored) -> Any:
    return dict(stored.default) if isinstance(stored.default, dict) else stored.default  # a fresh dict each


class _OfAPhoto:
    """A row's or hit's identity: its photo's path and content hash (the rest: ``photo[...]``)."""

    photo: PhotoRecord

    @property
    def path(self) -> str:
        return self.photo["path"]

    @property
    def content_hash(self) -> str:
        return self.photo["content_hash"]


@dataclass
class PhotoRow(_OfAPhoto):
    """One stored row: a photo's record and the vector of one of its views."""

    photo: PhotoRecord
    vector: np.ndarray = field(repr=False)
    view: int = WHOLE_IMAGE
    # Not stored in Milvus: the picture's hash and sharpness, passed on to stacks (photos.Look);
    # None for a copy of bytes already known (its look is known by content hash).
    look: Look | None = field(default=None, repr=False, compare=False)


@dataclass
class Hit(_OfAPhoto):
    """A search hit: a photo's record, its score and the view that matched."""

    photo: PhotoRecord
    score: float  # cosine similarity
    view: int = WHOLE_IMAGE
    vector: np.ndarray | None = field(default=None, repr=False, compare=False)  # when asked for


@dataclass(frozen=True)
class CatalogEntry:
    size: int
    mtime_ns: int
    content_hash: str

    def matches(self, stat) -> bool:
        """Whether a file's ``stat`` (size, mtime_ns) is what was indexed: "unchanged since"."""
        return stat is not None and (self.size, self.mtime_ns) == (stat.size, stat.mtime_ns)


def photo_id(path: str) -> int:
    """A stable signed 64-bit id for a path: deletes filter on ints, never on quoted paths."""
    return int.from_bytes(hashlib.blake2b(_path_bytes(path), digest_size=8).digest(), "big", signed=True)


def row_pk(path: str, view: int) -> int:
    digest = hashlib.blake2b(_path_bytes(path) + b"\0" + str(view).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def unit_vector(vector) -> np.ndarray:
    """``vector`` as float32 with length 1 (a zero vector stays zero), so IP is cosine."""
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


# Milvus's filter parser unescapes only these in a string literal: its quote, the escape
# character and a line break (as backslash-newline; "\\n" stays two characters). A tab is
# taken as itself; a carriage return cannot be written at all (filter_value refuses it).
_FILTER_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\\n"})


def filter_value(value: str | int | Iterable[str] | Iterable[int]) -> str:
    """``value`` as a literal of a Milvus filter expression: an int as itself, a string quoted
    and escaped (a quote or backslash in it cannot end it or change the expression), a list as
    a list of those. Every value put into a filter goes through here."""
    if isinstance(value, bool):
        raise TypeError("a filter value is a str, an int or a list of them, not a bool")
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str):
        if "\r" in value:
            raise PetwatchError(f"cannot look up {value!r} in the index: it holds a carriage return")
        return '"' + value.translate(_FILTER_ESCAPES) + '"'
    return "[" + ", ".join(filter_value(item) for item in value) + "]"


@dataclass(frozen=True)
class PhotoFilter:
    """Which photos a search may return, as one value: each part set narrows it (AND).
    Milvus applies it inside the search, so a top-k is the top k of those photos."""

    species: tuple[str, ...] = ()  # any of these species
    # Every concept must match (AND); one matches when any of its classes is among the photo's top ones.
    concepts: tuple[frozenset[int], ...] = ()
    taken: tuple[int, int] | None = None  # [start, end) Unix seconds: EXIF time, else the file's
    places: tuple[str, ...] = ()  # a city, region or country equal to any of these
    photo_ids: frozenset[int] | None = None  # only these photos (a pet's album); None: any

    @property
    def fields(self) -> set[str]:
        """The record fields this filter reads: a collection without them cannot answer it."""
        need = set()
        if self.species:
            need.add("species")
        if self.concepts:
            need.add("classes")
        if self.places:
            need.add("city")
        return need

    def expression(self) -> str:
        parts = []
        if self.species:
            parts.append(species_filter(self.species))
        for classes in self.concepts:
            wanted = filter_value(sorted(classes))
            parts.append("(" + " or ".join(f"{column} in {wanted}" for column in class_columns("classes")) + ")")
        if self.taken is not None:
            start, end = (int(t) for t in self.taken)
            exif = f"taken_at >= {filter_value(start)} and taken_at < {filter_value(end)}"
            file = f"mtime_ns >= {filter_value(start * 10**9)} and mtime_ns < {filter_value(end * 10**9)}"
            parts.append(f"(({exif}) or (taken_at == 0 and {file}))")
        if self.places:
            names = filter_value(sorted(set(self.places)))
            parts.append(f"(city in {names} or region in {names} or country in {names})")
        if self.photo_ids is not None:
            parts.append(f"photo_id in {filter_value(sorted(self.photo_ids))}")
        return " and ".join(parts)


def species_filter(species: Sequence[str] | None) -> str:
    """The scalar filter for photos of these species (None: no filter). Milvus applies it
    inside the search, so a top-k is the top k of those photos, not a post-filtered few."""
    if not species:
        return ""
    return f"species in {filter_value(sorted(set(species)))}"


def _fit(value: Any, stored: Stored) -> Any:
    """A value as its field keeps it: a varchar cut to its declared length (free text such as
    a classifier's label or a camera's name; a valid value is never that long); a sparse
    vector's weights as floats, zeros left out."""
    if stored.kind == "sparse":
        best = sorted(((int(k), float(v)) for k, v in value.items() if v > 0), key=lambda kv: -kv[1])
        return dict(best[:MAX_CLASSES])
    return value[: stored.max_chars] if stored.kind == "varchar" else value


def _mass(classes: dict[int, float], query: dict[int, float]) -> float:
    """The sparse inner product of a photo's classes and a query's (what search_classes ranks by)."""
    return sum(query.get(k, 0.0) * v for k, v in classes.items())


def _path_bytes(path: str) -> bytes:
    return os.fsencode(path)


# Milvus Lite 2.5.1 answers an upsert on a full disk with success (its log says "Insert data
# failed: database or disk is full"): the rows live in its memory until it stops, and are
# then lost, and a delete retries for minutes. So a local DB is only written while its disk
# has this much room (and is writable); else writes are refused at once with a clear reason
# (StoreFull).
MIN_FREE_BYTES = 64 << 20


def _connect(uri: str, token: str | None):
    """A client on ``uri``: a Milvus Lite file's MilvusClient, or a server's ServerClient
    (bounded, reconnecting calls); a one-line error naming the setting to fix otherwise."""
    client_class = milvus_client_class()
    if "://" in uri:
        return ServerClient.connect(client_class, uri, token)
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        return client_class(uri=uri, token=token or "")
    except Exception as error:  # noqa: BLE001 - pymilvus wraps errors inconsistently
        raise PetwatchError(
            f"cannot open Milvus at {uri}: {error}; only one process can open a "
            f"Milvus Lite DB: if the petwatch daemon is running, use it "
            f"(petwatch status) or stop it first"
        ) from None


_TOLD_HOW_WORDS_RANK: set[str] = set()  # servers whose words-alone ranking was logged (once each)


# Milvus Lite 2.5.1 fails a read that returns a sparse vector field from a collection that has
# never held a row ("Growing segment loss raw data"): its true answer is "nothing".
_NEVER_WRITTEN = "loss raw data"


class _Reads:
    """A client whose reads answer an empty collection with nothing (see _NEVER_WRITTEN), not
    an error; everything else passes through."""

    def __init__(self, client) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query(self, *args, **kwargs) -> list:
        try:
            return self._client.query(*args, **kwargs)
        except Exception as error:
            if _NEVER_WRITTEN in str(error):
                return []
            raise

    def search(self, *args, **kwargs) -> list:
        try:
            return self._client.search(*args, **kwargs)
        except Exception as error:
            if _NEVER_WRITTEN in str(error):
                return [[] for _ in kwargs.get("data", args[1] if len(args) > 1 else [None])]
            raise

    def query_iterator(self, *args, **kwargs):
        try:
            return _SafeIterator(self._client.query_iterator(*args, **kwargs))
        except Exception as error:
            if _NEVER_WRITTEN in str(error):
                return _SafeIterator(None)
            raise


class _SafeIterator:
    def __init__(self, iterator) -> None:
        self._iterator = iterator

    def next(self) -> list:
        if self._iterator is None:
            return []
        try:
            return self._iterator.next()
        except Exception as error:
            if _NEVER_WRITTEN in str(error):
                return []
            raise

    def close(self) -> None:
        if self._iterator is not None:
            self._iterator.close()


def petwatch_collections(uri: str, token: str | None = None) -> dict[str, dict]:
    """Every collection petwatch made at ``uri``, with what its description records."""
    client = _connect(uri, token)  # not closed: pymilvus shares it with the Store opened next
    found = {name: Store.recorded(client, name) for name in client.list_collections()}
    return {name: info for name, info in found.items() if "petwatch_schema" in info}


class Store:
    """The photo collection, opened for one model identity and vector dimension."""

    def __init__(
        self,
        uri: str,
        collection: str,
        identity: str,
        dim: int,
        token: str | None = None,
        recipe: str | None = None,
        create: bool = True,
        upgrading_from: str | None = None,
    ) -> None:
        self.uri = uri
        self.collection = collection
        self.identity = identity
        self.dim = dim
        self.recipe = recipe  # how vectors were made beyond the model (embed.Embedder.recipe)
        self.fields = tuple(RECORD)  # the record fields its collection has (an older one lacks some)
        # Whether its sparse fields are sparse vectors; False on a server without them
        # (SPARSE_SINCE): each is then its class and weight columns alone.
        self.sparse = True
        self.create = create
        self.upgrading_from = upgrading_from  # the older collection this one is built from
        self.is_lite = "://" not in uri
        self.metric = LITE_METRIC if self.is_lite else SERVER_METRIC  # what this version makes
        self.client = _Reads(_connect(uri, token))
        self._open_or_create()

    # --- lifecycle -----------------------------------------------------------------------
    def _description(self) -> str:
        return json.dumps(
            {
                "petwatch_schema": SCHEMA_VERSION,
                "model": self.identity,
                "dim": self.dim,
                "recipe": self.recipe,
                "upgrading_from": self.upgrading_from,
            }
        )

    @staticmethod
    def recorded(client, collection: str) -> dict:
        """What a collection's description records (model, dim, recipe, schema); {} if none."""
        try:
            return json.loads(client.describe_collection(collection).get("description") or "{}")
        except (json.JSONDecodeError, AttributeError):
            return {}

    def _open_or_create(self) -> None:
        if self.client.has_collection(self.collection):
            recorded = self.recorded(self.client, self.collection)
            if recorded.get("model") != self.identity or recorded.get("dim") != self.dim:
                raise PetwatchError(
                    f"the index in {self.uri} (collection {self.collection!r}) was made by model "
                    f"{recorded.get('model', 'unknown')!r}, but the settings ask for {self.identity!r}. "
                    f"Either set model back, or rebuild the index for the new model with "
                    f"`petwatch reindex` (your photos are untouched; only the index is rebuilt)"
                )
            # An older schema is opened as it is (to serve searches while it is upgraded).
            self.recipe = recorded.get("recipe")  # None: older than recipes (whole-image vectors)
            columns = {column["name"] for column in self.client.describe_collection(self.collection)["fields"]}
            self.fields = tuple(name for name in RECORD if name in columns or self._kept_in_columns(name, columns))
            self.sparse = not any(self._kept_in_columns(name, columns) for name in self.fields)
            found = self._vector_metric()
            if found is None or (self.is_lite and found != self.metric):
                self._rebuild_vector_index()
            else:
                self.metric = found  # a server's index is kept as it was made
            self.client.load_collection(self.collection)
            self._say_how_words_rank()
            return
        if not self.create:
            raise PetwatchError(f"no collection {self.collection!r} in {self.uri}")
        self.sparse = self.is_lite or server_has_sparse(self.client.get_server_version())
        self._create()
        self._say_how_words_rank()

    @staticmethod
    def _kept_in_columns(name: str, columns: set[str]) -> bool:
        """Whether a collection keeps this sparse field in its class and weight columns alone
        (made on a server without sparse vectors)."""
        return (
            RECORD[name].kind == "sparse"
            and name not in columns
            and set(class_columns(name) + weight_columns(name)) <= columns
        )

    def _say_how_words_rank(self) -> None:
        if self.sparse or "classes" not in self.fields or self.uri in _TOLD_HOW_WORDS_RANK:
            return
        _TOLD_HOW_WORDS_RANK.add(self.uri)
        log.info(
            "Milvus at %s has no sparse vectors (they came in 2.4): words alone rank photos by where "
            "the words' classes stand among each photo's top classes, not by how sure the model is "
            "(a Milvus 2.4+ server or the local DB rank by that)",
            self.uri,
        )

    def _vector_index_params(self):
        index = self.client.prepare_index_params()
        if self.is_lite:  # Milvus Lite 2.5 has FLAT and IVF_FLAT; see README for why FLAT
            index.add_index("vector", index_type="FLAT", metric_type=self.metric)
        else:  # HNSW: a server's usual choice at this size
            index.add_index("vector", index_type="HNSW", metric_type=self.metric, params=HNSW_BUILD)
        return index

    def _vector_metric(self) -> str | None:
        """The metric of the collection's vector index (None: it has none)."""
        names = self.client.list_indexes(self.collection, field_name="vector")
        if not names:
            return None
        return self.client.describe_index(self.collection, names[0]).get("metric_type")

    def _rebuild_vector_index(self) -> None:
        """Give the vectors the index this version makes. A local DB from an older petwatch
        (FLAT/COSINE) gets FLAT/IP: same vectors, same scores, a faster scan; FLAT has nothing
        to build, so it costs one reload (3.5 s at 100k photos), once. A run stopped half-way
        leaves no index, which the next open makes."""
        log.info("rebuilding the vector index of %s for %s search (once; seconds)", self.uri, self.metric)
        self.client.release_collection(self.collection)
        for name in self.client.list_indexes(self.collection, field_name="vector"):
            self.client.drop_index(self.collection, name)
        self.client.create_index(self.collection, self._vector_index_params())

    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, description=self._description())
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("photo_id", DataType.INT64)
        schema.add_field("view", DataType.INT8)
        index = self._vector_index_params()
        for name, stored in RECORD.items():
            if stored.kind == "sparse":
                if self.sparse:
                    schema.add_field(name, DataType.SPARSE_FLOAT_VECTOR)
                    index.add_index(name, index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
                for column in class_columns(name):
                    schema.add_field(column, DataType.INT16)
                for column in [] if self.sparse else weight_columns(name):
                    schema.add_field(column, DataType.FLOAT)
                continue
            # A varchar's max_length counts bytes: up to 4 a character in UTF-8.
            size = {"max_length": stored.max_chars * 4} if stored.kind == "varchar" else {}
            schema.add_field(name, getattr(DataType, stored.kind.upper()), **size)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        # A server's reads choose their level per call (ServerClient); this default is for the
        # catalog's iterator, read once at open: it must see every write, whoever made it.
        self.client.create_collection(self.collection, schema=schema, index_params=index, consistency_level="Strong")

    def drop(self) -> None:
        self.client.drop_collection(self.collection)

    @staticmethod
    def drop_named(uri: str, token: str | None, collection: str) -> None:
        # Not closed: pymilvus shares one connection per URI with the Stores open on it.
        _connect(uri, token).drop_collection(collection)

    def close(self) -> None:
        self.client.close()
        if self.is_lite:  # pymilvus keeps a Lite server per file until exit: free the file now
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.uri)

    # --- writes --------------------------------------------------------------------------
    def write_problem(self) -> str | None:
        """Why the index cannot be written now (local disk full or read-only; server not
        answering), else None. A server's disk is not ours to check; it is asked to answer
        (and reload the collection after a restart)."""
        if not self.is_lite:
            return self.client.problem(self.collection)
        folder = Path(self.uri).parent
        try:
            st = os.statvfs(folder)
        except OSError:
            return None
        if st.f_flag & os.ST_RDONLY or not os.access(folder, os.W_OK):
            return f"cannot write the index: {folder} is read-only; indexing resumes once it is writable"
        free = st.f_bavail * st.f_frsize
        if free < MIN_FREE_BYTES:
            return (
                f"disk full: {free / 1e6:.1f} MB free on {folder}, the index needs "
                f"{MIN_FREE_BYTES >> 20} MB to write; indexing resumes once space is freed"
            )
        return None

    def check_space(self) -> None:
        problem = self.write_problem()
        if problem:
            raise StoreFull(problem)

    def upsert(self, rows: Sequence[PhotoRow]) -> None:
        if rows:
            self.check_space()
        size = WRITE_BATCH if self.is_lite else SERVER_WRITE_BATCH
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            self.client.upsert(self.collection, [self._entity(row) for row in batch])

    @property
    def has_pet_fields(self) -> bool:
        return "species" in self.fields

    def _entity(self, row: PhotoRow) -> dict:
        """The row as Milvus stores it: the record fields its collection has, free text cut to
        its declared length; the path, its key, encoded and never cut."""
        record: dict[str, Any] = dict(row.photo)
        entity = {name: _fit(record[name], RECORD[name]) for name in self.fields}
        for name in self.fields:
            if RECORD[name].kind == "sparse":
                ids = list(entity[name])
                entity.update(zip(class_columns(name), ids + [NO_CLASS] * (MAX_CLASSES - len(ids)), strict=True))
                if not self.sparse:
                    weights = list(entity.pop(name).values())
                    entity.update(zip(weight_columns(name), weights + [0.0] * (MAX_CLASSES - len(ids)), strict=True))
        entity["path"] = encode_path(row.path)
        entity["pk"] = row_pk(row.path, row.view)
        entity["photo_id"] = photo_id(row.path)
        entity["view"] = row.view
        entity["vector"] = unit_vector(row.vector).tolist()
        return entity

    def delete_paths(self, paths: Iterable[str]) -> int:
        ids = [photo_id(path) for path in paths]
        if ids:
            self.check_space()
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            self.client.delete(self.collection, filter=f"photo_id in {filter_value(chunk)}")
        return len(ids)

    # --- reads ---------------------------------------------------------------------------
    def count(self, species: Sequence[str] | None = None) -> int:
        """Photos stored (of these species only, when given)."""
        where = f"view == {filter_value(WHOLE_IMAGE)}"
        if species and self.has_pet_fields:
            where += f" and {species_filter(species)}"
        elif species:
            return 0
        rows = self.client.query(self.collection, filter=where, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def iter_catalog(self) -> Iterator[tuple[str, CatalogEntry]]:
        """Every indexed photo's path with the size, mtime and hash it was indexed at."""
        iterator = self.client.query_iterator(
            self.collection,
            batch_size=2000,
            filter=f"view == {filter_value(WHOLE_IMAGE)}",
            output_fields=["path", "size", "mtime_ns", "content_hash"],
        )
        try:
            while batch := iterator.next():
                for row in batch:
                    yield decode_path(row["path"]), CatalogEntry(row["size"], row["mtime_ns"], row["content_hash"])
        finally:
            iterator.close()

    def places(self) -> list[str]:
        """Every city, region and country its photos were taken in, sorted."""
        if "city" not in self.fields:
            return []
        names: set[str] = set()
        iterator = self.client.query_iterator(
            self.collection,
            batch_size=4000,
            filter=f'view == {filter_value(WHOLE_IMAGE)} and (city != "" or region != "" or country != "")',
            output_fields=["city", "region", "country"],
        )
        try:
            while batch := iterator.next():
                names.update(row[name] for row in batch for name in ("city", "region", "country"))
        finally:
            iterator.close()
        return sorted(names - {""})

    def iter_rows(self, species: Sequence[str] | None = None) -> Iterator[PhotoRow]:
        """Every photo's whole-image row, vector included (of these species, when given)."""
        iterator = self.client.query_iterator(
            self.collection,
            batch_size=1000,
            filter=self._where(True, species),
            output_fields=[*self._read, "view", "vector"],
        )
        try:
            while batch := iterator.next():
                yield from (self._row(raw) for raw in batch)
        finally:
            iterator.close()

    def rows_for_hash(self, content_hash: str) -> list[PhotoRow]:
        """Rows (all views, with vectors) of any photo with these bytes: a rename or copy reuses them."""
        # One source photo's views are enough: pick it by its whole-image row, then take all of
        # its rows (a limit over every row with these bytes could miss the pick's view 0).
        first = self.client.query(
            self.collection,
            filter=f"content_hash == {filter_value(content_hash)} and view == {filter_value(WHOLE_IMAGE)}",
            output_fields=["photo_id"],
            limit=1,
        )
        if not first:
            return []
        found = self.client.query(
            self.collection,
            filter=f"photo_id == {filter_value(first[0]['photo_id'])}",
            output_fields=[*self._read, "view", "vector"],
            limit=1024,
        )
        return [self._row(raw) for raw in found if raw["content_hash"] == content_hash]

    def rows(self, paths: Sequence[str]) -> list[PhotoRow]:
        """Every row (all views, with vectors) of these stored photos."""
        ids = [photo_id(path) for path in paths]
        found: list[PhotoRow] = []
        for start in range(0, len(ids), 256):
            chunk = ids[start : start + 256]
            where = f"photo_id in {filter_value(chunk)}"
            raws = self.client.query(self.collection, filter=where, output_fields=[*self._read, "view", "vector"])
            found.extend(self._row(raw) for raw in raws)
        return found

    def get(self, path: str) -> PhotoRow | None:
        found = self.client.query(
            self.collection,
            filter=f"photo_id == {filter_value(photo_id(path))} and view == {filter_value(WHOLE_IMAGE)}",
            output_fields=[*self._read, "view", "vector"],
            limit=1,
        )
        return self._row(found[0]) if found else None

    def answers(self, only: PhotoFilter | None) -> bool:
        """Whether this collection has the fields the filter reads (an older one lacks some)."""
        return only is None or only.fields <= set(self.fields)

    def _where(self, whole_image_only: bool, species: Sequence[str] | None, only: PhotoFilter | None = None) -> str:
        if species:
            only = replace(only or PhotoFilter(), species=tuple(sorted(set(species))))
        if only is not None and not self.answers(only):
            raise PetwatchError(
                "this index does not record that yet (it is being upgraded): "
                "search without that filter until `petwatch status` shows it done"
            )
        parts = [f"view == {filter_value(WHOLE_IMAGE)}"] if whole_image_only else []
        if only is not None and (expression := only.expression()):
            parts.append(expression)
        return " and ".join(parts)

    def search(
        self,
        vector: np.ndarray,
        top_k: int,
        min_score: float = -1.0,
        whole_image_only: bool = True,
        species: Sequence[str] | None = None,
        only: PhotoFilter | None = None,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """The ``top_k`` most similar photos, best first, cosine similarity >= ``min_score``
        (only photos of these ``species`` and that ``only`` lets through, when given);
        ``with_vectors``: each hit carries its stored vector (``Hit.vector``)."""
        # A plain top-k search, cut at min_score here: the same hits as a range search with
        # that radius, and a few ms faster on Milvus Lite.
        results = self.client.search(
            self.collection,
            data=[unit_vector(vector).tolist()],
            anns_field="vector",
            limit=top_k,
            filter=self._where(whole_image_only, species, only),
            output_fields=[*self._read, "view", *(["vector"] if with_vectors else [])],
            search_params={"metric_type": self.metric, **self._search_params(top_k)},
        )
        hits = [self._hit(raw) for raw in results[0]]
        return [hit for hit in hits if hit.score >= min_score]

    def search_classes(self, classes: dict[int, float], top_k: int, only: PhotoFilter | None = None) -> list[Hit]:
        """The ``top_k`` photos with the most probability on ``classes`` (weights: 1 each to
        sum the mass), best first, each scored by that mass; photos with none are left out."""
        query = {int(k): float(v) for k, v in classes.items() if v > 0}
        if not query or "classes" not in self.fields:
            return []
        if not self.sparse:
            return self._search_class_columns(query, top_k, only)
        results = self.client.search(
            self.collection,
            data=[query],
            anns_field="classes",
            limit=top_k,
            filter=self._where(True, None, only),
            output_fields=[*self._read, "view"],
            search_params={"metric_type": "IP"},
        )
        hits = [self._hit(raw) for raw in results[0]]
        return [hit for hit in hits if hit.score > 0]

    def _search_class_columns(self, query: dict[int, float], top_k: int, only: PhotoFilter | None) -> list[Hit]:
        """search_classes without a sparse vector: first the photos whose top class is one of
        ``query``'s, then those whose second is, and so on (one query each); photos of one
        standing by their mass on ``query`` among those read, each scored by that mass."""
        wanted = filter_value(sorted(query))
        columns = class_columns("classes")
        where = self._where(True, None, only)
        hits: list[Hit] = []
        for n, column in enumerate(columns):
            if len(hits) >= top_k:
                break
            parts = [where] if where else []
            parts += [f"{column} in {wanted}", *(f"{above} not in {wanted}" for above in columns[:n])]
            raws = self.client.query(
                self.collection,
                filter=" and ".join(parts),
                output_fields=[*self._read, "view"],
                limit=top_k - len(hits),
            )
            photos = [(self._photo(raw), raw["view"]) for raw in raws]
            found = [Hit(photo, score=min(1.0, _mass(photo["classes"], query)), view=view) for photo, view in photos]
            hits += sorted(found, key=lambda hit: (-hit.score, hit.path))
        return [hit for hit in hits if hit.score > 0]

    def filtered(self, only: PhotoFilter, limit: int) -> list[Hit]:
        """Up to ``limit`` photos ``only`` lets through, in no order, scored 0 (a filter alone:
        a pet, a date, a place and no concept to rank by)."""
        raws = self.client.query(
            self.collection, filter=self._where(True, None, only), output_fields=[*self._read, "view"], limit=limit
        )
        return [Hit(self._photo(raw), score=0.0, view=raw["view"]) for raw in raws]

    def range_search(
        self,
        vector: np.ndarray,
        min_score: float,
        whole_image_only: bool = True,
        page_size: int = RANGE_PAGE,
        species: Sequence[str] | None = None,
    ) -> list[Hit]:
        """Every row (one per photo and view) with cosine similarity >= ``min_score``, best first.

        No top-k: Milvus caps one search at 16384 hits, so this pages down the score range,
        each page's lowest score becoming the next page's ceiling (rows seen are skipped).
        """
        query = [unit_vector(vector).tolist()]
        ceiling, seen, hits = 1.0001, set(), []
        while True:
            results = self.client.search(
                self.collection,
                data=query,
                anns_field="vector",
                limit=page_size,
                filter=self._where(whole_image_only, species),
                output_fields=[*self._read, "view"],
                search_params={
                    "metric_type": self.metric,
                    "params": {
                        "radius": float(min_score) - 1e-6,
                        "range_filter": ceiling,
                        **self._search_params(page_size).get("params", {}),
                    },
                },
            )[0]
            for raw in results:
                entity = raw["entity"]
                key = (entity["path"], entity["view"])
                if key in seen or float(raw["distance"]) < min_score:
                    continue
                seen.add(key)
                hits.append(self._hit(raw))
            lowest = min((float(raw["distance"]) for raw in results), default=ceiling)
            if len(results) < page_size or lowest >= ceiling:  # the last page (or all one score)
                break
            ceiling = lowest
        hits.sort(key=lambda hit: -hit.score)
        return hits

    def vectors(self, paths: Iterable[str]) -> dict[str, np.ndarray]:
        """Each stored photo's vectors, one row per view in view order: {path: (views, dim)}."""
        ids = [photo_id(path) for path in paths]
        found: dict[str, list[tuple[int, list[float]]]] = {}
        for start in range(0, len(ids), 256):
            chunk = ids[start : start + 256]
            for raw in self.client.query(
                self.collection, filter=f"photo_id in {filter_value(chunk)}", output_fields=["path", "view", "vector"]
            ):
                found.setdefault(decode_path(raw["path"]), []).append((raw["view"], raw["vector"]))
        return {
            path: np.asarray([vector for _view, vector in sorted(rows, key=lambda r: r[0])], dtype=np.float32)
            for path, rows in found.items()
        }

    def _search_params(self, limit: int) -> dict:
        """HNSW's ef for a server (at least the hits asked for, as HNSW needs); Lite's FLAT has none."""
        return {} if self.is_lite else {"params": {"ef": max(HNSW_EF, limit)}}

    @property
    def _read(self) -> list[str]:
        """The columns that hold the record fields its collection has."""
        return [column for name in self.fields for column in self._columns(name)]

    def _columns(self, name: str) -> list[str]:
        """The columns that hold a record field: its own, or a sparse one's class and weight columns."""
        if self.sparse or RECORD[name].kind != "sparse":
            return [name]
        return class_columns(name) + weight_columns(name)

    def _photo(self, raw: dict) -> PhotoRecord:
        """The record of a row read back; a field its collection lacks reads as its default."""
        values: dict[str, Any] = {
            name: raw[name] if self._columns(name) == [name] else self._from_columns(raw, name) for name in self.fields
        }
        values["path"] = decode_path(values["path"])
        if "classes" in values:  # best first, as concepts are shown
            values["classes"] = {int(k): float(v) for k, v in sorted(values["classes"].items(), key=lambda kv: -kv[1])}
        return photo_record(**values)

    @staticmethod
    def _from_columns(raw: dict, name: str) -> dict[int, float]:
        """A sparse field kept in its class and weight columns, as {class: weight}."""
        pairs = zip((raw[c] for c in class_columns(name)), (raw[c] for c in weight_columns(name)), strict=True)
        return {int(k): float(v) for k, v in pairs if k != NO_CLASS}

    def _hit(self, raw: dict) -> Hit:
        entity = raw["entity"]
        # float32 rounding puts a photo's match with itself at 1.0000001: a cosine is at most 1
        vector = np.asarray(entity["vector"], dtype=np.float32) if "vector" in entity else None
        return Hit(self._photo(entity), score=min(1.0, float(raw["distance"])), view=entity["view"], vector=vector)

    def _row(self, raw: dict) -> PhotoRow:
        return PhotoRow(self._photo(raw), vector=np.asarray(raw["vector"], dtype=np.float32), view=raw["view"])

    def disk_bytes(self) -> int | None:
        if not self.is_lite:
            return None
        root = Path(self.uri)
        if root.is_file():
            return root.stat().st_size
        return sum(p.stat().st_size for p in root.parent.glob(root.name + "*") if p.is_file())


# --- on a Milvus server or Zilliz Cloud (the proxy: milvus_remote) ---------------------------
# HNSW, chosen by bench/bench_server.py: the fastest point with recall@20 >= 0.99 against exact
# search (100k real 1280-d embeddings: the shared photos replicated with small noise). Here:
# recall 1.000, p50 3.7 ms; M=16 was within noise of it (4.5 ms); ef=32 lost recall (0.997).
# The grid and the figures: README, "Outgrowing one machine".
HNSW_BUILD = {"M": 32, "efConstruction": 200}
HNSW_EF = 64  # raised to the hits asked for, as HNSW requires
