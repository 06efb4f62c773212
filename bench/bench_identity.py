"""Is this *my* pet? Identity and breed retrieval, whole-image vectors against pet focus.

    python bench/bench_identity.py            # everything (~25 min on a quiet 2-core machine)
    python bench/bench_identity.py --quick    # the product's recipe only, no variants (~10 min)

Photos (``--datasets``, else $PETWATCH_DATASETS, else ../shared/datasets):
  dogfacenet-dev/<dog>/   3,371 face photos of 701 individual dogs: identity (same dog)
  oxford-pets-sample/     370 photos of 37 breeds: breed (same breed)
  landscapes/, photo-fixtures/   distractors with no pet

Every photo is decoded as the indexer decodes it and embedded once per recipe with
petwatch's own Embedder:
  whole      the whole-image vector: petwatch before pet focus;
  petfocus   the product (embed.PetFocus defaults): GeM-pooled, and where the classifier
             sees a pet the unit vector of whole + crop around its activation map;
  variants   other PetFocus parameters, computed from the same first pass.

Two pools, so that the effect of scale shows:
  small  the query dogs (``--dogs``, default 120), the Oxford sample and the distractors;
  large  all 701 dogs, the Oxford sample and the distractors.
Queries are the same in both: every photo of the query dogs (identity: the same dog's other
photos are relevant) and every Oxford photo (breed: the other 9 of its breed). mAP is the
mean over queries of average precision over the whole pool, the query itself left out.

``small pets``: the Oxford photos pasted at 30% of the width onto landscapes (as
bench_pets.py), queried by the original photos (breed mAP): what region views were for.

``throughput``: ``petwatch index`` (Library.indexer.reconcile, fresh processes) on camera-size
photos of which 1 in 5 shows a pet, pet focus off and on, same run (images/s, ratio).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

DOGS = "dogfacenet-dev"
FIXTURES = "photo-fixtures"
MIX_PETS_EVERY = 5  # 1 photo in 5 shows a pet
GEM_POWERS = (1.0, 2.0, 3.0)  # 1: average pooling
VECTORS = C.RESULTS_DIR / "identity-vectors"


def vectors_file(model: str) -> Path:
    return VECTORS.with_name(f"identity-vectors-{model}.npz")


# --- photos ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Photo:
    path: Path
    group: str  # "dog", "breed" or "none"
    label: str  # dog id, breed, or ""


def gather(root: Path) -> list[Photo]:
    found: list[Photo] = []
    dogs, reason = C.dataset_part(root, DOGS)
    pets, reason_pets = C.dataset_part(root, C.PETS)
    if dogs is None or pets is None:
        print(f"SKIP: {reason or reason_pets}")
        sys.exit(0)
    for folder in sorted(p for p in dogs.iterdir() if p.is_dir()):
        found += [
            Photo(p, "dog", folder.name) for p in sorted(folder.iterdir()) if p.suffix.lower() in C.PHOTO_SUFFIXES
        ]
    found += [
        Photo(p, "breed", p.parent.name) for p in sorted(pets.glob("*/*")) if p.suffix.lower() in C.PHOTO_SUFFIXES
    ]
    for part in (C.LANDSCAPES, FIXTURES):
        folder = root / part
        if folder.is_dir():
            found += [
                Photo(p, "none", "")
                for p in sorted(folder.rglob("*"))
                if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".heic", ".tif", ".tiff"}
            ]
    return found


def decode_all(photos_: list[Photo], min_side: int) -> tuple[list[Photo], list]:
    from petwatch import photos

    def one(photo: Photo):
        try:
            return photos.decode(photos.read_photo(photo.path, 180_000_000), min_side).convert("RGB")
        except Exception:  # noqa: BLE001 - broken fixtures are skipped, as the indexer does
            return None

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        images = list(pool.map(one, photos_))
    kept = [(p, im) for p, im in zip(photos_, images, strict=True) if im is not None]
    return [p for p, _ in kept], [im for _, im in kept]


# --- embedding ---------------------------------------------------------------------------------
class FirstPass:
    """The whole-image pass of every photo, kept for the variants' crop passes."""

    def __init__(self, embedder, images: list) -> None:
        from petwatch import embed

        self.embedder, self.images = embedder, images
        whole, probs, cams = [], [], []
        self.gem: dict[float, list] = {p: [] for p in GEM_POWERS}
        started = time.perf_counter()
        for start in range(0, len(images), 32):
            batch = images[start : start + 32]
            pooled, p, fmap = embedder._features([embedder.transform(im) for im in batch])
            whole.append(embed._unit_rows(pooled))
            for power in GEM_POWERS:
                self.gem[power].append(embed._unit_rows(embed.gem(fmap, power)))
            probs.append(p)
            cams.append(embed.activation_maps(fmap, p, embedder.classifier_weight))
        self.whole = np.concatenate(whole)
        self.gem_whole = {p: np.concatenate(v) for p, v in self.gem.items()}
        self.probs = np.concatenate(probs)
        self.cams = np.concatenate(cams)
        self.signals = embed.pet_signals(self.probs)
        self.seconds = time.perf_counter() - started

    def focused(self, focus) -> tuple[np.ndarray, float, float]:
        """(vectors, share of photos given a crop pass, seconds) for these PetFocus parameters."""
        from petwatch import embed

        embedder = self.embedder
        saved, embedder.pet_focus = embedder.pet_focus, focus
        try:
            boxes = [
                embedder.pet_box(cam, im.size) if s.pet_score >= focus.min_pet_score else None
                for cam, im, s in zip(self.cams, self.images, self.signals, strict=True)
            ]
        finally:
            embedder.pet_focus = saved
        chosen = [i for i, box in enumerate(boxes) if box is not None]
        power = focus.gem_power
        whole = self.gem_whole[power]
        vectors = whole.copy()
        started = time.perf_counter()
        for start in range(0, len(chosen), 32):
            part = chosen[start : start + 32]
            _pooled, _p, fmap = embedder._features(
                [embedder.crop_transform(self.images[i].crop(boxes[i])) for i in part]
            )
            crops = embed._unit_rows(embed.gem(fmap, power))
            mixed = whole[part] + focus.crop_weight * crops
            vectors[part] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
        return vectors, len(chosen) / len(boxes), time.perf_counter() - started


