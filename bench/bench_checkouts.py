"""The library's everyday paths, this checkout against another checkout's ``src/``, in one run:
indexing photos/s, a search by an indexed photo, a search by a photo that is not indexed (its
first page and its second: "more hits"), and reading stored rows back. For a change that
reworks the plumbing (the photo record, the search path) and must not cost anything.

    python bench/bench_checkouts.py --baseline /tmp/base/src            # 3 rounds
    python bench/bench_checkouts.py --baseline /tmp/base/src --quick    # 1 round, 60 photos

Each round runs each checkout in a fresh interpreter with its own PETWATCH_HOME (indexed from
scratch), the two checkouts alternating, so that a noisy machine loads both alike; the table
shows medians and the ratio this checkout / baseline (below 1: faster).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import PETS, REPO, add_datasets_arg, clean_env, datasets_dir

# Runs in a fresh interpreter with the checkout under test first on sys.path; only calls both
# checkouts have (Library.reconcile, a search by photo, row): a search is Library.search of one
# query value since petwatch.search, Library.search_reply before.
WORKLOAD = r"""
import json, statistics, sys, time
from petwatch import settings as settings_module
from petwatch.library import Library
try:
    from petwatch.search import SearchQuery

    def search_reply(library, image, top_k, offset=0, folders=()):
        return library.search(SearchQuery(image=image, top_k=top_k, offset=offset), folders)
except ImportError:  # a checkout from before petwatch.search
    def search_reply(library, image, top_k, offset=0, folders=()):
        return library.search_reply(image, top_k, None, None, offset=offset, folders=folders)

album, outside, top_k = sys.argv[1], sys.argv[2], int(sys.argv[3])
settings = settings_module.load()
library = Library(settings)
marks = {}
started = time.monotonic()
report = library.reconcile([album])
marks["index: photos/s"] = report.indexed / (time.monotonic() - started)
paths = sorted(library.indexed_paths())
queries = paths[:: max(1, len(paths) // 15)][:15]

def median_ms(call, items):
    times = []
    for item in items:
        t = time.monotonic()
        call(item)
        times.append((time.monotonic() - t) * 1000)
    return statistics.median(times)

search_reply(library, queries[0], top_k, folders=[album])  # warm
marks["search, indexed photo: ms"] = median_ms(
    lambda q: search_reply(library, q, top_k, folders=[album]), queries)
marks["search, new photo, page 1: ms"] = median_ms(
    lambda _: search_reply(library, outside, top_k, folders=[album]), range(5))
marks["search, new photo, page 2: ms"] = median_ms(
    lambda _: search_reply(library, outside, top_k, offset=top_k, folders=[album]), range(5))
marks["read 50 rows back: ms"] = median_ms(lambda _: [library.row(p) for p in paths[:50]], range(3))
library.close()
print(json.dumps(marks))
"""

HIGHER_IS_BETTER = {"index: photos/s"}


def measure(src: Path, work: Path, album: Path, outside: Path, top_k: int, round_number: int) -> dict[str, float]:
    home = work / f"home-{round_number}-{abs(hash(str(src)))}"
    env = clean_env(PYTHONPATH=str(src), PETWATCH_HOME=str(home))
    done = subprocess.run(
        [sys.executable, "-c", WORKLOAD, str(album), str(outside), str(top_k)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"the workload failed on {src}:\n{done.stderr[-4000:]}")
    shutil.rmtree(home, ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the src/ folder of the checkout to compare with")
    parser.add_argument("--quick", action="store_true", help="one round of 60 photos instead of three of 150")
    parser.add_argument("--top-k", type=int, default=20)
    add_datasets_arg(parser)
    args = parser.parse_args()
    rounds, count = (1, 60) if args.quick else (3, 150)
    pets = sorted((datasets_dir(args.datasets) / PETS).glob("*/*.jpg"))
    if len(pets) < count + 1:
        print(f"SKIPPED: {datasets_dir(args.datasets) / PETS} has {len(pets)} photos, {count + 1} needed")
        return
    work = Path(tempfile.mkdtemp(prefix="pw-checkouts-", dir="/tmp"))
    try:
        album = work / "album"
        album.mkdir()
        for source in pets[1 : count + 1]:
            shutil.copyfile(source, album / f"{source.parent.name}_{source.name}")
        outside = work / "query.jpg"  # a pet photo the library does not hold
        shutil.copyfile(pets[0], outside)
        checkouts = {"baseline": args.baseline.resolve(), "this checkout": REPO / "src"}
        runs: dict[str, dict[str, list[float]]] = {label: {} for label in checkouts}
        for number in range(rounds):
            order = list(checkouts.items()) if number % 2 == 0 else list(reversed(checkouts.items()))
            for label, src in order:
                for name, value in measure(src, work, album, outside, args.top_k, number).items():
                    runs[label].setdefault(name, []).append(value)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = {name: statistics.median(values) for name, values in runs["baseline"].items()}
    now = {name: statistics.median(values) for name, values in runs["this checkout"].items()}
    print(f"{count} Oxford pet photos, top_k {args.top_k}, median of {rounds} round(s), checkouts alternating")
    print(f"| {'measure':<32} | baseline | this checkout | ratio |")
    print(f"|{'-' * 34}|---------:|--------------:|------:|")
    for name in now:
        ratio = now[name] / base[name] if base[name] else float("nan")
        better = "higher is better" if name in HIGHER_IS_BETTER else ""
        print(f"| {name:<32} | {base[name]:8.2f} | {now[name]:13.2f} | {ratio:5.2f} | {better}")


if __name__ == "__main__":
    main()
