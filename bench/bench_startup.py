"""What a command costs to start without a daemon: `petwatch search` and `petwatch index` on an
empty folder, whole (fresh processes, wall time) and by phase (import, model load, Milvus Lite
start and catalog, the query, close), for this checkout and for a baseline checkout in the
same run.

    python bench/bench_startup.py --baseline /tmp/base22/src            # 3 rounds
    python bench/bench_startup.py --baseline /tmp/base22/src --quick    # 1 round

The library is 20 Oxford pets photos (or scikit-image's bundled photos), indexed once per
checkout into a private PETWATCH_HOME; the query is one of them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, add_datasets_arg, clean_env, datasets_dir

# Runs inside a fresh interpreter with the checkout under test first on sys.path; uses only
# calls both checkouts have.
PHASES = r"""
import json, sys, time
marks = {}
t = time.monotonic()
from petwatch import settings as settings_module
from petwatch.library import Library, open_embedder
marks["import"] = time.monotonic() - t
t = time.monotonic()
settings = settings_module.load()
embedder = open_embedder(settings)
marks["model"] = time.monotonic() - t
t = time.monotonic()
library = Library(settings, embedder)
marks["milvus_and_catalog"] = time.monotonic() - t
t = time.monotonic()
library.search_reply(sys.argv[1], 5, None, None, folders=[])
marks["query"] = time.monotonic() - t
t = time.monotonic()
library.close()
marks["close"] = time.monotonic() - t
print(json.dumps(marks))
"""


def photos_into(folder: Path, datasets: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pets = sorted((datasets / "oxford-pets-sample").glob("*/*.jpg"))[::18][:20]
    if pets:
        for source in pets:
            shutil.copyfile(source, folder / f"{source.parent.name}_{source.name}")
    else:
        import numpy as np
        import skimage.data
        from PIL import Image

        for name in ("astronaut", "chelsea", "coffee", "rocket", "horse"):
            array = np.asarray(getattr(skimage.data, name)())
            if array.ndim == 2:
                array = np.stack([array] * 3, axis=-1)
            Image.fromarray(array.astype("uint8")).save(folder / f"{name}.jpg")
    return sorted(folder.iterdir())[0]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return time.monotonic() - started, done


def measure(src: Path, work: Path, query: Path, album: Path, rounds: int) -> dict[str, float]:
    home = work / f"home-{abs(hash(str(src)))}"
    env = clean_env(PYTHONPATH=str(src), PETWATCH_HOME=str(home))
    petwatch = [sys.executable, "-m", "petwatch"]
    timed([*petwatch, "index", str(album)], env)  # the library, once
    (work / "empty").mkdir(exist_ok=True)
    runs: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, command in (
            ("cli: petwatch --version", [*petwatch, "--version"]),
            ("cli: search (no daemon)", [*petwatch, "search", str(query), "--top-k", "5"]),
            ("cli: index EMPTY (no daemon)", [*petwatch, "index", str(work / "empty")]),
        ):
            runs.setdefault(name, []).append(timed(command, env)[0])
        _, phases = timed([sys.executable, "-c", PHASES, str(query)], env)
        for name, seconds in json.loads(phases.stdout).items():
            runs.setdefault(f"phase: {name}", []).append(seconds)
    return {name: statistics.median(values) for name, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the src/ folder of the checkout to compare with")
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    add_datasets_arg(parser)
    args = parser.parse_args()
    rounds = 1 if args.quick else 3
    work = Path(tempfile.mkdtemp(prefix="pw-startup-", dir="/tmp"))
    try:
        query = photos_into(work / "album", datasets_dir(args.datasets))
        results = {}
        for label, src in (("baseline", args.baseline.resolve()), ("this checkout", REPO / "src")):
            results[label] = measure(src, work, query, work / "album", rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base, now = results["baseline"], results["this checkout"]
    print(f"median of {rounds} round(s), seconds; phases measured in one process in that order")
    print(f"| {'measure':<32} | baseline | this checkout | ratio |")
    print(f"|{'-' * 34}|---------:|--------------:|------:|")
    for name in now:
        print(f"| {name:<32} | {base[name]:8.2f} | {now[name]:13.2f} | {now[name] / base[name]:5.2f} |")


if __name__ == "__main__":
    main()