# --- scoring -----------------------------------------------------------------------------------
def mean_ap(vectors: np.ndarray, labels: np.ndarray, queries: np.ndarray, pool: np.ndarray) -> float:
    """Mean average precision of ``queries`` (indices) ranked against ``pool`` (indices), the
    query left out; relevant = same label."""
    pool_vectors, pool_labels = vectors[pool], labels[pool]
    aps = []
    for start in range(0, len(queries), 256):
        chunk = queries[start : start + 256]
        sims = vectors[chunk] @ pool_vectors.T
        for row, q in zip(sims, chunk, strict=True):
            keep = pool != q
            order = np.argsort(-row[keep], kind="stable")
            relevant = (pool_labels[keep] == labels[q])[order]
            if relevant.any():
                precision = np.cumsum(relevant) / np.arange(1, len(relevant) + 1)
                aps.append(float((precision * relevant).sum() / relevant.sum()))
    return float(np.mean(aps))


def retrieval(vectors: np.ndarray, photos_: list[Photo], query_dogs: set[str]) -> dict[str, float]:
    labels = np.array([f"{p.group}:{p.label}" if p.group != "none" else f"none:{i}" for i, p in enumerate(photos_)])
    dog = np.array([p.group == "dog" for p in photos_])
    queried = np.array([p.group == "dog" and p.label in query_dogs for p in photos_])
    breed = np.array([p.group == "breed" for p in photos_])
    small = np.flatnonzero(~dog | queried)
    large = np.arange(len(photos_))
    # A query dog needs another photo of itself to be a query.
    counts = {d: sum(1 for p in photos_ if p.group == "dog" and p.label == d) for d in query_dogs}
    identity_q = np.flatnonzero(queried & np.array([counts.get(p.label, 0) > 1 for p in photos_]))
    breed_q = np.flatnonzero(breed)
    return {
        "identity_small": mean_ap(vectors, labels, identity_q, small),
        "identity_large": mean_ap(vectors, labels, identity_q, large),
        "breed_small": mean_ap(vectors, labels, breed_q, small),
        "breed_large": mean_ap(vectors, labels, breed_q, large),
        "pool_small": len(small),
        "pool_large": len(large),
        "identity_queries": len(identity_q),
        "breed_queries": len(breed_q),
    }


