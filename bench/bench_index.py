"""Indexing throughput: petwatch's indexer against the seed article's one-photo-at-a-time loop.

    python bench/bench_index.py                 # resnet50 + efficientnet_lite0/1/2, 96 photos
    python bench/bench_index.py --quick         # resnet50 only, 24 photos (< 2 min)
    python bench/bench_index.py --photos DIR    # your own photos instead of generated ones
    python bench/bench_index.py --profile       # + where petwatch's time goes (resnet50)

Baseline ("seed"), measured in the same run on the same files with the same model and weights:
for each photo, ``Image.open(path).convert('RGB')`` (full decode, no draft), timm's
``create_transform(**resolve_data_config(model))``, a forward pass of that single image and
ONE pymilvus ``insert`` into a Milvus Lite collection.

Petwatch: ``Library(settings).indexer.reconcile([folder])`` with ``PETWATCH_HOME`` in a temp
dir, which is what ``petwatch index`` runs.

Each variant runs in its own fresh process, so its peak RSS (process tree, Milvus Lite's
server process included) is its own. Photos: N camera-size JPEGs (12 MP, quality 90)
generated from the real photos in the datasets folder, upscaled with sensor-like noise, and
cached in a temp dir for the next run (``--fresh`` regenerates).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MODELS = ["resnet50", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
TARGET_RATIO = 3.5
TARGET_MODEL = "resnet50"
CACHE = Path(tempfile.gettempdir()) / "petwatch-bench"


# =============================================================================================
# workers (each runs in a fresh process)
# =============================================================================================
def _photo_files(folder: Path) -> list[Path]:
    from petwatch import photos

    return sorted(p for p, _ in photos.iter_photo_files(folder))


def worker_seed(args: argparse.Namespace) -> dict:
    """The seed article's loop: decode, transform, forward and insert, one photo at a time."""
    with C.PeakRSS() as peak:
        started = time.perf_counter()
        import timm.data
        import torch
        from PIL import Image
        from pymilvus import MilvusClient

        from petwatch.engine import build_model  # only to load the very same weights

        model, source, _classifier = build_model(args.model, args.weights)
        model.reset_classifier(0)  # the seed loop embeds pooled features only
        model.eval()
        config = timm.data.resolve_data_config({}, model=model)
        transform = timm.data.create_transform(**config)
        dim = int(model.num_features)
        client = MilvusClient(str(Path(args.home) / "seed.db"))
        client.create_collection("photos", dimension=dim, metric_type="COSINE")
        files = _photo_files(Path(args.folder))
        ready = time.perf_counter()
        for i, path in enumerate(files):
            image = Image.open(path).convert("RGB")
            tensor = transform(image).unsqueeze(0)
            with torch.no_grad():
                feature = model(tensor)[0]
            feature = feature / feature.norm()
            client.insert("photos", [{"id": i, "vector": feature.tolist(), "path": str(path)}])
        finished = time.perf_counter()
        stored = client.query("photos", filter="", output_fields=["count(*)"])[0]["count(*)"]
        client.close()
    seconds = finished - ready
    return {
        "variant": "seed",
        "model": args.model,
        "weights": source,
        "dim": dim,
        "images": len(files),
        "stored": int(stored),
        "seconds": seconds,
        "images_per_s": len(files) / seconds,
        "startup_s": ready - started,
        "torch_threads": torch.get_num_threads(),
        "peak_rss": peak.peak,
        "peak_rss_self": peak.peak_self,
        "peak_rss_milvus": peak.peak_children,
    }


def _probe_image():
    from PIL import Image

    return Image.new("RGB", (640, 480))


def _input_sizes(embedder) -> str:
    """The model input(s) per photo: "224", or "224+336" when region views run a second pass."""
    sizes = [int(embedder.transform(_probe_image()).shape[-1])]
    region = getattr(embedder, "region_transform", None)
    if region is not None:
        sizes.append(int(region(_probe_image()).shape[-1]))
    return "+".join(map(str, sizes))


