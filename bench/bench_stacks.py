"""Stacks: are bursts and copies stacked, and nothing else? And what do they cost?

    python bench/bench_stacks.py [--quick] [--datasets DIR] [--model efficientnet_lite2]

1. Quality, on real photos (the shared datasets), written as files with EXIF into a temp
   folder and read the way the indexer reads them (one decode: look and vector):
   - copies of Oxford pet photos: re-encoded at JPEG q40 and q75, resized to half (EXIF
     stripped, as a messenger does), cropped by 3% a side, rotated by EXIF (the pixels turned,
     Orientation 6: upright again when opened);
   - bursts: 8 frames of a photo, each a window shifted by up to 3% of its size, 0.2-0.5 s apart;
   - negatives: different DogFaceNet photos of one dog, 1 s apart (the same dog in the same
     minute: the hardest case), and same-breed Oxford photos 0.5 s apart.
   It prints precision and recall of "same stack" pairs per kind, the joins between
   negatives, and the distributions the thresholds were chosen from: pHash distances of
   copies against different photos, and the cosine similarity of true burst frames against
   negatives close in time (rerun after the vector space changes to re-derive
   stacks.burst_min_similarity, one cut per space).
2. Cost: the time to update stacks after 100 new photos into 1k, 10k and 30k (synthetic
   looks and vectors: the scale, not the pictures, matters), and the look's share of
   indexing (pHash + sharpness against the read, decode and embed of the same photos).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from _common import add_datasets_arg, dataset_part, datasets_dir, strip_petwatch_env

DAY_MS = 86_400_000
ROUNDS = 3  # indexing with and without stacks, alternated


@dataclass
class Item:
    path: str
    group: str  # photos of one group belong in one stack; negatives are each their own
    kind: str  # copies / burst / dogface / breed


def exif_bytes(taken_ms: int | None, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    if taken_ms is not None:
        seconds, millis = divmod(taken_ms, 1000)
        stamp = time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(seconds))
        sub = exif.get_ifd(0x8769)
        sub[0x9003] = stamp
        sub[0x9291] = f"{millis:03d}"
    return exif.tobytes()


def save(image: Image.Image, path: Path, taken_ms: int | None, quality: int = 90, orientation: int = 1) -> str:
    image.save(path, "JPEG", quality=quality, exif=exif_bytes(taken_ms, orientation))
    return str(path)


def make_photos(root: Path, quick: bool, rng: random.Random) -> list[Item]:
    pets, why = dataset_part(root, "oxford-pets-sample")
    faces, why_faces = dataset_part(root, "dogfacenet-dev")
    if pets is None or faces is None:
        sys.exit(f"bench_stacks needs the shared datasets: {why or why_faces}")
    out = Path(tempfile.mkdtemp(prefix="bench-stacks-"))
    breeds = sorted(p for p in pets.iterdir() if p.is_dir())
    bases = [sorted(b.glob("*.jpg"))[i] for b in breeds[:18] for i in (0, 1)]
    n_copies, n_bursts = (8, 6) if quick else (24, 12)
    items: list[Item] = []
    clock = 1_700_000_000_000
    for n, source in enumerate(bases[:n_copies]):
        image = Image.open(source).convert("RGB")
        taken = clock + n * DAY_MS
        group = f"copies{n}"
        w, h = image.size
        crop = image.crop((int(w * 0.03), int(h * 0.03), int(w * 0.97), int(h * 0.97)))
        variants = [
            ("orig", image, taken, 92, 1),
            ("q40", image, taken, 40, 1),
            ("q75", image, taken, 75, 1),
            ("half", image.resize((w // 2, h // 2), Image.Resampling.LANCZOS), None, 85, 1),
            ("crop3", crop, taken, 90, 1),
            ("exifrot", image.transpose(Image.Transpose.ROTATE_90), taken, 90, 6),
        ]
        for name, picture, when, quality, orientation in variants:
            path = save(picture, out / f"{group}-{name}.jpg", when, quality, orientation)
            items.append(Item(path, group, "copies"))
    for n, source in enumerate(bases[n_copies : n_copies + n_bursts]):
        image = Image.open(source).convert("RGB")
        w, h = image.size
        dx_max, dy_max = max(2, int(w * 0.03)), max(2, int(h * 0.03))
        taken = clock + (100 + n) * DAY_MS
        group = f"burst{n}"
        for frame in range(8):
            dx, dy = rng.randint(0, dx_max), rng.randint(0, dy_max)
            window = image.crop((dx, dy, w - dx_max + dx, h - dy_max + dy))
            path = save(window, out / f"{group}-{frame}.jpg", taken, 90)
            items.append(Item(path, group, "burst"))
            taken += rng.randint(200, 500)
    # Negatives: one dog's different photos 1 s apart; one breed's photos 0.5 s apart.
    dogs = [d for d in sorted(faces.iterdir()) if d.is_dir() and len(list(d.iterdir())) >= 3]
    for n, dog in enumerate(dogs[: 12 if quick else 60]):
        taken = clock + (300 + n) * DAY_MS
        for k, source in enumerate(sorted(dog.iterdir())):
            picture = Image.open(source).convert("RGB")
            path = save(picture, out / f"dog{n}-{k}-{dog.name}-{source.stem}.jpg", taken + 1000 * k, 92)
            items.append(Item(path, f"dog{n}-{k}", "dogface"))
    for n, breed in enumerate(breeds[18 : 22 if quick else 37]):
        taken = clock + (600 + n) * DAY_MS
        for k, source in enumerate(sorted(breed.glob("*.jpg"))):
            picture = Image.open(source).convert("RGB")
            path = save(picture, out / f"breed{n}-{k}.jpg", taken + 500 * k, 92)
            items.append(Item(path, f"breed{n}-{k}", "breed"))
    return items


def read_all(items: list[Item], embedder) -> tuple[list, dict[str, np.ndarray]]:
    """Each file as the indexer reads it: (PhotoRow with its look), vectors by content hash."""
    from petwatch import photos
    from petwatch.store import PhotoRow, photo_record

    rows, vectors, prepared = [], {}, []
    for item in items:
        photo = photos.read_photo(item.path, 180_000_000)
        image = photos.decode(photo, embedder.decode_min_side)
        look = photos.look(image, photo)
        prepared.append(embedder.prepare(image))
        rows.append((item, photo, look))
    embeddings = []
    for start in range(0, len(prepared), 16):
        embeddings += embedder.embed_prepared(prepared[start : start + 16])
    out = []
    for (item, photo, look), embedding in zip(rows, embeddings, strict=True):
        vector = embedding.vector
        vectors[photo.content_hash] = vector
        out.append(
            PhotoRow(
                photo_record(
                    path=item.path,
                    content_hash=photo.content_hash,
                    width=photo.width,
                    height=photo.height,
                    taken_at=photo.taken_at,
                ),
                vector,
                look=look,
            )
        )
    return out, vectors


def open_stacks(db: Path, rows: list, vectors: dict[str, np.ndarray], whitened: bool = False):
    from petwatch.stacks import Stacks

    paths: dict[str, list[str]] = {}
    for row in rows:
        paths.setdefault(row.content_hash, []).append(row.path)
    path_hash = {row.path: row.content_hash for row in rows}
    return Stacks(
        db, lambda d: paths.get(d, []), lambda ps: {p: vectors[path_hash[p]][None, :] for p in ps}, lambda: whitened
    )


def quality(args, embedder) -> None:
    from petwatch import stacks as stacks_module

    rng = random.Random(7)
    items = make_photos(datasets_dir(args.datasets), args.quick, rng)
    started = time.monotonic()
    rows, vectors = read_all(items, embedder)
    print(f"{len(items)} photos read, looked at and embedded in {time.monotonic() - started:.1f}s")
    with tempfile.TemporaryDirectory() as tmp:
        book = open_stacks(Path(tmp) / "state.sqlite3", rows, vectors, embedder.whitening is not None)
        for start in range(0, len(rows), 16):  # batches, as the indexer stores them
            book.on_stored(rows[start : start + 16])
        stack_of = {}
        for row in rows:
            stack = book.stack_of(row.content_hash)
            stack_of[row.path] = stack.id if stack else row.path
        book.close()

    by_path = {row.path: row for row in rows}
    print(
        "\nsame-stack pairs (precision: of the pairs stacked, how many belong together;"
        " recall: of those that do, how many)"
    )
    for kind in ("copies", "burst"):
        mine = [i for i in items if i.kind == kind]
        truth = {(a.path, b.path) for a, b in itertools.combinations(mine, 2) if a.group == b.group}
        touched = [i for i in items if any(stack_of[i.path] == stack_of[m.path] for m in mine)]
        predicted = {
            (a.path, b.path)
            for a, b in itertools.combinations(touched, 2)
            if stack_of[a.path] == stack_of[b.path] and (a.kind == kind or b.kind == kind)
        }
        truth_sorted = {tuple(sorted(p)) for p in truth}
        predicted_sorted = {tuple(sorted(p)) for p in predicted}
        tp = len(truth_sorted & predicted_sorted)
        precision = tp / len(predicted_sorted) if predicted_sorted else 1.0
        recall = tp / len(truth_sorted) if truth_sorted else 1.0
        target = "target P>=0.98 R>=0.9" if kind == "copies" else "target P>=0.95"
        print(f"  {kind:7s} pairs {len(truth_sorted):5d}  precision {precision:.3f}  recall {recall:.3f}   ({target})")
    for kind, label in (("dogface", "DogFaceNet, one dog, 1 s apart"), ("breed", "Oxford, one breed, 0.5 s apart")):
        mine = [i for i in items if i.kind == kind]
        pairs = [
            (a, b) for a, b in itertools.combinations(mine, 2) if a.group.rsplit("-", 1)[0] == b.group.rsplit("-", 1)[0]
        ]
        joined = [(a, b) for a, b in pairs if stack_of[a.path] == stack_of[b.path]]
        print(f"  negatives {label}: {len(joined)} of {len(pairs)} pairs stacked (target 0)")
        for a, b in joined:  # to look at: the dataset holds some consecutive frames of one shoot
            bits = stacks_module.hamming(np.array([by_path[a.path].look.phash]), by_path[b.path].look.phash)[0]
            print(f"    {Path(a.path).name} + {Path(b.path).name}: pHash {bits} bits apart")

    # Distributions the thresholds come from.
    def distance(a, b) -> int:
        return int(stacks_module.hamming(np.array([by_path[a].look.phash]), by_path[b].look.phash)[0])

    print("\npHash distance (bits of 64), copies against their original, by variant:")
    originals = {i.group: i.path for i in items if i.path.endswith("-orig.jpg")}
    for variant in ("q40", "q75", "half", "crop3", "exifrot"):
        found = [distance(originals[i.group], i.path) for i in items if i.path.endswith(f"-{variant}.jpg")]
        print(f"  {variant:8s} max {max(found):2d}  mean {np.mean(found):4.1f}")
    distinct = [i.path for i in items if i.kind != "copies" or i.path.endswith("-orig.jpg")]
    groups = {i.path: i.group for i in items}
    apart = [distance(a, b) for a, b in itertools.combinations(distinct, 2) if groups[a] != groups[b]]
    burst_d = [
        distance(a.path, b.path)
        for a, b in itertools.combinations(items, 2)
        if a.kind == "burst" and a.group == b.group
    ]
    print(
        f"  different pictures ({len(apart)} pairs): min {min(apart)}  1st percentile {np.percentile(apart, 1):.0f};"
        f"  COPY_MAX_DISTANCE = {stacks_module.COPY_MAX_DISTANCE}"
    )
    print(
        f"  burst frames: median {np.median(burst_d):.0f}  max {max(burst_d)}:"
        f" {np.mean(np.array(burst_d) <= stacks_module.COPY_MAX_DISTANCE):.0%} of burst pairs linked by pHash alone"
    )

    def cosine(a, b) -> float:
        return float(np.dot(by_path[a].vector, by_path[b].vector))

    true_burst = [
        cosine(a.path, b.path) for a, b in itertools.combinations(items, 2) if a.kind == "burst" and a.group == b.group
    ]
    negative_pairs = [
        (a.path, b.path)
        for a, b in itertools.combinations(items, 2)
        if a.kind in ("dogface", "breed")
        and a.kind == b.kind
        and a.group.rsplit("-", 1)[0] == b.group.rsplit("-", 1)[0]
    ]
    negatives = [cosine(a, b) for a, b in negative_pairs]
    alike = sorted((cosine(a, b), distance(a, b)) for a, b in negative_pairs if cosine(a, b) >= 0.9)
    print(f"  negatives at cosine >= 0.9 (cosine, pHash bits): {[(round(c, 3), d) for c, d in alike]}")
    print(f"  BURST_MAX_DISTANCE = {stacks_module.BURST_MAX_DISTANCE}: frames further apart in pHash are two pictures")
    space = "whitened" if embedder.whitening is not None else "raw"
    cut = stacks_module.burst_min_similarity(embedder.whitening is not None)
    print(f"\ncosine similarity ({embedder.identity}, {space}), burst cut = {cut}:")
    print(
        f"  true burst frames  ({len(true_burst)} pairs): min {min(true_burst):.3f}  5th pct"
        f" {np.percentile(true_burst, 5):.3f}  median {np.median(true_burst):.3f}"
    )
    print(
        f"  negatives, close in time ({len(negatives)} pairs): median {np.median(negatives):.3f}  99th pct"
        f" {np.percentile(negatives, 99):.3f}  max {max(negatives):.3f}"
    )


def scale(args) -> None:
    from petwatch.photos import Look
    from petwatch.stacks import Stacks
    from petwatch.store import PhotoRow, photo_record

    rng = np.random.default_rng(3)
    dim = 1280
    print("\nupdating stacks after 100 new photos (synthetic looks and vectors; a camera roll over a year,")
    print("every 4th photo a burst frame 0.3 s after the one before: 12 pHash bits and cosine ~0.99 apart,")
    print("so its link needs the vectors; new photos in batches of 16, as the indexer stores them):")
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 30_000)
    for size in sizes:
        total = size + 100
        taken = np.sort(rng.integers(0, 365 * DAY_MS, total)) + 1_700_000_000_000
        phash = rng.integers(-(2**63), 2**63 - 1, total, dtype=np.int64)
        vectors = rng.standard_normal((total, dim)).astype(np.float32)
        frames = np.arange(1, total, 4)
        taken[frames] = taken[frames - 1] + 300
        phash[frames] = phash[frames - 1] ^ np.int64(0xFFF)  # 12 bits apart
        vectors[frames] = vectors[frames - 1] + 0.1 * vectors[frames]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        hashes = [f"{i:032x}" for i in range(total)]
        rows = [
            PhotoRow(
                photo_record(path=f"/p/{i}.jpg", content_hash=hashes[i], width=4000, height=3000),
                vectors[i],
                look=Look(int(phash[i]), 10.0, 12_000_000, int(taken[i])),
            )
            for i in range(total)
        ]
        order = rng.permutation(total)
        old, new = [rows[i] for i in order[:size]], [rows[i] for i in order[size:]]
        index = {row.content_hash: i for i, row in enumerate(rows)}
        with tempfile.TemporaryDirectory() as tmp:
            book = Stacks(Path(tmp) / "state.sqlite3", *_lookups(index, vectors))
            for start in range(0, size, 1000):
                book.on_stored(old[start : start + 1000])
            started = time.perf_counter()
            for start in range(0, 100, 16):  # as the indexer hands them over: batches of 16
                book.on_stored(new[start : start + 16])
            seconds = time.perf_counter() - started
            listed = time.perf_counter()
            count = len(book.all())
            listing = time.perf_counter() - listed
            book.close()
        print(
            f"  {size:6,d} photos: {seconds * 1000:7.1f} ms for 100 new ({seconds * 10:.2f} ms a photo);"
            f" listing all {count} stacks {listing * 1000:.0f} ms"
        )


def _lookups(index: dict[str, int], vectors: np.ndarray):
    """The library's two lookups (content hash -> paths, paths -> vectors) over synthetic rows."""

    def paths_of(digest: str) -> list[str]:
        return [f"/p/{index[digest]}.jpg"] if digest in index else []

    def vectors_of(paths) -> dict[str, np.ndarray]:
        return {p: vectors[int(Path(p).stem)][None, :] for p in paths}

    return paths_of, vectors_of


