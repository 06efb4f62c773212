"""Search latency and memory of the store, Milvus Lite 2.5 against 3.x, and "daemon ready" time.

    python bench/bench_search.py            # dims 1280 and 2048, 10k and 100k vectors (~15 min)
    python bench/bench_search.py --quick    # dim 1280, 10k vectors, 100 queries (< 2 min)
    python bench/bench_search.py --no-mv3   # skip the Milvus Lite 3.x comparison

1. petwatch.store.Store (Milvus Lite 2.5.1 in a temp dir, FLAT index, inner product): insert N
   random unit vectors through ``Store.upsert``, then time ``Store.search`` with the product's
   defaults (top_k 20, min_score 0.0) for 200 random queries: p50/p95, and the RSS of the
   process tree (Milvus Lite 2.5 runs its server as a child process). The 10k figures are
   taken on the way to 100k, from the same collection.
2. The same workload through raw pymilvus with a FLAT/COSINE index (what petwatch made before
   it searched by inner product: the baseline), on the project's venv (2.5) and on the separate
   venv with pymilvus 3.x + milvus-lite 3.x (``--mv3-python``, default /tmp/mv3/bin/python),
   each in its own process.
3. Daemon ready: a Library whose store holds 30k unchanged photos (paths of real, tiny files;
   one row per view the settings make) is opened in a fresh process: Store open + catalog
   load (the Indexer init) must take <= 10 s; the model load and the first reconcile walk
   (all unchanged) are reported beside.

Targets: p95 <= 50 ms at 100k, RSS <= 1.5 GB (process tree, peak during the run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

P95_TARGET_MS = 50.0
RSS_TARGET = 1.5e9  # bytes ("1.5 GB")
READY_TARGET_S = 10.0
MV3_PYTHON = "/tmp/mv3/bin/python"
MV3_HOWTO = "python -m venv /tmp/mv3 && /tmp/mv3/bin/pip install pymilvus==3.0.2 milvus-lite==3.2.2 numpy psutil"
WORKLOAD = str(Path(__file__).resolve().parent / "_search_workload.py")


# =============================================================================================
# daemon-ready workers
# =============================================================================================
def _tiny_files(folder: Path, count: int) -> list[tuple[str, int, int]]:
    """``count`` small real files in album-like folders: (path, size, mtime_ns)."""
    found = []
    for i in range(count):
        directory = folder / f"{2010 + i % 15}" / f"{i % 12 + 1:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"IMG_{i:07d}.jpg"
        if not path.exists():
            path.write_bytes(b"\xff\xd8\xff" + i.to_bytes(4, "big"))
        st = path.stat()
        found.append((str(path), st.st_size, st.st_mtime_ns))
    return found


def worker_ready_fill(args: argparse.Namespace) -> dict:
    """Store rows for ``rows`` real files, as if petwatch had indexed them all already.

    The Library itself creates the collection, so its identity (model, region views) is the
    one the daemon will ask for; each photo gets as many rows as the embedder makes views.
    """
    os.environ["PETWATCH_HOME"] = args.home
    import numpy as np

    from petwatch.library import Library
    from petwatch.settings import Settings
    from petwatch.store import PhotoRow, photo_record

    library = Library(Settings(model=args.model))
    views = getattr(library.embedder, "views", 1)
    started = time.perf_counter()
    files = _tiny_files(Path(args.folder), args.rows)
    made_files = time.perf_counter() - started
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    now = int(time.time())
    step = max(1, 1000 // views)
    for start in range(0, len(files), step):
        chunk = files[start : start + step]
        vectors = rng.standard_normal((len(chunk) * views, library.embedder.dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        library.store.upsert(
            [
                PhotoRow(
                    photo_record(
                        path=p,
                        content_hash=f"{start + i:032x}",
                        size=size,
                        mtime_ns=mtime,
                        width=4000,
                        height=3000,
                        indexed_at=now,
                    ),
                    vector=vectors[i * views + view],
                    view=view,
                )
                for i, (p, size, mtime) in enumerate(chunk)
                for view in range(views)
            ]
        )
    filled = time.perf_counter() - started
    photos = library.store.count()
    identity = library.embedder.identity
    library.close()
    return {
        "photos": photos,
        "views": views,
        "rows": photos * views,
        "identity": identity,
        "files_s": made_files,
        "fill_s": filled,
    }


def worker_ready_open(args: argparse.Namespace) -> dict:
    """A fresh process opens the Library over the filled store, as the daemon does at start."""
    os.environ["PETWATCH_HOME"] = args.home
    began = time.perf_counter()
    import petwatch.library as library_module
    from petwatch.settings import Settings

    imported = time.perf_counter()
    parts: dict[str, float] = {}

    def timed_init(cls, label: str) -> None:  # instrumentation only: behaviour unchanged
        original = cls.__init__

        def init(self, *a, **k):
            t = time.perf_counter()
            original(self, *a, **k)
            parts[label] = time.perf_counter() - t

        cls.__init__ = init

    timed_init(library_module.Embedder, "model_load_s")
    timed_init(library_module.Store, "store_open_s")
    timed_init(library_module.Indexer, "catalog_load_s")
    settings = Settings(model=args.model)
    library = library_module.Library(settings)
    opened = time.perf_counter()
    rss_open = C.tree_rss()
    import psutil

    rss_self = psutil.Process().memory_info().rss
    report = library.indexer.reconcile([args.folder])
    walked = time.perf_counter()
    catalog = len(library.indexer.catalog)
    library.close()
    library_s = opened - imported
    return {
        "photos": catalog,
        "import_s": imported - began,
        **parts,
        "library_s": library_s,
        # What the 10 s target is about: the Library open without the model load.
        "store_and_catalog_s": library_s - parts.get("model_load_s", 0.0),
        "ready_total_s": opened - began,
        "reconcile_s": walked - opened,
        "unchanged": report.unchanged,
        "indexed": report.indexed,
        "removed": report.removed,
        "skipped": len(report.skipped),
        "rss_tree_after_open": rss_open,
        "rss_self_after_open": rss_self,
    }


# =============================================================================================
# driver
# =============================================================================================
def run_search(
    python: str, backend: str, dim: int, counts: list[int], queries: int, label: str, idle_wait: float
) -> dict | None:
    directory = tempfile.mkdtemp(prefix=f"petwatch-bench-search-{label}-")
    try:
        C.wait_for_quiet(idle_wait)
        print(
            f"[{label} dim {dim}] inserting up to {counts[-1]:,} vectors, {queries} queries per point"
            " (at most 60 s) ...",
            flush=True,
        )
        argv = [
            WORKLOAD,
            "--backend",
            backend,
            "--dim",
            str(dim),
            "--counts",
            ",".join(map(str, counts)),
            "--dir",
            directory,
            "--queries",
            str(queries),
        ]
        result = C.run_worker(argv, env=C.clean_env(PYTHONWARNINGS="ignore"), python=python)
        result["label"] = label
        return result
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_ready(rows: int, model: str, idle_wait: float) -> dict:
    home = tempfile.mkdtemp(prefix="petwatch-bench-ready-")
    folder = os.path.join(home, "album")
    try:
        print(f"[ready] storing {rows:,} photos' rows ({model}) ...", flush=True)
        common = ["--home", home, "--folder", folder, "--model", model, "--rows", str(rows)]
        env = C.clean_env(PYTHONWARNINGS="ignore")
        fill = C.run_worker([__file__, "--worker", "ready-fill", *common], env=env)
        C.wait_for_quiet(idle_wait)
        print("[ready] opening the Library in a fresh process ...", flush=True)
        opened = C.run_worker([__file__, "--worker", "ready-open", *common], env=env)
        return {"fill": fill, "open": opened}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="dim 1280, 10k vectors, 100 queries")
    parser.add_argument("--dims", default=None, help="comma-separated (default 1280,2048; --quick 1280)")
    parser.add_argument("--counts", default=None, help="comma-separated (default 10000,100000; --quick 10000)")
    parser.add_argument("--queries", type=int, default=None, help="timed queries per point (default 200)")
    parser.add_argument(
        "--ready-photos",
        type=int,
        default=None,
        help="unchanged photos stored for the ready test (default 30000, --quick 10000)",
    )
    parser.add_argument("--ready-model", default="efficientnet_lite2")
    parser.add_argument("--no-ready", action="store_true", help="skip the daemon-ready test")
    parser.add_argument("--no-mv3", action="store_true", help="skip Milvus Lite 3.x")
    parser.add_argument("--mv3-python", default=MV3_PYTHON, help="python of the pymilvus 3.x venv")
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=None,
        help="before each part, wait up to this many seconds for other processes to go quiet (default 60, --quick 10)",
    )
    parser.add_argument("--worker", choices=["ready-fill", "ready-open"], help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="efficientnet_lite2", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        C.emit({"ready-fill": worker_ready_fill, "ready-open": worker_ready_open}[args.worker](args))
        return

    dims = [int(d) for d in (args.dims or ("1280" if args.quick else "1280,2048")).split(",")]
    counts = sorted(int(c) for c in (args.counts or ("10000" if args.quick else "10000,100000")).split(","))
    queries = args.queries or (100 if args.quick else 200)
    if args.idle_wait is None:
        args.idle_wait = 10.0 if args.quick else 60.0
    main_python = sys.executable
    mv3 = None
    if not args.no_mv3:
        if os.access(args.mv3_python, os.X_OK):
            mv3 = args.mv3_python
        else:
            print(f"Milvus Lite 3.x comparison skipped: {args.mv3_python} is missing. Create it with:\n  {MV3_HOWTO}\n")
    systems = [("petwatch Store", main_python, "store"), ("raw pymilvus", main_python, "raw")]
    if mv3:
        systems.append(("raw pymilvus", mv3, "raw"))

    results = []
    for dim in dims:
        for name, python, backend in systems:
            label = f"{name} ({'3.x' if python == mv3 else '2.5'})"
            try:
                results.append(run_search(python, backend, dim, counts, queries, label, args.idle_wait))
            except RuntimeError as error:
                print(f"  {label} failed: {error}")
                results.append({"label": label, "dim": dim, "error": str(error)[-2000:]})
    ready_photos = args.ready_photos or (10_000 if args.quick else 30_000)
    ready = None if args.no_ready else run_ready(ready_photos, args.ready_model, args.idle_wait)

    rows = []
    for result in results:
        if "error" in result:
            rows.append([result["dim"], "-", result["label"], "failed", None, None, None, None, None, None, None])
            continue
        for point in result["points"]:
            rows.append(
                [
                    result["dim"],
                    f"{point['count']:,}",
                    result["label"],
                    f"pymilvus {result['pymilvus']} / lite {result['milvus_lite']}",
                    f"{point['insert_s_cumulative']:.1f}s",
                    f"{point['first_search_ms']:.0f}",
                    f"{point['p50_ms']:.1f}",
                    f"{point['p95_ms']:.1f}",
                    point["queries"],
                    C.mib(point["rss_tree"]),
                    C.mib(point["peak_rss_tree"]),
                ]
            )
    print()
    print(
        C.table(
            [
                "dim",
                "vectors",
                "system",
                "version",
                "insert (cumulative)",
                "1st search ms",
                "p50 ms",
                "p95 ms",
                "queries",
                "RSS tree",
                "peak RSS tree",
            ],
            rows,
            title="Search, top_k 20 (petwatch Store: FLAT/IP, min_score 0.0 as the product defaults; "
            "raw pymilvus: FLAT/COSINE); RSS = process tree incl. Milvus Lite's server",
        )
    )

    # Ratios against the baseline measured in this run: petwatch Store (2.5) vs raw 3.x.
    print()
    by = {(r["label"], r["dim"]): r for r in results if "error" not in r}
    ratio_rows = []
    for dim in dims:
        store = by.get(("petwatch Store (2.5)", dim))
        v3 = by.get(("raw pymilvus (3.x)", dim))
        raw25 = by.get(("raw pymilvus (2.5)", dim))
        for i, count in enumerate(counts):
            if not store:
                continue
            s = store["points"][i]
            row = [dim, f"{count:,}"]
            for other in (raw25, v3):
                if other:
                    o = other["points"][i]
                    row += [f"{o['p95_ms'] / s['p95_ms']:.1f}x", f"{o['peak_rss_tree'] / s['peak_rss_tree']:.1f}x"]
                else:
                    row += [None, None]
            ratio_rows.append(row)
    print(
        C.table(
            [
                "dim",
                "vectors",
                "raw 2.5 p95 / Store p95",
                "raw 2.5 RSS / Store RSS",
                "3.x p95 / Store p95",
                "3.x RSS / Store RSS",
            ],
            ratio_rows,
            title="Ratios (> 1: petwatch Store on Milvus Lite 2.5 is faster / smaller)",
        )
    )

    checks = []
    top = counts[-1]
    for dim in dims:
        store = by.get(("petwatch Store (2.5)", dim))
        if not store:
            checks.append((f"dim {dim}: petwatch Store ran", False, "failed"))
            continue
        point = store["points"][-1]
        scale_ok = top >= 100_000
        checks.append(
            (
                f"dim {dim}, {top:,} vectors: p95 <= {P95_TARGET_MS:.0f} ms",
                point["p95_ms"] <= P95_TARGET_MS if scale_ok else None,
                f"{point['p95_ms']:.1f} ms",
            )
        )
        checks.append(
            (
                f"dim {dim}, {top:,} vectors: peak RSS tree <= 1.5 GB",
                point["peak_rss_tree"] <= RSS_TARGET if scale_ok else None,
                f"{point['peak_rss_tree'] / 1e9:.2f} GB",
            )
        )
    if ready:
        o, f = ready["open"], ready["fill"]
        print()
        print(
            C.table(
                ["daemon ready, fresh process", "seconds"],
                [
                    ["import petwatch", f"{o['import_s']:.2f}"],
                    ["model load (Embedder)", f"{o.get('model_load_s', float('nan')):.2f}"],
                    ["Store open (Milvus Lite start + load_collection)", f"{o.get('store_open_s', float('nan')):.2f}"],
                    ["catalog load (Indexer init)", f"{o.get('catalog_load_s', float('nan')):.2f}"],
                    [
                        "Library open without the model (Store + catalog + failure log)",
                        f"{o['store_and_catalog_s']:.2f}",
                    ],
                    ["ready, total from process start", f"{o['ready_total_s']:.2f}"],
                    ["first reconcile walk (all unchanged)", f"{o['reconcile_s']:.2f}"],
                ],
                title=f"Library open with {o['photos']:,} unchanged photos stored = {f['rows']:,} rows "
                f"({f['views']} per photo; {f['identity']}); walk: {o['unchanged']:,} unchanged, "
                f"{o['indexed']} indexed, {o['removed']} removed; RSS tree after open "
                f"{C.mib(o['rss_tree_after_open'])} (petwatch process {C.mib(o['rss_self_after_open'])}, "
                f"Milvus Lite server {C.mib(o['rss_tree_after_open'] - o['rss_self_after_open'])})",
            )
        )
        checks.append(
            (
                f"Store open + catalog load with {o['photos']:,} photos <= {READY_TARGET_S:.0f} s",
                o["store_and_catalog_s"] <= READY_TARGET_S if o["photos"] >= 30_000 else None,
                f"{o['store_and_catalog_s']:.2f} s",
            )
        )
        if o["unchanged"] != o["photos"]:
            checks.append(("the walk found every stored photo unchanged", False, f"{o['unchanged']}/{o['photos']}"))
    print()
    print(C.table(["target", "verdict", "measured"], [[n, C.verdict(ok), m] for n, ok, m in checks]))
    if top < 100_000 or (ready and ready["open"]["photos"] < 30_000):
        print("(n/a: the targets are stated at 100k vectors / 30k photos; run without --quick)")
    path = C.write_results(
        "bench_search",
        {
            "dims": dims,
            "counts": counts,
            "queries": queries,
            "search": results,
            "ready": ready,
            "checks": [{"target": n, "met": ok, "measured": m} for n, ok, m in checks],
            "versions": C.versions("pymilvus", "milvus-lite", "numpy"),
        },
    )
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
