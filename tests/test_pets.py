"""Pet profiles: the scoring middle without sockets, the profile against a single photo on real
photos, and a real daemon: a new photo joins the album live, marks survive restarts and a
re-index."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tests.finding import find

from conftest import DATASETS, dataset, run_cli
from petwatch import pets
from petwatch.errors import PetwatchError

PET_BREED = "pug"  # "the pet" in the daemon tests
OTHER_BREEDS = ["Abyssinian", "Bengal", "Persian", "samoyed"]  # unlike a pug
# Breeds that look alike (tabby cats, bull terriers), so that one photo is not enough.
LOOK_ALIKES = [
    "Egyptian_Mau",
    "Bengal",
    "Abyssinian",
    "american_pit_bull_terrier",
    "staffordshire_bull_terrier",
    "american_bulldog",
    "pug",
    "boxer",
]


# --- helpers -----------------------------------------------------------------------------------
def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {value!r})")
        time.sleep(interval)


def breed_photos(breed: str) -> list[Path]:
    return sorted(dataset("oxford-pets-sample", breed).glob("*.jpg"))


def average_precision(ranked: list[str], relevant: set[str]) -> float:
    """AP of a ranked list; relevant photos missing from it count as never found."""
    found, total = 0, 0.0
    for rank, path in enumerate(ranked, 1):
        if path in relevant:
            found += 1
            total += found / rank
    return total / len(relevant)


class Events:
    """The daemon's events, read on a thread from the moment of creation."""

    def __init__(self, client) -> None:
        self.client = client
        self.items: list[tuple[str, dict]] = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(lambda: any(kind == "hello" for kind, _ in self.items), 30, "event stream")

    def _read(self) -> None:
        try:
            for kind, data in self.client.events():
                self.items.append((kind, data))
        except Exception:  # noqa: BLE001 - the stream ends with the daemon
            pass

    def of(self, kind: str) -> list[dict]:
        return [data for k, data in self.items if k == kind]


def cli_json(*args: str) -> dict | list:
    import json

    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- the pure middle -----------------------------------------------------------------------------
def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_prototype_loo_and_threshold_sit_between_library_and_pet():
    positives = np.stack([unit(1, 0.1, 0), unit(1, 0, 0.1), unit(1, -0.1, 0)])
    proto = pets.prototype(positives)
    assert np.isclose(np.linalg.norm(proto), 1.0)
    loo = pets.loo_scores(positives)
    assert len(loo) == 3 and all(0.9 < s <= 1.0 for s in loo)
    background = [0.1, 0.2, 0.3]
    cut = pets.threshold(background, positives)
    assert 0.2 < cut < float(np.mean(loo))
    # Rejected photos that still clear the cut pull it up; ones below it change nothing.
    assert pets.threshold(background, positives, [cut + 0.2]) > cut
    assert pets.threshold(background, positives, [cut - 0.2]) == cut
    # One example: no leave-one-out, the documented stand-in is used.
    assert pets.threshold([0.0], positives[:1]) == pytest.approx(pets.GAMMA * pets.LOO_ONE_EXAMPLE)


def test_best_view_counts_and_look_alikes_of_rejected_photos_are_demoted():
    proto = unit(1, 0, 0)
    views = np.stack([unit(0, 1, 0), unit(1, 0.2, 0)])  # the pet is in view 1 (a region)
    score, best = pets.score_views(views, proto)
    assert best == 1 and score == pytest.approx(float(views[1] @ proto))
    negatives = np.stack([unit(1, 0.25, 0)])  # a rejected photo just like it
    demoted, _ = pets.score_views(views, proto, negatives)
    assert demoted < score - pets.SUPPRESS_MARGIN
    assert pets.suppress(0.8, 0.2) == 0.8  # unlike any rejected photo: untouched


def test_names_are_checked():
    assert pets.check_name("  Cola ") == "Cola"
    for bad in ("", "a/b", "-x", "x" * (pets.MAX_NAME + 1), "tab\there"):
        with pytest.raises(PetwatchError):
            pets.check_name(bad)


def test_book_keeps_profiles_and_marks_by_content_hash_across_reopen(tmp_path):
    book = pets.PetBook(tmp_path / "state.sqlite3")
    book.create("Cola")
    book.put(
        "Cola",
        [
            pets.Mark("h1", "/a/1.jpg", pets.EXAMPLE, unit(1, 0), "m/1", 1.0),
            pets.Mark("h2", "/a/2.jpg", pets.NOT, unit(0, 1), "m/1", 2.0),
        ],
    )
    book.put("Cola", [pets.Mark("h2", "/b/renamed.jpg", pets.YES, unit(0, 1), "m/1", 3.0)])  # same bytes
    book.close()
    book = pets.PetBook(tmp_path / "state.sqlite3")
    assert book.find("cola") == "Cola"  # names are case-insensitive
    profile = book.load("COLA")
    assert [(m.content_hash, m.kind, m.path) for m in profile.marks] == [
        ("h1", "example", "/a/1.jpg"),
        ("h2", "yes", "/b/renamed.jpg"),
    ]
    assert np.allclose(profile.vectors(pets.POSITIVE)[0], unit(1, 0))
    assert book.forget("Cola", ["h2"]) == 1
    assert book.delete("cola") and book.load("Cola") is None and book.names() == []


