"""Pet profiles: how well "all photos of my pet" works, and what each improvement buys.

    python bench/bench_pets.py             # everything (~10 min on 2 cores)
    python bench/bench_pets.py --quick     # no real crops, no indexing cost (~4 min)

Each of the 37 Oxford-IIIT Pet breeds plays "a pet": its profile is built from 3 of its 10
photos (5 random draws per breed, seeded), the other 7 are what the album should find, and
everything else in the pool (the 360 photos of other breeds + the landscapes) is a
distractor. Reported, averaged over the 185 profiles: mean average precision of the ranking
(mAP), and recall and precision of the album, i.e. at the profile's own threshold.

Two pools:
  scenes  the photos as they are (the pet usually fills the frame);
  small   every pet photo pasted at 30% of the width onto a landscape (1200x800), the pet
          small in the frame; the profile's examples stay the original photos (synthetic:
          a photo-in-photo paste, not a real dog in a park).

Views (how a photo is embedded; the query/example is always its whole-image vector):
  whole    one vector per photo at the model's input size (petwatch before this change);
  regions  petwatch's region views (embed.py): the whole-image vector (view 0) plus the 4
           average-pooled corner windows (60%) of a second forward pass at 1.5x the input
           size (views 1-4); a photo scores its best view;
  crops    4 real corner crops (60% x 60%), each a full forward pass, plus the whole view.

Methods:
  single photo   plain `petwatch search` from one example (each of the 3, averaged); its
                 threshold has no leave-one-out, so pets.LOO_ONE_EXAMPLE stands in;
  profile mean   the product: normalised mean of the 3 examples (pets.prototype);
  profile max    several prototypes: a photo's best similarity to any single example;
  + marks        the user reviews the album's top 5 and marks each yes or not; the profile
                 then adds the confirmed photos to its mean, demotes look-alikes of the
                 rejected ones and raises its threshold towards them (pets.py). Scored on
                 the photos the user did not review, against the profile before the marks
                 on those same photos.

Thresholds follow pets.threshold: between the pool's median score and the examples'
leave-one-out mean (the daemon samples 256 library photos for the median; here the pool is
the library). Embeddings come from petwatch's Embedder, decoded as the indexer decodes them,
and are cached in memory for the run. ``--cost`` (default on, off with --quick) also indexes
the pet sample with region views off and on through Library.indexer.reconcile and reports
images/s and the Milvus Lite file size.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

EXAMPLES = 3
DRAWS = 5
REVIEW = 5  # photos the simulated user reviews at the top of the album
PASTE_WIDTH = 0.3
CANVAS = (1200, 800)
CROP_BOXES = [(0, 0, 0.6, 0.6), (0.4, 0, 1, 0.6), (0, 0.4, 0.6, 1), (0.4, 0.4, 1, 1)]


# --- the pool ----------------------------------------------------------------------------------
def load_pool(root: Path) -> tuple[list[Path], list[str], list[Path]]:
    pets, reason = C.dataset_part(root, C.PETS)
    if pets is None:
        print(f"SKIP: {reason}")
        sys.exit(0)
    photos = sorted(p for p in pets.glob("*/*") if p.suffix.lower() in C.PHOTO_SUFFIXES)
    labels = [p.parent.name for p in photos]
    lands, _ = C.dataset_part(root, C.LANDSCAPES)
    landscapes = sorted(p for p in lands.glob("*") if p.suffix.lower() in C.PHOTO_SUFFIXES) if lands else []
    return photos, labels, landscapes


def open_photo(path: Path, min_side: int | None):
    from petwatch import photos

    return photos.decode(photos.read_photo(path, 10**9), min_side)


def composite(pet: Path, backgrounds: list[Path]):
    """The pet photo pasted small onto a landscape, placed by a hash of its name."""
    from PIL import Image

    seed = int(hashlib.blake2b(pet.name.encode(), digest_size=8).hexdigest(), 16)
    width, height = CANVAS
    if backgrounds:
        land = open_photo(backgrounds[seed % len(backgrounds)], 900)
        lw, lh = land.size
        if lw / lh > width / height:
            crop = lh * width / height
            land = land.crop(((lw - crop) / 2, 0, (lw + crop) / 2, lh))
        else:
            crop = lw * height / width
            land = land.crop((0, (lh - crop) / 2, lw, (lh + crop) / 2))
        canvas = land.resize(CANVAS, Image.Resampling.LANCZOS)
    else:
        canvas = Image.new("RGB", CANVAS, (90, 120, 70))
    photo = open_photo(pet, 400)
    pw = int(width * PASTE_WIDTH)
    ph = min(int(photo.size[1] * pw / photo.size[0]), int(height * 0.6))
    pw = int(photo.size[0] * ph / photo.size[1])
    photo = photo.resize((pw, ph), Image.Resampling.LANCZOS)
    x = (seed >> 8) % (width - pw)
    y = int(height * 0.3) + (seed >> 24) % (height - ph - int(height * 0.3))
    canvas.paste(photo, (x, y))
    return canvas


# --- embeddings (cached in memory) -------------------------------------------------------------
def views_of(embedder, batch):
    """Every view's unit vector, without pet focus (``preprocess_views`` tensors in): (batch,
    views, dim). The bench compares view schemes on the network itself, so it reaches past
    Embedder.embed_batch, which adds the pet-focused crop pass."""
    from petwatch.embed import _unit_rows

    return embedder._views(batch, _unit_rows(embedder._features([t[0] for t in batch])[0]))


class Embeddings:
    def __init__(self, model: str) -> None:
        from petwatch.embed import Embedder

        self.whole = Embedder(model, device="cpu")
        self.regions = Embedder(model, device="cpu", region_views=True)
        self.cache: dict[tuple[str, str], object] = {}
        self.ms_per_image: dict[str, float] = {}

    def views(self, scheme: str, key: str, images) -> np.ndarray:
        """(n, views, dim) for ``images`` (a list of zero-arg callables giving PIL images)."""
        import numpy as np

        if (scheme, key) in self.cache:
            return self.cache[(scheme, key)]
        started = time.perf_counter()
        forward_s = 0.0
        out = []
        embedder = self.regions if scheme == "regions" else self.whole
        min_side = embedder.decode_min_side if scheme != "crops" else int(embedder.decode_min_side / 0.6) + 1

        def prepare(make):  # one tuple of tensors per item of views_of
            image = make(min_side)
            items = [embedder.preprocess_views(image)]
            if scheme == "crops":
                w, h = image.size
                items += [
                    (embedder.transform(image.crop((round(a * w), round(b * h), round(c * w), round(d * h)))),)
                    for a, b, c, d in CROP_BOXES
                ]
            return items

        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            for start in range(0, len(images), 16):
                prepared = list(pool.map(prepare, images[start : start + 16]))
                flat = [t for tensors in prepared for t in tensors]
                t0 = time.perf_counter()
                vectors = views_of(embedder, flat)  # (n * items, views, dim)
                forward_s += time.perf_counter() - t0
                per = len(prepared[0])
                vectors = vectors.reshape(len(prepared), per * vectors.shape[1], -1)
                out.append(vectors)
        result = np.concatenate(out)
        self.cache[(scheme, key)] = result
        self.ms_per_image.setdefault(scheme, forward_s / len(images) * 1000)
        print(
            f"  embedded {len(images)} {key} photos, {scheme} views: {time.perf_counter() - started:.0f}s", flush=True
        )
        return result


# --- scoring, with petwatch's own functions ------------------------------------------------------
def average_precision(scores, positive) -> float:
    import numpy as np

    order = np.argsort(-scores, kind="stable")
    relevant = positive[order]
    if not relevant.any():
        return float("nan")
    precision = np.cumsum(relevant) / np.arange(1, len(relevant) + 1)
    return float((precision * relevant).sum() / relevant.sum())


def recall_precision(scores, positive, cut: float) -> tuple[float, float]:
    chosen = scores >= cut
    found = int((chosen & positive).sum())
    return found / max(int(positive.sum()), 1), (found / int(chosen.sum()) if chosen.any() else 1.0)


def profile_scores(pool, positives, negatives=None):
    """Every pool photo's score against a profile, as pets.score_views computes it."""
    import numpy as np

    from petwatch import pets

    proto = pets.prototype(positives)
    best = (pool @ proto).max(axis=1)
    if negatives is None or len(negatives) == 0:
        return best, proto
    worst = (pool @ negatives.T).max(axis=(1, 2))
    penalty = np.maximum(0.0, worst - best + pets.SUPPRESS_MARGIN)
    return best - penalty, proto


