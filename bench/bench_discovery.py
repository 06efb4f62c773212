"""Pets found for you: are the groups individuals, is your pet listed first, and what does
keeping them current cost?

    python bench/bench_discovery.py            # camera rolls on real vectors + timing (minutes)
    python bench/bench_discovery.py --quick    # timing at 1k and 10k only, no real photos (~1 min)

Quality (real photos, ``--datasets``): camera rolls built by ``_camera_roll.py`` from the
product's whitened vectors (efficientnet_lite2, pet focus; embedded once and cached in
bench/results): recurring pets (DogFaceNet dogs, every photo, and Oxford pets pasted into
other scenes), dated on many days over months in two cameras' month folders, among strangers
seen once (Oxford breed photos, a third of them on one dog-show day; other DogFaceNet dogs;
at 10k+ noisy copies of them). Before (the rule until issue 27: single links of mutual
5-nearest neighbours at cosine 0.25, listed biggest first) and after (average linkage, listed
by evidence), on the same rolls in one run:
  recall / precision  of each recurring pet's best group (the one holding most of its photos);
  place               where that group is listed; pets among the first 3;
  stranger groups     groups most of whose photos are strangers', listed above a pet;
  largest group       the size of the largest group listed;
  album               the best group named (its photos the profile's examples): the album's
                      precision and recall at the profile rule's threshold, per gamma.

Timing (synthetic unit vectors: pets as tight clusters among loose strangers): the full
clustering at 1k / 10k / 30k pet photos, and updating the groups after 100 new photos
(Discovery.on_stored: each joins the group it is most alike on average, or waits).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

DOGS = "dogfacenet-dev"


def libraries(group, label, draws: int, pets: int, strangers: int, min_photos: int, seed: int = 0):
    """``draws`` libraries: ``pets`` dogs with ``min_photos``+ photos (every photo), ``strangers``
    other dogs once each, and the whole Oxford sample. (indices, owner of each photo)."""
    rng = np.random.default_rng(seed)
    dogs = np.flatnonzero(group == "dog")
    counts = Counter(label[dogs])
    candidates = sorted(dog for dog, n in counts.items() if n >= min_photos)
    oxford = list(np.flatnonzero(group == "breed"))
    out = []
    for _ in range(draws):
        chosen = set(rng.choice(candidates, pets, replace=False))
        met = set(rng.choice(sorted(set(counts) - chosen), strangers, replace=False))
        first: dict[str, int] = {}
        for i in dogs:
            if label[i] in met:
                first.setdefault(label[i], int(i))
        index = [int(i) for i in dogs if label[i] in chosen] + list(first.values()) + oxford
        out.append((np.array(index), [label[i] if label[i] in chosen and group[i] == "dog" else "" for i in index]))
    return out


def quality(vectors, species, library: list, similar: float) -> dict:
    """Purity, recall and pets found over the drawn libraries, for one linkage cut."""
    from petwatch import discovery

    purity, recall, found, strangers, groups = [], [], 0, 0, 0
    for index, owner in library:
        shown = np.flatnonzero(np.isin(species[index], ["dog", "cat"]))
        labels = discovery.cluster(vectors[index][shown], similar)
        clusters: dict[int, list[str]] = {}
        for i, label in zip(shown, labels, strict=True):
            clusters.setdefault(int(label), []).append(owner[i])
        # Worst case for strangers: every photo a day of its own, so a group recurs at MIN_GROUP.
        recurring = [members for members in clusters.values() if len(members) >= discovery.MIN_GROUP]
        groups += len(recurring)
        for pet in sorted({o for o in owner if o}):
            best = max(recurring, key=lambda members: members.count(pet), default=[])
            share = best.count(pet)
            p, r = (share / len(best) if best else 0.0), share / owner.count(pet)
            purity.append(p)
            recall.append(r)
            found += p >= 0.9 and r >= 0.8
        strangers += sum(
            1
            for members in recurring
            if Counter(members).most_common(1)[0][0] == "" or Counter(members).most_common(1)[0][1] * 2 <= len(members)
        )
    return {
        "similar": similar,
        "pets": len(purity),
        "purity": float(np.mean(purity)),
        "recall": float(np.mean(recall)),
        "found": found,
        "groups_per_library": groups / len(library),
        "stranger_groups_per_library": strangers / len(library),
    }


def old_rule(vectors: np.ndarray) -> np.ndarray:
    """The rule before issue 27, for the before/after in one run: connected components of
    mutual 5-nearest neighbours at cosine >= 0.25 (single links), listed biggest first."""
    from scipy.sparse.csgraph import connected_components

    from petwatch import discovery

    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=int)
    return connected_components(discovery.links(vectors, 0.25, 5, mutual=True), directed=False)[1]


def roll_groups(
    roll,
    labels: np.ndarray,
    by_evidence: bool,
    outsider: np.ndarray | None = None,
    typical: np.ndarray | None = None,
    by_margin: bool = False,
) -> list:
    """The groups a user is shown (they recur), in the list's order: by evidence (look-alikes
    last; ``by_margin``: by the margin, the order until the typical likeness), or biggest
    first as before. Each a discovery.Group over the roll's photos."""
    from petwatch import discovery

    members: dict[int, list] = {}
    for i, label in enumerate(labels):
        photo = discovery.PetPhoto(
            f"{roll.folder[i]}/{i}.jpg", str(i), roll.vectors[i], int(roll.day[i]), roll.species[i], roll.label[i]
        )
        if outsider is not None:
            photo.outsider = float(outsider[i])
        if typical is not None:
            photo.typical = float(typical[i])
        members.setdefault(int(label), []).append(photo)
    groups = [discovery.Group(n, discovery.OPEN, None, m) for n, m in members.items() if len(m) >= 2]
    shown = [g for g in groups if g.recurs()]
    if by_evidence:
        ranked = [(g, g.evidence()) for g in shown]
        key = (lambda e: e.margin) if by_margin else (lambda e: e.score)
        return [g for g, e in sorted(ranked, key=lambda x: (x[1].lookalikes, -key(x[1]), -len(x[0].members)))]
    return sorted(shown, key=lambda g: -len(g.members))


