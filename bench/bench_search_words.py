"""A search in words at library scale: latency of each kind of query, and what the index pays.

    python bench/bench_search_words.py            # 100k photos, 768-d (the default model's whitened vectors)
    python bench/bench_search_words.py --quick    # 10k photos, 100 queries (< 2 min)

Two collections of the same N photos, made by petwatch.store.Store in a temp dir (Milvus Lite
2.5.1, as the product opens it): the record before words (schema 3: no places, no classes) and
the record now (places, and each photo's top classes as a sparse vector with their ids as JSON
beside it). Each photo: a random unit vector; 5 classes and probabilities drawn like a
classifier's (a third dogs, a tenth cats, the rest any class; one dominant class); a capture
time over 2010-2024 (a tenth unknown: the file's time); a place from 40 for a third of them.

Timed, interleaved round-robin (one query of each kind in turn, so load on the box hits all
alike), p50/p95 over ``--queries`` each, through the product's calls (Store.search,
Store.search_classes, PhotoFilter):
- photo search, before and now (the baseline: top 20 by cosine, no filter);
- words alone ("dog": 118 classes; "beach": 3): sparse inner product, the mass on the classes;
- words + photo ("dog" filters, the photo ranks);
- words + pet + date ("beach" ranks within a pet's album of 2,000 photos, in 2019-2021).
Acceptance (issue 28): each words p95 within 1.2x of the photo search's; index bytes per photo
added (on disk, after a flush: Milvus Lite's file grows in steps, so it is N-averaged).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

RATIO_TARGET = 1.2
DOG_CLASSES = range(151, 269)
CAT_CLASSES = range(281, 286)
BEACH = frozenset({978, 977, 975})  # seashore, sandbar, lakeside
PLACES = [(f"City{i}", f"Region{i // 4}", f"Country{i // 10}") for i in range(40)]
ALBUM = 2_000
BATCH = 2_000


def _records(start: int, count: int, rng: np.random.Generator, with_words: bool) -> list:
    from petwatch.concepts import TOP_K
    from petwatch.store import photo_record

    records = []
    for i in range(start, start + count):
        kind = rng.random()
        if kind < 0.33:
            top = int(rng.choice(DOG_CLASSES))
        elif kind < 0.43:
            top = int(rng.choice(CAT_CLASSES))
        else:
            top = int(rng.integers(0, 1000))
        kept = int(rng.integers(3, TOP_K + 1))  # concepts.top_concepts keeps 5.9 a photo on average
        others = rng.choice(1000, kept - 1, replace=False)
        probs = np.sort(rng.dirichlet([8.0] + [0.7] * (kept - 1)))[::-1]
        taken = 0 if rng.random() < 0.1 else int(rng.integers(1_262_304_000, 1_735_689_600))
        values = dict(
            path=f"/home/user/Pictures/{2010 + i % 15}/{i % 12 + 1:02d}/IMG_{i:07d}.jpg",
            content_hash=f"{i:032x}",
            size=3_000_000 + i,
            mtime_ns=1_600_000_000_000_000_000 + i * 10**9,
            width=4000,
            height=3000,
            taken_at=taken,
            indexed_at=1_700_000_000,
            pet_score=0.9,
            species="dog",
            label="beagle",
            camera="Apple iPhone 12 Pro",
        )
        if with_words:
            classes = {top: float(probs[0])}
            for cls, p in zip(others, probs[1:], strict=True):
                classes.setdefault(int(cls), float(p))
            values["classes"] = classes
            if rng.random() < 0.33:
                values.update(zip(("city", "region", "country"), PLACES[int(rng.integers(0, 40))], strict=True))
        records.append(photo_record(**values))
    return records


def _fill(store, rows: int, dim: int, seed: int, with_words: bool) -> float:
    """Write ``rows`` photos; the seconds it took."""
    from petwatch.store import PhotoRow

    rng = np.random.default_rng(seed)
    took = 0.0
    for start in range(0, rows, BATCH):
        count = min(BATCH, rows - start)
        vectors = rng.standard_normal((count, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        records = _records(start, count, rng, with_words)
        batch = [PhotoRow(record, vector=v) for record, v in zip(records, vectors, strict=True)]
        began = time.perf_counter()
        store.upsert(batch)
        took += time.perf_counter() - began
    return took


def _raw_bytes_added(rows: int, seed: int) -> float:
    """What the new fields hold per photo, as Milvus stores them: a sparse entry is a 4-byte
    index and a 4-byte float, a class column 2 bytes, a varchar its UTF-8 bytes."""
    from petwatch.store import MAX_CLASSES

    rng = np.random.default_rng(seed)
    sample = _records(0, min(rows, 2000), rng, True)
    sizes = [
        8 * len(r["classes"]) + 2 * MAX_CLASSES + sum(len(r[k].encode()) for k in ("city", "region", "country"))
        for r in sample
    ]
    return float(np.mean(sizes))


def _disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="photos (default 100000; --quick 10000)")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=None, help="queries of each kind (default 200; --quick 100)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rows = args.rows or (10_000 if args.quick else 100_000)
    queries = args.queries or (100 if args.quick else 200)
    C.strip_petwatch_env()

    from petwatch import store as store_module
    from petwatch.store import MAX_CLASSES, PhotoFilter, Store, photo_id

    machine = C.machine()
    print(f"machine: {machine}")
    root = Path(tempfile.mkdtemp(prefix="pw-words-"))
    try:
        stores, write_s, disk = {}, {}, {}
        for name, with_words in (("before", False), ("now", True)):
            folder = root / name
            folder.mkdir()
            record = kept = store_module.RECORD
            if not with_words:  # the record before words: schema 3's fields
                kept = {k: v for k, v in record.items() if k not in ("city", "region", "country", "classes")}
                store_module.RECORD = kept
            try:
                store = Store(str(folder / "milvus.db"), "photos", f"bench/{args.dim}", args.dim)
                write_s[name] = _fill(store, rows, args.dim, args.seed, with_words)
            finally:
                store_module.RECORD = record
            # Closed (Milvus Lite writes everything out), measured, and opened again to search.
            store.close()
            disk[name] = _disk(folder)
            with_record = record if with_words else kept
            store_module.RECORD = with_record
            try:
                stores[name] = Store(str(folder / "milvus.db"), "photos", f"bench/{args.dim}", args.dim)
            finally:
                store_module.RECORD = record
            print(f"{name}: {rows:,} photos written in {write_s[name]:.1f} s, {disk[name] / rows:.0f} B/photo on disk")

        rng = np.random.default_rng(args.seed + 1)
        dogs = frozenset(DOG_CLASSES)
        album = frozenset(
            photo_id(f"/home/user/Pictures/{2010 + i % 15}/{i % 12 + 1:02d}/IMG_{i:07d}.jpg")
            for i in rng.choice(rows, ALBUM, replace=False)
        )
        pet_and_date = PhotoFilter(taken=(1_546_300_800, 1_640_995_200), photo_ids=album)  # 2019-2021
        now = stores["now"]
        kinds = {
            "photo search (before words)": lambda q: stores["before"].search(q, 20, -1.0),
            "photo search": lambda q: now.search(q, 20, -1.0),
            'words alone ("dog", 118 classes)': lambda q: now.search_classes(dict.fromkeys(dogs, 1.0), 20),
            'words alone ("beach", 3 classes)': lambda q: now.search_classes(dict.fromkeys(BEACH, 1.0), 20),
            'words + photo ("dog" filters)': lambda q: now.search(q, 20, -1.0, only=PhotoFilter(concepts=(dogs,))),
            'words + pet + date ("beach")': lambda q: now.search_classes(dict.fromkeys(BEACH, 1.0), 20, pet_and_date),
        }
        found = {kind: len(call(rng.standard_normal(args.dim).astype(np.float32))) for kind, call in kinds.items()}
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(queries):
            query = rng.standard_normal(args.dim).astype(np.float32)
            for kind, call in kinds.items():
                began = time.perf_counter()
                call(query)
                times[kind].append((time.perf_counter() - began) * 1000)
        base = C.percentile(times["photo search"], 95)
        table_rows = []
        results = {}
        for kind, values in times.items():
            p50, p95 = C.percentile(values, 50), C.percentile(values, 95)
            ratio = p95 / base
            words = kind.startswith("words")
            table_rows.append(
                [
                    kind,
                    found[kind],
                    f"{p50:.1f}",
                    f"{p95:.1f}",
                    f"{ratio:.2f}x",
                    C.verdict(ratio <= RATIO_TARGET) if words else "",
                ]
            )
            results[kind] = {"p50_ms": p50, "p95_ms": p95, "ratio_to_photo_search": ratio, "hits": found[kind]}
        print()
        print(
            C.table(
                ["query", "hits", "p50 ms", "p95 ms", "p95 / photo search", f"<= {RATIO_TARGET}x"],
                table_rows,
                title=f"Search at {rows:,} photos, {args.dim}-d, {queries} queries each, interleaved",
            )
        )
        added = (disk["now"] - disk["before"]) / rows
        write_ratio = write_s["before"] / write_s["now"]
        print()
        before, after = disk["before"] / rows, disk["now"] / rows
        raw = _raw_bytes_added(rows, args.seed)
        print(f"index bytes per photo: {before:.0f} before, {after:.0f} now on disk ({added:+.0f} B/photo);")
        print(f"  the new fields hold {raw:.0f} B/photo (classes: sparse entries, {MAX_CLASSES} int16 columns; places)")
        speeds = f"{rows / write_s['before']:.0f} vs {rows / write_s['now']:.0f} photos/s"
        print(f"store write throughput now / before: {write_ratio:.2f}x ({speeds})")
        C.write_results(
            "search_words",
            {
                "machine": machine,
                "rows": rows,
                "dim": args.dim,
                "queries": queries,
                "search": results,
                "bytes_per_photo": {"before": before, "now": after, "added": added, "fields_added": raw},
                "write_throughput_ratio": write_ratio,
            },
        )
        for store in stores.values():
            store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