def evaluate(pool, labels, example_vectors, trials, with_marks: bool) -> dict[str, list]:
    """Per-trial (AP, recall, precision) for each method on one pool."""
    import numpy as np

    from petwatch import pets

    results: dict[str, list] = {"single photo": [], "profile mean": [], "profile max": []}
    if with_marks:
        results.update({"before marks": [], "+ marks": []})
    for breed, chosen in trials:
        keep = np.ones(len(pool), bool)
        keep[chosen] = False
        candidates = pool[keep]
        positive = (labels == breed)[keep]
        examples = example_vectors[chosen]
        for vector in examples:  # plain search from one photo
            scores = (candidates @ vector).max(axis=1)
            cut = pets.threshold(scores, vector[None])
            results["single photo"].append(
                (average_precision(scores, positive), *recall_precision(scores, positive, cut))
            )
        scores, proto = profile_scores(candidates, examples)
        cut = pets.threshold(scores, examples)
        results["profile mean"].append((average_precision(scores, positive), *recall_precision(scores, positive, cut)))
        sims = (candidates @ examples.T).max(axis=1)  # (n, k): each example's best view
        max_scores = sims.max(axis=1)
        loo = [float((np.delete(examples, i, 0) @ examples[i]).max()) for i in range(len(examples))]
        max_cut = float(np.median(max_scores)) + pets.GAMMA * (np.mean(loo) - float(np.median(max_scores)))
        results["profile max"].append(
            (average_precision(max_scores, positive), *recall_precision(max_scores, positive, max_cut))
        )
        if not with_marks:
            continue
        # The user reviews the album's top REVIEW photos: each is a yes or a not.
        top = np.argsort(-scores, kind="stable")[:REVIEW]
        best_view = (candidates @ proto).argmax(axis=1)
        yes = [i for i in top if positive[i]]
        no = [i for i in top if not positive[i]]
        rest = np.ones(len(candidates), bool)
        rest[top] = False
        if not positive[rest].any():
            continue
        positives = np.concatenate([examples, candidates[yes, best_view[yes]]]) if yes else examples
        negatives = candidates[no, best_view[no]] if no else None
        after, after_proto = profile_scores(candidates, positives, negatives)
        rejected = pets.rejected_scores(after_proto, negatives) if negatives is not None else []
        after_cut = pets.threshold(after, examples, rejected)
        results["before marks"].append(
            (average_precision(scores[rest], positive[rest]), *recall_precision(scores[rest], positive[rest], cut))
        )
        results["+ marks"].append(
            (average_precision(after[rest], positive[rest]), *recall_precision(after[rest], positive[rest], after_cut))
        )
    return results


