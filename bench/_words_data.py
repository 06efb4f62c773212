"""Each shared photo's ImageNet class probabilities from the product's classifier pass (the
whole image, as the indexer sees it), cached in bench/results/ so bench_words reruns in seconds.

    python bench/_words_data.py [--datasets DIR] [--model efficientnet_lite2] [--rebuild]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import _common as C

SUFFIXES = {".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp", ".avif", ".tif", ".tiff"}
FOLDERS = ("oxford-pets-sample", "landscapes", "photo-fixtures")


def photo_paths(root: Path) -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (root / folder).rglob("*") if p.suffix.lower() in SUFFIXES)


def cache_path(model: str) -> Path:
    return C.RESULTS_DIR / f"words-probs-{model}.npz"


def probabilities(root: Path, model: str, rebuild: bool = False, log=print) -> tuple[list[str], np.ndarray]:
    """(paths relative to ``root``, probabilities (N, 1000)) of every photo that decodes."""
    cache = cache_path(model)
    wanted = [str(p.relative_to(root)) for p in photo_paths(root)]
    if cache.exists() and not rebuild:
        saved = np.load(cache)
        if saved["model"].item() == model and set(saved["paths"].tolist()) >= set(wanted) - set(saved["skipped"]):
            return saved["paths"].tolist(), saved["probs"]
    from petwatch import photos
    from petwatch.embed import Embedder

    embedder = Embedder(model, batch_size=16, pet_focus=None, whiten=False)
    kept, skipped, tensors = [], [], []
    started = time.monotonic()
    for rel in wanted:
        try:
            image = photos.open_upright(str(root / rel), 180_000_000, embedder.decode_min_side)
        except (photos.PhotoError, OSError):
            skipped.append(rel)  # the broken fixtures, JPEG XL
            continue
        kept.append(rel)
        tensors.append(embedder.transform(image.convert("RGB")))
    rows = []
    for start in range(0, len(tensors), 16):
        probs = embedder._features(tensors[start : start + 16])[1]
        assert probs is not None
        rows.append(np.asarray(probs, np.float32))
        log(f"  classified {min(start + 16, len(tensors))}/{len(tensors)} ({time.monotonic() - started:.0f}s)")
    probs = np.concatenate(rows)
    C.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, paths=np.array(kept), skipped=np.array(skipped), probs=probs, model=np.array(model))
    return kept, probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_datasets_arg(parser)
    parser.add_argument("--model", default="efficientnet_lite2")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    paths, probs = probabilities(C.datasets_dir(args.datasets), args.model, args.rebuild)
    print(f"{len(paths)} photos, {probs.shape} -> {cache_path(args.model)}")


if __name__ == "__main__":
    main()
