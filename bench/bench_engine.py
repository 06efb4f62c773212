"""The engine (engine.py): forward rates per engine, and `petwatch index` before and after.

    python bench/bench_engine.py            # 32 camera photos, 48 pet photos
    python bench/bench_engine.py --quick    # 16 and 32 (~5 min on 2 cores)

In one run, on this machine (its CPU model and flags are printed first):

1. Forward img/s, batch 16, every core, features + classifier, for efficientnet_lite2 (260 px)
   and resnet50 (224 px, random-init weights: the hub is unreachable; speed does not depend
   on the weights): torch eager, torch channels_last (what petwatch ran before), ONNX
   Runtime (the same network exported as petwatch exports it), best of 3 interleaved rounds.
2. End to end, ``petwatch index`` (bench_index.py's worker: a fresh process, a private home,
   the export cached as from a user's second start) with ``engine=torch`` (before) and
   ``engine=onnx`` (after), efficientnet_lite2 with the default settings, on 12 MP camera
   photos and on small pet photos (Oxford-IIIT), and resnet50 on the 12 MP photos against the
   seed article's one-photo-at-a-time loop.

Targets (issue 26): small pet photos >= 0.6 x (ONNX Runtime's forward rate / 2: each pet photo
takes two passes, whole and crop); 12 MP >= 2x engine=torch; resnet50 vs the seed >= 3.5x.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import bench_index as BI  # noqa: E402

SMALL_RATIO, CAMERA_RATIO, SEED_RATIO = 0.6, 2.0, 3.5
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu() -> tuple[str, str]:
    """(model name, the flags that matter to these engines)."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        lscpu = ""
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return fields.get("Model name", C.machine().get("cpu", "?")).strip(), " ".join(f for f in FLAGS if f in flags)


def forward_rates(model: str, weights: Path | None, batch: int, rounds: int = 3) -> dict[str, float]:
    """img/s of one batch through each engine (best of ``rounds`` interleaved rounds)."""
    import numpy as np
    import torch

    from petwatch import engine

    os.environ["PETWATCH_MODELS_DIR"] = str(BI.CACHE / "models")
    module, source, has_classifier = engine.build_model(model, weights)
    spec = engine.describe_model(model, module, source, has_classifier)
    size = spec.input_size
    pixels = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    eager = engine._heads(copy.deepcopy(module))
    folder = engine.export_folder(model, weights)
    started = time.perf_counter()
    onnx = engine._cached(folder, (size,))
    if onnx is None:
        engine.export(copy.deepcopy(module), spec, (size,), folder)
        onnx = engine.OnnxSession(folder, (size,))
        print(f"  [{model}] exported for ONNX Runtime in {time.perf_counter() - started:.1f}s", flush=True)
    channels_last = engine.TorchSession(module, spec, "cpu", "float32")
    torch.set_num_threads(os.cpu_count() or 1)

    def eager_run(x: np.ndarray) -> None:
        with torch.inference_mode():
            eager(torch.from_numpy(x))

    runs = {
        "torch eager fp32": eager_run,
        "torch channels_last fp32 (before)": channels_last.run,
        "ONNX Runtime fp32 (after)": onnx.run,
    }
    best = dict.fromkeys(runs, 0.0)
    for run in runs.values():
        run(pixels)  # warm
    for _ in range(rounds):
        for label, run in runs.items():
            t = time.perf_counter()
            run(pixels)
            run(pixels)
            best[label] = max(best[label], 2 * batch / (time.perf_counter() - t))
    return best