def roll_quality(roll, ordered: list) -> dict:
    """Each recurring pet's best group (most of its photos): recall, precision, place in the
    list; stranger groups (most photos not one pet's) listed above any pet; the largest group."""
    owner = roll.owner
    places, recall, precision, mixed = [], [], [], 0
    owners_of = [[owner[int(p.content_hash)] for p in g.members] for g in ordered]
    for pet in roll.pets():
        total = int((owner == pet).sum())
        counts = [o.count(pet) for o in owners_of]
        best = int(np.argmax(counts)) if counts and max(counts) else None
        if best is None:
            places.append(None)
            recall.append(0.0)
            precision.append(0.0)
            continue
        places.append(best + 1)
        recall.append(counts[best] / total)
        precision.append(counts[best] / len(owners_of[best]))
    stranger = []
    for o in owners_of:
        top, share = Counter(o).most_common(1)[0]
        stranger.append(top == "" or share * 2 <= len(o))
        mixed += len({x for x in o if x}) > 1 and sorted(Counter(x for x in o if x).values())[-2] >= 2
    found = [p for p in places if p is not None]
    last = max(found, default=0)
    return {
        "pets": len(places),
        "recall": float(np.mean(recall)),
        "precision": float(np.mean(precision)),
        "places": places,
        "first3": sum(1 for p in found if p <= 3),
        "mean_place": float(np.mean(found)) if found else 0.0,
        "strangers_above_a_pet": sum(stranger[: last - 1]) if last else 0,
        "strangers_above_first_pet": sum(stranger[: min(found) - 1]) if found else 0,
        "strangers_above_each_pet": float(np.mean([sum(stranger[: p - 1]) for p in found])) if found else 0.0,
        "groups": len(ordered),
        "lookalike_groups": sum(1 for g in ordered if g.evidence().lookalikes),
        "mixed": int(mixed),
        "largest": max((len(g.members) for g in ordered), default=0),
    }


def album_quality(roll, ordered: list, gammas) -> dict[float, tuple[float, float]]:
    """Each pet's best group named (its photos the examples, as ``pets add --group`` does) when
    the pet is most of it (a group its owner would name): the album's precision and recall at
    the profile rule's threshold, per gamma."""
    from petwatch import pets as P

    rng = np.random.default_rng(0)
    sample = roll.vectors[rng.choice(len(roll), min(P.BACKGROUND_SAMPLE, len(roll)), replace=False)]
    out: dict[float, list[tuple[float, float]]] = {g: [] for g in gammas}
    for pet in roll.pets():
        counts = [sum(roll.owner[int(p.content_hash)] == pet for p in g.members) for g in ordered]
        if not counts or not max(counts):
            continue
        group = ordered[int(np.argmax(counts))]
        if max(counts) * 2 <= len(group.members):
            continue  # not a group its owner would name: mostly other animals
        examples = np.stack([p.vector for p in group.members])
        proto = P.prototype(examples)
        scores = roll.vectors @ proto
        background = sample @ proto
        mine = roll.owner == pet
        for gamma in gammas:
            cut = P.threshold(background, examples, (), gamma, P.WHITENED_LOO_ONE_EXAMPLE)
            album = scores >= cut
            right = float((album & mine).sum())
            out[gamma].append((right / max(int(album.sum()), 1), right / int(mine.sum())))
    return {g: (float(np.mean([p for p, _ in v])), float(np.mean([r for _, r in v]))) for g, v in out.items() if v}


