"""Shared helpers for petwatch's benchmarks: paths, photo generation, RSS, results, tables.

Benchmarks are plain scripts (``python bench/bench_x.py``); this module sits next to them
and is imported as ``_common``. It never imports petwatch, so it is cheap to load in the
worker subprocesses that must start clean for a fair peak-RSS figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DATASETS_ENV = "PETWATCH_DATASETS"
DEFAULT_DATASETS = REPO.parent / "shared" / "datasets"
PETS = "oxford-pets-sample"
LANDSCAPES = "landscapes"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


# --- arguments and paths -------------------------------------------------------------------
def add_datasets_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--datasets",
        type=Path,
        default=None,
        help=f"folder with {PETS}/ and {LANDSCAPES}/ (default: ${DATASETS_ENV}, else {DEFAULT_DATASETS})",
    )


def datasets_dir(arg: Path | None) -> Path:
    if arg is not None:
        return arg.expanduser().absolute()
    env = os.environ.get(DATASETS_ENV)
    return Path(env).expanduser().absolute() if env else DEFAULT_DATASETS


def dataset_part(root: Path, name: str) -> tuple[Path | None, str | None]:
    """(path, None) when root/name is a folder with photos, else (None, reason)."""
    path = root / name
    if not path.is_dir():
        return None, f"{path} is absent (set --datasets or ${DATASETS_ENV})"
    if not any(p.suffix.lower() in PHOTO_SUFFIXES for p in path.rglob("*")):
        return None, f"{path} holds no photos"
    return path, None


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without PETWATCH_* settings (a user's config must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PETWATCH_")}
    env.update(extra)
    return env


def strip_petwatch_env() -> None:
    for key in [k for k in os.environ if k.startswith("PETWATCH_")]:
        del os.environ[key]


# --- synthetic camera photos -----------------------------------------------------------------
def _source_images(datasets: Path | None, limit: int):
    """Real photos to upscale (landscapes first: large, detailed), or None."""
    if datasets is None:
        return []
    found: list[Path] = []
    for part in (LANDSCAPES, PETS):
        folder = datasets / part
        if folder.is_dir():
            found += sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    # Spread the picks over breeds and scenes rather than taking the first N files.
    if len(found) > limit:
        step = len(found) / limit
        found = [found[int(i * step)] for i in range(limit)]
    return found


def _gradient(rng, width: int, height: int):
    """A smooth, photographic-ish picture: low-frequency colour fields, no flat areas."""
    import numpy as np

    small_w, small_h = 16, 12
    fields = rng.uniform(0, 255, size=(small_h, small_w, 3)).astype(np.uint8)
    from PIL import Image

    return Image.fromarray(fields, "RGB").resize((width, height), Image.Resampling.BICUBIC)


def make_camera_jpegs(
    out_dir: Path,
    count: int,
    datasets: Path | None,
    width: int = 4000,
    height: int = 3000,
    quality: int = 90,
    noise: float = 6.0,
    seed: int = 0,
    log=print,
    sources: list[Path] | None = None,
) -> list[Path]:
    """``count`` camera-size JPEGs (default 12 MP, quality 90) that decode like real photos.

    Each is a real photo from the datasets (or a smooth random colour field when they are
    absent) upscaled to ``width`` x ``height`` with per-pixel luma and chroma noise, so the
    file size (~3-4 MB) and entropy-decoding cost resemble a phone camera's JPEG, not a
    flat colour that decodes for free. Files already there from an earlier run are kept.
    ``sources`` picks the real photos (one per JPEG, in order) instead of ``datasets``.
    """
    import numpy as np
    from PIL import Image, ImageOps

    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sources or _source_images(datasets, count)
    rng = np.random.default_rng(seed)
    paths = []
    started = time.monotonic()
    for i in range(count):
        path = out_dir / f"IMG_{i:05d}.jpg"
        paths.append(path)
        if path.exists() and path.stat().st_size > 0:
            continue
        if sources:
            src = Image.open(sources[i % len(sources)])
            src = ImageOps.exif_transpose(src).convert("RGB")
            image = ImageOps.fit(src, (width, height), Image.Resampling.BICUBIC)
        else:
            image = _gradient(rng, width, height)
        pixels = np.asarray(image, dtype=np.float32)
        luma = rng.standard_normal((height, width, 1), dtype=np.float32) * noise
        chroma = rng.standard_normal((height, width, 3), dtype=np.float32) * (noise / 2)
        pixels = np.clip(pixels + luma + chroma, 0, 255).astype(np.uint8)
        tmp = path.with_suffix(".tmp")
        Image.fromarray(pixels, "RGB").save(tmp, "JPEG", quality=quality)
        os.replace(tmp, path)
        if log and (i + 1) % 16 == 0:
            log(f"  generated {i + 1}/{count} photos ({time.monotonic() - started:.0f}s)")
    return paths


# --- memory ----------------------------------------------------------------------------------
def tree_rss(pid: int | None = None, split: bool = False):
    """Resident bytes of a process and all its descendants (Milvus Lite 2.x runs a child).

    With ``split``, a pair: (the process itself, its descendants together).
    """
    import psutil

    try:
        proc = psutil.Process(pid)
        children = proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return (0, 0) if split else 0
    own = 0
    try:
        own = proc.memory_info().rss
    except psutil.NoSuchProcess:
        pass
    rest = 0
    for child in children:
        try:
            rest += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return (own, rest) if split else own + rest


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its live descendants (Milvus Lite)."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


class PeakRSS:
    """Samples the process tree's RSS on a thread: ``peak`` is the highest sum seen,
    ``peak_self`` and ``peak_children`` the highest of each part (not necessarily together)."""

    def __init__(self, pid: int | None = None, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = self.peak_self = self.peak_children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _sample(self) -> None:
        own, rest = tree_rss(self.pid, split=True)
        self.peak = max(self.peak, own + rest)
        self.peak_self = max(self.peak_self, own)
        self.peak_children = max(self.peak_children, rest)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def mib(n: float | int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


# --- subprocess workers ----------------------------------------------------------------------
RESULT_MARK = "@@RESULT@@ "


def emit(result: dict) -> None:
    """A worker's last word: one marked JSON line on stdout."""
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


