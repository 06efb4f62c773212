"""The search workload, shared by bench_search.py's workers; raw pymilvus or petwatch.store.

Runs under the project's venv (pymilvus 2.5 + milvus-lite 2.5.1: a C++ server child process)
and under a separate venv with pymilvus 3.x + milvus-lite 3.x (pure Python, in-process), so
it imports only the standard library, numpy, psutil and pymilvus. Invoked by bench_search.py:

    python bench/_search_workload.py --backend raw --dim 1280 --counts 10000,100000 --dir D
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

INSERT_BATCH = 256  # as petwatch writes: Milvus Lite 2.5.1 inserts big batches far slower per row


def unit_vectors(seed: int, index: int, count: int, dim: int):
    """Deterministic random unit vectors, generated a batch at a time (never all in memory)."""
    import numpy as np

    rng = np.random.default_rng([seed, index])
    vectors = rng.standard_normal((count, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def fake_path(i: int) -> str:
    return f"/home/someone/Pictures/{2010 + i % 15}/{i % 12 + 1:02d}/IMG_{i:07d}.jpg"


class Raw:
    """Plain pymilvus: the same schema idea as petwatch (pk, path, vector), FLAT/COSINE (what
    petwatch made before it searched by inner product: the baseline)."""

    def __init__(self, directory: Path, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        self.client = MilvusClient(str(directory / "raw.db"))
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("path", DataType.VARCHAR, max_length=1024)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="COSINE")
        self.client.create_collection("photos", schema=schema, index_params=index)

    def insert(self, start: int, vectors) -> None:
        rows = [{"pk": start + i, "path": fake_path(start + i), "vector": v} for i, v in enumerate(vectors)]
        self.client.insert("photos", rows)

    def settle(self) -> None:
        try:
            self.client.flush("photos")
        except Exception:  # noqa: BLE001 - not every Lite version has flush
            pass
        self.client.load_collection("photos")  # 3.x needs it after writes/reopen; harmless on 2.5

    def search(self, vector, top_k: int) -> list:
        hits = self.client.search(
            "photos",
            data=[vector.tolist()],
            limit=top_k,
            output_fields=["path"],
            search_params={"metric_type": "COSINE"},
        )[0]
        # 2.5 keys a hit's primary key as "id", 3.x by the field's name ("pk").
        return [(hit.get("id", hit.get("pk")), hit["entity"]["path"], hit["distance"]) for hit in hits]

    def close(self) -> None:
        self.client.close()


class PetwatchStore:
    """petwatch.store.Store as the product uses it (upsert of PhotoRows, search with defaults)."""

    def __init__(self, directory: Path, dim: int, min_score: float) -> None:
        from petwatch.store import Store

        self.min_score = min_score
        self.store = Store(str(directory / "milvus.db"), "photos", f"bench-random/{dim}", dim)

    def insert(self, start: int, vectors) -> None:
        from petwatch.store import PhotoRow, photo_record

        now = int(time.time())
        rows = [
            PhotoRow(
                photo_record(
                    path=fake_path(start + i),
                    content_hash=f"{start + i:032x}",
                    size=3_000_000,
                    mtime_ns=now * 10**9,
                    width=4000,
                    height=3000,
                    indexed_at=now,
                ),
                vector=v,
            )
            for i, v in enumerate(vectors)
        ]
        self.store.upsert(rows)

    def settle(self) -> None:
        pass  # the product searches right after writing (Strong consistency)

    def search(self, vector, top_k: int) -> list:
        return [(hit.path, hit.score) for hit in self.store.search(vector, top_k, self.min_score)]

    def close(self) -> None:
        self.store.close()


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import pymilvus

    directory = Path(args.dir)
    counts = sorted(int(c) for c in args.counts.split(","))
    queries = unit_vectors(args.seed + 1, 0, args.queries + args.warmup, args.dim)
    rss_base = C.tree_rss()
    opened = time.perf_counter()
    backend = Raw(directory, args.dim) if args.backend == "raw" else PetwatchStore(directory, args.dim, args.min_score)
    open_s = time.perf_counter() - opened
    points = []
    stored = 0
    insert_s = 0.0
    with C.PeakRSS() as peak:
        for count in counts:
            started = time.perf_counter()
            while stored < count:
                n = min(INSERT_BATCH, count - stored)
                backend.insert(stored, unit_vectors(args.seed, stored // INSERT_BATCH, n, args.dim))
                stored += n
            backend.settle()
            insert_s += time.perf_counter() - started
            first = time.perf_counter()
            backend.search(queries[0], args.top_k)
            first_s = time.perf_counter() - first
            for q in queries[1 : args.warmup]:
                backend.search(q, args.top_k)
            latencies = []
            hits = 0
            budget = time.perf_counter() + args.max_seconds
            for n, q in enumerate(queries[args.warmup :]):
                if n >= args.min_queries and time.perf_counter() > budget:
                    break  # a slow system: enough queries for a p95, not a 10-minute run
                t = time.perf_counter()
                found = backend.search(q, args.top_k)
                latencies.append((time.perf_counter() - t) * 1000)
                hits += len(found)
            points.append(
                {
                    "count": count,
                    "insert_s_cumulative": insert_s,
                    "insert_rows_per_s": count / insert_s,
                    "first_search_ms": first_s * 1000,
                    "p50_ms": C.percentile(latencies, 50),
                    "p95_ms": C.percentile(latencies, 95),
                    "mean_ms": float(np.mean(latencies)),
                    "max_ms": float(np.max(latencies)),
                    "queries": len(latencies),
                    "mean_hits": hits / len(latencies),
                    "rss_tree": C.tree_rss(),
                    "peak_rss_tree": peak.peak,
                    "disk_bytes": sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()),
                }
            )
            print(
                f"    {args.backend} dim {args.dim} n={count:,}: p50 {points[-1]['p50_ms']:.1f} ms, "
                f"p95 {points[-1]['p95_ms']:.1f} ms, RSS {C.mib(points[-1]['rss_tree'])}, "
                f"files {C.mib(points[-1]['disk_bytes'])}",
                file=sys.stderr,
                flush=True,
            )
    backend.close()
    lite = C.versions("milvus-lite")["milvus-lite"]
    return {
        "backend": args.backend,
        "dim": args.dim,
        "pymilvus": pymilvus.__version__,
        "milvus_lite": lite,
        "python": sys.executable,
        "open_s": open_s,
        "rss_before_open": rss_base,
        "points": points,
        "top_k": args.top_k,
        "min_score": args.min_score if args.backend == "store" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["raw", "store"], required=True)
    parser.add_argument("--dim", type=int, required=True)
    parser.add_argument("--counts", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="stop a point's queries after this")
    parser.add_argument("--min-queries", type=int, default=40, help="... but only after this many")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--min-score", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    C.emit(run(args))


if __name__ == "__main__":
    main()