def detection(first: FirstPass, photos_: list[Photo]) -> dict[str, float]:
    """How often the stored species is right: dogs as dog, Oxford cats/dogs as such, no-pet
    photos as no pet (Oxford's cat breeds are the capitalised folders)."""

    def rate(indices, expected) -> float:
        return float(np.mean([first.signals[i].species in expected for i in indices])) if indices else float("nan")

    dogs = [i for i, p in enumerate(photos_) if p.group == "dog"]
    oxford_cats = [i for i, p in enumerate(photos_) if p.group == "breed" and p.label[0].isupper()]
    oxford_dogs = [i for i, p in enumerate(photos_) if p.group == "breed" and not p.label[0].isupper()]
    none = [i for i, p in enumerate(photos_) if p.group == "none"]
    return {
        "dogfacenet_as_dog": rate(dogs, {"dog"}),
        "oxford_dogs_as_dog": rate(oxford_dogs, {"dog"}),
        "oxford_cats_as_cat": rate(oxford_cats, {"cat"}),
        "no_pet_as_no_pet": rate(none, {"none", "animal"}),
    }


def small_pets(first_embedder, root: Path, photos_: list[Photo], images: list) -> dict[str, float]:
    """Breed mAP with every Oxford pet small on a landscape, queried by the original photos."""
    import bench_pets
    from petwatch.embed import Embedder

    lands = sorted(p for p in (root / C.LANDSCAPES).glob("*") if p.suffix.lower() in C.PHOTO_SUFFIXES)
    oxford = [i for i, p in enumerate(photos_) if p.group == "breed"]
    pasted = [bench_pets.composite(photos_[i].path, lands) for i in oxford]
    labels = np.array([photos_[i].label for i in oxford])
    originals = [images[i] for i in oxford]
    out: dict[str, float] = {}

    def score(query_vectors: np.ndarray, pool_vectors: np.ndarray) -> float:
        """Pool rows: (n, views, dim); a photo scores its best view."""
        aps = []
        for q in range(len(oxford)):
            sims = (pool_vectors @ query_vectors[q]).max(axis=1)
            keep = np.arange(len(oxford)) != q
            order = np.argsort(-sims[keep], kind="stable")
            relevant = (labels[keep] == labels[q])[order]
            precision = np.cumsum(relevant) / np.arange(1, len(relevant) + 1)
            aps.append(float((precision * relevant).sum() / relevant.sum()))
        return float(np.mean(aps))

    def run(embedder) -> tuple[np.ndarray, np.ndarray]:
        queries, pool = [], []
        for start in range(0, len(oxford), 32):
            q = embedder.embed_batch(
                originals[start : start + 32], [embedder.preprocess_views(im) for im in originals[start : start + 32]]
            )
            batch = pasted[start : start + 32]
            p = embedder.embed_batch(batch, [embedder.preprocess_views(im) for im in batch])
            queries += [views[0] for views, *_ in q]
            pool += [views for views, *_ in p]
        return np.stack(queries), np.stack(pool)

    whole_q, whole_pool = run(Embedder(first_embedder.name, pet_focus=None))
    focus_q, focus_pool = run(first_embedder)
    regions = Embedder(first_embedder.name, pet_focus=None, region_views=True)
    _rq, region_pool = run(regions)
    both = Embedder(first_embedder.name, region_views=True)
    both_q, both_pool = run(both)
    out["whole"] = score(whole_q, whole_pool)
    out["petfocus"] = score(focus_q, focus_pool)
    out["regions"] = score(whole_q, region_pool)
    out["petfocus+regions"] = score(both_q, both_pool)
    return out


