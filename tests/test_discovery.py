"""Pets found for you, as a user meets them: a real daemon groups the individuals that recur
in an album of real photos, and names, dismissals and merges survive restarts and re-indexing."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import dataset, run_cli

from petwatch import discovery

DAY = 86_400
PETS = 4  # individuals, each photographed on several days
STRANGERS = 30  # other dogs, each seen once
OXFORD_DOGS = 20  # more dogs, of the breeds one meets


def _album(folder: Path) -> dict[str, list[Path]]:
    """The first PETS dogs of dogfacenet-dev with 6+ photos (their photos spread over days),
    one photo of each of the next STRANGERS dogs, and some Oxford dogs."""
    dogs = dataset("dogfacenet-dev")
    oxford = dataset("oxford-pets-sample")
    folder.mkdir(parents=True)
    owners: dict[str, list[Path]] = {}
    strangers = 0
    for dog in sorted(p for p in dogs.iterdir() if p.is_dir()):
        photos = sorted(dog.glob("*.jpg"))
        if len(owners.keys() - {""}) < PETS and len(photos) >= 6:
            chosen, key = photos, dog.name
        elif strangers < STRANGERS:
            chosen, key, strangers = photos[:1], "", strangers + 1
        else:
            continue
        for day, source in enumerate(chosen):
            target = folder / f"{dog.name}_{source.name}"
            shutil.copyfile(source, target)
            when = 1_700_000_000 + day * 7 * DAY  # a photo a week
            os.utime(target, (when, when))
            owners.setdefault(key, []).append(target)
        if len(owners.keys() - {""}) == PETS and strangers >= STRANGERS:
            break
    for source in sorted(oxford.glob("[a-z]*/*.jpg"))[::10][:OXFORD_DOGS]:  # lower case: dog breeds
        shutil.copyfile(source, folder / source.name)
        owners.setdefault("", []).append(folder / source.name)
    return owners


def test_clusters_keep_a_tight_group_apart_from_loose_strangers():
    rng = np.random.default_rng(0)
    centre = rng.standard_normal(64)
    tight = centre + 0.2 * rng.standard_normal((6, 64))
    loose = rng.standard_normal((20, 64))
    vectors = np.vstack([tight, loose]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = discovery.cluster(vectors, similar=0.8)
    assert len(set(labels[:6])) == 1  # the pet: one cluster
    assert len(set(labels[6:])) == 20 and not set(labels[6:]) & set(labels[:6])  # strangers: alone
    assert discovery.match_ids([{"a", "b", "c"}, {"x"}], {7: {"a", "b"}, 9: {"q"}}) == [7, None]


def _groups(*extra: str) -> list[dict]:
    """The groups listed as pets (look-alikes, folded last, left out)."""
    shown = run_cli("pets", "discover", "--json", *extra)
    assert shown.returncode == 0, shown.stderr
    return [g for g in json.loads(shown.stdout) if not g["lookalikes"]]


def _by_owner(groups: list[dict], owners: dict[str, list[Path]]) -> dict[str, dict]:
    """Each pet's group: the one holding most of its photos."""
    owner_of = {str(p): key for key, paths in owners.items() for p in paths}
    found = {}
    for group in groups:
        counts = Counter(owner_of.get(path, "?") for path in group["paths"])
        key, share = counts.most_common(1)[0]
        found.setdefault(key, (share, group))
        if share > found[key][0]:
            found[key] = (share, group)
    return {key: group for key, (_share, group) in found.items()}