ROLLS = {  # name: _camera_roll.build's arguments
    # A new user's library: 5 dogs that come back (DogFaceNet, 5-10 photos each over months, in
    # two cameras' month folders) and 2 pets in other scenes, among every photo of 11 Oxford
    # breeds (10 breed-mates each, a third of them on one dog-show day) and 10 dogs met once.
    "~150": {"dogs": 5, "scene_pets": 2, "dog_strangers": 10, "breeds": 11},
    # 10k+: 30 recurring dogs and 30 pets in scenes, the Oxford sample and every other
    # DogFaceNet dog once, padded with noisy copies of strangers (look-alikes) to 11,000.
    "10k+": {"dogs": 30, "scene_pets": 30, "dog_strangers": 700, "size": 11_000},
}
GAMMAS = (0.55, 0.7, 0.8)
RULES = ("before", "margin", "after")
SEEDS = {"~150": 20, "10k+": 3}  # rolls drawn at each size (small rolls vary more, and cost little)


def camera_rolls(root: Path, model: str, seeds: int | None) -> list[dict]:
    """Before (single links at 0.25, biggest first) and after (average linkage, by evidence),
    on the same rolls in one run: each pet's best group, its place, strangers above it."""
    import _camera_roll as R
    from petwatch import discovery, pets

    data = R.load(root, model)
    white = R.whitened(data, model)
    out = []
    for name, spec in ROLLS.items():
        results: dict[str, list[dict]] = {rule: [] for rule in RULES}
        albums: dict[str, list] = {rule: [] for rule in RULES}
        drawn = seeds or SEEDS[name]
        for seed in range(drawn):
            roll = R.build(data, white, seed=seed, **spec)
            for rule in RULES:
                started = time.perf_counter()
                if rule == "before":
                    ordered = roll_groups(roll, old_rule(roll.vectors), by_evidence=False)
                else:  # the same clustering, listed by margin (until now) or by score
                    labels, _pairs, outsider, typical = discovery.clustering(roll.vectors, discovery.WHITENED_SIMILAR)
                    ordered = roll_groups(roll, labels, True, outsider, typical, by_margin=rule == "margin")
                q = roll_quality(roll, ordered)
                q["seconds"] = time.perf_counter() - started
                q["photos"] = len(roll)
                results[rule].append(q)
                albums[rule].append(album_quality(roll, ordered, GAMMAS))
        rows = []
        for label, key, fmt in (
            ("pet photos", "photos", "{:.0f}"),
            ("recurring pets", "pets", "{:.0f}"),
            ("best group's recall", "recall", "{:.3f}"),
            ("best group's precision", "precision", "{:.3f}"),
            ("pets listed among the first 3", "first3", "{:.1f}"),
            ("a pet's place, mean", "mean_place", "{:.1f}"),
            ("stranger groups above a pet", "strangers_above_a_pet", "{:.1f}"),
            ("stranger groups above the first pet", "strangers_above_first_pet", "{:.1f}"),
            ("stranger groups above each pet, mean", "strangers_above_each_pet", "{:.2f}"),
            ("groups mixing two pets", "mixed", "{:.1f}"),
            ("groups listed (look-alikes)", "groups", "{:.1f}"),
            ("largest group", "largest", "{:.1f}"),
            ("grouping and order, s", "seconds", "{:.2f}"),
        ):
            cells = [fmt.format(np.mean([q[key] for q in results[rule]])) for rule in RULES]
            if key == "groups":
                for n, rule in enumerate(RULES[1:], 1):
                    cells[n] += f" ({np.mean([q['lookalike_groups'] for q in results[rule]]):.1f})"
            rows.append([label, *cells])
        places = [[q["places"] for q in results[rule]] for rule in RULES]
        rows.append(["each pet's place (first roll)", *(" ".join(str(p) for p in pl[0]) for pl in places)])
        for gamma in GAMMAS:
            cells = []
            for rule in RULES:
                measured = [a[gamma] for a in albums[rule] if gamma in a]
                cells.append(f"{np.mean([m[0] for m in measured]):.3f} / {np.mean([m[1] for m in measured]):.3f}")
            mark = " (product)" if abs(gamma - pets.WHITENED_GAMMA) < 1e-9 else ""
            rows.append([f"named best group's album, gamma {gamma}{mark}: precision / recall", *cells])
        print(
            C.table(
                [
                    f"camera roll {name}",
                    "before (single links 0.25, biggest first)",
                    "average link, by margin (until now)",
                    "after (average link, by score)",
                ],
                rows,
                title=f"Pets found in camera rolls of {name} pet photos ({drawn} rolls, mean; {model}, whitened)",
            ),
            flush=True,
        )
        out.append({"roll": name, "results": results})
    return out