# --- throughput --------------------------------------------------------------------------------
def mix_folder(root: Path, count: int) -> Path:
    """``count`` camera-size JPEGs, 1 in 5 from a pet photo, the rest landscapes and fixtures."""
    folder = Path(tempfile.gettempdir()) / "petwatch-bench" / f"mix-{count}-3000x2250"
    pets = sorted((root / C.PETS).glob("*/*.jpg"))
    others = sorted(p for part in (C.LANDSCAPES, f"{FIXTURES}/exif-samples/jpg") for p in (root / part).glob("*.jpg"))
    sources = [pets[(i * 37) % len(pets)] if i % MIX_PETS_EVERY == 0 else others[i % len(others)] for i in range(count)]
    C.make_camera_jpegs(folder, count, None, 3000, 2250, sources=sources)
    return folder


def throughput(root: Path, model: str, count: int, repeat: int) -> dict:
    import bench_index

    folder = mix_folder(root, count)
    runs: dict[str, list[float]] = {"whole": [], "petfocus": []}
    for _ in range(repeat):  # interleaved, so that a noisy spell hits both
        for name, focus in (("whole", "false"), ("petfocus", "true")):
            result = bench_index.run_variant("petwatch", model, None, folder, ["--set", f"pet_focus={focus}"])
            runs[name].append(result["images_per_s"])
            print(f"  {name}: {result['images_per_s']:.2f} images/s", flush=True)
    best = {name: max(values) for name, values in runs.items()}
    return {
        "photos": count,
        "pets_every": MIX_PETS_EVERY,
        "runs": runs,
        **best,
        "ratio": best["petfocus"] / best["whole"],
    }


