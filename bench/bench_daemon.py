"""The daemon as a user meets it: how soon a new photo is searchable, a flood of photos, and
start-up with a large index. Real `petwatch daemon` processes, real inotify, real Milvus Lite.

    python bench/bench_daemon.py                  # all three parts, full size
    python bench/bench_daemon.py --quick          # 30 / 1,000 / 3,000 photos (a few minutes)
    python bench/bench_daemon.py --only start --start-n 30000

Parts and targets:

searchable  N (30) camera-size JPEGs, each copied into a watched folder slowly, in 8 chunks
            with pauses (a USB stick, a network share), one after another while the daemon
            runs with its default settings. Measured per photo: its last write -> the daemon
            answers for it (GET /photo; the row is then in Milvus and found by search; each
            photo is also searched for at the end). Target: p95 <= 3 s.
flood       N (10,000) small distinct JPEGs copied into a watched folder at once. Measured:
            time until all are indexed, photos/s, and the peak RSS of the daemon plus its
            Milvus Lite child (psutil, sampled every 50 ms). Checked: every photo indexed,
            none embedded twice (the daemon's 'indexed' events name each path once), one row
            per photo in Milvus, no failures.
start       The daemon started on N (30,000) unchanged, already indexed photos. Measured:
            start -> READY=1 (sd_notify, on a real datagram socket), and start -> idle (the
            start-up walk done, all N found unchanged). Target: READY=1 within 10 s.
            The set is built once and cached (--cache): M distinct small JPEGs, each copied
            N/M times under its own name, indexed once by the daemon (copies reuse their
            vector, so building takes minutes, not hours). A start never reads unchanged
            files, so their content does not matter here; their number does.

Figures depend on the machine and on what else runs on it: the JSON result records both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "petwatch-bench-daemon"
SEARCHABLE_P95_TARGET_S = 3.0
START_READY_TARGET_S = 10.0
DEFAULT_MODEL = None  # None: petwatch's own default


# --- a daemon process --------------------------------------------------------------------------
class Daemon:
    """``petwatch daemon`` on a private home, with an sd_notify socket to hear READY=1 on."""

    def __init__(self, home: Path, folders: list[Path], model: str | None, **env: str) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.notify_path = home / "notify.sock"
        self.notify_path.unlink(missing_ok=True)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        extra = {
            "PETWATCH_HOME": str(home),
            "PETWATCH_FOLDERS": json.dumps([str(f) for f in folders]),
            "NOTIFY_SOCKET": str(self.notify_path),
            **env,
        }
        if model:
            extra["PETWATCH_MODEL"] = model
        self.env = C.clean_env(**extra)
        self.log = home / "daemon.log"
        self.process: subprocess.Popen | None = None
        self.started = 0.0
        self.ready_s: float | None = None

    @property
    def socket_path(self) -> Path:
        return self.home / "run" / "petwatch.sock"

    def client(self):
        from petwatch.client import DaemonClient

        return DaemonClient(self.socket_path, timeout=120)

    def start(self, timeout: float = 600) -> Daemon:
        with open(self.log, "ab") as log:
            self.started = time.monotonic()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "petwatch", "daemon"], env=self.env, stdout=log, stderr=log
            )
        deadline = self.started + timeout
        self.notify.settimeout(0.2)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                message = self.notify.recv(4096).decode()
            except TimeoutError:
                continue
            if "READY=1" in message.splitlines():
                self.ready_s = time.monotonic() - self.started
                with self.client() as client:
                    client.status()
                return self
        raise RuntimeError(f"no READY=1 within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def wait_idle(self, timeout: float = 7200, interval: float = 0.2) -> dict:
        deadline = time.monotonic() + timeout
        calm = 0
        with self.client() as client:
            while time.monotonic() < deadline:
                status = client.status()
                calm = calm + 1 if status["state"] == "idle" and status["queued"] == 0 else 0
                if calm >= 2:
                    return status
                time.sleep(interval)
        raise RuntimeError(f"daemon still busy after {timeout}s")

    def stop(self) -> int:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.notify.close()
        return self.process.returncode if self.process else 0


class Events:
    """The daemon's server-sent events, recorded on a thread."""

    def __init__(self, daemon: Daemon) -> None:
        self.client = daemon.client()
        self.items: list[tuple[str, dict]] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(60):
            raise RuntimeError("no event stream")

    def _read(self) -> None:
        try:
            for kind, data in self.client.events():
                self.items.append((kind, data))
                self.ready.set()
        except Exception:  # noqa: BLE001 - ends with the daemon
            pass

    def totals(self) -> dict:
        total = {"indexed": 0, "reused": 0, "removed": 0, "skipped": 0, "failed": 0}
        for kind, data in list(self.items):
            if kind == "report":
                for key in ("indexed", "reused", "removed"):
                    total[key] += data[key]
                total["skipped"] += len(data["skipped"])
                total["failed"] += len(data["failed"])
        return total

    def stored_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for kind, data in list(self.items):
            if kind == "indexed":
                for path in data["paths"]:
                    counts[path] = counts.get(path, 0) + 1
        return counts


