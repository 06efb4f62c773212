"""Retrieval quality on the Oxford-IIIT Pet sample: mAP and precision@5, per model and draft mode.

    python bench/bench_quality.py           # lite0/1/2 + lite2 draft on/off, native and camera-size (~6 min)
    python bench/bench_quality.py --quick   # lite2 draft on/off on the native photos only (< 2 min)

For each model, petwatch indexes the 370 pet photos (37 breeds x 10) plus the landscapes as
distractors through ``Library(settings).indexer.reconcile`` (PETWATCH_HOME in a temp dir),
then every pet photo is used as a query through ``Library.search`` (top_k 1000, min_score
-1: the full ranking). Relevant = the other 9 photos of the same breed; the query itself is
excluded. Reported: mean average precision (mAP) and precision@5, and a numpy cross-check
of the same ranking from the stored vectors (kept in memory per model for the whole run).

Draft decoding: the sample's photos are ~500 px, below what draft mode would reduce for
lite2 (it needs >= 298 px), so on them draft on/off differ only on the large landscapes. The
"camera-size" rows re-run lite2 on copies of the same photos upscaled to a 1536 px shorter
side (cached in a temp dir), where draft decoding really decodes at 1/4 scale. Target: the
mAP with draft on stays within 0.01 of draft off.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MODELS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
DRAFT_MODEL = "efficientnet_lite2"
MAX_DIFF = 0.01
CACHE = Path(tempfile.gettempdir()) / "petwatch-bench"


def average_precision(ranked_relevance: list[bool], relevant_total: int) -> float:
    hits = 0
    total = 0.0
    for rank, relevant in enumerate(ranked_relevance, 1):
        if relevant:
            hits += 1
            total += hits / rank
    return total / relevant_total if relevant_total else 0.0


def score(rankings: dict[str, list[str]], labels: dict[str, str | None]) -> dict:
    """mAP and P@5 over the queries in ``rankings`` (query path -> ranked paths, query removed)."""
    aps, p5s = [], []
    for query, ranked in rankings.items():
        label = labels[query]
        relevant_total = sum(1 for p, lab in labels.items() if lab == label and p != query)
        flags = [labels.get(p) == label for p in ranked]
        aps.append(average_precision(flags, relevant_total))
        p5s.append(sum(flags[:5]) / 5)
    return {"map": sum(aps) / len(aps), "p_at_5": sum(p5s) / len(p5s), "queries": len(aps)}


def upscaled_copy(source: Path, short_side: int) -> Path:
    """The pet photos (folder layout kept) upscaled to ``short_side``, quality 92, cached."""
    from PIL import Image, ImageOps

    target = CACHE / f"pets-upscaled-{short_side}"
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in C.PHOTO_SUFFIXES)
    made = 0
    for path in files:
        out = target / path.relative_to(source).with_suffix(".jpg")
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        scale = short_side / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        tmp = out.with_suffix(".tmp")
        image.save(tmp, "JPEG", quality=92)
        os.replace(tmp, out)
        made += 1
    if made:
        print(f"  made {made} upscaled copies in {target}")
    return target


class Evaluator:
    """Indexes with petwatch and scores; embeddings are kept in memory per configuration."""

    def __init__(self, distractors: Path | None, overrides: dict[str, str], patches: list[str]) -> None:
        self.distractors = distractors
        self.overrides = overrides
        self.patches = patches
        self.embeddings: dict[str, dict[str, object]] = {}  # config -> path -> vector

    def run(self, key: str, model: str, draft: bool, pets: Path) -> dict:
        import numpy as np

        from petwatch.library import Library
        from petwatch.settings import Settings

        home = tempfile.mkdtemp(prefix="petwatch-bench-quality-")
        os.environ["PETWATCH_HOME"] = home
        folders = [str(pets)] + ([str(self.distractors)] if self.distractors else [])
        labels: dict[str, str | None] = {}
        for path in sorted(p for p in pets.rglob("*") if p.suffix.lower() in C.PHOTO_SUFFIXES):
            labels[str(path)] = path.parent.name  # breed = folder name
        try:
            started = time.perf_counter()
            library = Library(Settings(**{**self.overrides, "model": model, "draft_decode": draft}))
            views = getattr(library.embedder, "views", 1)
            for patch in self.patches:
                C.apply_patch(library.embedder, patch)
            opened = time.perf_counter()
            report = library.indexer.reconcile(folders)
            indexed = time.perf_counter()
            for path in library.indexer.catalog:
                labels.setdefault(path, None)  # distractors: relevant to nothing
            missing = [p for p in labels if p not in library.indexer.catalog]
            if missing:
                print(
                    f"  WARNING: {len(missing)} photos not indexed, e.g. {missing[0]}: "
                    f"{report.skipped.get(missing[0]) or report.failed.get(missing[0])}"
                )
            queries = [p for p, lab in labels.items() if lab is not None and p in library.indexer.catalog]
            rankings = {}
            vectors = {}
            search_started = time.perf_counter()
            for query in queries:
                hits = library.find(query, top_k=1000, min_score=-1.0).hits
                rankings[query] = [h.path for h in hits if h.path != query]
            searched = time.perf_counter()
            for path in library.indexer.catalog:
                row = library.store.get(path)
                if row is not None:
                    vectors[path] = row.vector
            # Region views (newer petwatch): a photo scores its best view against the query.
            all_views = (
                library.store.vectors(list(vectors)) if views > 1 and hasattr(library.store, "vectors") else None
            )
            settings_used = {
                name: getattr(library.settings, name)
                for name in ("batch_size", "draft_decode", "region_views", "precision")
                if hasattr(library.settings, name)
            }
            library.close()
        finally:
            os.environ.pop("PETWATCH_HOME", None)
            shutil.rmtree(home, ignore_errors=True)
        self.embeddings[key] = vectors
        product = score(rankings, labels)
        # Cross-check: the same ranking computed from the cached vectors with numpy.
        paths = list(vectors)
        numpy_rankings = {}
        if views > 1 and all_views is None:
            cross = {"map": float("nan"), "p_at_5": float("nan")}
        else:
            if all_views is not None:  # (photos, views, dim); a photo's score is its best view
                matrix = np.stack([all_views[p] for p in paths])
            else:
                matrix = np.stack([vectors[p] for p in paths])[:, None, :]
            for query in queries:
                sims = (matrix @ vectors[query]).max(axis=1)
                order = np.argsort(-sims, kind="stable")
                numpy_rankings[query] = [paths[i] for i in order if paths[i] != query]
            cross = score(numpy_rankings, labels)
        return {
            "config": key,
            "model": model,
            "draft_decode": draft,
            "photos": str(pets),
            "settings": settings_used,
            "views": views,
            "patches": self.patches,
            "stored": len(vectors),
            "indexed": report.indexed,
            "reused": report.reused,
            "skipped": len(report.skipped),
            "map": product["map"],
            "p_at_5": product["p_at_5"],
            "queries": product["queries"],
            "numpy_map": cross["map"],
            "numpy_p_at_5": cross["p_at_5"],
            "open_s": opened - started,
            "index_s": indexed - opened,
            "index_images_per_s": (report.indexed + report.reused) / (indexed - opened),
            "search_ms_mean": (searched - search_started) / max(1, len(queries)) * 1000,
        }

    def agreement(self, a: str, b: str) -> dict:
        """Cosine between the two configurations' vectors of the same photo."""
        import numpy as np

        va, vb = self.embeddings[a], self.embeddings[b]
        common = sorted(set(va) & set(vb))
        cos = np.array([float(np.dot(va[p], vb[p])) for p in common])
        return {"photos": len(common), "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_datasets_arg(parser)
    parser.add_argument("--quick", action="store_true", help="lite2 draft on/off on the native photos only")
    parser.add_argument("--models", default=None, help=f"comma-separated (default {','.join(MODELS)})")
    parser.add_argument("--no-camera-size", action="store_true", help="skip the upscaled draft comparison")
    parser.add_argument("--camera-short-side", type=int, default=1536)
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="petwatch setting for every run (e.g. --set region_views=false); repeatable",
    )
    parser.add_argument(
        "--patch",
        action="append",
        choices=sorted(C.PATCHES),
        help="prototype a src/ change (bench only): " + "; ".join(f"{k}: {v}" for k, v in C.PATCHES.items()),
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    C.strip_petwatch_env()  # a user's PETWATCH_* settings must not change what is measured

    datasets = C.datasets_dir(args.datasets)
    pets, reason = C.dataset_part(datasets, C.PETS)
    if pets is None:
        print(f"SKIPPED: retrieval quality needs the Oxford-IIIT Pet sample: {reason}")
        C.write_results("bench_quality", {"skipped": reason})
        return
    distractors, why_not = C.dataset_part(datasets, C.LANDSCAPES)
    if distractors is None:
        print(f"note: no distractors ({why_not}); pets only")
    models = args.models.split(",") if args.models else ([DRAFT_MODEL] if args.quick else MODELS)
    camera = not (args.quick or args.no_camera_size)

    overrides = dict(item.split("=", 1) for item in args.set or [])
    evaluator = Evaluator(distractors, overrides, args.patch or [])
    if args.set or args.patch:
        print(f"petwatch modified: settings {args.set or []}, patches {args.patch or []}")
    results: dict[str, dict] = {}

    def run(key: str, model: str, draft: bool, folder: Path) -> None:
        print(f"[{key}] indexing {folder.name} with {model}, draft_decode={draft} ...", flush=True)
        result = evaluator.run(key, model, draft, folder)
        results[key] = result
        print(
            f"  mAP {result['map']:.4f}, P@5 {result['p_at_5']:.4f} ({result['stored']} stored, "
            f"{result['index_images_per_s']:.1f} images/s)",
            flush=True,
        )

    for model in models:
        run(f"{model}", model, True, pets)
    if DRAFT_MODEL not in models:
        run(DRAFT_MODEL, DRAFT_MODEL, True, pets)
    run(f"{DRAFT_MODEL} draft off", DRAFT_MODEL, False, pets)
    if camera:
        big = upscaled_copy(pets, args.camera_short_side)
        run(f"{DRAFT_MODEL} camera-size", DRAFT_MODEL, True, big)
        run(f"{DRAFT_MODEL} camera-size draft off", DRAFT_MODEL, False, big)

    print()
    print(
        C.table(
            ["model", "mAP", "P@5", "mAP (numpy check)", "stored", "index img/s", "search ms"],
            [
                [
                    results[m]["model"],
                    f"{results[m]['map']:.4f}",
                    f"{results[m]['p_at_5']:.4f}",
                    f"{results[m]['numpy_map']:.4f}",
                    results[m]["stored"],
                    f"{results[m]['index_images_per_s']:.1f}",
                    f"{results[m]['search_ms_mean']:.1f}",
                ]
                for m in models
            ],
            title=f"Retrieval on {pets.name} ({results[models[0]]['queries']} queries, 9 relevant each; "
            f"distractors: {distractors.name if distractors else 'none'}), draft_decode on, "
            f"settings {results[models[0]]['settings']}, {results[models[0]]['views']} vector(s) per photo"
            + (f", patches {args.patch}" if args.patch else ""),
        )
    )

    pairs = [("native (~500 px photos)", DRAFT_MODEL, f"{DRAFT_MODEL} draft off")]
    if camera:
        pairs.append(
            (
                f"camera-size ({args.camera_short_side} px short side)",
                f"{DRAFT_MODEL} camera-size",
                f"{DRAFT_MODEL} camera-size draft off",
            )
        )
    rows, checks = [], []
    for label, on, off in pairs:
        a, b = results[on], results[off]
        agree = evaluator.agreement(on, off)
        diff = a["map"] - b["map"]
        ok = abs(diff) <= MAX_DIFF
        checks.append(
            {"photos": label, "map_on": a["map"], "map_off": b["map"], "diff": diff, "met": ok, "agreement": agree}
        )
        rows.append(
            [
                label,
                f"{a['map']:.4f}",
                f"{b['map']:.4f}",
                f"{diff:+.4f}",
                f"{a['p_at_5']:.4f}",
                f"{b['p_at_5']:.4f}",
                f"{agree['mean_cosine']:.4f} / {agree['min_cosine']:.4f}",
                f"{a['index_images_per_s']:.1f} / {b['index_images_per_s']:.1f}",
                C.verdict(ok),
            ]
        )
    print()
    print(
        C.table(
            [
                "photos",
                "mAP on",
                "mAP off",
                "diff",
                "P@5 on",
                "P@5 off",
                "cos(on,off) mean/min",
                "img/s on/off",
                f"|diff| <= {MAX_DIFF}",
            ],
            rows,
            title=f"{DRAFT_MODEL}: draft_decode on vs off",
        )
    )
    path = C.write_results(
        "bench_quality",
        {
            "datasets": str(datasets),
            "results": results,
            "draft_checks": checks,
            "versions": C.versions("torch", "timm", "pillow", "pymilvus", "milvus-lite"),
        },
    )
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