def trials_for(labels) -> list[tuple[str, np.ndarray]]:
    import numpy as np

    found = []
    for breed in sorted(set(labels) - {"_landscape"}):
        members = np.where(labels == breed)[0]
        for draw in range(DRAWS):
            rng = np.random.default_rng(zlib.crc32(f"{breed}/{draw}".encode()))
            found.append((breed, rng.choice(members, EXAMPLES, replace=False)))
    return found


def summarise(rows: list) -> tuple[float, float, float]:
    import numpy as np

    array = np.asarray(rows, dtype=np.float64)
    return tuple(float(np.nanmean(array[:, i])) for i in range(3))


# --- indexing cost ---------------------------------------------------------------------------------
def index_cost(model: str, folder: Path, region_views: bool) -> dict:
    """Index ``folder`` from scratch in a temp home; images/s and the Milvus Lite file size."""
    from petwatch.library import Library
    from petwatch.settings import Settings

    home = tempfile.mkdtemp(prefix="petwatch-bench-pets-")
    os.environ["PETWATCH_HOME"] = home
    try:
        library = Library(Settings(model=model, region_views=region_views))
        started = time.perf_counter()
        report = library.indexer.reconcile([str(folder)])
        seconds = time.perf_counter() - started
        rows = library.store.client.query(library.store.collection, filter="", output_fields=["count(*)"])
        library.close()
        db = Path(home) / "data"
        size = sum(p.stat().st_size for p in db.rglob("*") if p.is_file() and "milvus" in p.name)
        photos = report.indexed + report.reused
        return {
            "region_views": region_views,
            "photos": photos,
            "rows": int(rows[0]["count(*)"]),
            "seconds": seconds,
            "images_per_s": photos / seconds,
            "db_bytes": size,
        }
    finally:
        os.environ.pop("PETWATCH_HOME", None)
        shutil.rmtree(home, ignore_errors=True)