def test_the_pets_that_recur_are_found_named_dismissed_and_merged_for_good(home, start_daemon, tmp_path):
    owners = _album(tmp_path / "album")
    run_cli("folders", "add", str(tmp_path / "album"))
    daemon = start_daemon()
    daemon.wait_idle(timeout=600)
    refreshed = run_cli("pets", "discover")  # asks for nothing: the walk already clustered
    assert refreshed.returncode == 0, refreshed.stderr
    groups = _groups()
    pets = {key: paths for key, paths in owners.items() if key}
    found = _by_owner(groups, owners)
    assert "" not in found  # strangers seen once and the other dogs form no group
    recalls = []
    for key, paths in pets.items():
        assert key in found, f"pet {key} not found: {groups}"
        members = set(found[key]["paths"])
        in_group = sum(1 for p in paths if str(p) in members)
        # Every group is one pet. How many of a pet's photos its group holds is what ImageNet
        # features allow (bench/bench_discovery.py: recall 0.8 in the mean, less for some dogs).
        assert in_group / len(members) >= 0.9, (key, found[key])
        assert in_group / len(paths) >= 0.5, (key, found[key])
        recalls.append(in_group / len(paths))
        assert found[key]["species"] == "dog" and found[key]["first_day"] < found[key]["last_day"]
    assert np.mean(recalls) >= 0.7
    # With the test model's raw vectors one more group may be listed as a pet: a pet's photos
    # with two strangers' (margin 0.085 against the least pet's 0.074). Its owner says "not my pet".
    extra = [g for g in groups if g["id"] not in {found[key]["id"] for key in pets}]
    assert len(extra) <= 1, [(g["size"], g["evidence"]) for g in groups]
    for group in extra:
        assert run_cli("pets", "dismiss", str(group["id"])).returncode == 0

    first, second, third, fourth = (found[key] for key in sorted(pets))
    named = run_cli("pets", "add", "Rex", "--group", str(first["id"]), "--json")
    assert named.returncode == 0, named.stderr
    album = json.loads(run_cli("pets", "show", "Rex", "--json").stdout)
    assert set(first["paths"]) <= {hit["path"] for hit in album["hits"]}  # the group's photos, and more
    assert run_cli("pets", "dismiss", str(second["id"])).returncode == 0
    merged = run_cli("pets", "merge", str(third["id"]), str(fourth["id"]), "--json")
    assert merged.returncode == 0, merged.stderr
    assert json.loads(merged.stdout)["size"] == third["size"] + fourth["size"]
    out = fourth["paths"][0]
    assert run_cli("pets", "ungroup", str(third["id"]), out).returncode == 0

    def expected(groups: list[dict]) -> None:
        assert [(g["id"], g["size"]) for g in groups] == [(third["id"], third["size"] + fourth["size"] - 1)]
        assert out not in groups[0]["paths"]
        every = {g["id"]: g for g in _groups("--all")}
        assert every[first["id"]]["status"] == "named" and every[first["id"]]["name"] == "Rex"
        assert every[second["id"]]["status"] == "dismissed"

    expected(_groups())
    daemon.stop()
    daemon = start_daemon()  # a restart
    daemon.wait_idle(timeout=600)
    expected(_groups())
    daemon.stop()
    rebuilt = run_cli("reindex", timeout=900)  # every vector made again
    assert rebuilt.returncode == 0, rebuilt.stderr
    daemon = start_daemon()
    daemon.wait_idle(timeout=600)
    expected(_groups())


@pytest.mark.parametrize("photos", [1, 2])
def test_too_few_photos_make_no_group(photos):
    vectors = np.ones((photos, 8), dtype=np.float32) / np.sqrt(8)
    group = discovery.Group(
        1,
        discovery.OPEN,
        None,
        [discovery.PetPhoto(f"/a/{i}.jpg", f"{i}", v, i, "dog", "pug") for i, v in enumerate(vectors)],
    )
    assert not group.recurs()


def test_when_no_pet_is_found_the_cli_says_why(home, start_daemon, tmp_path):
    album = tmp_path / "album"
    album.mkdir()
    for breed in ("beagle", "pug", "samoyed", "boxer"):  # dogs the test model sees with margin
        source = sorted(dataset("oxford-pets-sample", breed).glob("*.jpg"))[0]
        shutil.copyfile(source, album / source.name)
    run_cli("folders", "add", str(album))
    daemon = start_daemon()
    daemon.wait_idle(timeout=300)
    shown = run_cli("pets", "discover")
    assert shown.returncode == 0, shown.stderr
    # What it saw and what the rule needs, in one line.
    assert shown.stdout.startswith("No pets found yet: 4 photos show a dog or a cat, "), shown.stdout
    assert "pairs of them alike enough to link" in shown.stdout or "1 pair of them" in shown.stdout
    assert "at least 3 photos of it, from 2 different days or folders" in shown.stdout
    daemon.stop()