def indexing_share(args, embedder) -> None:
    """Indexing with stacks against indexing without (no look, no stack update), same run:
    the real Library and indexer (decode pool, batches, Milvus Lite), camera-size photos."""
    from unittest import mock

    from petwatch import photos, settings
    from petwatch.library import Library
    from petwatch.stacks import Stacks

    root, why = dataset_part(datasets_dir(args.datasets), "oxford-pets-sample")
    if root is None:
        sys.exit(why)
    files = sorted(root.rglob("*.jpg"))[: 32 if args.quick else 64]
    folder = Path(tempfile.mkdtemp(prefix="bench-stacks-album-"))
    for n, source in enumerate(files):  # camera-size copies: the Oxford photos are ~500 px
        Image.open(source).convert("RGB").resize((4000, 3000)).save(folder / f"{n}.jpg", quality=90)
    blank = photos.Look(0, 0.0, 0, 0)
    spent = {"look": 0.0, "update": 0.0}  # seconds inside the stacks' own work, in the runs with it
    real_look, real_update = photos.look, Stacks.on_stored

    def timed_look(image, photo):
        started = time.perf_counter()
        try:
            return real_look(image, photo)
        finally:
            spent["look"] += time.perf_counter() - started

    def timed_update(self, rows):
        started = time.perf_counter()
        try:
            return real_update(self, rows)
        finally:
            spent["update"] += time.perf_counter() - started

    def run(with_stacks: bool) -> float:
        os.environ["PETWATCH_HOME"] = tempfile.mkdtemp(prefix="bench-stacks-home-")
        library = Library(settings.load(), embedder)
        try:
            patches = [
                mock.patch.object(photos, "look", timed_look if with_stacks else lambda image, photo: blank),
                mock.patch.object(Stacks, "on_stored", timed_update if with_stacks else lambda self, rows: None),
            ]
            for patch in patches:
                patch.start()
            started = time.perf_counter()
            report = library.reconcile([str(folder)])
            seconds = time.perf_counter() - started
            for patch in patches:
                patch.stop()
            assert report.indexed == len(files), report.to_dict()
            return seconds
        finally:
            library.close()

    timings: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(ROUNDS):  # alternated, best of each: the machine's load drifts
        for with_stacks in (False, True):
            timings[with_stacks].append(run(with_stacks))
    without, with_ = min(timings[False]), min(timings[True])
    print(
        f"\nindexing {len(files)} camera photos (4000x3000), best of {ROUNDS}, alternated: without stacks"
        f" {len(files) / without:.2f} img/s, with {len(files) / with_:.2f} img/s:"
        f" {with_ / without - 1:+.1%} time (target <= +5%)"
    )
    runs = ROUNDS * len(files)
    print(
        f"  inside the runs with stacks: the look {spent['look'] * 1000 / runs:.2f} ms a photo (on the decode"
        f" threads, beside the model), the stack update {spent['update'] * 1000 / runs:.2f} ms a photo;"
        f" a photo takes {with_ * 1000 / len(files):.0f} ms of wall time"
    )
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer photos, 1k and 10k only")
    parser.add_argument("--model", default="efficientnet_lite2")
    parser.add_argument("--part", choices=("all", "quality", "scale", "share"), default="all")
    add_datasets_arg(parser)
    args = parser.parse_args()
    strip_petwatch_env()
    scratch = tempfile.mkdtemp(prefix="bench-stacks-")
    tempfile.tempdir = scratch  # every folder and home below lives here, removed at the end
    try:
        run(args)
    finally:
        tempfile.tempdir = None
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace) -> None:
    os.environ["PETWATCH_HOME"] = tempfile.mkdtemp(prefix="bench-stacks-home-")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    if args.part in ("all", "scale"):
        scale(args)
    if args.part == "scale":
        return
    from petwatch.library import open_embedder
    from petwatch.settings import Settings

    embedder = open_embedder(Settings(model=args.model))
    if args.part in ("all", "quality"):
        quality(args, embedder)
    if args.part in ("all", "share"):
        indexing_share(args, embedder)


if __name__ == "__main__":
    main()
