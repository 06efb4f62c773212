"""Whitened vectors: is *your* pet told apart from its look-alikes better, and what do the
thresholds become in the new space?

    python bench/bench_whitening.py            # fit + score every variant (~8 min first run, then ~1 min)
    python bench/bench_whitening.py --quick    # the shipped recipe against raw only
    python bench/bench_whitening.py --write    # also fit the shipped projection on ALL the photos
                                               # and write src/petwatch/whitening/<model>.npz

Raw (un-whitened) product vectors of every photo come from one embedding pass, cached in
bench/results/ (``_whitening_data.py``: the sets, built on the fly). No leakage: the figures
come from projections fit on HALF the DogFaceNet dogs, HALF the Oxford breeds, the landscapes
and the fixtures; they are scored on the other halves (distractors: the landscapes and
fixtures, which are in both). The shipped projection (``--write``) is fit on all of it.

Scored, before (raw) and after, at two pool sizes (small: the queried photos, the Oxford half
and the no-pet photos; large: plus every other DogFaceNet dog of the eval half):
  identity, faces    DogFaceNet: a dog's other face photos
  identity, scenes   the same pet pasted into other scenes (Oxford: the same photo cut,
                     scaled, flipped, on other backgrounds; DogFaceNet: the same dog);
                     every other pet photo is a distractor, its own breed's look-alikes too
  breed              Oxford: the other 9 photos of the breed
  small pets         Oxford pasted small onto landscapes, queried by the originals (breed)
Query expansion: the query plus its top 3 hits weighted by score^3, searched again.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import _whitening_data as D  # noqa: E402

SHIPPED_DIM = 768
SHIPPED_SHRINK = 1.0
QE_TOP, QE_POWER = 3, 3.0


# --- the projection ----------------------------------------------------------------------------
def fit(vectors: np.ndarray, dim: int, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean, matrix) of PCA whitening to ``dim`` with eigenvalues shrunk by ``shrink`` x their
    mean (regularised: the smallest kept directions are not blown up to noise)."""
    x = np.asarray(vectors, np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    values, vecs = np.linalg.eigh(centred.T @ centred / len(x))
    order = np.argsort(values)[::-1][:dim]
    values, vecs = values[order], vecs[:, order]
    matrix = (vecs / np.sqrt(values + shrink * values.mean())).T
    return mean.astype(np.float32), matrix.astype(np.float32)


def apply(vectors: np.ndarray, mean: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    from petwatch.embed import Whitening

    return Whitening(mean, matrix).apply(vectors)


# --- scoring -----------------------------------------------------------------------------------
def expand(queries: np.ndarray, pool: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """Query expansion as the product does it (petwatch.library.expand_query)."""
    from petwatch.search import expand_query

    sims = queries @ pool.T
    sims[np.arange(len(queries)), exclude] = -np.inf
    top = np.argsort(-sims, axis=1)[:, :QE_TOP]
    return np.stack([expand_query(q, pool[t], sims[i, t]) for i, (q, t) in enumerate(zip(queries, top, strict=True))])


def mean_ap(vectors, labels, queries, pool, qe: bool = False, query_vectors=None) -> float:
    """mAP of ``queries`` (indices) against ``pool`` (indices), the query itself left out."""
    pool_vectors, pool_labels = vectors[pool], labels[pool]
    aps = []
    for start in range(0, len(queries), 512):
        chunk = queries[start : start + 512]
        q = vectors[chunk] if query_vectors is None else query_vectors[start : start + 512]
        self_at = np.array([np.flatnonzero(pool == i)[0] if (pool == i).any() else -1 for i in chunk])
        if qe:
            q = expand(q, pool_vectors, np.where(self_at >= 0, self_at, 0) if (self_at >= 0).all() else self_at)
        sims = q @ pool_vectors.T
        for row, i, at in zip(sims, chunk, self_at, strict=True):
            keep = np.ones(len(pool), bool)
            if at >= 0:
                keep[at] = False
            relevant = (pool_labels[keep] == labels[i])[np.argsort(-row[keep], kind="stable")]
            if relevant.any():
                precision = np.cumsum(relevant) / np.arange(1, len(relevant) + 1)
                aps.append(float((precision * relevant).sum() / relevant.sum()))
    return float(np.mean(aps))


class Split:
    """Which photos fit the projection and which score it, and the labels each test uses."""

    def __init__(self, data: dict[str, np.ndarray], query_dogs: int = 120) -> None:
        sets, group, label = data["set"], data["group"], data["label"]
        rng = np.random.default_rng(1)
        dogs = sorted(set(label[group == "dog"]))
        breeds = sorted(set(label[group == "breed"]))
        fit_dogs = set(rng.choice(dogs, len(dogs) // 2, replace=False).tolist())
        fit_breeds = set(rng.choice(breeds, len(breeds) // 2, replace=False).tolist())
        held = np.array(
            [
                (g == "dog" and lab not in fit_dogs) or (g == "breed" and lab not in fit_breeds)
                for g, lab in zip(group, label, strict=True)
            ]
        )
        original = sets == "original"
        none = original & (group == "none")
        self.fit = np.flatnonzero(original & (~held | none))
        self.fit_all = np.flatnonzero(original)
        eval_dogs = sorted(set(label[held & (group == "dog")]))
        queried_dogs = set(rng.choice(eval_dogs, min(query_dogs, len(eval_dogs)), replace=False).tolist())
        n = np.arange(len(sets))
        source = data["source"]
        oxford = original & held & (group == "breed")
        dog_orig = original & held & (group == "dog")
        queried = dog_orig & np.isin(label, list(queried_dogs))
        scene = (sets == "scene") & held
        # Labels per test: "none:<i>" never matches anything.
        self.breed_labels = np.where(
            group == "none", [f"none:{i}" for i in n], np.char.add(group.astype(str), label.astype(str))
        )
        identity = np.where(group == "breed", [f"photo:{s}" for s in source], np.char.add("dog:", label.astype(str)))
        self.identity_labels = np.where(group == "none", [f"none:{i}" for i in n], identity)
        counts = {d: int((queried & (label == d)).sum()) for d in queried_dogs}
        self.face_q = np.flatnonzero(queried & np.array([counts.get(lab, 0) > 1 for lab in label]))
        self.breed_q = np.flatnonzero(oxford)
        scene_dog_ids = set(label[scene & (group == "dog")])
        self.scene_q = np.flatnonzero(scene)
        base = oxford | none
        self.small_pool = np.flatnonzero(base | queried)
        self.large_pool = np.flatnonzero(base | dog_orig)
        scene_dog_orig = dog_orig & np.isin(label, list(scene_dog_ids))
        self.scene_small = np.flatnonzero(scene | base | scene_dog_orig)
        self.scene_large = np.flatnonzero(scene | base | dog_orig)
        small = (sets == "small") & held
        self.small_q = np.array([int(source[i]) for i in np.flatnonzero(small)])
        self.small_pool_pets = np.flatnonzero(small)
        self.fit_dogs, self.fit_breeds = len(fit_dogs), len(fit_breeds)


def score(vectors: np.ndarray, split: Split, qe: bool = False) -> dict[str, float]:
    ident, breed = split.identity_labels, split.breed_labels
    out = {
        "faces_small": mean_ap(vectors, ident, split.face_q, split.small_pool, qe),
        "faces_large": mean_ap(vectors, ident, split.face_q, split.large_pool, qe),
        "scenes_small": mean_ap(vectors, ident, split.scene_q, split.scene_small, qe),
        "scenes_large": mean_ap(vectors, ident, split.scene_q, split.scene_large, qe),
        "breed_small": mean_ap(vectors, breed, split.breed_q, split.small_pool, qe),
        "breed_large": mean_ap(vectors, breed, split.breed_q, split.large_pool, qe),
    }
    # Small pets: the original queries a pool of the pasted photos only (it is not in it).
    out["small_pets"] = mean_ap(
        vectors, breed, split.small_q, split.small_pool_pets, qe, query_vectors=vectors[split.small_q]
    )
    return out


COLUMNS = [
    ("faces_small", "faces S"),
    ("faces_large", "faces L"),
    ("scenes_small", "scenes S"),
    ("scenes_large", "scenes L"),
    ("breed_small", "breed S"),
    ("breed_large", "breed L"),
    ("small_pets", "small pets"),
]


# --- what thresholds become ------------------------------------------------------------------------
def pair_cosines(raw: np.ndarray, white: np.ndarray, data: dict[str, np.ndarray]) -> list[list[str]]:
    """Near-identical frames (shifted copies) and same-pet / look-alike pairs: their cosine
    before and after whitening, for re-deriving thresholds."""
    shifted = np.flatnonzero(data["set"] == "shifted")
    source = data["source"][shifted]
    before = np.einsum("ij,ij->i", raw[shifted], raw[source])
    after = np.einsum("ij,ij->i", white[shifted], white[source])
    rows = [
        [
            "shifted copy (burst frame)",
            f"{np.median(before):.3f}",
            f"{np.median(after):.3f}",
            f"{np.percentile(before, 10):.3f} / {np.percentile(after, 10):.3f}",
        ]
    ]
    for cut in (0.90, 0.95, 0.98):  # the same pairs' quantile: what a raw cut becomes
        share = float((before >= cut).mean())
        mapped = float(np.quantile(after, 1 - share)) if 0 < share < 1 else float("nan")
        rows.append(
            [f"raw cut {cut:.2f} (keeps {share:.0%} of copies)", f"{cut:.2f}", f"{mapped:.3f}", "same share kept"]
        )
    return rows


def profiles(vectors: np.ndarray, split: Split, gammas=(0.5, 0.55, 0.6, 0.65, 0.75, 0.9)) -> dict:
    """Pet profiles as pets.py scores them (the prototype is the mean of 3 examples, the cut
    median + gamma x (LOO mean - median)) on the Oxford half: each breed plays a pet, 5 draws
    of 3 examples; the album should hold the other 7. Mean recall, precision and F1 per gamma,
    and the typical LOO mean (pets.LOO_ONE_EXAMPLE stands in for it with one example)."""
    from petwatch import pets

    rng = np.random.default_rng(2)
    pool = split.small_pool
    labels = split.breed_labels
    breeds = sorted({labels[i] for i in split.breed_q})
    found = {g: [] for g in gammas}
    loos = []
    for breed in breeds:
        members = [i for i in split.breed_q if labels[i] == breed]
        for _ in range(5):
            examples = rng.choice(members, 3, replace=False)
            proto = pets.prototype(vectors[examples])
            rest = np.array([i for i in pool if i not in set(examples)])
            scores = vectors[rest] @ proto
            relevant = labels[rest] == breed
            background = rng.choice(scores, min(pets.BACKGROUND_SAMPLE, len(scores)), replace=False)
            loos.append(float(np.mean(pets.loo_scores(vectors[examples]))))
            for g in gammas:
                album = scores >= pets.threshold(background, vectors[examples], gamma=g)
                hit = (album & relevant).sum()
                recall, precision = hit / relevant.sum(), hit / max(album.sum(), 1)
                found[g].append((recall, precision, 2 * recall * precision / max(recall + precision, 1e-9)))
    return {"loo_median": float(np.median(loos)), **{g: np.mean(found[g], axis=0).tolist() for g in gammas}}


def discovery_cuts(vectors: np.ndarray, data: dict[str, np.ndarray], cuts) -> list[list[str]]:
    """bench_discovery's quality (3 recurring dogs among 300 met once and the Oxford sample,
    10 draws) at each link cut, on these vectors."""
    import bench_discovery

    keep = np.flatnonzero((data["set"] == "original") & np.isin(data["group"], ["dog", "breed"]))
    v, sp, g, lab = vectors[keep], data["species"][keep], data["group"][keep], data["label"][keep]
    libs = bench_discovery.libraries(g, lab, 10, 3, 300, 6)
    rows = []
    for cut in cuts:
        q = bench_discovery.quality(v, sp, libs, cut)
        rows.append([f"{cut:.2f}", *(f"{q[k]:.3f}" if isinstance(q[k], float) else str(q[k]) for k in sorted(q))])
    return rows, sorted(q)


def throughput(root: Path, model: str, count: int, repeat: int) -> dict:
    """``petwatch index`` (fresh processes) on camera-size photos, 1 in 5 a pet, whitening
    off and on, interleaved so that a noisy spell hits both: best images/s and their ratio."""
    import bench_identity
    import bench_index

    folder = bench_identity.mix_folder(root, count)
    runs: dict[str, list[float]] = {"raw": [], "whitened": []}
    for _ in range(repeat):
        for name, whiten in (("raw", "false"), ("whitened", "true")):
            result = bench_index.run_variant("petwatch", model, None, folder, ["--set", f"whiten={whiten}"])
            runs[name].append(result["images_per_s"])
            print(f"  {name}: {result['images_per_s']:.2f} images/s", flush=True)
    best = {name: max(values) for name, values in runs.items()}
    return {"photos": count, "runs": runs, **best, "ratio": best["whitened"] / best["raw"]}


def join_cut(raw: np.ndarray, white: np.ndarray, data: dict[str, np.ndarray], raw_cut: float) -> tuple[float, float]:
    """(share of dogs' photos whose cosine to the centroid of their dog's other photos
    reaches ``raw_cut`` in the raw space, the whitened cut that keeps the same share)."""
    from petwatch.store import unit_vector

    dogs = (data["set"] == "original") & (data["group"] == "dog")
    before, after = [], []
    for dog in sorted(set(data["label"][dogs]))[::3]:
        members = np.flatnonzero(dogs & (data["label"] == dog))
        if len(members) < 4:
            continue
        for i in members:
            others = members[members != i]
            before.append(float(raw[i] @ unit_vector(raw[others].mean(axis=0))))
            after.append(float(white[i] @ unit_vector(white[others].mean(axis=0))))
    share = float((np.array(before) >= raw_cut).mean())
    return share, float(np.quantile(after, 1 - share))


def search_cost(raw_dim: int, dim: int, count: int, queries: int) -> dict:
    """bench_search's workload (petwatch's Store on Milvus Lite, random unit vectors) at the
    raw and the whitened dimension, one after the other: p95 and the index's bytes per photo."""
    import bench_search

    out = {}
    for label, d in (("raw", raw_dim), ("whitened", dim)):
        result = bench_search.run_search(sys.executable, "store", d, [count], queries, f"whitening-{label}", 30.0)
        point = result["points"][-1] if result else {}
        out[label] = {
            "dim": d,
            "p50_ms": point.get("p50_ms"),
            "p95_ms": point.get("p95_ms"),
            "rss": point.get("rss_tree"),
            "bytes_per_photo": point.get("disk_bytes", 0) / count,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_datasets_arg(parser)
    parser.add_argument("--model", default="efficientnet_lite2")
    parser.add_argument("--quick", action="store_true", help="raw against the shipped recipe only")
    parser.add_argument("--rebuild", action="store_true", help="embed again instead of using the cache")
    parser.add_argument("--write", action="store_true", help="write the shipped projection (fit on all photos)")
    parser.add_argument("--throughput", type=int, default=0, metavar="N", help="also time indexing N photos")
    parser.add_argument("--repeat", type=int, default=2, help="throughput runs per recipe")
    parser.add_argument("--search", type=int, default=0, metavar="N", help="also time search at N vectors")
    args = parser.parse_args()
    C.strip_petwatch_env()
    root = C.datasets_dir(args.datasets)
    started = time.perf_counter()
    data = D.load(root, args.model, args.rebuild)
    raw = data["vectors"]
    split = Split(data)
    print(
        f"{len(raw)} vectors; fit on {len(split.fit)} photos ({split.fit_dogs} dogs, {split.fit_breeds} breeds, "
        f"no-pet photos); scored: {len(split.face_q)} face, {len(split.scene_q)} scene, {len(split.breed_q)} breed "
        f"queries; pools: faces/breed {len(split.small_pool)} / {len(split.large_pool)}, "
        f"scenes {len(split.scene_small)} / {len(split.scene_large)}",
        flush=True,
    )
    variants: dict[str, tuple[int, float] | None] = {
        "raw (before)": None,
        f"d={SHIPPED_DIM}, shrink {SHIPPED_SHRINK}": (SHIPPED_DIM, SHIPPED_SHRINK),
    }
    if not args.quick:
        for dim in (256, 512, 768, 1024):
            for shrink in (0.25, 0.5, 1.0):
                variants.setdefault(f"d={dim}, shrink {shrink}", (dim, shrink))
    results: dict[str, dict[str, float]] = {}
    rows = []
    spaces: dict[str, np.ndarray] = {}
    for name, params in variants.items():
        vectors = raw if params is None else apply(raw, *fit(raw[split.fit], *params))
        spaces[name] = vectors
        results[name] = score(vectors, split)
        rows.append([name, *(f"{results[name][k]:.4f}" for k, _ in COLUMNS)])
    if not args.quick:  # (b): refit on the library itself, here the large evaluation pool
        name = "refit on the library, d=384, shrink 1.0"
        results[name] = score(apply(raw, *fit(raw[split.scene_large], 384, 1.0)), split)
        rows.append([name, *(f"{results[name][k]:.4f}" for k, _ in COLUMNS)])
    shipped = f"d={SHIPPED_DIM}, shrink {SHIPPED_SHRINK}"
    for name in ("raw (before)", shipped):
        key = f"{name} + query expansion"
        results[key] = score(spaces[name], split, qe=True)
        rows.append([key, *(f"{results[key][k]:.4f}" for k, _ in COLUMNS)])
    print(C.table(["recipe", *(h for _, h in COLUMNS)], rows, title=f"mAP, {args.model} (S/L: small/large pool)"))
    before, after = results["raw (before)"], results[f"{shipped} + query expansion"]
    for key, head in COLUMNS:
        print(f"  {head}: {before[key]:.4f} -> {results[shipped][key]:.4f} whitened -> {after[key]:.4f} with QE")
    white = spaces[shipped]
    print(
        C.table(
            ["pairs", "raw cosine", "whitened", "10th percentile raw / whitened"],
            pair_cosines(raw, white, data),
            title="Near-identical frames",
        )
    )
    payload = {
        "model": args.model,
        "results": results,
        "product": f"{shipped} + query expansion",
        "machine": C.machine(),
    }
    rows = []
    for name in ("raw (before)", shipped):
        found = profiles(spaces[name], split)
        payload[f"profiles {name}"] = found
        rows += [
            [name, f"{g}", *(f"{x:.3f}" for x in found[g]), f"{found['loo_median']:.3f}"]
            for g in found
            if g != "loo_median"
        ]
    print(
        C.table(
            ["vectors", "gamma", "recall", "precision", "F1", "LOO mean (median)"],
            rows,
            title="Pet profiles (Oxford half, 3 examples)",
        )
    )
    from petwatch import discovery

    # Discovery runs on the shipped projection (fit on all photos): scored in that space.
    product = apply(raw, *fit(raw[split.fit_all], SHIPPED_DIM, SHIPPED_SHRINK))
    for name, vectors, grid in (
        ("raw (before)", raw, (0.78, 0.80, 0.82, 0.84)),
        ("whitened (shipped)", product, tuple(np.round(np.arange(0.20, 0.41, 0.025), 3))),
    ):
        rows, heads = discovery_cuts(vectors, data, grid)
        print(C.table(["cut", *heads], rows, title=f"Discovery link cut, {name}"))
    joins = join_cut(raw, product, data, discovery.JOIN)
    print(
        f"  join: raw {discovery.JOIN} lets {joins[0]:.0%} of a recurring dog's photos join its group; "
        f"the same share in the whitened space: {joins[1]:.3f}"
    )
    if args.write:
        from petwatch.embed import WHITENING_DIR

        mean, matrix = fit(raw[split.fit_all], SHIPPED_DIM, SHIPPED_SHRINK)
        WHITENING_DIR.mkdir(parents=True, exist_ok=True)
        target = WHITENING_DIR / f"{args.model}.npz"
        np.savez_compressed(target, mean=mean.astype(np.float16), matrix=matrix.astype(np.float16))
        print(
            f"shipped projection ({len(split.fit_all)} photos, d={SHIPPED_DIM}, shrink {SHIPPED_SHRINK}): "
            f"{target} ({target.stat().st_size / 1e6:.1f} MB)"
        )
    if args.search:
        print(f"search: {args.search:,} vectors, raw dimension then whitened ...", flush=True)
        payload["search"] = cost = search_cost(raw.shape[1], SHIPPED_DIM, args.search, 100)
        print(
            C.table(
                ["vectors", "dim", "p50 ms", "p95 ms", "RSS", "index file bytes per photo"],
                [
                    [
                        k,
                        v["dim"],
                        f"{v['p50_ms']:.1f}",
                        f"{v['p95_ms']:.1f}",
                        C.mib(v["rss"]),
                        f"{v['bytes_per_photo']:,.0f}",
                    ]
                    for k, v in cost.items()
                ],
                title=f"Search at {args.search:,} (Milvus Lite, FLAT)",
            )
        )
    if args.throughput:
        print(f"throughput: {args.throughput} camera-size photos, 1 in 5 a pet ...", flush=True)
        payload["throughput"] = t = throughput(root, args.model, args.throughput, args.repeat)
        print(
            f"  indexing: raw {t['raw']:.2f}, whitened {t['whitened']:.2f} images/s, ratio {t['ratio']:.3f}x "
            f"(target >= 0.95x) {C.verdict(t['ratio'] >= 0.95)}"
        )
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    print(f"results: {C.write_results('bench_whitening', payload)}")


if __name__ == "__main__":
    main()