# --- driver ---------------------------------------------------------------------------------------
def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_datasets_arg(parser)
    parser.add_argument("--model", default="efficientnet_lite2")
    parser.add_argument("--quick", action="store_true", help="no real crops, no indexing cost")
    parser.add_argument("--no-crops", action="store_true", help="leave out the real-crops views")
    parser.add_argument("--no-cost", action="store_true", help="leave out the indexing cost runs")
    args = parser.parse_args()
    C.strip_petwatch_env()
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymilvus").setLevel(logging.ERROR)

    root = C.datasets_dir(args.datasets)
    photos, breeds, landscapes = load_pool(root)
    backgrounds = [p for p in landscapes if not p.stem.startswith("Elephants_")]  # one Elephants
    labels = np.array(breeds + ["_landscape"] * len(landscapes))
    trials = trials_for(labels)
    print(
        f"{len(photos)} pet photos ({len(set(breeds))} breeds), {len(landscapes)} landscapes; "
        f"{len(trials)} profiles of {EXAMPLES} photos; model {args.model}; {os.cpu_count()} cores",
        flush=True,
    )
    schemes = ["whole", "regions"] + ([] if args.quick or args.no_crops else ["crops"])
    embeddings = Embeddings(args.model)
    originals = [lambda side, p=p: open_photo(p, side) for p in photos + landscapes]
    pasted = [lambda side, p=p: composite(p, backgrounds) for p in photos]

    table_rows, payload = [], {}
    for scheme in schemes:
        scenes = embeddings.views(scheme, "scenes", originals)
        small = np.concatenate([embeddings.views(scheme, "small", pasted), scenes[len(photos) :]])
        # The example photos: their whole-image vector, as pets.add takes it.
        examples = scenes[:, 0]
        measured = {}
        for pool_name, pool in (("scenes", scenes), ("small", small)):
            measured[pool_name] = {
                k: summarise(v) for k, v in evaluate(pool, labels, examples, trials, with_marks=True).items()
            }
        payload[scheme] = measured
        for method in measured["scenes"]:
            a, b = measured["scenes"][method], measured["small"][method]
            table_rows.append([scheme, method, *(f"{x:.3f}" for x in a), *(f"{x:.3f}" for x in b)])
    print()
    print(
        C.table(
            ["views", "method", "scenes mAP", "recall", "precision", "small mAP", "recall", "precision"],
            table_rows,
            title=f"Pet albums, {len(trials)} profiles ({args.model}); recall and "
            "precision at the profile's threshold; 'before/+ marks' on the photos not reviewed",
        )
    )
    vectors = {"whole": 1, "regions": embeddings.regions.views, "crops": 1 + len(CROP_BOXES)}
    print()
    print(
        C.table(
            ["views", "forward ms / photo", "vectors / photo"],
            [[s, f"{embeddings.ms_per_image[s]:.0f}", vectors[s]] for s in schemes],
            title="Embedding cost in this run (forward pass only, batch 16, this machine)",
        )
    )
    costs = []
    if not (args.quick or args.no_cost):
        print("\nindexing cost: Library.indexer.reconcile of the pet sample, region views off and on ...", flush=True)
        for region_views in (False, True):
            C.wait_for_quiet(30)
            costs.append(index_cost(args.model, root / C.PETS, region_views))
        base = costs[0]
        print(
            C.table(
                ["region views", "photos", "rows", "images/s", "vs off", "Milvus Lite file", "vs off"],
                [
                    [
                        c["region_views"],
                        c["photos"],
                        c["rows"],
                        f"{c['images_per_s']:.2f}",
                        f"{c['images_per_s'] / base['images_per_s']:.2f}x",
                        C.mib(c["db_bytes"]),
                        f"{c['db_bytes'] / base['db_bytes']:.2f}x",
                    ]
                    for c in costs
                ],
            )
        )
    path = C.write_results(
        "bench_pets",
        {
            "model": args.model,
            "profiles": len(trials),
            "examples": EXAMPLES,
            "review": REVIEW,
            "results": payload,
            "forward_ms_per_photo": embeddings.ms_per_image,
            "index_cost": costs,
            "versions": C.versions("torch", "timm", "pymilvus", "milvus-lite"),
        },
    )
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
