"""The photos bench_whitening.py fits and scores on, embedded once (raw: before whitening)
and cached under bench/results/, so that many projections are fit and scored from one pass.

Sets (all built on the fly from ``../shared/datasets``, deterministic, never committed):
  originals  every dataset photo: DogFaceNet faces (label = dog), Oxford (label = breed),
             landscapes and fixtures (no label)
  scenes     the same pet in other scenes: each Oxford photo cut around its middle, scaled,
             maybe flipped and pasted onto 3 different backgrounds (landscapes, fixtures,
             other Oxford photos); DogFaceNet photos of ``SCENE_DOGS`` dogs pasted once each.
             Identity = the source photo (Oxford) or the dog (DogFaceNet).
  small      every Oxford photo pasted at 30% of the width onto a landscape (bench_pets'
             composite): the small-pet test, queried by the original photos
  shifted    near-identical frames: Oxford photos shifted by a few pixels and re-encoded
             (what a burst looks like), to map burst thresholds into the whitened space
"""

from __future__ import annotations

import hashlib
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

DOGS = "dogfacenet-dev"
FIXTURES = "photo-fixtures"
SCENES_PER_PHOTO = 3
SCENE_DOGS = 80
SHIFTED = 120
CANVAS = (640, 480)


def cache_file(model: str) -> Path:
    return C.RESULTS_DIR / f"whitening-raw-{model}.npz"


def _seed(*parts: object) -> int:
    return int(hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).hexdigest(), 16)


def gather(root: Path) -> list[tuple[Path, str, str]]:
    """(path, group, label) of every dataset photo; group: dog, breed or none."""
    found: list[tuple[Path, str, str]] = []
    for folder in sorted(p for p in (root / DOGS).iterdir() if p.is_dir()):
        found += [(p, "dog", folder.name) for p in sorted(folder.iterdir()) if p.suffix.lower() in C.PHOTO_SUFFIXES]
    found += [
        (p, "breed", p.parent.name) for p in sorted((root / C.PETS).glob("*/*")) if p.suffix.lower() in C.PHOTO_SUFFIXES
    ]
    for part in (C.LANDSCAPES, FIXTURES):
        found += [
            (p, "none", "")
            for p in sorted((root / part).rglob("*"))
            if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".heic", ".tif", ".tiff"}
        ]
    return found


def _background(path: Path, seed: int):
    from PIL import Image, ImageOps

    from petwatch import photos

    image = photos.decode(photos.read_photo(path, 180_000_000), 700).convert("RGB")
    return ImageOps.fit(image, CANVAS, Image.Resampling.BILINEAR, centering=((seed % 7) / 6, (seed % 5) / 4))


def paste_scene(pet, background, seed: int):
    """The pet photo cut around its middle (60-90% of each side), scaled to 35-65% of the
    canvas width, flipped for odd seeds, pasted at a seeded place onto ``background``."""
    from PIL import Image, ImageOps

    rng = np.random.default_rng(seed)
    w, h = pet.size
    keep = rng.uniform(0.6, 0.9)
    cw, ch = int(w * keep), int(h * keep)
    left, top = int(rng.uniform(0, w - cw)), int(rng.uniform(0, h - ch))
    piece = pet.crop((left, top, left + cw, top + ch))
    if seed % 2:
        piece = ImageOps.mirror(piece)
    width, height = CANVAS
    pw = int(width * rng.uniform(0.35, 0.65))
    ph = min(int(ch * pw / cw), int(height * 0.9))
    pw = int(cw * ph / ch)
    piece = piece.resize((pw, ph), Image.Resampling.BILINEAR)
    canvas = background.copy()
    canvas.paste(piece, (int(rng.uniform(0, width - pw)), int(rng.uniform(0, height - ph))))
    return canvas