# --- the order: your pet first, look-alikes last (issue 27) ------------------------------------
@pytest.fixture(scope="module")
def lite2_embedder():
    from petwatch.embed import DEFAULT_MODEL, Embedder

    return Embedder(DEFAULT_MODEL)


def _dated(sources: list[Path], folder: Path, days: list[int]) -> list[str]:
    """Copies of ``sources`` in ``folder``, the i-th dated ``days[i]`` days after the first photo."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for source, day in zip(sources, days, strict=True):
        target = folder / f"{source.parent.name}_{source.name}"
        shutil.copyfile(source, target)
        when = 1_700_000_000 + day * DAY
        os.utime(target, (when, when))
        out.append(str(target))
    return out


def test_in_a_new_users_150_photos_their_dog_comes_first_and_breed_mates_met_once_last(
    home, monkeypatch, lite2_embedder, tmp_path
):
    """A new user's library, as issue 27 found it: their dog in 7 photos in two folders
    (summer, winter), four more dogs that come back, and every photo of 11 Oxford breeds (10
    dogs of each breed, each photographed once, on days of their own). The grouping must not
    chain breed-mates into one group, and the order must put the animals that come back above
    the look-alikes."""
    import random

    from petwatch import settings
    from petwatch.embed import DEFAULT_MODEL
    from petwatch.library import Library

    monkeypatch.setenv("PETWATCH_MODEL", DEFAULT_MODEL)
    dogs_dir, oxford = dataset("dogfacenet-dev"), dataset("oxford-pets-sample")
    dogs = [sorted(p.glob("*.jpg")) for p in sorted(dogs_dir.iterdir()) if p.is_dir()]
    album = tmp_path / "album"
    # The second such dog: the first one's photos are 0.15-0.38 alike (whitened), on average
    # below the link cut, as alike as breed-mates are; it is found only by naming it.
    rex = [d for d in dogs if len(d) >= 7][1][:7]
    pets = {"rex": _dated(rex[:4], album / "summer", [0, 3, 8, 12])}
    pets["rex"] += _dated(rex[4:], album / "winter", [150, 156, 170])
    others = [d for d in dogs if len(d) >= 5 and d[0] != rex[0]][:4]
    for n, photos in enumerate(others):
        pets[f"dog{n}"] = _dated(photos[:5], album / "phone", [20 + 9 * n + 30 * k for k in range(5)])
    breed = "english_setter"  # dogs the issue found merged with a recurring dog
    breeds = [breed] + [b for b in sorted(p.name for p in oxford.iterdir() if p.name.islower()) if b != breed][::2][:10]
    dates = random.Random(27).sample(range(1, 300), 110)  # each dog met once, on a day of its own
    walks: list[str] = []
    for n, name in enumerate(breeds):
        dated = _dated(sorted((oxford / name).glob("*.jpg")), album / "camera", dates[10 * n : 10 * n + 10])
        walks += dated if name == breed else []
    library = Library(settings.load(), lite2_embedder)
    finder = discovery.Discovery(library, tmp_path / "groups.db")
    try:
        library.indexer.reconcile([str(album)])
        finder.refresh()
        groups = finder.groups()
    finally:
        finder.close()
        library.close()
    owner_of = {path: key for key, paths in pets.items() for path in paths}
    owner_of.update({path: "walks" for path in walks})
    owners = [Counter(owner_of.get(path, "") for path in g["paths"]) for g in groups]
    place = {}  # each recurring pet's group (most of it that pet), where it is listed
    for key in pets:
        best = max(range(len(groups)), key=lambda n: owners[n][key], default=None)
        if best is not None and owners[best][key] * 2 > groups[best]["size"]:
            place[key] = best
    assert "rex" in place, [(g["size"], g["reason"]) for g in groups]
    # Rex: one group, nothing else in it, among the first three listed, with its reason.
    rex_group = groups[place["rex"]]
    assert owners[place["rex"]]["rex"] >= 5 and owners[place["rex"]]["rex"] >= 0.85 * rex_group["size"], rex_group
    assert sum(1 for counted in owners if counted["rex"]) == 1  # the rest of Rex alone, in no other group
    # Issue 27's first 3 (it was 15th of 16; 5th when listed by margin, under two whole Oxford
    # breeds, pugs and Samoyeds met once, that nothing else in so small a library resembles).
    assert place["rex"] < 3, [(g["evidence"], dict(o)) for g, o in zip(groups, owners, strict=True)]
    assert rex_group["reason"].startswith("seen on ") and not rex_group["lookalikes"]
    # No group holds two recurring pets.
    for counted in owners:
        assert sum(1 for key in pets if counted[key] >= 2) <= 1, counted
    # Breed-mates met once (a group mostly of them, of any breed) are never listed above a
    # recurring pet.
    last_pet = max(place.values())
    for n, counted in enumerate(owners):
        if (counted[""] + counted["walks"]) * 2 > groups[n]["size"]:
            assert n > last_pet or groups[n]["lookalikes"], (n, last_pet, [(g["size"], g["reason"]) for g in groups])


def _photos(vectors: np.ndarray, days: list[int], folder: str = "/a") -> list[discovery.PetPhoto]:
    return [
        discovery.PetPhoto(f"{folder}/{i}.jpg", f"{folder}{i}", v, day, "dog", "beagle")
        for i, (v, day) in enumerate(zip(vectors, days, strict=True))
    ]


def test_one_animal_is_listed_above_a_loose_cloud_of_its_breed_and_says_why():
    """The pure middle: a dog of a breed in 6 photos over months, among 30 breed-mates each seen
    once on a day of its own; average linkage keeps the dog apart, and its score (cohesion
    minus the likeness typical of its kind) puts it first; breed-mates are look-alikes (their
    margin over the nearest outsider is small), as is a one-day group."""
    rng = np.random.default_rng(27)
    breed = rng.standard_normal(64)
    breed /= np.linalg.norm(breed)
    dog = breed + rng.standard_normal(64) / 4  # ~0.3 alike to its breed-mates
    mates = breed + 0.153 * rng.standard_normal((30, 64))  # two of them ~0.4 alike
    mine = dog / np.linalg.norm(dog) + 0.0625 * rng.standard_normal((6, 64))  # ~0.8 alike
    vectors = np.vstack([mine, mates]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels, _pairs, outsider, typical = discovery.clustering(vectors, discovery.WHITENED_SIMILAR)
    assert len(set(labels[:6])) == 1 and not set(labels[:6]) & set(labels[6:])  # no chain into the breed
    photos = _photos(vectors, [0, 40, 41, 90, 200, 400] + [10 + 13 * k for k in range(30)])
    for photo, alike, usual in zip(photos, outsider, typical, strict=True):
        photo.outsider, photo.typical = float(alike), float(usual)
    members: dict[int, list] = {}
    for photo, label in zip(photos, labels, strict=True):
        members.setdefault(int(label), []).append(photo)
    groups = [discovery.Group(n, discovery.OPEN, None, m) for n, m in members.items() if len(m) >= 3]
    ranked = sorted(groups, key=lambda g: (g.evidence().lookalikes, -g.evidence().score))
    assert ranked[0].members == photos[:6]
    assert ranked[0].summary()["reason"] == "seen on 6 days over 13 months" and not ranked[0].evidence().lookalikes
    assert all(g.evidence().lookalikes for g in ranked[1:])
    one_day = discovery.Group(1, discovery.OPEN, None, _photos(vectors[:6], [5] * 6, "/show"))
    assert one_day.evidence().lookalikes and one_day.summary()["reason"] == "look-alikes: all on one day"