ORDERS = {  # --orders: what else was tried for the list's order (docs/pets.md "Order")
    "margin (until now)": lambda g, k: g["cohesion"] - g["nearest"],
    "cohesion alone": lambda g, k: g["cohesion"],
    "least pair cosine": lambda g, k: g["least"],
    "cohesion + margin": lambda g, k: 2 * g["cohesion"] - g["nearest"],
    "cohesion - 3rd nearest outsider": lambda g, k: g["cohesion"] - k[3],
    "cohesion - 5th": lambda g, k: g["cohesion"] - k[5],
    "cohesion - 7th (shipped)": lambda g, k: g["cohesion"] - k[7],
    "cohesion - 10th": lambda g, k: g["cohesion"] - k[10],
    "distinct days": lambda g, k: g["days"],
    "folders": lambda g, k: g["folders"],
}


def order_variants(root: Path, model: str, rolls: dict[str, int]) -> None:
    """The same clusterings listed by each of ``ORDERS`` (look-alikes folded by margin, as
    shipped): stranger groups above each pet (mean) and above the last-listed pet."""
    import _camera_roll as R
    from petwatch import discovery

    data = R.load(root, model)
    white = R.whitened(data, model)
    for name, count in rolls.items():
        found: dict[str, list[tuple[float, float]]] = {order: [] for order in ORDERS}
        for seed in range(count):
            roll = R.build(data, white, seed=seed, **ROLLS[name])
            labels, _pairs, outsider, _typical = discovery.clustering(roll.vectors, discovery.WHITENED_SIMILAR)
            near, sims = discovery.nearest(roll.vectors, discovery.LISTED)
            shown = roll_groups(roll, labels, True, outsider, by_margin=True)
            features = []
            for g in shown:
                rows = np.array([int(p.content_hash) for p in g.members])
                pairs = (roll.vectors[rows] @ roll.vectors[rows].T)[np.triu_indices(len(rows), 1)]
                kth = {}
                for k in (3, 5, 7, 10):
                    picked = []
                    for i in rows:
                        out = sims[i][labels[near[i]] != labels[i]]
                        picked.append(out[min(k, len(out)) - 1] if len(out) else sims[i].min())
                    kth[k] = float(np.mean(picked))
                e = g.evidence()
                feats = {"cohesion": e.cohesion, "nearest": e.outside, "least": float(pairs.min())}
                features.append((g, e.lookalikes, kth, {**feats, "days": e.days, "folders": e.folders}))
            for order, score in ORDERS.items():
                ranked = [g for g, *_ in sorted(features, key=lambda f: (f[1], -score(f[3], f[2]), -len(f[0].members)))]
                q = roll_quality(roll, ranked)
                found[order].append((q["strangers_above_each_pet"], q["strangers_above_a_pet"]))
        rows_out = [[order, " / ".join(f"{m:.2f}" for m in np.mean(v, axis=0))] for order, v in found.items()]
        print(
            C.table(
                ["order", "stranger groups above each pet, mean / above the last pet"],
                rows_out,
                title=f"Orders tried, camera rolls of {name} pet photos ({count} rolls, mean)",
            ),
            flush=True,
        )