# --- photo sets ----------------------------------------------------------------------------------
def small_jpegs(out: Path, count: int, start: int = 0, size: tuple[int, int] = (160, 120)) -> list[Path]:
    """``count`` distinct small JPEGs (smooth colour fields with noise), cached in ``out``."""
    import numpy as np
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    made = 0
    began = time.monotonic()
    for i in range(start, start + count):
        path = out / f"small_{i:06d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng(i)
        base = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), "RGB")
        pixels = np.asarray(base.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
        pixels = np.clip(pixels + rng.integers(-12, 12, pixels.shape), 0, 255).astype(np.uint8)
        tmp = path.with_suffix(".tmp")
        Image.fromarray(pixels, "RGB").save(tmp, "JPEG", quality=85)
        os.replace(tmp, path)
        made += 1
        if made % 5000 == 0:
            print(f"  generated {made} small photos ({time.monotonic() - began:.0f}s)", flush=True)
    return paths


def copy_slowly(source: Path, target: Path, chunks: int, pause: float) -> float:
    data = source.read_bytes()
    size = -(-len(data) // chunks)
    with open(target, "wb") as out:
        for i in range(chunks):
            out.write(data[i * size : (i + 1) * size])
            out.flush()
            os.fsync(out.fileno())
            last = time.monotonic()
            if i < chunks - 1:
                time.sleep(pause)
    return last


# --- part 1: time to searchable ------------------------------------------------------------------
def bench_searchable(args, work: Path, datasets: Path | None) -> dict:
    from petwatch.client import DaemonError

    n = args.searchable_n
    print(f"\n== searchable: {n} camera-size photos copied slowly into a watched folder", flush=True)
    sources = C.make_camera_jpegs(args.cache / "camera", n, datasets, log=lambda m: print(m, flush=True))
    album = work / "searchable" / "album"
    album.mkdir(parents=True)
    daemon = Daemon(work / "searchable" / "home", [album], args.model).start()
    try:
        daemon.wait_idle()
        events = Events(daemon)
        last_write: dict[str, float] = {}
        found: dict[str, float] = {}
        done = threading.Event()

        def poll() -> None:
            with daemon.client() as client:
                while not done.is_set() or len(found) < len(last_write):
                    for path in [p for p in list(last_write) if p not in found]:
                        try:
                            client.photo(path)
                        except DaemonError:
                            continue
                        found[path] = time.monotonic()
                    time.sleep(0.02)
                    if done.is_set() and time.monotonic() - max(last_write.values()) > 120:
                        return

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        for source in sources:
            target = album / source.name
            last_write[str(target)] = copy_slowly(source, target, args.chunks, args.pause)
        done.set()
        poller.join()
        daemon.wait_idle()
        latencies = sorted(found[p] - last_write[p] for p in found)
        missing = [p for p in last_write if p not in found]
        with daemon.client() as client:
            failures = client.failures()
            scores = []
            for source in sources[: min(n, 10)]:  # the whole file was embedded: a copy finds it ~1.0
                hits = client.search(image=str(source), top_k=3)["hits"]
                scores.append(next((h["score"] for h in hits if Path(h["path"]).name == source.name), 0.0))
        totals = events.totals()
    finally:
        daemon.stop()
    result = {
        "photos": n,
        "chunks": args.chunks,
        "pause_s": args.pause,
        "settle_s": "default",
        "p50_s": C.percentile(latencies, 50) if latencies else None,
        "p95_s": C.percentile(latencies, 95) if latencies else None,
        "max_s": latencies[-1] if latencies else None,
        "missing": missing,
        "failures": failures,
        "embedded": totals["indexed"],
        "min_self_score": min(scores) if scores else None,
        "photo_mb": round(sum(s.stat().st_size for s in sources) / len(sources) / 2**20, 1),
    }
    result["met"] = (
        bool(latencies)
        and not missing
        and not failures
        and result["p95_s"] <= SEARCHABLE_P95_TARGET_S
        and totals["indexed"] == n
    )
    return result


# --- part 2: a flood ----------------------------------------------------------------------------
def bench_flood(args, work: Path) -> dict:
    n = args.flood_n
    print(f"\n== flood: {n} small photos copied into a watched folder at once", flush=True)
    sources = small_jpegs(args.cache / "small", n)
    album = work / "flood" / "album"
    album.mkdir(parents=True)
    daemon = Daemon(work / "flood" / "home", [album], args.model).start()
    try:
        daemon.wait_idle()
        events = Events(daemon)
        baseline_rss = C.tree_rss(daemon.process.pid)
        with C.PeakRSS(daemon.process.pid) as peak:
            started = time.monotonic()
            for source in sources:
                shutil.copyfile(source, album / source.name)
            copied_s = time.monotonic() - started
            deadline = time.monotonic() + args.timeout
            with daemon.client() as client:
                while time.monotonic() < deadline:
                    status = client.status()
                    if status["indexed"] >= n and status["state"] == "idle":
                        break
                    time.sleep(0.2)
            took = time.monotonic() - started
            status = daemon.wait_idle()
        with daemon.client() as client:
            failures = client.failures()
        totals = events.totals()
        counts = events.stored_counts()
    finally:
        daemon.stop()
    rows, distinct = milvus_rows(work / "flood" / "home")
    twice = sorted(p for p, c in counts.items() if c > 1)
    result = {
        "photos": n,
        "copy_s": round(copied_s, 1),
        "all_indexed_s": round(took, 1),
        "photos_per_s": round(n / took, 1),
        "indexed": status["indexed"],
        "embedded": totals["indexed"],
        "reused": totals["reused"],
        "stored_twice": twice[:10],
        "milvus_rows": rows,
        "milvus_paths": distinct,
        "failures": len(failures),
        "baseline_rss": baseline_rss,
        "peak_rss": peak.peak,
    }
    result["met"] = (
        status["indexed"] == n and totals["indexed"] == n and not twice and rows == distinct == n and not failures
    )
    return result


def milvus_rows(home: Path) -> tuple[int, int]:
    """(rows, distinct paths) in the daemon's Milvus Lite DB, read after it stopped."""
    import logging
    import warnings

    logging.getLogger("pymilvus").setLevel(logging.ERROR)
    with warnings.catch_warnings():  # milvus-lite imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        from pymilvus import MilvusClient

        client = MilvusClient(uri=str(home / "data" / "milvus.db"))
    try:
        paths: list[str] = []
        iterator = client.query_iterator("photos", batch_size=5000, filter="view == 0", output_fields=["path"])
        while batch := iterator.next():
            paths += [row["path"] for row in batch]
        iterator.close()
    finally:
        client.close()
    return len(paths), len(set(paths))


# --- part 3: start-up with a large index ---------------------------------------------------------
def start_set(args) -> tuple[Path, Path]:
    """(folder of N photos, home with them indexed), built once and cached."""
    n, distinct = args.start_n, min(args.start_n, args.start_distinct)
    root = args.cache / f"start-{n}-{distinct}-{args.model or 'default'}"
    photos, home = root / "photos", root / "home"
    marker = root / "built.json"
    if marker.exists():
        return photos, home
    print(f"  building the start set: {n} photos ({distinct} distinct), indexed once (cached in {root})", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    originals = small_jpegs(args.cache / "small", distinct)
    photos.mkdir(parents=True)
    for i in range(n):  # 1,000 per sub-folder, as a camera's DCIM does
        folder = photos / f"{i // 1000:03d}"
        folder.mkdir(exist_ok=True)
        shutil.copyfile(originals[i % distinct], folder / f"IMG_{i:06d}.jpg")
    began = time.monotonic()
    daemon = Daemon(home, [photos], args.model).start()
    try:
        status = daemon.wait_idle(timeout=6 * 3600, interval=2)
    finally:
        daemon.stop()
    if status["indexed"] != n:
        raise RuntimeError(f"start set: {status['indexed']} of {n} indexed; see {daemon.log}")
    marker.write_text(json.dumps({"photos": n, "distinct": distinct, "build_s": time.monotonic() - began}))
    print(f"  built in {time.monotonic() - began:.0f}s", flush=True)
    return photos, home


def bench_start(args) -> dict:
    n = args.start_n
    print(f"\n== start: the daemon started on {n} unchanged, indexed photos", flush=True)
    photos, home = start_set(args)
    runs = []
    for i in range(args.start_runs):
        daemon = Daemon(home, [photos], args.model)
        daemon.start()
        try:
            status = daemon.wait_idle(interval=0.05)
            idle_s = time.monotonic() - daemon.started
            rss = C.tree_rss(daemon.process.pid)
        finally:
            code = daemon.stop()
        runs.append(
            {
                "ready_s": round(daemon.ready_s, 2),
                "idle_s": round(idle_s, 2),
                "indexed": status["indexed"],
                "rss": rss,
                "exit": code,
            }
        )
        print(
            f"  run {i + 1}: READY=1 after {daemon.ready_s:.2f}s, idle (walk done) after {idle_s:.2f}s, "
            f"{status['indexed']} photos, {C.mib(rss)}",
            flush=True,
        )
    ready = statistics.median(r["ready_s"] for r in runs)
    idle = statistics.median(r["idle_s"] for r in runs)
    return {
        "photos": n,
        "runs": runs,
        "ready_s": ready,
        "idle_s": idle,
        "met": ready <= START_READY_TARGET_S and all(r["indexed"] == n for r in runs),
    }


# --- main ----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_datasets_arg(parser)
    parser.add_argument("--only", default="searchable,flood,start", help="comma-separated parts")
    parser.add_argument("--quick", action="store_true", help="30 / 1,000 / 3,000 photos")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model (default: petwatch's default)")
    parser.add_argument("--searchable-n", type=int, default=30)
    parser.add_argument("--chunks", type=int, default=8, help="chunks per slow copy")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between a slow copy's chunks")
    parser.add_argument("--flood-n", type=int, default=None, help="photos in the flood (default 10,000)")
    parser.add_argument("--start-n", "--n", type=int, default=None, help="indexed photos at start (default 30,000)")
    parser.add_argument("--start-distinct", type=int, default=500, help="distinct photos in the start set")
    parser.add_argument("--start-runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=7200, help="give up on the flood after this long")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"cached photo sets and index (default {CACHE})")
    args = parser.parse_args()
    args.flood_n = args.flood_n or (1000 if args.quick else 10_000)
    args.start_n = args.start_n or (3000 if args.quick else 30_000)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    C.strip_petwatch_env()
    datasets = C.datasets_dir(args.datasets)
    if not datasets.is_dir():
        datasets = None
    args.cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pwb-", dir="/tmp"))  # short: Unix socket paths
    results: dict = {}
    try:
        if "searchable" in parts:
            results["searchable"] = bench_searchable(args, work, datasets)
        if "flood" in parts:
            results["flood"] = bench_flood(args, work)
        if "start" in parts:
            results["start"] = bench_start(args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, args)


def report(results: dict, args) -> None:
    rows, checks = [], []
    if "searchable" in results:
        r = results["searchable"]
        rows += [
            ["searchable p50 (last write -> found)", f"{r['p50_s']:.2f} s", "", ""],
            ["searchable p95", f"{r['p95_s']:.2f} s", f"<= {SEARCHABLE_P95_TARGET_S:.0f} s", C.verdict(r["met"])],
            ["searchable max", f"{r['max_s']:.2f} s", "", ""],
            [
                "  photos / embedded once / failures / missing",
                f"{r['photos']} / {r['embedded']} / {len(r['failures'])} / {len(r['missing'])}",
                "",
                "",
            ],
            ["  lowest score, copy vs its source", f"{r['min_self_score']:.4f}", "~1.0", ""],
        ]
        checks.append(
            {
                "target": f"time to searchable p95 <= {SEARCHABLE_P95_TARGET_S} s",
                "measured": f"{r['p95_s']:.2f} s",
                "met": r["met"],
            }
        )
    if "flood" in results:
        r = results["flood"]
        rows += [
            [
                f"flood: {r['photos']} photos all indexed",
                f"{r['all_indexed_s']:.1f} s ({r['photos_per_s']}/s)",
                "all, once",
                C.verdict(r["met"]),
            ],
            [
                "  indexed / embedded / rows in Milvus / twice",
                f"{r['indexed']} / {r['embedded']} / {r['milvus_rows']} / {len(r['stored_twice'])}",
                "",
                "",
            ],
            ["  peak RSS, daemon + Milvus Lite", C.mib(r["peak_rss"]), "", ""],
            ["  RSS before the flood", C.mib(r["baseline_rss"]), "", ""],
        ]
        checks.append(
            {
                "target": f"{r['photos']} copied at once: all indexed, none twice",
                "measured": f"{r['indexed']} indexed, {len(r['stored_twice'])} twice, peak {C.mib(r['peak_rss'])}",
                "met": r["met"],
            }
        )
    if "start" in results:
        r = results["start"]
        rows += [
            [
                f"start with {r['photos']} indexed: READY=1",
                f"{r['ready_s']:.2f} s",
                f"<= {START_READY_TARGET_S:.0f} s",
                C.verdict(r["met"]),
            ],
            ["  start -> idle (start-up walk done)", f"{r['idle_s']:.2f} s", "", ""],
        ]
        checks.append(
            {
                "target": f"start with {r['photos']} indexed: READY=1 <= {START_READY_TARGET_S} s",
                "measured": f"{r['ready_s']:.2f} s",
                "met": r["met"],
            }
        )
    print()
    print(C.table(["measure", "figure", "target", ""], rows, title="petwatch daemon"))
    model = args.model or "default (settings)"
    path = C.write_results(
        "bench_daemon",
        {
            "model": model,
            "results": results,
            "checks": checks,
            "versions": C.versions("watchdog", "pymilvus", "milvus-lite", "torch"),
        },
    )
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