def worker_petwatch(args: argparse.Namespace) -> dict:
    """What ``petwatch index`` runs: open the Library, reconcile the folder."""
    os.environ["PETWATCH_HOME"] = args.home
    with C.PeakRSS() as peak:
        started = time.perf_counter()
        from petwatch.library import Library
        from petwatch.settings import Settings

        overrides = dict(item.split("=", 1) for item in args.set or [])
        settings = Settings(model=args.model, model_weights=args.weights, **overrides)
        library = Library(settings)
        for patch in args.patch or []:
            C.apply_patch(library.embedder, patch)
        ready = time.perf_counter()
        cpu_before = C.tree_cpu_seconds()
        report = library.indexer.reconcile([args.folder])
        finished = time.perf_counter()
        cpu_used = C.tree_cpu_seconds() - cpu_before
        stored = library.store.count()
        library.close()
    seconds = finished - ready
    problems = {**report.skipped, **report.failed}
    return {
        "variant": "petwatch",
        "model": args.model,
        "weights": library.embedder.weights_source,
        "dim": library.embedder.dim,
        "images": report.indexed + report.reused,
        "stored": stored,
        "seconds": seconds,
        "images_per_s": (report.indexed + report.reused) / seconds,
        "startup_s": ready - started,
        # CPU time of petwatch and Milvus Lite over the run, as a share of every core's time
        "cores_busy": cpu_used / (seconds * (os.cpu_count() or 1)),
        # torch is not imported where ONNX Runtime runs a cached export
        "torch_threads": sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None,
        "engine": getattr(library.embedder, "engine", "torch"),  # a petwatch from before engine.py: torch
        "settings": {
            name: getattr(settings, name)
            for name in ("batch_size", "decode_threads", "draft_decode", "region_views", "precision", "engine")
            if hasattr(settings, name)
        },
        "decode_threads": library.indexer.decode_threads,
        "settings_overrides": overrides,
        "views": getattr(library.embedder, "views", 1),
        "dtype": str(getattr(library.embedder, "dtype", "torch.float32")).removeprefix("torch."),
        "input_px": _input_sizes(library.embedder),
        "patches": args.patch or [],
        "problems": dict(list(problems.items())[:5]),
        "peak_rss": peak.peak,
        "peak_rss_self": peak.peak_self,
        "peak_rss_milvus": peak.peak_children,
    }


