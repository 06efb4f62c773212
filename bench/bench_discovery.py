"""Pets found for you: are the groups individuals, and what does keeping them current cost?

    python bench/bench_discovery.py            # quality on real photos + timing (~8 min on 2 cores)
    python bench/bench_discovery.py --quick    # timing at 1k and 10k only, no real photos (~1 min)

Quality (real photos, ``--datasets``): ``--draws`` libraries, each of 3 dogs of dogfacenet-dev
with at least ``--min-photos`` photos ("your pets", every photo of them), 300 other dogs met
once, and the whole Oxford sample (other dogs and cats, 10 of each breed). Vectors are the
product's (Embedder, pet focus on; from bench_identity.py's run when there is one). Every
photo counts as a day of its own, the worst case for strangers: a group then recurs from
MIN_GROUP photos. Reported, for the product's link cut and its neighbours:
  purity   of each pet's group (the group holding most of its photos): its share of the group;
  recall   the share of each pet's photos in that group (mean over pets);
  found    pets whose group has purity >= 0.9 and recall >= 0.8;
  stranger groups  groups that recur but hold no pet's photos in majority.

Timing (synthetic unit vectors: pets as tight clusters among loose strangers): the full
clustering at 1k / 10k / 30k pet photos, and updating the groups after 100 new photos
(Discovery.on_stored: each joins the nearest group or waits for the next clustering).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

DOGS = "dogfacenet-dev"


def real_vectors(root: Path, model: str):
    """(vectors, species, group, label) of dogfacenet-dev and the Oxford sample, from
    bench_identity.py's run when there is one (the same photos and model), else embedded now."""
    from bench_identity import decode_all, gather, vectors_file

    saved = vectors_file(model)
    if saved.exists():
        data = np.load(saved)
        keep = np.isin(data["group"], ["dog", "breed"])
        print(f"  vectors from {saved}", flush=True)
        return data["vectors"][keep], data["species"][keep], data["group"][keep], data["label"][keep]
    from petwatch.embed import Embedder

    embedder = Embedder(model)
    kept, images = decode_all([p for p in gather(root) if p.group in ("dog", "breed")], embedder.decode_min_side)
    vectors, species = [], []
    for start in range(0, len(images), 32):
        batch = images[start : start + 32]
        for views, _whole, signal, _box in embedder.embed_batch(batch, [embedder.preprocess_views(i) for i in batch]):
            vectors.append(views[0])
            species.append(signal.species)
    return (np.stack(vectors), np.array(species), np.array([p.group for p in kept]), np.array([p.label for p in kept]))


def libraries(group, label, draws: int, pets: int, strangers: int, min_photos: int, seed: int = 0):
    """``draws`` libraries: ``pets`` dogs with ``min_photos``+ photos (every photo), ``strangers``
    other dogs once each, and the whole Oxford sample. (indices, owner of each photo)."""
    rng = np.random.default_rng(seed)
    dogs = np.flatnonzero(group == "dog")
    counts = Counter(label[dogs])
    candidates = sorted(dog for dog, n in counts.items() if n >= min_photos)
    oxford = list(np.flatnonzero(group == "breed"))
    out = []
    for _ in range(draws):
        chosen = set(rng.choice(candidates, pets, replace=False))
        met = set(rng.choice(sorted(set(counts) - chosen), strangers, replace=False))
        first: dict[str, int] = {}
        for i in dogs:
            if label[i] in met:
                first.setdefault(label[i], int(i))
        index = [int(i) for i in dogs if label[i] in chosen] + list(first.values()) + oxford
        out.append((np.array(index), [label[i] if label[i] in chosen and group[i] == "dog" else "" for i in index]))
    return out


def quality(vectors, species, library: list, similar: float) -> dict:
    """Purity, recall and pets found over the drawn libraries, for one linkage cut."""
    from petwatch import discovery

    purity, recall, found, strangers, groups = [], [], 0, 0, 0
    for index, owner in library:
        shown = np.flatnonzero(np.isin(species[index], ["dog", "cat"]))
        labels = discovery.cluster(vectors[index][shown], similar)
        clusters: dict[int, list[str]] = {}
        for i, label in zip(shown, labels, strict=True):
            clusters.setdefault(int(label), []).append(owner[i])
        # Worst case for strangers: every photo a day of its own, so a group recurs at MIN_GROUP.
        recurring = [members for members in clusters.values() if len(members) >= discovery.MIN_GROUP]
        groups += len(recurring)
        for pet in sorted({o for o in owner if o}):
            best = max(recurring, key=lambda members: members.count(pet), default=[])
            share = best.count(pet)
            p, r = (share / len(best) if best else 0.0), share / owner.count(pet)
            purity.append(p)
            recall.append(r)
            found += p >= 0.9 and r >= 0.8
        strangers += sum(
            1
            for members in recurring
            if Counter(members).most_common(1)[0][0] == "" or Counter(members).most_common(1)[0][1] * 2 <= len(members)
        )
    return {
        "similar": similar,
        "pets": len(purity),
        "purity": float(np.mean(purity)),
        "recall": float(np.mean(recall)),
        "found": found,
        "groups_per_library": groups / len(library),
        "stranger_groups_per_library": strangers / len(library),
    }