# --- main --------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_datasets_arg(parser)
    parser.add_argument("--model", default="efficientnet_lite2")
    parser.add_argument("--dogs", type=int, default=120, help="query dogs (the small pool holds only these)")
    parser.add_argument("--quick", action="store_true", help="no variants beyond the product")
    parser.add_argument("--no-small-pets", action="store_true")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--mix", type=int, default=60, help="photos in the throughput mix")
    parser.add_argument("--repeat", type=int, default=2, help="throughput runs per recipe")
    args = parser.parse_args()
    C.strip_petwatch_env()
    root = C.datasets_dir(args.datasets)

    import torch  # noqa: F401 - before petwatch.embed, to time the model load alone

    from petwatch.embed import Embedder, PetFocus

    started = time.perf_counter()
    embedder = Embedder(args.model)
    everything = gather(root)
    kept, images = decode_all(everything, embedder.decode_min_side)
    dog_ids = sorted({p.label for p in kept if p.group == "dog"})
    rng = np.random.default_rng(0)
    query_dogs = set(rng.choice(dog_ids, size=min(args.dogs, len(dog_ids)), replace=False).tolist())
    print(
        f"{len(kept)} photos decoded ({len(everything) - len(kept)} unreadable fixtures skipped), "
        f"{len(dog_ids)} dogs, {len(query_dogs)} query dogs; model {args.model}, {embedder.engine}",
        flush=True,
    )

    first = FirstPass(embedder, images)
    print(f"whole-image pass: {first.seconds:.0f}s", flush=True)
    product = embedder.pet_focus or PetFocus()
    variants: dict[str, PetFocus] = {"petfocus (product)": product}
    if not args.quick:
        variants.update(
            {
                "threshold 0.2": dataclasses.replace(product, threshold=0.2),
                "threshold 0.5": dataclasses.replace(product, threshold=0.5),
                "margin 0.3": dataclasses.replace(product, margin=0.3),
                "crop weight 0.5": dataclasses.replace(product, crop_weight=0.5),
                "crop weight 2": dataclasses.replace(product, crop_weight=2.0),
                "every pet box (area <= 1)": dataclasses.replace(product, max_box_area=1.01),
            }
        )
    rows, results = [], {}
    base = retrieval(first.whole, kept, query_dogs)
    product_vectors = first.focused(product)[0]
    VECTORS.parent.mkdir(parents=True, exist_ok=True)  # for bench_discovery.py, same photos and model
    np.savez(
        vectors_file(args.model),
        vectors=product_vectors,
        species=np.array([s.species for s in first.signals]),
        group=np.array([p.group for p in kept]),
        label=np.array([p.label for p in kept]),
    )
    results["whole (before)"] = {**base, "crop_share": 0.0}
    if not args.quick:
        results[f"whole, GeM p={product.gem_power:g}"] = {
            **retrieval(first.gem_whole[product.gem_power], kept, query_dogs),
            "crop_share": 0.0,
        }
        variants["average pooling (GeM p=1)"] = dataclasses.replace(product, gem_power=1.0)
        variants["GeM p=3"] = dataclasses.replace(product, gem_power=3.0)
    for name, focus in variants.items():
        vectors, share, seconds = first.focused(focus)
        results[name] = {**retrieval(vectors, kept, query_dogs), "crop_share": share, "crop_seconds": seconds}
        print(f"  {name}: {seconds:.0f}s of crop passes", flush=True)
    for name, r in results.items():
        rows.append(
            [
                name,
                f"{r['identity_small']:.4f}",
                f"{r['identity_large']:.4f}",
                f"{r['breed_small']:.4f}",
                f"{r['breed_large']:.4f}",
                f"{r['crop_share']:.0%}",
            ]
        )
    print()
    print(
        C.table(
            [
                "recipe",
                f"identity mAP, {base['pool_small']:,} photos",
                f"identity, {base['pool_large']:,}",
                f"breed mAP, {base['pool_small']:,}",
                f"breed, {base['pool_large']:,}",
                "crop passes",
            ],
            rows,
            title=f"Retrieval ({base['identity_queries']} identity queries, "
            f"{base['breed_queries']} breed queries), {args.model}",
        )
    )
    after = results["petfocus (product)"]
    for key in ("identity_small", "identity_large", "breed_small", "breed_large"):
        print(
            f"  {key}: {base[key]:.4f} -> {after[key]:.4f} ({after[key] - base[key]:+.4f}) "
            f"{C.verdict(after[key] > base[key])}"
        )
    detected = detection(first, kept)
    print(C.table(["check", "rate"], [[k, f"{v:.1%}"] for k, v in detected.items()], title="Stored species"))

    payload = {
        "model": args.model,
        "engine": embedder.engine,
        "retrieval": results,
        "species": detected,
        "machine": C.machine(),
    }
    if not args.no_small_pets:
        print("small pets (pasted onto landscapes) ...", flush=True)
        payload["small_pets"] = small_pets(embedder, root, kept, images)
        print(
            C.table(
                ["recipe", "breed mAP, pets small on landscapes"],
                [[k, f"{v:.4f}"] for k, v in payload["small_pets"].items()],
                title="Small pets",
            )
        )
    del images, first
    if not args.no_throughput:
        print(f"throughput: {args.mix} camera-size photos, 1 in {MIX_PETS_EVERY} a pet ...", flush=True)
        t = throughput(root, args.model, args.mix, args.repeat)
        payload["throughput"] = t
        print(
            C.table(
                ["recipe", "images/s (best of runs)"],
                [["whole (before)", f"{t['whole']:.2f}"], ["petfocus", f"{t['petfocus']:.2f}"]],
                title="Indexing, 1 photo in 5 a pet",
            )
        )
        print(f"  ratio {t['ratio']:.2f}x (target >= 0.80x) {C.verdict(t['ratio'] >= 0.8)}")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    path = C.write_results("bench_identity", payload)
    print(f"results: {path}")
    shutil.rmtree(Path(tempfile.gettempdir()) / "petwatch-bench-none", ignore_errors=True)


if __name__ == "__main__":
    main()
