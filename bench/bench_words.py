"""Words against real photos: how well a typed word ranks the shared photos that show it, and
whether dates and places are read right from the fixtures' EXIF.

- Breeds (ImageNet's words): each Oxford breed that ImageNet-1k names, typed as ImageNet
  names it ("Staffordshire bullterrier", "Egyptian cat"), ranks its 10 photos among all the
  Oxford photos and the landscapes.
- A word list (words_relevant.toml: dog, cat, beach, snow, flower, car, sofa...): each word
  ranks the photos judged to show it among every shared photo (Oxford, landscapes, fixtures).
Each word is read by petwatch.words (so the vocabulary is what is measured, roll-ups and
plurals included) and photos are ranked by the probability mass on its classes, three ways:
all 1,000 probabilities kept; the top label only (what the index kept before); and the top k
above a floor (what a photo can keep in the index), over a grid of k and floors.
- Dates: every fixture with an EXIF capture time falls in its year, month, season and day as
  typed, and not in the year before. Places: the GPS fixtures named as a person would.

Probabilities come from the product's classifier pass (efficientnet_lite2 by default), cached
in bench/results/ (``_words_data.py``), so reruns take seconds.

    python bench/bench_words.py [--datasets DIR] [--model efficientnet_lite2] [--quick]
"""

from __future__ import annotations

import argparse
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

import _common as C
from _words_data import probabilities
from petwatch import concepts, photos, places, words

# Oxford breed folder -> the words a user types for it (ImageNet's own name). The other 12
# Oxford breeds (Bengal, Birman, havanese, shiba inu...) have no ImageNet class.
BREEDS = {
    "Egyptian_Mau": "Egyptian cat",
    "Persian": "Persian cat",
    "Siamese": "Siamese cat",
    "american_pit_bull_terrier": "American Staffordshire terrier",
    "basset_hound": "basset hound",
    "beagle": "beagle",
    "boxer": "boxer",
    "chihuahua": "chihuahua",
    "english_cocker_spaniel": "cocker spaniel",
    "english_setter": "English setter",
    "german_shorthaired": "German short-haired pointer",
    "great_pyrenees": "Great Pyrenees",
    "japanese_chin": "Japanese spaniel",
    "keeshond": "keeshond",
    "leonberger": "Leonberg",
    "miniature_pinscher": "miniature pinscher",
    "newfoundland": "Newfoundland",
    "pomeranian": "Pomeranian",
    "pug": "pug",
    "saint_bernard": "Saint Bernard",
    "samoyed": "Samoyed",
    "scottish_terrier": "Scotch terrier",
    "staffordshire_bull_terrier": "Staffordshire bullterrier",
    "wheaten_terrier": "soft-coated wheaten terrier",
    "yorkshire_terrier": "Yorkshire terrier",
}
RELEVANT = Path(__file__).with_name("words_relevant.toml")
# (k, floor) pairs of "top k kept": what a photo would store of its probabilities.
GRID = [(1, 0.0), (3, 0.0), (5, 0.0), (5, 0.02), (5, 0.05), (10, 0.0), (10, 0.01), (10, 0.02), (20, 0.005)]
# Where the GPS fixtures were taken (checked on a map from their coordinates): city or "",
# region, country.
GPS_PLACES = {
    "exif-samples/jpg/gps/DSCN0010.jpg": ("Arezzo", "Tuscany", "Italy"),
    "exif-samples/jpg/gps/DSCN0012.jpg": ("Arezzo", "Tuscany", "Italy"),
    "exif-samples/jpg/gps/DSCN0021.jpg": ("Arezzo", "Tuscany", "Italy"),
    "exif-samples/jpg/gps/DSCN0025.jpg": ("Arezzo", "Tuscany", "Italy"),
    "exif-samples/jpg/gps/DSCN0027.jpg": ("Arezzo", "Tuscany", "Italy"),
    "exif-samples/jpg/gps/DSCN0029.jpg": ("Arezzo", "Tuscany", "Italy"),
    "exif-samples/jpg/gps/DSCN0038.jpg": ("Arezzo", "Tuscany", "Italy"),
    "exif-samples/jpg/gps/DSCN0040.jpg": ("Arezzo", "Tuscany", "Italy"),
    "exif-samples/jpg/gps/DSCN0042.jpg": ("Arezzo", "Tuscany", "Italy"),
    "exif-samples/jpg/tests/87_OSError.jpg": ("Florence", "Tuscany", "Italy"),
    "exif-samples/jpg/hdr/iphone_hdr_NO.jpg": ("Madrid", "Madrid", "Spain"),
    "exif-samples/jpg/hdr/iphone_hdr_YES.jpg": ("Madrid", "Madrid", "Spain"),
    "exif-samples/jpg/mobile/HMD_Nokia_8.3_5G.jpg": ("Helsinki", "Uusimaa", "Finland"),
    "exif-samples/jpg/Kodak_CX7530.jpg": ("Nakuru", "Nakuru County", "Kenya"),
    "exif-samples/jpg/tests/67-0_length_string.jpg": ("", "North Rhine-Westphalia", "Germany"),
    "immich-test-assets/metadata/dates/gps-datetime.jpg": ("San Francisco", "California", "United States"),
    "immich-test-assets/metadata/dates/datetimeoriginal-gps.jpg": ("", "Colorado", "United States"),
    "immich-test-assets/metadata/gps-position/thompson-springs.jpg": ("", "Colorado", "United States"),
    # no position: a GPS block without a fix, or with its version only
    "immich-test-assets/metadata/gps-position/empty_gps.jpg": None,
    "exif-samples/jpg/Canon_40D.jpg": None,
}
SEASON_OF_MONTH = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring"}
SEASON_OF_MONTH |= {6: "summer", 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}