def test_range_search_pages_past_the_search_limit_and_vectors_come_per_view(tmp_path):
    """An album is every photo above the threshold, however many: Milvus caps one search at
    16384 hits, so range_search pages down the score range (here with pages of 7)."""
    from petwatch.store import PhotoRow, Store, photo_record

    store = Store(str(tmp_path / "m.db"), "photos", "test/1", 8)
    rng = np.random.default_rng(0)
    query = unit(1, 0, 0, 0, 0, 0, 0, 0)
    rows = []
    for i in range(40):
        for view in range(3):
            vector = query + rng.normal(0, 0.5 if view else 2.0, 8).astype(np.float32)
            photo = photo_record(path=f"/p/{i}.jpg", content_hash=f"h{i}", size=1, mtime_ns=1, width=1, height=1)
            rows.append(PhotoRow(photo, unit(*vector), view))
    store.upsert(rows)
    expected = {(r.path, r.view) for r in rows if float(r.vector @ query) >= 0.3}
    hits = store.range_search(query, 0.3, whole_image_only=False, page_size=7)
    assert {(h.path, h.view) for h in hits} == expected and len(hits) == len(expected) > 7
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert {h.view for h in store.range_search(query, 0.3, page_size=7)} == {0}
    got = store.vectors(["/p/1.jpg", "/p/2.jpg", "/nope.jpg"])
    assert sorted(got) == ["/p/1.jpg", "/p/2.jpg"] and got["/p/1.jpg"].shape == (3, 8)
    assert np.allclose(got["/p/1.jpg"][2], rows[5].vector)
    store.close()


# --- real photos: the profile against one photo -----------------------------------------------------
@pytest.fixture
def library(home, tmp_path, monkeypatch):
    """An in-process Library with region views on (the opt-in that stores 5 views per photo)
    over a small breed subset."""
    from petwatch.library import Library
    from petwatch.settings import load

    monkeypatch.setenv("PETWATCH_REGION_VIEWS", "true")

    folder = tmp_path / "photos"
    folder.mkdir()
    for breed in LOOK_ALIKES:
        for source in breed_photos(breed):
            shutil.copyfile(source, folder / f"{breed}_{source.name}")
    landscapes = DATASETS / "landscapes"
    for source in sorted(landscapes.glob("*.jpg"))[:6] if landscapes.is_dir() else []:
        shutil.copyfile(source, folder / f"landscape_{source.name}")
    lib = Library(load())
    lib.indexer.reconcile([str(folder)])
    yield lib, folder
    lib.close()


def test_profile_from_three_photos_beats_a_single_photo(library, tmp_path):
    """Mean average precision over look-alike breeds: plain search from each example photo
    against the profile of all three, both ranking the whole library with the product's code;
    and the album (the profile's threshold) holds most of the breed."""
    lib, folder = library
    book = pets.Pets(lib, tmp_path / "state.sqlite3")
    vectors = lib.store.vectors(list(lib.indexer.catalog))
    assert {len(v) for v in vectors.values()} == {lib.embedder.views}  # region views stored
    single, profile, recall = [], [], []
    for breed in LOOK_ALIKES:
        photos = sorted(str(p) for p in folder.glob(f"{breed}_*"))
        examples, relevant = photos[:3], set(photos[3:])
        for example in examples:
            ranked = [h.path for h in find(lib, example, top_k=1000, min_score=-1.0).hits if h.path not in examples]
            single.append(average_precision(ranked, relevant))
        book.add(breed, examples)
        proto = pets.prototype(book.book.load(breed).vectors(pets.POSITIVE))
        scores = {path: pets.score_views(views, proto)[0] for path, views in vectors.items() if path not in examples}
        profile.append(average_precision(sorted(scores, key=scores.get, reverse=True), relevant))
        album = {hit["path"] for hit in book.album(breed)["hits"]}
        recall.append(len(relevant & album) / len(relevant))
    assert np.mean(profile) > np.mean(single) + 0.05, (np.mean(profile), np.mean(single))
    assert np.mean(recall) >= 0.7, recall