def int8(datasets: Path, rounds: int = 3) -> dict:
    """ONNX Runtime static INT8 (QDQ, per-channel weights, calibrated on 32 Oxford pet photos)
    against the fp32 export for efficientnet_lite2: forward img/s, and on 16 other photos the
    pet-focus (GeM) vectors' cosine and the top-1 class agreement. Not used by petwatch: the
    vectors move (a reindex), so it would need identity and breed mAP within 0.002 of fp32."""
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )
    from PIL import Image

    from petwatch import engine
    from petwatch.embed import Embedder, _unit_rows, gem

    os.environ["PETWATCH_MODELS_DIR"] = str(BI.CACHE / "models")
    embedder = Embedder("efficientnet_lite2", engine="onnx")
    fp32 = engine.export_folder("efficientnet_lite2", None) / f"{embedder.input_size}.onnx"
    found, reason = C.dataset_part(datasets, C.PETS)
    if found is None:
        sys.exit(f"pet photos needed: {reason}")
    files = sorted(found.rglob("*.jpg"))
    calibration = [embedder.transform(Image.open(p).convert("RGB")) for p in files[::10][:32]]
    held_out = np.stack([embedder.transform(Image.open(p).convert("RGB")) for p in files[5::10][:16]])

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"pixels": np.stack(calibration[i : i + 8])} for i in range(0, len(calibration), 8)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    work = Path(tempfile.mkdtemp(prefix="petwatch-int8-"))
    try:
        quant_pre_process(str(fp32), str(work / "pre.onnx"))
        quantize_static(
            str(work / "pre.onnx"),
            str(work / "int8.onnx"),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        sessions = {
            name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for name, path in (("fp32", fp32), ("int8", work / "int8.onnx"))
        }
        outputs = {name: s.run(None, {"pixels": held_out}) for name, s in sessions.items()}
        best = dict.fromkeys(sessions, 0.0)
        for _ in range(rounds):
            for name, session in sessions.items():
                t = time.perf_counter()
                session.run(None, {"pixels": held_out})
                best[name] = max(best[name], len(held_out) / (time.perf_counter() - t))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a, b = outputs["fp32"], outputs["int8"]
    cosine = (_unit_rows(gem(a[0], 2.0)) * _unit_rows(gem(b[0], 2.0))).sum(axis=1)
    return {
        "img_s": best,
        "cosine_min": float(cosine.min()),
        "cosine_mean": float(cosine.mean()),
        "top1_agreement": float((a[2].argmax(1) == b[2].argmax(1)).mean()),
    }


def once(
    idle_wait: float, variant: str, model: str, weights: Path | None, folder: Path, extra: list[str] | None
) -> dict:
    """One run (no retries: on a shared box the before/after pair is what compares)."""
    C.wait_for_quiet(idle_wait)
    result = BI.run_variant(variant, model, weights, folder, extra)
    print(
        f"  [{model}] {variant} {' '.join(extra or [])}: {result['images_per_s']:.2f} img/s "
        f"(other processes: {result['foreign_load_cores']:.2f} cores)",
        flush=True,
    )
    return result


def pet_photos(datasets: Path, n: int) -> tuple[Path, str]:
    found, reason = C.dataset_part(datasets, C.PETS)
    if found is None:
        sys.exit(f"pet photos needed: {reason}")
    args = Namespace(photos=found, n=n)
    return BI.photo_set(args, datasets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_datasets_arg(parser)
    parser.add_argument("--quick", action="store_true", help="fewer photos (16 camera, 32 pets)")
    parser.add_argument("--int8", action="store_true", help="also measure ONNX Runtime static INT8 (Lite2)")
    parser.add_argument("--camera-n", type=int, default=None)
    parser.add_argument("--pets-n", type=int, default=None)
    parser.add_argument("--idle-wait", type=float, default=10.0, help="wait up to this long for a quiet box per run")
    args = parser.parse_args()
    camera_n = args.camera_n or (16 if args.quick else 32)
    pets_n = args.pets_n or (32 if args.quick else 48)
    name, flags = cpu()
    print(f"CPU: {name}; {os.cpu_count()} cores; flags: {flags or '(none of ' + ' '.join(FLAGS) + ')'}")
    versions = C.versions("torch", "timm", "onnxruntime", "onnx", "pillow")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    C.strip_petwatch_env()
    datasets = C.datasets_dir(args.datasets)
    weights = BI.resnet_weights()

    print("\n[1] forward rates, batch 16 ...", flush=True)
    forward = {
        "efficientnet_lite2": forward_rates("efficientnet_lite2", None, 16),
        "resnet50": forward_rates("resnet50", weights, 16),
    }
    labels = list(forward["efficientnet_lite2"])
    print(
        C.table(
            ["model", *labels, "ONNX / channels_last"],
            [
                [
                    model,
                    *(f"{rates[label]:.1f}" for label in labels),
                    f"{rates[labels[2]] / rates[labels[1]]:.2f}x",
                ]
                for model, rates in forward.items()
            ],
            title=f"forward img/s ({os.cpu_count()} threads, features + classifier)",
        )
    )

    print("\n[2] petwatch index, engine=torch (before) vs engine=onnx (after) ...", flush=True)
    camera_args = Namespace(photos=None, n=camera_n, width=4000, height=3000, fresh=False)
    camera, camera_desc = BI.photo_set(camera_args, datasets)
    pets, pets_desc = pet_photos(datasets, pets_n)
    rows, results = [], {}
    try:
        for label, folder in (("12 MP camera", camera), ("small pets", pets)):
            for chosen in ("torch", "onnx"):
                run = once(
                    args.idle_wait, "petwatch", "efficientnet_lite2", None, folder, ["--set", f"engine={chosen}"]
                )
                results[(label, chosen)] = run
        seed = once(args.idle_wait, "seed", "resnet50", weights, camera, None)
        resnet = once(args.idle_wait, "petwatch", "resnet50", weights, camera, ["--set", "engine=onnx"])
    finally:
        for folder in (camera, pets):
            shutil.rmtree(folder, ignore_errors=True)  # links to the photos, not the photos

    for (label, chosen), run in results.items():
        rows.append(
            [
                label,
                f"efficientnet_lite2, engine={chosen}",
                run["engine"],
                f"{run['images_per_s']:.2f}",
                f"{run['startup_s']:.1f}s",
                f"{run['foreign_load_cores']:.2f}",
            ]
        )
    rows.append(["12 MP camera", "resnet50, the seed's loop", "torch", f"{seed['images_per_s']:.2f}", "", ""])
    rows.append(
        [
            "12 MP camera",
            "resnet50, engine=onnx",
            resnet["engine"],
            f"{resnet['images_per_s']:.2f}",
            f"{resnet['startup_s']:.1f}s",
            f"{resnet['foreign_load_cores']:.2f}",
        ]
    )
    print()
    print(
        C.table(
            ["photos", "petwatch", "engine", "img/s", "startup", "other load (cores)"],
            rows,
            title=f"petwatch index: {camera_desc}; {pets_desc}",
        )
    )
    quantized = None
    if args.int8:
        print("\n[3] INT8 (ONNX Runtime static quantization) against fp32, efficientnet_lite2 ...", flush=True)
        quantized = int8(datasets)
        print(
            f"INT8 {quantized['img_s']['int8']:.1f} img/s against fp32 {quantized['img_s']['fp32']:.1f}; "
            f"pet-focus vector cosine to fp32 min {quantized['cosine_min']:.4f} mean {quantized['cosine_mean']:.4f}; "
            f"top-1 class agreement {quantized['top1_agreement']:.2f} (not used: the vectors move)"
        )
    ort_lite2 = forward["efficientnet_lite2"]["ONNX Runtime fp32 (after)"]
    small = results[("small pets", "onnx")]["images_per_s"] / (ort_lite2 / 2)
    small_before = results[("small pets", "torch")]["images_per_s"] / (ort_lite2 / 2)
    camera_gain = results[("12 MP camera", "onnx")]["images_per_s"] / results[("12 MP camera", "torch")]["images_per_s"]
    seed_ratio = resnet["images_per_s"] / seed["images_per_s"]
    targets = {
        "small pets / (ORT forward / 2)": (small, SMALL_RATIO, f"before {small_before:.2f}x"),
        "12 MP onnx / torch": (camera_gain, CAMERA_RATIO, ""),
        "resnet50 petwatch / seed": (seed_ratio, SEED_RATIO, ""),
    }
    print()
    for label, (value, target, note) in targets.items():
        print(f"target: {label} >= {target}x: {value:.2f}x  {C.verdict(value >= target)}  {note}")
    path = C.write_results(
        "bench_engine",
        {
            "cpu": name,
            "flags": flags,
            "versions": versions,
            "forward_img_s": forward,
            "index": {f"{label}/{chosen}": run for (label, chosen), run in results.items()},
            "seed": seed,
            "resnet50_onnx": resnet,
            "targets": {k: {"value": v, "target": t} for k, (v, t, _) in targets.items()},
            "int8": quantized,
        },
    )
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