def synthetic(count: int, dim: int, rng) -> tuple[np.ndarray, list[int]]:
    """``count`` unit vectors: 5% in 20 tight clusters (pets), the rest loose (strangers)."""
    centres = rng.standard_normal((20, dim)).astype(np.float32)
    pets = count // 20
    rows = [centres[i % 20] + 0.35 * rng.standard_normal(dim).astype(np.float32) for i in range(pets)]
    rows += list(rng.standard_normal((count - pets, dim)).astype(np.float32))
    vectors = np.stack(rows)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), [i % 20 for i in range(pets)]


def timing(count: int, dim: int) -> dict:
    """Full clustering of ``count`` pet photos, then 100 new photos through Discovery.on_stored."""
    from petwatch import discovery
    from petwatch.store import PhotoRow, photo_record

    rng = np.random.default_rng(count)
    vectors, _ = synthetic(count + 100, dim, rng)
    started = time.perf_counter()
    labels = discovery.cluster(vectors[:count])
    cluster_s = time.perf_counter() - started

    class Library:  # what Discovery reads of the library: its pet rows, what is indexed, disk room
        whitened = False  # synthetic vectors: the raw space's cuts

        def __init__(self, rows):
            self.rows = rows

        def pet_rows(self):
            return iter(self.rows)

        def entry(self, path):
            return True

        def write_problem(self):
            return None  # room on the disk: groups are written

    def row(i: int) -> PhotoRow:
        photo = photo_record(
            path=f"/p/{i}.jpg",
            content_hash=f"{i:016x}",
            size=1,
            mtime_ns=i * 86_400 * 10**9,
            width=1,
            height=1,
            species="dog",
            label="beagle",
        )
        return PhotoRow(photo, vector=vectors[i])

    with tempfile.TemporaryDirectory() as folder:
        found = discovery.Discovery(Library([row(i) for i in range(count)]), Path(folder) / "state.db")
        started = time.perf_counter()
        found.refresh()
        refresh_s = time.perf_counter() - started
        found.refresh_soon = lambda: None  # timed alone: no background clustering
        started = time.perf_counter()
        for i in range(count, count + 100, 10):  # in indexing batches of 10
            found.on_stored([row(j) for j in range(i, i + 10)])
        update_s = time.perf_counter() - started
        groups = len(found.groups())
        found.close()
    return {
        "photos": count,
        "cluster_s": cluster_s,
        "refresh_s": refresh_s,
        "update_100_ms": update_s * 1000,
        "groups": groups,
        "clusters": int(len(set(labels))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_datasets_arg(parser)
    parser.add_argument("--model", default="efficientnet_lite2")
    parser.add_argument("--min-photos", type=int, default=6, help="dogs with this many photos play your pets")
    parser.add_argument("--sizes", default="1000,10000,30000")
    parser.add_argument("--draws", type=int, default=20, help="libraries drawn for the quality figures")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    C.strip_petwatch_env()
    from petwatch import discovery

    payload: dict = {"machine": C.machine()}
    if not args.quick:
        root = C.datasets_dir(args.datasets)
        if C.dataset_part(root, DOGS)[0] is None:
            print(f"SKIP quality: {C.dataset_part(root, DOGS)[1]}")
        else:
            vectors, species, group, label = real_vectors(root, args.model)
            drawn = libraries(group, label, args.draws, 3, 300, args.min_photos)
            rows = []
            payload["quality"] = []
            for similar in (
                discovery.SIMILAR - 0.1,
                discovery.SIMILAR - 0.05,
                discovery.SIMILAR,
                discovery.SIMILAR + 0.05,
            ):
                q = quality(vectors, species, drawn, round(similar, 2))
                payload["quality"].append(q)
                mark = " (product)" if abs(similar - discovery.SIMILAR) < 1e-9 else ""
                rows.append(
                    [
                        f"{q['similar']:.2f}{mark}",
                        f"{q['purity']:.3f}",
                        f"{q['recall']:.3f}",
                        f"{q['found']}/{q['pets']}",
                        f"{q['groups_per_library']:.1f}",
                        f"{q['stranger_groups_per_library']:.1f}",
                    ]
                )
            print(
                C.table(
                    ["link at cosine", "purity", "recall", "pets found (0.9 / 0.8)", "groups", "stranger groups"],
                    rows,
                    title=f"Pets found: {args.draws} libraries of 3 pets ({args.min_photos}+ photos each), "
                    f"300 dogs met once and the Oxford sample; {args.model}",
                )
            )
    sizes = [1000, 10000] if args.quick else [int(s) for s in args.sizes.split(",")]
    payload["timing"] = []
    rows = []
    for size in sizes:
        t = timing(size, 1280)
        payload["timing"].append(t)
        rows.append(
            [
                f"{size:,}",
                f"{t['cluster_s']:.2f} s",
                f"{t['refresh_s']:.2f} s",
                f"{t['update_100_ms']:.1f} ms",
                t["groups"],
            ]
        )
        print(f"  {size:,}: clustered in {t['cluster_s']:.1f}s", flush=True)
    print(
        C.table(
            ["pet photos", "clustering", "refresh (cluster + keep ids)", "100 new photos", "groups"],
            rows,
            title="Keeping the groups current (synthetic 1280-d vectors)",
        )
    )
    print(f"results: {C.write_results('bench_discovery', payload)}")


if __name__ == "__main__":
    main()