def worker_profile(args: argparse.Namespace) -> dict:
    """Where one photo's time goes, stage by stage, on this machine (see README)."""
    import io

    import numpy as np
    import torch
    from PIL import Image
    from pymilvus import MilvusClient

    from petwatch import photos
    from petwatch.embed import Embedder

    files = _photo_files(Path(args.folder))[: args.profile_n]
    out: dict = {"model": args.model, "photos": len(files), "stages_ms": {}, "forward_ms_per_image": {}}
    stages = out["stages_ms"]

    def timed(label: str, fn, items):
        """Mean ms per item, the better of two passes (this box is shared)."""
        fn(items[0])  # warm
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            results = [fn(item) for item in items]
            best = min(best, (time.perf_counter() - t) / len(items) * 1000)
        stages[label] = best
        return results

    import inspect

    from petwatch.settings import Settings

    os.environ["PETWATCH_HOME"] = args.home
    settings = Settings(model=args.model, model_weights=args.weights)
    kwargs = {}
    if "region_views" in inspect.signature(Embedder).parameters:  # newer petwatch
        kwargs["region_views"] = getattr(settings, "region_views", False)
    embedder = Embedder(args.model, args.weights, "cpu", settings.batch_size, engine="torch", **kwargs)
    out["settings"] = {"batch_size": settings.batch_size, **kwargs}
    network = embedder.session.network.inner  # the timm model
    transform = embedder.transform
    min_side = embedder.decode_min_side
    blobs = timed("read file", lambda p: p.read_bytes(), files)
    timed("read_photo (read+sniff+hash+EXIF)", lambda p: photos.read_photo(p, 180_000_000), files)
    timed("blake2b hash only", photos.content_hash, blobs)
    full = timed("full decode (open.convert RGB)", lambda b: Image.open(io.BytesIO(b)).convert("RGB"), blobs)
    drafts = timed(f"draft decode (photos.decode, min_side {min_side})", lambda b: photos.decode(b, min_side), blobs)
    out["draft_size"] = list(drafts[0].size)
    out["input_px"] = _input_sizes(embedder)
    timed("transform (numpy, as timm) of full-size image", transform, full)
    tensors = timed("transform (numpy, as timm) of draft image", transform, drafts)
    del full

    import copy

    region_transform = getattr(embedder, "region_transform", None)
    region_tensors = (
        timed("region transform of draft image (region views)", region_transform, drafts)
        if region_transform is not None
        else None
    )

    def net_for(mode: str, fmt, x):
        if mode == "bf16":
            return copy.deepcopy(network).to(torch.bfloat16).to(memory_format=fmt), x.to(torch.bfloat16)
        net = network.to(memory_format=fmt)
        if mode == "jit":
            with torch.no_grad():
                return torch.jit.freeze(torch.jit.trace(net, x)), x
        return net, x

    def forward_ms(batch: int, channels_last: bool, threads: int, mode: str = "fp32", inputs=None) -> float:
        torch.set_num_threads(threads)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        inputs = inputs or tensors
        x = torch.stack([torch.from_numpy(inputs[i % len(inputs)]) for i in range(batch)]).to(memory_format=fmt)
        net, x = net_for(mode, fmt, x)
        reps = max(2, 32 // batch)
        best = float("inf")
        with torch.inference_mode():
            net(x)
            for _ in range(3):  # best of three: this box is shared
                t = time.perf_counter()
                for _ in range(reps):
                    net(x)
                best = min(best, (time.perf_counter() - t) / (reps * batch) * 1000)
        return best

    cores = os.cpu_count() or 1
    grid = out["forward_ms_per_image"]
    px = int(tensors[0].shape[-1])
    plan = [
        (1, False, 1, "fp32"),
        (1, False, cores, "fp32"),
        (16, False, cores, "fp32"),
        (1, True, 1, "fp32"),
        (16, True, 1, "fp32"),
        (16, True, cores, "fp32"),
        (32, True, cores, "fp32"),
        (16, True, cores, "jit"),
        (16, True, cores, "bf16"),
    ]
    for batch, cl, threads, mode in plan:
        label = f"{px}px threads={threads} batch={batch} channels_last={cl} {mode}"
        try:
            grid[label] = forward_ms(batch, cl, threads, mode)
        except Exception as error:  # noqa: BLE001 - not every CPU/torch has bf16 kernels
            grid[label] = f"error: {error}"
    if region_tensors is not None:
        rpx = int(region_tensors[0].shape[-1])
        for mode in ("fp32", "bf16"):
            label = f"{rpx}px (region pass) threads={cores} batch=16 channels_last=True {mode}"
            try:
                grid[label] = forward_ms(16, True, cores, mode, region_tensors)
            except Exception as error:  # noqa: BLE001
                grid[label] = f"error: {error}"
    torch.set_num_threads(cores)
    grid.update(_onnx_forward_ms(args, tensors))

    # Insert: one row per call (seed) vs petwatch's Store.upsert of a batch.
    vectors = np.random.default_rng(0).standard_normal((64, embedder.dim)).astype(np.float32)
    client = MilvusClient(str(Path(args.home) / "profile.db"))
    client.create_collection("one", dimension=embedder.dim, metric_type="COSINE")
    t = time.perf_counter()
    for i, v in enumerate(vectors):
        client.insert("one", [{"id": i, "vector": v.tolist(), "path": f"/p/{i}.jpg"}])
    stages["milvus insert, 1 row per call"] = (time.perf_counter() - t) / len(vectors) * 1000
    client.close()
    os.environ["PETWATCH_HOME"] = args.home
    from petwatch.store import PhotoRow, Store, photo_record

    store = Store(str(Path(args.home) / "store.db"), "photos", "bench/1", embedder.dim)
    rows = [
        PhotoRow(photo_record(path=f"/p/{i}.jpg", content_hash=f"{i:032x}", size=1, mtime_ns=1, width=1, height=1), v)
        for i, v in enumerate(vectors)
    ]
    for start in (0, 16):  # first call warms the collection
        chunk = rows[start : start + 16]
        t = time.perf_counter()
        store.upsert(chunk)
    stages["Store.upsert, per row in a batch of 16"] = (time.perf_counter() - t) / 16 * 1000
    store.close()
    return out


@contextlib.contextmanager
def onnx_forwards(folder: Path, size: int, pixels) -> Iterator[dict[str, Callable[[], object]]]:
    """ONNX Runtime's two ways of running one batch of ``pixels`` from the export in ``folder``:
    one run on every core, and petwatch's runs side by side on a share of the batch each
    (``engine.onnx_parallel_runs``); labelled with their runs and threads, the second last."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from petwatch import engine

    cores = os.cpu_count() or 1
    one = engine.OnnxSession(folder, (size,), parallel_runs=1)
    side_by_side = engine.OnnxSession(folder, (size,))
    runs = side_by_side.parallel_runs
    shares = np.array_split(pixels, runs)
    with ThreadPoolExecutor(runs) as pool:
        yield {
            f"ONNX Runtime, 1 run x {cores} threads": lambda: one.run(pixels),
            f"ONNX Runtime, {runs} runs x {cores // runs} threads": lambda: list(pool.map(side_by_side.run, shares)),
        }


def _onnx_forward_ms(args: argparse.Namespace, tensors: list) -> dict[str, float | str]:
    """ms per image through ONNX Runtime (the engine petwatch runs on CPU) both ways
    (``onnx_forwards``), 16 photos a round, best of three."""
    import numpy as np

    from petwatch import engine

    os.environ.setdefault("PETWATCH_MODELS_DIR", str(CACHE / "models"))
    px = int(tensors[0].shape[-1])
    try:
        engine.open_session(args.model, args.weights, "cpu", "float32", "onnx")  # the export, made once
    except Exception as error:  # noqa: BLE001 - a network that does not export
        return {f"{px}px ONNX Runtime": f"error: {error}"}
    x = np.stack([tensors[i % len(tensors)] for i in range(16)])
    out: dict[str, float | str] = {}
    with onnx_forwards(engine.export_folder(args.model, args.weights), px, x) as forwards:
        for label, forward in forwards.items():
            forward()  # warm
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                forward()
                best = min(best, (time.perf_counter() - t) / 16 * 1000)
            out[f"{px}px {label}, 16 photos"] = best
    return out


# =============================================================================================
# driver
# =============================================================================================
def photo_set(args: argparse.Namespace, datasets: Path) -> tuple[Path, str]:
    """The folder both variants index, holding exactly ``n`` photos, and how it was made."""
    if args.photos:
        source = args.photos.expanduser().absolute()
        files = _photo_files(source)
        if not files:
            sys.exit(f"no photos under {source}")
        chosen = files[: args.n] if args.n else files
        link_dir = Path(tempfile.mkdtemp(prefix="petwatch-bench-set-"))
        for i, path in enumerate(chosen):
            os.symlink(path, link_dir / f"{i:05d}{path.suffix.lower()}")
        return link_dir, f"{len(chosen)} photos from {source}"
    photos_dir = CACHE / f"camera-{args.width}x{args.height}-q90"
    if args.fresh and photos_dir.exists():
        shutil.rmtree(photos_dir)
    found, reason = C.dataset_part(datasets, C.LANDSCAPES)
    if found is None:
        found, reason = C.dataset_part(datasets, C.PETS)
    real = datasets if found is not None else None
    origin = (
        f"upscaled real photos from {datasets}"
        if real
        else (f"smooth random colour fields (real photos unavailable: {reason})")
    )
    print(f"photos: {args.n} x {args.width}x{args.height} q90 JPEGs in {photos_dir} ({origin})")
    all_files = C.make_camera_jpegs(photos_dir, max(args.n, _count_existing(photos_dir)), real, args.width, args.height)
    link_dir = Path(tempfile.mkdtemp(prefix="petwatch-bench-set-"))
    for path in all_files[: args.n]:
        os.symlink(path, link_dir / path.name)
    return link_dir, f"{args.n} generated {args.width}x{args.height} q90 JPEGs ({origin})"


def _count_existing(folder: Path) -> int:
    return len(list(folder.glob("IMG_*.jpg"))) if folder.is_dir() else 0


def resnet_weights() -> Path:
    """Random-init resnet50 weights as a state-dict file (the hub is unreachable here)."""
    path = CACHE / "resnet50-random-init.pth"
    if not path.exists():
        import timm
        import torch

        CACHE.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save(timm.create_model("resnet50", pretrained=False).state_dict(), path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)
    return path


def run_variant(
    variant: str,
    model: str,
    weights: Path | None,
    folder: Path,
    extra: list[str] | None = None,
    src: Path | None = None,
) -> dict:
    """One worker in a fresh process; ``src``: another checkout's ``src/`` to import petwatch
    from (an older petwatch, for a before/after in one run)."""
    home = tempfile.mkdtemp(prefix=f"petwatch-bench-{variant}-")
    try:
        argv = [__file__, "--worker", variant, "--model", model, "--folder", str(folder), "--home", home]
        if weights:
            argv += ["--weights", str(weights)]
        argv += extra or []
        # Exports for ONNX Runtime are kept between runs (keyed by weights and versions): a
        # run's startup is then what a user sees from the second start on.
        env = C.clean_env(PETWATCH_MODELS_DIR=str(CACHE / "models"))
        if src is not None:
            env["PYTHONPATH"] = str(src)
        return C.run_worker(argv, env=env)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _rss(result: dict) -> str:
    return (
        f"{C.mib(result['peak_rss'])} ({result['peak_rss_self'] / 2**20:,.0f}+{result['peak_rss_milvus'] / 2**20:,.0f})"
    )


def _default_dtype() -> str | None:
    """The dtype petwatch's default ``precision`` picks on this machine, e.g. "bfloat16"
    (None: an older petwatch without the setting)."""
    try:
        import torch

        from petwatch.engine import pick_dtype
        from petwatch.settings import Settings
    except ImportError:
        return None
    field = Settings.model_fields.get("precision")
    return str(pick_dtype(field.default, torch.device("cpu"))).removeprefix("torch.") if field else None


def _region_views_default() -> bool:
    """Whether petwatch's default settings embed region views (a newer feature: 1.5x input)."""
    from petwatch.settings import Settings

    field = Settings.model_fields.get("region_views")
    return bool(field is not None and field.default)


def measure(
    args: argparse.Namespace, variant: str, model: str, weights: Path | None, folder: Path, extra: list[str] | None
) -> list[dict]:
    """``args.repeat`` undisturbed runs of a variant (retrying disturbed ones, up to 3x as many)."""
    results: list[dict] = []
    clean = 0
    while clean < args.repeat and len(results) < 3 * args.repeat:
        C.wait_for_quiet(args.idle_wait)
        print(f"[{model}] {variant} run {len(results) + 1} ...", flush=True)
        result = run_variant(variant, model, weights, folder, extra)
        disturbed = result["foreign_load_cores"] > C.DISTURBED
        clean += not disturbed
        print(
            f"  {variant}: {result['images_per_s']:.2f} images/s ({result['images']} in "
            f"{result['seconds']:.1f}s; other processes used {result['foreign_load_cores']:.2f} cores "
            f"meanwhile{': disturbed, not counted' if disturbed else ''})",
            flush=True,
        )
        results.append(result)
    return results


def best(results: list[dict]) -> dict:
    """The fastest undisturbed run (disturbance only ever slows a run down), else the fastest."""
    clean = [r for r in results if r["foreign_load_cores"] <= C.DISTURBED]
    return max(clean or results, key=lambda r: r["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_datasets_arg(parser)
    parser.add_argument("--n", type=int, default=None, help="photos per run (default 96, --quick 32)")
    parser.add_argument("--quick", action="store_true", help="resnet50 only, 32 photos")
    parser.add_argument("--models", default=None, help=f"comma-separated (default: {','.join(MODELS)})")
    parser.add_argument("--photos", type=Path, default=None, help="index these photos instead of generated ones")
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument(
        "--repeat", type=int, default=1, help="undisturbed runs per variant; the fastest is reported (default 1)"
    )
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=None,
        help="before each run, wait up to this many seconds for other processes to go quiet (default 120, --quick 20)",
    )
    parser.add_argument("--fresh", action="store_true", help="regenerate the cached photos")
    parser.add_argument("--profile", action="store_true", help="also break petwatch's time down by stage")
    parser.add_argument("--profile-n", type=int, default=12, help="photos used by --profile")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="petwatch setting for the petwatch runs (e.g. --set batch_size=32); repeatable",
    )
    parser.add_argument(
        "--patch",
        action="append",
        choices=sorted(C.PATCHES),
        help="prototype a src/ change in the petwatch runs (bench only): "
        + "; ".join(f"{k}: {v}" for k, v in C.PATCHES.items()),
    )
    parser.add_argument("--worker", choices=["seed", "petwatch", "profile"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        C.emit({"seed": worker_seed, "petwatch": worker_petwatch, "profile": worker_profile}[args.worker](args))
        return

    args.n = args.n or (32 if args.quick else 96)
    if args.idle_wait is None:
        args.idle_wait = 20.0 if args.quick else 120.0
    models = args.models.split(",") if args.models else ([TARGET_MODEL] if args.quick else MODELS)
    datasets = C.datasets_dir(args.datasets)
    folder, described = photo_set(args, datasets)
    print(f"indexing {described}; {os.cpu_count()} CPU cores")
    weights = resnet_weights() if "resnet50" in models else None
    extra = [arg for item in args.set or [] for arg in ("--set", item)]
    extra += [arg for item in args.patch or [] for arg in ("--patch", item)]
    if args.set or args.patch:
        print(f"petwatch runs modified: settings {args.set or []}, patches {args.patch or []}")
    region_default = _region_views_default()
    default_dtype = _default_dtype()
    runs = []
    try:
        for model in models:
            w = weights if model == "resnet50" else None
            variants = [
                (
                    "product defaults"
                    + (f" + {' '.join(args.set or [])} {' '.join(args.patch or [])}" if args.set or args.patch else ""),
                    extra,
                )
            ]
            if (
                model == TARGET_MODEL
                and default_dtype not in (None, "float32")
                and not any(item.startswith("precision=") for item in args.set or [])
            ):
                # What the default's reduced precision buys, against plain float32.
                variants.append(("precision=float32", extra + ["--set", "precision=float32"]))
            if model == TARGET_MODEL and not any(item.startswith("region_views=") for item in args.set or []):
                # The other side of the region-views trade (off by default since it costs ~3x).
                variants.append(
                    ("region_views=false (seed's input size)", extra + ["--set", "region_views=false"])
                    if region_default
                    else ("region_views=true (+1.5x region pass)", extra + ["--set", "region_views=true"])
                )
            seed_tries = measure(args, "seed", model, w, folder, None)
            seed = best(seed_tries)
            for label, variant_extra in variants:
                tries = measure(args, "petwatch", model, w, folder, variant_extra)
                pet = best(tries)
                if pet["images"] != seed["images"] or pet["problems"]:
                    print(f"  WARNING: petwatch indexed {pet['images']} of {seed['images']}: {pet['problems']}")
                runs.append(
                    {
                        "model": model,
                        "variant": label,
                        "seed": seed,
                        "petwatch": pet,
                        "tries": {"seed": seed_tries, "petwatch": tries},
                        "ratio": pet["images_per_s"] / seed["images_per_s"],
                    }
                )
        profile = None
        if args.profile:
            print("\n[profile] stage timings ...", flush=True)
            C.wait_for_quiet(args.idle_wait)
            profile = run_variant(
                "profile",
                TARGET_MODEL if TARGET_MODEL in models else models[0],
                weights,
                folder,
                ["--profile-n", str(args.profile_n)],
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    rows = []
    for run in runs:
        s, p = run["seed"], run["petwatch"]
        rows.append(
            [
                run["model"],
                run["variant"],
                f"{p.get('input_px', '?')}px x{p.get('views', 1)} {p.get('dtype', 'float32')}",
                f"{s['images_per_s']:.2f}",
                f"{p['images_per_s']:.2f}",
                f"{run['ratio']:.2f}x",
                _rss(s),
                _rss(p),
                f"{s['startup_s']:.1f}s",
                f"{p['startup_s']:.1f}s",
                f"{s['foreign_load_cores']:.2f}/{p['foreign_load_cores']:.2f}",
            ]
        )
    print()
    print(
        C.table(
            [
                "model",
                "petwatch settings",
                "input x views, dtype",
                "seed img/s",
                "petwatch img/s",
                "ratio",
                "seed peak RSS",
                "petwatch peak RSS",
                "seed startup",
                "petwatch startup",
                "other load (cores)",
            ],
            rows,
            title=f"Indexing {described}; seed = one photo at a time at the model's own input size; "
            f"peak RSS = process tree (python process + Milvus Lite server)",
        )
    )
    target = next((r for r in runs if r["model"] == TARGET_MODEL), None)
    ok = None if target is None else target["ratio"] >= TARGET_RATIO
    if any(max(r["seed"]["foreign_load_cores"], r["petwatch"]["foreign_load_cores"]) > C.DISTURBED for r in runs):
        print(
            f"\nNOTE: other processes kept > {C.DISTURBED} cores busy during a reported run: its figures "
            "are disturbed (the one-image-at-a-time seed loop suffers most); rerun on a quiet machine"
        )
    if target:
        print(
            f"\ntarget: {TARGET_MODEL} ({target['variant']}) ratio >= {TARGET_RATIO}x: "
            f"{target['ratio']:.2f}x  {C.verdict(ok)}"
        )
        for run in runs:
            if run["model"] == TARGET_MODEL and run is not target:
                print(
                    f"        {TARGET_MODEL} ({run['variant']}): {run['ratio']:.2f}x  "
                    f"{C.verdict(run['ratio'] >= TARGET_RATIO)}"
                )
    if profile:
        print()
        print(
            C.table(
                ["stage", "ms / photo"],
                [[k, f"{v:.1f}"] for k, v in profile["stages_ms"].items()],
                title=f"[profile] {profile['model']}, {profile['photos']} photos, one thread "
                f"(draft decodes to {profile['draft_size']}, model input {profile['input_px']} px)",
            )
        )
        print()
        print(
            C.table(
                ["forward (petwatch's network, its input size)", "ms / image"],
                [[k, f"{v:.1f}" if isinstance(v, float) else v] for k, v in profile["forward_ms_per_image"].items()],
            )
        )
    path = C.write_results(
        "bench_index",
        {
            "photos": described,
            "n": args.n,
            "runs": runs,
            "target": {"model": TARGET_MODEL, "ratio": TARGET_RATIO, "met": ok},
            "profile": profile,
            "versions": C.versions("torch", "timm", "pillow", "pymilvus", "milvus-lite"),
        },
    )
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
