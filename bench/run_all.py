"""Run every petwatch benchmark, one after another, and summarise their targets.

    python bench/run_all.py            # full runs (~25 min on a 2-core box)
    python bench/run_all.py --quick    # each benchmark's quick mode (~5 min)
    python bench/run_all.py --only index,quality

Each benchmark prints its own tables and writes bench/results/<name>-<time>.json (and
<name>-latest.json); this script adds a one-screen summary at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

BENCHES = {
    "index": "bench_index.py",
    "engine": "bench_engine.py",
    "search": "bench_search.py",
    "quality": "bench_quality.py",
    "identity": "bench_identity.py",
    "discovery": "bench_discovery.py",
    "whitening": "bench_whitening.py",
}


def summary(name: str) -> list[list]:
    path = C.RESULTS_DIR / f"bench_{name}-latest.json"
    if not path.exists():
        return [[name, "no results", ""]]
    data = json.loads(path.read_text())
    if data.get("skipped"):
        return [[name, "skipped", data["skipped"]]]
    rows = []
    if name == "index":
        for run in data.get("runs", []):
            rows.append(
                [
                    name,
                    f"{run['model']}: petwatch / seed images/s",
                    f"{run['petwatch']['images_per_s']:.2f} / {run['seed']['images_per_s']:.2f} = {run['ratio']:.2f}x",
                ]
            )
        target = data.get("target", {})
        rows.append([name, f"target {target.get('model')} >= {target.get('ratio')}x", C.verdict(target.get("met"))])
    elif name == "engine":
        for model, rates in data.get("forward_img_s", {}).items():
            rows.append([name, f"{model} forward img/s", ", ".join(f"{k} {v:.1f}" for k, v in rates.items())])
        for key, target in data.get("targets", {}).items():
            met = target["value"] >= target["target"]
            rows.append([name, f"{key} >= {target['target']}x", f"{target['value']:.2f}x {C.verdict(met)}"])
    elif name == "search":
        for check in data.get("checks", []):
            rows.append([name, check["target"], f"{C.verdict(check['met'])} ({check['measured']})"])
    elif name == "quality":
        for key, result in data.get("results", {}).items():
            rows.append([name, f"{key}: mAP / P@5", f"{result['map']:.4f} / {result['p_at_5']:.4f}"])
        for check in data.get("draft_checks", []):
            rows.append(
                [name, f"draft on-off mAP, {check['photos']}", f"{check['diff']:+.4f} {C.verdict(check['met'])}"]
            )
    elif name == "identity":
        before, after = data["retrieval"]["whole (before)"], data["retrieval"]["petfocus (product)"]
        for key in ("identity_small", "identity_large", "breed_small", "breed_large"):
            rows.append(
                [
                    name,
                    f"{key} mAP whole -> pet focus",
                    f"{before[key]:.4f} -> {after[key]:.4f} {C.verdict(after[key] > before[key])}",
                ]
            )
        if "throughput" in data:
            ratio = data["throughput"]["ratio"]
            rows.append([name, "indexing, 1 in 5 a pet, >= 0.8x", f"{ratio:.2f}x {C.verdict(ratio >= 0.8)}"])
    elif name == "whitening":
        before, after = data["results"]["raw (before)"], data["results"][data["product"]]
        for key, value in after.items():
            rows.append([name, f"{key} mAP raw -> {data['product']}", f"{before[key]:.4f} -> {value:.4f}"])
        if "throughput" in data:
            ratio = data["throughput"]["ratio"]
            rows.append([name, "indexing, whitened / raw, >= 0.95x", f"{ratio:.2f}x {C.verdict(ratio >= 0.95)}"])
    elif name == "discovery":
        for q in data.get("quality", []):
            rows.append(
                [
                    name,
                    f"cut {q['similar']}: purity / recall / pets found",
                    f"{q['purity']:.3f} / {q['recall']:.3f} / {q['found']} of {q['pets']}",
                ]
            )
        for t in data.get("timing", []):
            rows.append(
                [
                    name,
                    f"{t['photos']:,} pet photos: cluster / 100 new",
                    f"{t['cluster_s']:.1f} s / {t['update_100_ms']:.0f} ms",
                ]
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_datasets_arg(parser)
    parser.add_argument("--quick", action="store_true", help="each benchmark's --quick mode")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of: " + ", ".join(BENCHES))
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(unknown)}")
    failed = []
    timings = {}
    for name in chosen:
        cmd = [sys.executable, str(C.BENCH_DIR / BENCHES[name])]
        if args.quick:
            cmd.append("--quick")
        if args.datasets and name in ("index", "quality"):
            cmd += ["--datasets", str(args.datasets)]
        print(f"\n{'=' * 100}\n$ {' '.join(cmd)}\n{'=' * 100}", flush=True)
        started = time.monotonic()
        code = subprocess.call(cmd)
        timings[name] = time.monotonic() - started
        if code:
            failed.append(name)
    print(f"\n{'=' * 100}")
    rows = [row for name in chosen if name not in failed for row in summary(name)]
    rows += [[name, "benchmark crashed", "see its output above"] for name in failed]
    rows += [[name, "wall time", f"{seconds:.0f}s"] for name, seconds in timings.items()]
    print(C.table(["benchmark", "figure", "value"], rows, title="Summary"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
