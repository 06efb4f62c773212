"""Which photos show a pet: what a lower species threshold, or a second opinion from the pet
crop's own classifier scores, would buy in recall against false positives.

Positives: the Oxford-IIIT Pet sample (370 photos, every one a cat or a dog; capitalised
folders are cat breeds). Negatives: the landscapes and the photo fixtures that decode (camera
samples, no pets). Each photo is classified whole (the product's rule: dog + cat probability
>= SHOWS_PET) and, as a second opinion, cropped around its top pet class's activation map
(the pet-focus crop) and classified again.

    python bench/bench_species.py            # every photo
    python bench/bench_species.py --quick    # a third of the Oxford photos
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _common import add_datasets_arg, datasets_dir
from petwatch import photos
from petwatch.embed import CAT_CLASSES, DOG_CLASSES, SHOWS_PET, Embedder, activation_maps

SUFFIXES = {".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp"}


def load(paths: list[Path], min_side: int) -> list[tuple[Path, object]]:
    loaded = []
    for path in paths:
        try:
            loaded.append((path, photos.open_upright(str(path), 180_000_000, min_side)))
        except (photos.PhotoError, OSError):
            continue  # broken fixtures
    return loaded


def scores(embedder: Embedder, images: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(whole dog prob, whole cat prob, crop pet prob) per image."""
    whole_dog, whole_cat, crop_pet = [], [], []
    for start in range(0, len(images), 16):
        batch = [image.convert("RGB") for image in images[start : start + 16]]
        _, probs, fmap = embedder._features([embedder.transform(image) for image in batch])
        assert probs is not None and fmap is not None
        numpy_probs = probs
        whole_dog += list(numpy_probs[:, DOG_CLASSES].sum(axis=1))
        whole_cat += list(numpy_probs[:, CAT_CLASSES].sum(axis=1))
        maps = activation_maps(fmap, probs, embedder.classifier_weight)
        crops = []
        for image, cam in zip(batch, maps, strict=True):
            box = embedder.pet_box(cam, image.size)
            crops.append(embedder.crop_transform(image.crop(box) if box else image))
        crop_probs = embedder._features(crops)[1]
        assert crop_probs is not None
        crop_numpy = crop_probs
        crop_pet += list(crop_numpy[:, np.r_[DOG_CLASSES, CAT_CLASSES]].sum(axis=1))
    return np.array(whole_dog), np.array(whole_cat), np.array(crop_pet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a third of the Oxford photos")
    parser.add_argument("--model", default="efficientnet_lite2")
    add_datasets_arg(parser)
    args = parser.parse_args()
    root = datasets_dir(args.datasets)
    oxford = sorted((root / "oxford-pets-sample").glob("*/*.jpg"))[:: 3 if args.quick else 1]
    negatives = sorted(
        p
        for folder in ("landscapes", "photo-fixtures")
        for p in (root / folder).rglob("*")
        if p.suffix.lower() in SUFFIXES
    )
    if not oxford:
        raise SystemExit(f"SKIPPED: no Oxford pets under {root}")
    embedder = Embedder(args.model, batch_size=16)
    pos = load(oxford, embedder.decode_min_side)
    neg = load(negatives, embedder.decode_min_side)
    is_cat = np.array([p.parent.name[0].isupper() for p, _ in pos])
    pos_dog, pos_cat, pos_crop = scores(embedder, [image for _, image in pos])
    neg_dog, neg_cat, neg_crop = scores(embedder, [image for _, image in neg])
    pos_pet, neg_pet = pos_dog + pos_cat, neg_dog + neg_cat
    print(f"{args.model}: {len(pos)} pet photos (Oxford), {len(neg)} photos without pets (landscapes, fixtures)")
    print("| rule | pets found | missed | false positives | species right |")
    print("|---|---:|---:|---:|---:|")
    rules = [(f"whole >= {SHOWS_PET} (the product)", pos_pet >= SHOWS_PET, neg_pet >= SHOWS_PET)]
    for low in (0.1, 0.05, 0.02):
        rules.append((f"whole >= {low}", pos_pet >= low, neg_pet >= low))
    for low in (0.1, 0.05, 0.0):
        rules.append(
            (
                f"whole >= {SHOWS_PET}, or >= {low} and the crop >= {SHOWS_PET}",
                (pos_pet >= SHOWS_PET) | ((pos_pet >= low) & (pos_crop >= SHOWS_PET)),
                (neg_pet >= SHOWS_PET) | ((neg_pet >= low) & (neg_crop >= SHOWS_PET)),
            )
        )
    for name, found, false in rules:
        right = int(((pos_cat >= pos_dog) == is_cat)[found].sum())
        counts = f"{int(found.sum())}/{len(pos)} | {int((~found).sum())} | {int(false.sum())}/{len(neg)}"
        print(f"| {name} | {counts} | {right}/{int(found.sum())} |")
    print("photos without pets taken for one by the product's rule (photo, whole pet score, crop pet score):")
    for (path, _), score, crop in zip(neg, neg_pet, neg_crop, strict=True):
        if score >= SHOWS_PET:
            print(f"  {path.relative_to(root)}  {score:.3f}  {crop:.3f}")
    print("missed by the product's rule (photo, whole pet score, crop pet score):")
    for (path, _), score, crop in zip(pos, pos_pet, pos_crop, strict=True):
        if score < SHOWS_PET:
            print(f"  {path.relative_to(root)}  {score:.3f}  {crop:.3f}")


if __name__ == "__main__":
    main()