def shifted_copy(image, seed: int):
    """A near-identical frame: shifted by 1-4% of the side, re-encoded as JPEG at quality 85."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = image.size
    dx, dy = int(w * rng.uniform(0.01, 0.04)), int(h * rng.uniform(0.01, 0.04))
    moved = image.crop((dx, dy, w, h)).resize((w, h), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    moved.save(buffer, "JPEG", quality=85)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def embed_images(embedder, images: list, started: float, every: int) -> tuple[np.ndarray, list[str]]:
    """Each image's stored (pet-focused, raw) vector and species, 32 at a time, with progress
    every ``every`` images (the camera rolls of bench_discovery embed the same way)."""
    vectors, species = [], []
    for start in range(0, len(images), 32):
        batch = images[start : start + 32]
        embedded = embedder.embed_batch(batch, [embedder.preprocess_views(im) for im in batch])
        vectors += [views[0] for views, *_ in embedded]
        species += [signal.species for _, _, signal, _ in embedded]
        if start % every == 0:
            print(f"  {start + len(batch)}/{len(images)} ({time.perf_counter() - started:.0f}s)", flush=True)
    return np.stack(vectors).astype(np.float32), species


def build(root: Path, model: str) -> dict[str, np.ndarray]:
    """Embed every set (raw product vectors: pet focus, not whitened) and cache them."""
    from concurrent.futures import ThreadPoolExecutor

    import bench_pets
    from petwatch import photos
    from petwatch.embed import Embedder

    embedder = Embedder(model, whiten=False)
    started = time.perf_counter()
    found = gather(root)

    def decode(item):
        try:
            return photos.decode(photos.read_photo(item[0], 180_000_000), embedder.decode_min_side).convert("RGB")
        except Exception:  # noqa: BLE001 - broken fixtures are skipped, as the indexer does
            return None

    with ThreadPoolExecutor(2) as pool:
        images = list(pool.map(decode, found))
    kept = [(item, im) for item, im in zip(found, images, strict=True) if im is not None]
    items = [item for item, _ in kept]
    images = [im for _, im in kept]
    sets = ["original"] * len(items)
    groups = [g for _, g, _ in items]
    labels = [label for _, _, label in items]
    sources = list(range(len(items)))  # which original a derived photo comes from

    lands = [p for p, g, _ in items if g == "none" and C.LANDSCAPES in p.parts]
    others = [p for p, g, _ in items if g == "none" and C.LANDSCAPES not in p.parts and p.suffix.lower() == ".jpg"]
    backgrounds = lands + others[:40]
    oxford = [i for i, (_, g, _) in enumerate(items) if g == "breed"]
    derived: list[tuple[str, int, object]] = []  # (set, source index, image)
    for i in oxford:
        for n in range(SCENES_PER_PHOTO):
            seed = _seed("scene", items[i][0].name, n)
            bg = backgrounds[seed % len(backgrounds)] if n < 2 else items[oxford[seed % len(oxford)]][0]
            derived.append(("scene", i, paste_scene(images[i], _background(bg, seed), seed)))
    rng = np.random.default_rng(0)
    dog_ids = sorted({label for _, g, label in items if g == "dog"})
    scene_dogs = set(rng.choice(dog_ids, size=SCENE_DOGS, replace=False).tolist())
    for i, (path, g, label) in enumerate(items):
        if g == "dog" and label in scene_dogs:
            seed = _seed("dogscene", path.name)
            derived.append(
                ("scene", i, paste_scene(images[i], _background(backgrounds[seed % len(backgrounds)], seed), seed))
            )
    for i in oxford:
        derived.append(("small", i, bench_pets.composite(items[i][0], lands)))
    for n, i in enumerate(oxford[:: max(1, len(oxford) // SHIFTED)][:SHIFTED]):
        derived.append(("shifted", i, shifted_copy(images[i], _seed("shift", n))))
    for kind, i, image in derived:
        sets.append(kind)
        groups.append(groups[i])
        labels.append(labels[i])
        sources.append(i)
        images.append(image)
    print(f"embedding {len(images)} photos ({len(items)} originals) ...", flush=True)
    vectors, species = embed_images(embedder, images, started, every=640)
    data = {
        "vectors": vectors,
        "set": np.array(sets),
        "group": np.array(groups),
        "label": np.array(labels),
        "source": np.array(sources),
        "species": np.array(species),
        "path": np.array([str(p) for p, _, _ in items] + [""] * len(derived)),
    }
    C.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cache_file(model), **data)
    print(f"embedded in {time.perf_counter() - started:.0f}s -> {cache_file(model)}", flush=True)
    return data


def load(root: Path, model: str, rebuild: bool = False) -> dict[str, np.ndarray]:
    path = cache_file(model)
    if path.exists() and not rebuild:
        with np.load(path) as cached:
            return {key: cached[key] for key in cached.files}
    return build(root, model)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    C.add_datasets_arg(parser)
    parser.add_argument("--model", default="efficientnet_lite2")
    args = parser.parse_args()
    C.strip_petwatch_env()
    load(C.datasets_dir(args.datasets), args.model, rebuild=True)