def synthetic(count: int, dim: int, rng) -> tuple[np.ndarray, list[int]]:
    """``count`` unit vectors: 5% in 20 tight clusters (pets), the rest loose (strangers)."""
    centres = rng.standard_normal((20, dim)).astype(np.float32)
    pets = count // 20
    rows = [centres[i % 20] + 0.35 * rng.standard_normal(dim).astype(np.float32) for i in range(pets)]
    rows += list(rng.standard_normal((count - pets, dim)).astype(np.float32))
    vectors = np.stack(rows)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), [i % 20 for i in range(pets)]


def timing(count: int, dim: int) -> dict:
    """Full clustering of ``count`` pet photos, then 100 new photos through Discovery.on_stored."""
    from petwatch import discovery
    from petwatch.store import PhotoRow, photo_record

    rng = np.random.default_rng(count)
    vectors, _ = synthetic(count + 100, dim, rng)
    started = time.perf_counter()
    old_rule(vectors[:count])
    before_s = time.perf_counter() - started
    started = time.perf_counter()
    labels = discovery.cluster(vectors[:count], discovery.WHITENED_SIMILAR)
    cluster_s = time.perf_counter() - started

    class Library:  # what Discovery reads of the library: its pet rows, what is indexed, disk room
        whitened = True  # the default model's space and cut

        def __init__(self, rows):
            self.rows = rows

        def pet_rows(self):
            return iter(self.rows)

        def entry(self, path):
            return True

        def write_problem(self):
            return None  # room on the disk: groups are written

    def row(i: int) -> PhotoRow:
        photo = photo_record(
            path=f"/p/{i}.jpg",
            content_hash=f"{i:016x}",
            size=1,
            mtime_ns=i * 86_400 * 10**9,
            width=1,
            height=1,
            species="dog",
            label="beagle",
        )
        return PhotoRow(photo, vector=vectors[i])

    with tempfile.TemporaryDirectory() as folder:
        found = discovery.Discovery(Library([row(i) for i in range(count)]), Path(folder) / "state.db")
        started = time.perf_counter()
        found.refresh()
        refresh_s = time.perf_counter() - started
        found.refresh_soon = lambda: None  # timed alone: no background clustering
        started = time.perf_counter()
        for i in range(count, count + 100, 10):  # in indexing batches of 10
            found.on_stored([row(j) for j in range(i, i + 10)])
        update_s = time.perf_counter() - started
        groups = len(found.groups())
        found.close()
    return {
        "photos": count,
        "cluster_s": cluster_s,
        "before_s": before_s,
        "refresh_s": refresh_s,
        "update_100_ms": update_s * 1000,
        "groups": groups,
        "clusters": int(len(set(labels))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_datasets_arg(parser)
    parser.add_argument("--model", default="efficientnet_lite2")
    parser.add_argument("--min-photos", type=int, default=6, help="dogs with this many photos play your pets")
    parser.add_argument("--sizes", default="1000,10000,30000")
    parser.add_argument("--seeds", type=int, help="camera rolls drawn at each size (default: 20 at ~150, 3 at 10k+)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--orders", action="store_true", help="only the orders tried (40 rolls at ~150, 6 at 10k+)")
    args = parser.parse_args()
    C.strip_petwatch_env()
    if args.orders:
        order_variants(C.datasets_dir(args.datasets), args.model, {"~150": 40, "10k+": 6})
        return
    payload: dict = {"machine": C.machine()}
    if not args.quick:
        root = C.datasets_dir(args.datasets)
        if C.dataset_part(root, DOGS)[0] is None:
            print(f"SKIP quality: {C.dataset_part(root, DOGS)[1]}")
        else:
            payload["rolls"] = camera_rolls(root, args.model, args.seeds)
    sizes = [1000, 10000] if args.quick else [int(s) for s in args.sizes.split(",")]
    payload["timing"] = []
    rows = []
    for size in sizes:
        t = timing(size, 768)
        payload["timing"].append(t)
        rows.append(
            [
                f"{size:,}",
                f"{t['before_s']:.2f} s",
                f"{t['cluster_s']:.2f} s",
                f"{t['refresh_s']:.2f} s",
                f"{t['update_100_ms']:.1f} ms",
                t["groups"],
            ]
        )
        print(f"  {size:,}: clustered in {t['cluster_s']:.1f}s", flush=True)
    print(
        C.table(
            ["pet photos", "before: single links", "clustering", "refresh (+ keep ids)", "100 new photos", "groups"],
            rows,
            title=f"Keeping the groups current (synthetic 768-d vectors; {payload['machine'].get('cpu', '')})",
        )
    )
    print(f"results: {C.write_results('bench_discovery', payload)}")


if __name__ == "__main__":
    main()