def ap(scores: np.ndarray, relevant: np.ndarray) -> float:
    return float(average_precision_score(relevant, scores)) if relevant.any() else float("nan")


def kept(probs: np.ndarray, k: int, floor: float) -> np.ndarray:
    """Each row reduced to its top k probabilities at or above ``floor`` (the rest 0), as
    ``concepts.top_concepts`` keeps them."""
    out = np.zeros_like(probs)
    for row, full in zip(out, probs, strict=True):
        for index, prob in concepts.top_concepts(full, k, floor):
            row[index] = prob
    return out


def top_label(probs: np.ndarray) -> np.ndarray:
    """Only the top label, with its probability (what the index stored before)."""
    out = np.zeros_like(probs)
    top = probs.argmax(axis=1)
    out[np.arange(len(probs)), top] = probs[np.arange(len(probs)), top]
    return out


def rank_all(
    queries: list[tuple[str, frozenset[int] | None, np.ndarray]], forms: dict[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """AP of each query under each stored form: {form: {word: AP}} (NaN for an unknown word)."""
    results: dict[str, dict[str, float]] = {}
    for form, probs in forms.items():
        results[form] = {
            word: (ap(concepts.concept_score(probs, classes), relevant) if classes else float("nan"))
            for word, classes, relevant in queries
        }
    return results


def classes_of(word: str) -> frozenset[int] | None:
    try:
        query = words.parse(word)
    except words.UnknownWords:
        return None
    return query.concepts[0].classes if query.concepts else None


def firing(probs: np.ndarray, relevant: np.ndarray, n: int = 5) -> str:
    """The classes with most mass on the relevant photos, with their lift over the others."""
    pos, neg = probs[relevant].mean(axis=0), probs[~relevant].mean(axis=0) + 1e-6
    top = np.argsort(-pos)[:n]
    return ", ".join(f"{concepts.concept_name(i)} {pos[i]:.2f} (x{pos[i] / neg[i]:.0f})" for i in top)


def date_checks(root: Path, now: datetime) -> tuple[int, int, list[str]]:
    """(passed, checks, failures): each EXIF-dated fixture inside its year, month, season and
    day typed as words, and outside the year before."""
    passed, total, failures = 0, 0, []
    for path in sorted((root / "photo-fixtures").rglob("*")):
        if path.suffix.lower() not in {".jpg", ".jpeg", ".heic", ".heif", ".tif", ".tiff", ".png", ".webp", ".avif"}:
            continue
        try:
            taken = photos.read_photo(path, 180_000_000).taken_at
        except (photos.PhotoError, OSError):
            continue
        if not taken:
            continue
        day = datetime.fromtimestamp(taken, UTC)
        season_year = day.year - 1 if day.month in (1, 2) else day.year  # winter 2022 is Dec 2022 - Feb 2023
        month = day.strftime("%B").lower()
        inside = [
            f"{day.year}",
            f"{month} {day.year}",
            f"{day:%b} {day.year}".lower(),
            f"{day:%Y-%m}",
            f"{day:%Y-%m-%d}",
            f"{SEASON_OF_MONTH[day.month]} {season_year}",
            f"{day.year - 1} to {day.year}",
            f"since {day.year}",
            f"before {day.year + 1}",
        ]
        outside = [f"{day.year - 1}", f"before {day.year}", f"since {day.year + 1}"]
        for text, want in [(t, True) for t in inside] + [(t, False) for t in outside]:
            start, end = words.parse(text, now=now).taken or (0, 0)
            total += 1
            if (start <= taken < end) == want:
                passed += 1
            else:
                failures.append(f"{path.relative_to(root)} {day:%Y-%m-%d %H:%M} {'in' if want else 'not in'} {text!r}")
    return passed, total, failures


def place_checks(root: Path) -> tuple[int, int, list[str], list[list[str]]]:
    from PIL import Image

    passed, rows, failures = 0, [], []
    for rel, want in GPS_PLACES.items():
        with Image.open(root / "photo-fixtures" / rel) as image:
            position = places.gps_from_exif(image.getexif())
        got = places.place_at(*position) if position else None
        if want is None:
            ok = got is None
        else:
            city, region, country = want
            ok = got is not None and got.region == region and got.country == country and (not city or got.city == city)
        passed += ok
        rows.append(
            [rel, "-" if got is None else f"{got.city} / {got.region} / {got.country}", "ok" if ok else "WRONG"]
        )
        if not ok:
            failures.append(f"{rel}: {got} (want {want})")
    return passed, len(GPS_PLACES), failures, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_datasets_arg(parser)
    parser.add_argument("--model", default="efficientnet_lite2")
    parser.add_argument("--rebuild", action="store_true", help="classify the photos again instead of the cache")
    parser.add_argument("--quick", action="store_true", help="only the product's storage form, no grid")
    args = parser.parse_args()
    root = C.datasets_dir(args.datasets)
    if not (root / "oxford-pets-sample").is_dir():
        raise SystemExit(f"SKIPPED: no oxford-pets-sample under {root} (set --datasets or ${C.DATASETS_ENV})")
    started = time.monotonic()
    paths, probs = probabilities(root, args.model, args.rebuild)
    folder = np.array([p.split("/")[0] for p in paths])
    breed = np.array([p.split("/")[1] if p.startswith("oxford") else "" for p in paths])
    forms = {"all 1000 (mass)": probs, "top label only": top_label(probs)}
    grid = [(concepts.TOP_K, concepts.MIN_PROB)] if args.quick else GRID
    for k, floor in grid:
        forms[f"top {k} >= {floor:g}"] = kept(probs, k, floor)
    product = f"top {concepts.TOP_K} >= {concepts.MIN_PROB:g}"
    print(f"{len(paths)} photos classified by {args.model}; product form: {product}")

    # Breeds: Oxford + landscapes.
    pool = np.isin(folder, ["oxford-pets-sample", "landscapes"])
    breed_queries = [(name, classes_of(name), breed[pool] == folder_name) for folder_name, name in BREEDS.items()]
    breed_ap = rank_all(breed_queries, {form: p[pool] for form, p in forms.items()})

    # The word list: every photo.
    judged = tomllib.loads(RELEVANT.read_text())
    is_cat = np.array([b[:1].isupper() for b in breed]) & (folder == "oxford-pets-sample")
    is_dog = np.array([b[:1].islower() for b in breed]) & (folder == "oxford-pets-sample")
    word_queries = []
    for word, listed in judged.items():
        relevant = np.isin(paths, listed)
        relevant |= is_dog if word == "dog" else is_cat if word == "cat" else False
        word_queries.append((word, classes_of(word), relevant))
    word_ap = rank_all(word_queries, forms)

    def mean(values: dict[str, float]) -> float:
        return float(np.nanmean(list(values.values())))

    rows = [
        [
            form,
            f"{mean(breed_ap[form]):.3f}",
            f"{mean(word_ap[form]):.3f}",
            f"{kept_pairs(form, p):.1f}",
            f"{kept_pairs(form, p) * 8:.0f}",
        ]
        for form, p in forms.items()
    ]
    print()
    print(
        C.table(
            [
                "stored form",
                f"breeds mAP ({len(BREEDS)})",
                f"word list mAP ({sum(1 for q in word_queries if q[1])})",
                "pairs/photo",
                "bytes/photo",
            ],
            rows,
            title="Concept mAP by what each photo keeps of its probabilities "
            "(pairs: classes kept, mean; bytes: int32 index + float32 probability each)",
        )
    )
    base = mean(breed_ap["all 1000 (mass)"]), mean(word_ap["all 1000 (mass)"])
    breeds_kept, words_kept = mean(breed_ap[product]), mean(word_ap[product])
    print(
        f"\nproduct form {product}: breeds {breeds_kept:.3f} ({breeds_kept - base[0]:+.3f} vs all 1000), "
        f"word list {words_kept:.3f} ({words_kept - base[1]:+.3f})"
    )
    # Scene words on pet photos: the classifier's mass goes to the pet, not the sofa under it.
    oxford = folder == "oxford-pets-sample"
    behind = {w for w, c, r in word_queries if c and w not in ("dog", "cat") and (r & oxford).sum() > r.sum() / 2}
    alone = {w for w, c, _ in word_queries if c} - behind
    for label, group in (("mostly of pets", behind), ("mostly without a pet", alone)):
        values = [word_ap["all 1000 (mass)"][w] for w in sorted(group)]
        print(f"  words whose photos are {label} ({', '.join(sorted(group))}): mAP {np.mean(values):.3f}")
    print()
    print(
        C.table(
            ["word", "classes", "photos (pets)", "AP all", "AP top label", f"AP {product}", "classes firing on them"],
            [
                [
                    word,
                    len(classes) if classes else "unknown",
                    f"{int(relevant.sum())} ({int((relevant & oxford).sum())})",
                    f"{word_ap['all 1000 (mass)'][word]:.3f}",
                    f"{word_ap['top label only'][word]:.3f}",
                    f"{word_ap[product][word]:.3f}",
                    firing(probs, relevant),
                ]
                for word, classes, relevant in word_queries
            ]
            + [
                [
                    name,
                    len(classes) if classes else "unknown",
                    int(relevant.sum()),
                    f"{breed_ap['all 1000 (mass)'][name]:.3f}",
                    f"{breed_ap['top label only'][name]:.3f}",
                    f"{breed_ap[product][name]:.3f}",
                    "",
                ]
                for name, classes, relevant in breed_queries
            ],
            title="Per word (word list: all photos; breeds: Oxford + landscapes)",
        )
    )
    weak = sorted(
        (ap_, word) for word, ap_ in {**word_ap["all 1000 (mass)"], **breed_ap["all 1000 (mass)"]}.items() if ap_ < 0.7
    )
    print("\nweak words (AP < 0.7, all 1000): " + ", ".join(f"{w} {a:.2f}" for a, w in weak))
    unknown = [word for word, classes, _ in word_queries if not classes]
    if unknown:
        print(f"not in the vocabulary (petwatch names them as unknown words): {', '.join(unknown)}")

    now = datetime(2026, 12, 7, 12, 0)
    date_ok, date_total, date_failures = date_checks(root, now)
    place_ok, place_total, place_failures, place_rows = place_checks(root)
    print()
    print(C.table(["GPS fixture", "place_at: city / region / country", ""], place_rows, title="Places from GPS"))
    print(f"\ndates: {date_ok}/{date_total} checks right; places: {place_ok}/{place_total} fixtures right")
    for failure in (date_failures + place_failures)[:20]:
        print(f"  WRONG {failure}")
    print(f"\n({time.monotonic() - started:.0f}s)")
    payload = {
        "model": args.model,
        "photos": len(paths),
        "product_form": product,
        "breeds_map": {form: mean(v) for form, v in breed_ap.items()},
        "words_map": {form: mean(v) for form, v in word_ap.items()},
        "breeds_ap": breed_ap,
        "words_ap": word_ap,
        "dates": {"passed": date_ok, "checks": date_total, "failures": date_failures},
        "places": {"passed": place_ok, "fixtures": place_total, "failures": place_failures},
    }
    print(f"results: {C.write_results('bench_words', payload)}")


def kept_pairs(form: str, probs: np.ndarray) -> float:
    """How many (class, probability) pairs a photo keeps in a form, on average."""
    return 1000.0 if form.startswith("all") else float((probs > 0).sum(axis=1).mean())


if __name__ == "__main__":
    main()
