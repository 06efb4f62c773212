"""Camera rolls to tune "pets found for you" on, from real vectors (bench_discovery and the
tests share it).

A roll is what a phone's library holds of pets: a few *recurring pets* photographed on many
days over months, in several folders, among *strangers* each seen once (other people's dogs on
walks, a dog show where dozens of breed-mates were photographed on one day). Built from the
product's whitened vectors of ``../shared/datasets`` (embedded once and cached by
``_whitening_data.py``):

- recurring pets: DogFaceNet dogs with ``min_photos``+ photos (every photo of them, plus the
  one pasted into another scene where there is one), and "the same pet in other scenes"
  (an Oxford photo and its three pastes onto other backgrounds: one animal, four photos);
- strangers: every other Oxford photo once (a share of them on one shared day, one folder: the
  dog show), one photo each of other DogFaceNet dogs; a large roll adds noisy copies of
  strangers (each as alike to its source as two breed-mates are) to reach its size.

Dates: a pet's photos fall on days spread over ``months`` months (a few share a day: an
outing), in month folders of two cameras; a stranger's photo on a day of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DAY = 86_400
START_DAY = 19_000  # 2022-01-08, days since the epoch


@dataclass
class Roll:
    vectors: np.ndarray  # unit, whitened: what the library stores
    owner: np.ndarray  # the recurring pet's id, "" for a stranger
    day: np.ndarray  # days since the epoch
    folder: np.ndarray
    species: np.ndarray
    label: np.ndarray  # breed (Oxford) or dog id (DogFaceNet)

    def __len__(self) -> int:
        return len(self.vectors)

    def pets(self) -> list[str]:
        return sorted({o for o in self.owner if o})


def whitened(data: dict[str, np.ndarray], model: str = "efficientnet_lite2") -> np.ndarray:
    from petwatch.embed import Whitening

    white = Whitening.shipped(model)
    assert white is not None, f"no whitening shipped for {model}"
    return white.apply(data["vectors"])


def _folder(camera: int, day: int) -> str:
    import time

    return f"/photos/{('phone', 'camera')[camera]}/{time.strftime('%Y-%m', time.gmtime(day * DAY))}"


def build(
    data: dict[str, np.ndarray],
    vectors: np.ndarray,
    *,
    dogs: int,
    scene_pets: int,
    dog_strangers: int,
    oxford_strangers: int | None = None,
    breeds: int | None = None,
    size: int = 0,
    show_share: float = 0.3,
    min_photos: int = 6,
    months: int = 18,
    seed: int = 0,
) -> Roll:
    """A roll of ``dogs`` recurring DogFaceNet dogs and ``scene_pets`` recurring Oxford pets
    among strangers (``oxford_strangers`` Oxford photos, or every photo of ``breeds`` breeds;
    ``dog_strangers`` other DogFaceNet dogs once); ``size`` > 0 pads it with noisy stranger
    copies to that many photos (before the photos showing no pet are dropped).
    ``vectors``: the rows of ``data`` as the library stores them (``whitened(data)``)."""
    rng = np.random.default_rng(seed)
    kind, group, label, source = data["set"], data["group"], data["label"], data["source"]
    species = data["species"]
    rows: list[int] = []
    owner: list[str] = []
    day: list[int] = []
    folder: list[str] = []

    def pet_days(count: int) -> list[int]:
        first = START_DAY + int(rng.integers(0, 120))
        span = int(rng.integers(30, months * 30))
        outings = sorted(first + int(d) for d in rng.integers(0, span, size=max(2, int(count * 0.7))))
        return [outings[int(rng.integers(0, len(outings)))] for _ in range(count)]

    def add(indices: list[int], who: str, days: list[int], folders: list[str]) -> None:
        rows.extend(indices)
        owner.extend([who] * len(indices))
        day.extend(days)
        folder.extend(folders)

    originals = np.flatnonzero(kind == "original")
    dog_ids = sorted({label[i] for i in originals if group[i] == "dog"})
    by_dog: dict[str, list[int]] = {}
    for i in originals:
        if group[i] == "dog":
            by_dog.setdefault(label[i], []).append(int(i))
    scene_of: dict[int, list[int]] = {}
    for i in np.flatnonzero(kind == "scene"):
        scene_of.setdefault(int(source[i]), []).append(int(i))
    candidates = [d for d in dog_ids if len(by_dog[d]) >= min_photos]
    chosen = [candidates[int(i)] for i in rng.choice(len(candidates), dogs, replace=False)]
    for dog in chosen:
        photos = by_dog[dog] + [s for i in by_dog[dog] for s in scene_of.get(i, [])]
        days = pet_days(len(photos))
        add(photos, f"dog:{dog}", days, [_folder(int(rng.integers(0, 2)), d) for d in days])
    oxford = [int(i) for i in originals if group[i] == "breed"]
    order = [oxford[int(i)] for i in rng.permutation(len(oxford))]
    pets_from = [i for i in order if len(scene_of.get(i, [])) >= 3][:scene_pets]
    for i in pets_from:
        photos = [i, *scene_of[i][:3]]
        days = pet_days(len(photos))
        add(photos, f"scene:{label[i]}:{i}", days, [_folder(int(rng.integers(0, 2)), d) for d in days])
    used = set(pets_from)
    strangers = [i for i in order if i not in used][: oxford_strangers if oxford_strangers is not None else None]
    if breeds is not None:  # every photo of ``breeds`` breeds: ten breed-mates each
        names = sorted({label[i] for i in oxford})
        kept = {names[int(i)] for i in rng.choice(len(names), breeds, replace=False)}
        strangers = [i for i in order if i not in used and label[i] in kept]
    show_day = START_DAY + 200
    for n, i in enumerate(strangers):
        if n < show_share * len(strangers):  # the dog show: one day, one folder
            add([i], "", [show_day], [_folder(0, show_day)])
        else:
            d = START_DAY + int(rng.integers(0, months * 30))
            add([i], "", [d], [_folder(int(rng.integers(0, 2)), d)])
    others = [d for d in dog_ids if d not in set(chosen)]
    for dog in [others[int(i)] for i in rng.choice(len(others), min(dog_strangers, len(others)), replace=False)]:
        d = START_DAY + int(rng.integers(0, months * 30))
        add([by_dog[dog][0]], "", [d], [_folder(int(rng.integers(0, 2)), d)])
    out_vectors = vectors[rows]
    out_species = species[rows]
    out_label = label[rows]
    if size > len(rows):  # noisy stranger copies, each a look-alike of a real stranger
        pool = [n for n, who in enumerate(owner) if not who]
        picks = rng.choice(pool, size - len(rows))
        extra = out_vectors[picks] + _NOISE * rng.standard_normal((len(picks), vectors.shape[1])).astype(np.float32)
        extra /= np.linalg.norm(extra, axis=1, keepdims=True)
        out_vectors = np.vstack([out_vectors, extra])
        out_species = np.concatenate([out_species, out_species[picks]])
        out_label = np.concatenate([out_label, out_label[picks]])
        days = START_DAY + rng.integers(0, months * 30, size=len(picks))
        owner += [""] * len(picks)
        day += [int(d) for d in days]
        folder += [_folder(int(rng.integers(0, 2)), int(d)) for d in days]
    keep = np.isin(out_species, ["dog", "cat"])  # what discovery considers
    return Roll(
        out_vectors[keep].astype(np.float32),
        np.array(owner)[keep],
        np.array(day)[keep],
        np.array(folder)[keep],
        out_species[keep],
        out_label[keep],
    )


# A noisy copy's noise per dimension: with 768 unit dims, cos(copy, source) ~ 1/sqrt(1 + 768 s^2);
# 0.11 gives ~0.3, what two breed-mates typically are, and two copies of one source ~0.1: the
# copies are volume and look-alikes, not a group of their own (0.06 gave 0.5 and 0.25, and
# the copies of one photo formed ~900 tight groups of "one animal" at 10k).
_NOISE = 0.11


ROLL_DOGS = 40  # DogFaceNet dogs embedded with every photo (the recurring pets are drawn from them)
SCENE_SOURCES = 40  # Oxford photos pasted into 3 other scenes each (recurring pets too)


def cache_file(model: str) -> Path:
    import _common as C

    return C.RESULTS_DIR / f"camera-roll-raw-{model}.npz"


def load(datasets: Path, model: str = "efficientnet_lite2", rebuild: bool = False) -> dict[str, np.ndarray]:
    """Raw vectors (pet focus, before whitening) of what rolls are built from, embedded once
    and cached in bench/results (git-ignored), in ``_whitening_data``'s layout: every Oxford
    photo, ``SCENE_SOURCES`` of them pasted into 3 scenes, every photo of ``ROLL_DOGS``
    DogFaceNet dogs with 6+ photos (one photo of each also pasted into a scene) and the first
    photo of every other dog: ~1,600 photos, minutes on 2 cores, where ``_whitening_data``'s
    5,867 take half an hour. Its cache is used instead when present (a superset)."""
    import _whitening_data as WD

    if WD.cache_file(model).exists() and not rebuild:
        return WD.load(datasets, model)
    path = cache_file(model)
    if path.exists() and not rebuild:
        with np.load(path) as cached:
            return {key: cached[key] for key in cached.files}
    return _embed(datasets, model)


def _embed(root: Path, model: str) -> dict[str, np.ndarray]:
    import time
    from concurrent.futures import ThreadPoolExecutor

    import _common as C
    import _whitening_data as WD
    from petwatch import photos
    from petwatch.embed import Embedder

    embedder = Embedder(model, whiten=False)
    started = time.perf_counter()
    found = [item for item in WD.gather(root) if item[1] != "none"]
    by_dog: dict[str, list] = {}
    for item in found:
        if item[1] == "dog":
            by_dog.setdefault(item[2], []).append(item)
    rng = np.random.default_rng(27)
    many = sorted(dog for dog, items in by_dog.items() if len(items) >= 6)
    pets = {many[int(i)] for i in rng.choice(len(many), min(ROLL_DOGS, len(many)), replace=False)}
    items = [item for item in found if item[1] == "breed"]
    for dog, dog_items in sorted(by_dog.items()):
        items += dog_items if dog in pets else dog_items[:1]
    lands = sorted(p for p in (root / C.LANDSCAPES).rglob("*.jpg"))

    def decode(item):
        try:
            return photos.decode(photos.read_photo(item[0], 180_000_000), embedder.decode_min_side).convert("RGB")
        except Exception:  # noqa: BLE001 - a broken photo is skipped, as the indexer does
            return None

    with ThreadPoolExecutor(2) as pool:
        images = list(pool.map(decode, items))
    kept = [(item, im) for item, im in zip(items, images, strict=True) if im is not None]
    items, images = [item for item, _ in kept], [im for _, im in kept]
    sets, groups, labels = ["original"] * len(items), [g for _, g, _ in items], [lab for _, _, lab in items]
    sources = list(range(len(items)))
    oxford = [i for i, (_, g, _) in enumerate(items) if g == "breed"]
    derived = []
    for i in [oxford[int(n)] for n in rng.choice(len(oxford), SCENE_SOURCES, replace=False)]:
        for n in range(3):
            seed = WD._seed("scene", items[i][0].name, n)
            bg = lands[seed % len(lands)] if n < 2 else items[oxford[seed % len(oxford)]][0]
            derived.append((i, WD.paste_scene(images[i], WD._background(bg, seed), seed)))
    firsts: dict[str, int] = {}
    for i, (_, g, lab) in enumerate(items):
        if g == "dog" and lab in pets:
            firsts.setdefault(lab, i)
    for i in firsts.values():
        seed = WD._seed("dogscene", items[i][0].name)
        derived.append((i, WD.paste_scene(images[i], WD._background(lands[seed % len(lands)], seed), seed)))
    for i, image in derived:
        sets.append("scene")
        groups.append(groups[i])
        labels.append(labels[i])
        sources.append(i)
        images.append(image)
    print(f"embedding {len(images)} photos for camera rolls ...", flush=True)
    vectors, species = WD.embed_images(embedder, images, started, every=320)
    data = {
        "vectors": vectors,
        "set": np.array(sets),
        "group": np.array(groups),
        "label": np.array(labels),
        "source": np.array(sources),
        "species": np.array(species),
    }
    C.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cache_file(model), **data)
    print(f"embedded in {time.perf_counter() - started:.0f}s -> {cache_file(model)}", flush=True)
    return data


if __name__ == "__main__":
    import argparse
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as C

    parser = argparse.ArgumentParser(description="embed (again) what camera rolls are built from")
    C.add_datasets_arg(parser)
    parser.add_argument("--model", default="efficientnet_lite2")
    args = parser.parse_args()
    C.strip_petwatch_env()
    load(C.datasets_dir(args.datasets), args.model, rebuild=True)