def test_marks_made_by_another_model_are_taken_again_from_the_index_or_the_file(home, tmp_path):
    """After a model change (`petwatch reindex`), marks keep their photos: the vectors are
    re-derived, from the index when it holds the bytes, else from the file."""
    import sqlite3

    from petwatch import locations
    from petwatch.library import Library
    from petwatch.settings import load

    folder = tmp_path / "photos"
    folder.mkdir()
    pug = breed_photos(PET_BREED)
    for source in pug[:5] + breed_photos("samoyed")[:2]:
        shutil.copyfile(source, folder / source.name)
    outside = tmp_path / "outside.jpg"  # an example that is in no watched folder
    shutil.copyfile(pug[6], outside)
    lib = Library(load())
    lib.indexer.reconcile([str(folder)])
    profiles = pets.Pets(lib, locations.state_db())
    profiles.add("Cola", [str(folder / pug[0].name), str(folder / pug[1].name), str(outside)])
    profiles.mark("Cola", [str(folder / breed_photos("samoyed")[0].name)], "not")
    before = {m.content_hash: m.vector for m in profiles.book.load("Cola").marks}
    profiles.close()
    with sqlite3.connect(locations.state_db()) as db:  # as if another model had made them
        db.execute(
            "UPDATE pet_marks SET model = 'old-model/x/1280', vector = ?", (np.zeros(1280, np.float32).tobytes(),)
        )
    profiles = pets.Pets(lib, locations.state_db())
    summary = profiles.summary("Cola")
    assert summary["stale"] == [] and (summary["examples"], summary["rejected"]) == (3, 1)
    after = profiles.book.load("Cola").marks
    assert {m.model for m in after} == {lib.identity}
    for mark in after:
        assert np.allclose(mark.vector, before[mark.content_hash], atol=1e-4)
    profiles.close()
    lib.close()


# --- a real daemon ---------------------------------------------------------------------------------
@pytest.fixture
def pet_setup(home, tmp_path, monkeypatch):
    """Examples of the pet outside the album; the album: some of its photos among others'."""
    pug = breed_photos(PET_BREED)
    examples = tmp_path / "examples"
    examples.mkdir()
    for source in pug[:3]:
        shutil.copyfile(source, examples / source.name)
    album = tmp_path / "Pictures"
    album.mkdir()
    for source in pug[3:7]:
        shutil.copyfile(source, album / source.name)
    for breed in OTHER_BREEDS[:3]:
        for source in breed_photos(breed)[:3]:
            shutil.copyfile(source, album / source.name)
    monkeypatch.setenv("PETWATCH_FOLDERS", f'["{album}"]')
    return sorted(examples.iterdir()), album, pug[7:]


def test_new_photo_of_the_pet_joins_its_album_live_with_an_event(pet_setup, start_daemon):
    examples, album, spare = pet_setup
    daemon = start_daemon()
    daemon.wait_idle()
    created = cli_json("pets", "add", "Cola", "--photo", *map(str, examples))
    assert created["examples"] == 3 and created["count"] >= 1
    before = {hit["path"] for hit in cli_json("pets", "show", "Cola")["hits"]}

    with daemon.client() as client:
        events = Events(client)
        new = album / spare[0].name
        shutil.copyfile(spare[0], new)
        event = wait_until(
            lambda: next((e for e in events.of("pet") if str(new) in e["new"]), None),
            60,
            "a pet event for the new photo",
        )
        assert event["name"] == "Cola" and event["count"] == len(before) + 1
        other = album / "not_a_pug.jpg"  # another breed's photo: no pet event for it
        shutil.copyfile(breed_photos(OTHER_BREEDS[-1])[0], other)
        wait_until(lambda: any(str(other) in e["paths"] for e in events.of("indexed")), 60, "indexed")
        time.sleep(0.5)
        assert not [e for e in events.of("pet") if str(other) in e["new"]]
        shown = client.pet("Cola")
    assert str(new) in {hit["path"] for hit in shown["hits"]}
    assert shown["count"] == len(before) + 1
    paths = run_cli("pets", "album", "Cola", "--paths", "--top", "2")
    assert paths.returncode == 0 and len(paths.stdout.split("\n")) == 3  # two paths, for a comic
    missing = run_cli("pets", "show", "Nobody")
    assert missing.returncode == 1 and "no pet named 'Nobody'" in missing.stderr


def test_marks_survive_a_restart_a_rename_and_a_reindex(pet_setup, start_daemon):
    examples, album, spare = pet_setup
    daemon = start_daemon()
    daemon.wait_idle()
    cli_json("pets", "add", "Cola", "--photo", *map(str, examples))
    hits = cli_json("pets", "show", "Cola")["hits"]
    rejected = Path(hits[0]["path"])  # whatever the user says is not their pet, is not
    confirmed = album / "confirmed.jpg"  # a photo of another breed the user says is theirs
    shutil.copyfile(breed_photos(OTHER_BREEDS[-1])[1], confirmed)
    daemon.wait_idle()
    cli_json("pets", "mark", "Cola", str(rejected), "--not")
    marked = cli_json("pets", "mark", "Cola", str(confirmed), "--yes")
    assert (marked["confirmed"], marked["rejected"]) == (1, 1)

    def check(rejected_path: Path) -> None:
        shown = cli_json("pets", "show", "Cola")
        paths = {hit["path"]: hit for hit in shown["hits"]}
        assert str(rejected_path) not in paths
        assert paths[str(confirmed)]["mark"] == "yes"
        assert (shown["confirmed"], shown["rejected"]) == (1, 1)

    check(rejected)
    daemon.stop()
    restarted = start_daemon()
    restarted.wait_idle()
    check(rejected)  # a restart
    restarted.stop()
    renamed = album / "renamed_rejected.jpg"  # same bytes, new name: still rejected
    rejected.rename(renamed)
    result = run_cli("reindex")
    assert result.returncode == 0, result.stderr
    start_daemon().wait_idle()
    check(renamed)  # a re-index from scratch, the rejected photo under another name