def _busy_seconds() -> float:
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _own_cpu_seconds() -> float:
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def wait_for_quiet(max_wait: float, threshold: float = 0.3, quiet_seconds: int = 2, log=print) -> float:
    """Wait (up to ``max_wait`` s) until other processes use < ``threshold`` cores for
    ``quiet_seconds`` seconds in a row; returns the last load seen (cores).

    This box may be shared: a test suite running beside a benchmark halves its figures.
    """
    import psutil

    cores = psutil.cpu_count() or 1
    deadline = time.monotonic() + max_wait
    warned = False
    quiet = 0
    while True:
        busy = psutil.cpu_percent(interval=1.0) / 100 * cores
        quiet = quiet + 1 if busy < threshold else 0
        if quiet >= quiet_seconds or time.monotonic() >= deadline:
            return busy
        if not warned and log and busy >= threshold:
            log(
                f"  (waiting up to {max_wait:.0f}s for the machine to go quiet: {busy:.1f} cores busy elsewhere)",
                flush=True,
            )
            warned = True


DISTURBED = 0.3  # cores used by other processes during a run above which its timing is suspect


def run_worker(
    argv: list[str],
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    python: str | None = None,
    echo=True,
) -> dict:
    """Run ``python argv...`` in a fresh process and return the dict it ``emit``-ed.

    Its stderr (progress, logs) is passed through; a non-zero exit raises with its tail.
    The result gains ``foreign_load_cores``: CPU cores that *other* processes on the machine
    kept busy on average meanwhile (>= ~0.3 on a 2-core box means the timing is disturbed).
    """
    cmd = [python or sys.executable, *argv]
    busy0, own0, wall0 = _busy_seconds(), _own_cpu_seconds(), time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None if echo else subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"worker timed out after {timeout}s: {' '.join(cmd)}") from None
    result = None
    for line in out.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK) :])
        elif echo:
            print("   |", line, flush=True)
    if proc.returncode != 0 or result is None:
        tail = "\n".join((out or "").splitlines()[-20:] + (err or "").splitlines()[-20:])
        raise RuntimeError(f"worker failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    wall = time.monotonic() - wall0
    foreign = (_busy_seconds() - busy0) - (_own_cpu_seconds() - own0)
    result["foreign_load_cores"] = round(max(0.0, foreign) / wall, 2) if wall > 0 else 0.0
    return result


# --- prototypes of src/ changes ---------------------------------------------------------------
PATCHES = {
    "jit": "torch.jit.trace + torch.jit.freeze the network (folds BatchNorm into conv, "
    "oneDNN prepacked weights); same fp32 results",
    "bf16": "run the network in bfloat16 (oneDNN; only fast on CPUs with AVX512-BF16/AMX)",
}


def apply_patch(embedder, patch: str) -> None:
    """Prototype of a src/ change, applied to a live petwatch Embedder (bench only, not the product).

    Replaces ``embedder.network`` with a module that has the same ``forward``,
    ``forward_features`` and ``forward_head``, so every Embedder pass runs the patched network.
    """
    import torch
    from PIL import Image

    if embedder.session.engine != "torch":
        raise SystemExit("patches change the torch network: run with --set engine=torch")
    network = embedder.session.network.inner
    side = int(embedder.transform(Image.new("RGB", (640, 480))).shape[-1])  # the embedder's input size

    class Features(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner.forward_features(x)

    if patch == "jit":
        example = torch.zeros(embedder.batch_size, 3, side, side).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            features = torch.jit.freeze(torch.jit.trace(Features(network).eval(), example))
        cast = None
    elif patch == "bf16":
        features = Features(network.to(torch.bfloat16)).eval()
        cast = torch.bfloat16
    else:
        raise SystemExit(f"unknown patch {patch!r}: one of {', '.join(PATCHES)}")

    class Patched(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = features
            self.head = network  # only its forward_head (pooling) and classifier

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return self.features(x.to(cast) if cast else x).float()

        def forward_head(self, fmap: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
            return self.head.forward_head(fmap, pre_logits=pre_logits)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.forward_head(self.forward_features(x))

        def get_classifier(self) -> torch.nn.Module:
            return self.head.get_classifier()

    embedder.session.network.inner = Patched().eval()


# --- results ---------------------------------------------------------------------------------
def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor(),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def versions(*modules: str) -> dict:
    from importlib import metadata

    found = {}
    for name in modules:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def write_results(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **payload}
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    text = json.dumps(payload, indent=2, default=str)
    path.write_text(text)
    (RESULTS_DIR / f"{name}-latest.json").write_text(text)
    return path


def table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    if title:
        lines.append(title)
    for n, row in enumerate(cells):
        cells_and_widths = enumerate(zip(row, widths, strict=False))
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in cells_and_widths))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")
