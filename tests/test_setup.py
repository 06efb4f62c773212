"""scripts/setup.sh's choice of torch: the CPU-only build where no NVIDIA GPU is present, PyPI's
default build with a one-line note where the CPU index cannot be reached, within seconds.

The GPU probe is stubbed (PETWATCH_NVIDIA_SMI / PETWATCH_NVIDIA_PROC) and the CPU index is a
local server, so these run the real script without installing anything."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from tests.conftest import REPO

SETUP = REPO / "scripts" / "setup.sh"
PAIR = "torch==2.14.1 torchvision==0.29.1"


@pytest.fixture
def cpu_index(tmp_path):
    """A reachable stand-in for download.pytorch.org/whl/cpu."""
    (tmp_path / "index" / "whl" / "cpu").mkdir(parents=True)
    (tmp_path / "index" / "whl" / "cpu" / "index.html").write_text("<a href='torch/'>torch</a>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args):
            super().__init__(*args, directory=str(tmp_path / "index"))

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    server.shutdown()


def _stub_gpu(tmp_path: Path, present: bool) -> dict[str, str]:
    smi = tmp_path / "nvidia-smi"
    listing = "GPU 0: NVIDIA H100 (UUID: GPU-1)" if present else "No devices were found"
    smi.write_text(f"#!/bin/sh\necho '{listing}'\n[ {int(present)} = 1 ]\n")
    smi.chmod(0o755)
    return {"PETWATCH_NVIDIA_SMI": str(smi), "PETWATCH_NVIDIA_PROC": str(tmp_path / "no-proc")}


def _choose(env: dict[str, str]) -> tuple[str, str, float]:
    base = {k: v for k, v in os.environ.items() if k not in ("TORCH_SPEC", "PETWATCH_TORCH")}
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SETUP), "--print-torch-spec"], env={**base, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), done.stderr.strip(), time.monotonic() - started


def test_without_a_gpu_setup_installs_the_cpu_build(tmp_path, cpu_index):
    spec, note, _ = _choose({**_stub_gpu(tmp_path, present=False), "PETWATCH_TORCH_CPU_INDEX": cpu_index})
    assert spec == f"{PAIR} --index-url {cpu_index}"
    assert "no NVIDIA GPU" in note and "CPU-only" in note and len(note.splitlines()) == 1


def test_with_a_gpu_setup_installs_the_cuda_build(tmp_path, cpu_index):
    spec, note, _ = _choose({**_stub_gpu(tmp_path, present=True), "PETWATCH_TORCH_CPU_INDEX": cpu_index})
    assert spec == PAIR
    assert "CUDA" in note


def test_a_gpu_seen_only_in_proc_counts(tmp_path, cpu_index):
    env = {**_stub_gpu(tmp_path, present=False), "PETWATCH_TORCH_CPU_INDEX": cpu_index}
    (tmp_path / "gpus" / "0000:01:00.0").mkdir(parents=True)
    spec, _, _ = _choose({**env, "PETWATCH_NVIDIA_PROC": str(tmp_path / "gpus")})
    assert spec == PAIR


def test_petwatch_torch_and_torch_spec_override_the_probe(tmp_path, cpu_index):
    gpu = {**_stub_gpu(tmp_path, present=True), "PETWATCH_TORCH_CPU_INDEX": cpu_index}
    assert _choose({**gpu, "PETWATCH_TORCH": "cpu"})[0] == f"{PAIR} --index-url {cpu_index}"
    assert _choose({**gpu, "TORCH_SPEC": "torch==2.5.0 torchvision==0.20.0"})[0] == "torch==2.5.0 torchvision==0.20.0"


def test_an_unreachable_cpu_index_falls_back_within_seconds_saying_so(tmp_path):
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    port = refused.getsockname()[1]
    refused.close()  # nothing listens: connection refused
    silent = socket.socket()  # listens but never answers: the probe's timeout must end it
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        for url in (f"http://127.0.0.1:{port}/whl/cpu", f"http://127.0.0.1:{silent.getsockname()[1]}/whl/cpu"):
            spec, note, seconds = _choose({**_stub_gpu(tmp_path, present=False), "PETWATCH_TORCH_CPU_INDEX": url})
            assert spec == PAIR
            assert "unreachable" in note and url in note and len(note.splitlines()) == 1
            assert seconds < 10
    finally:
        silent.close()
