#!/usr/bin/env bash
# Create .venv with petwatch and everything it needs. `scripts/setup.sh --test` adds test tools;
# `scripts/setup.sh --print-torch-spec` only prints the torch it would install, and why.
#
# torch/torchvision: a matching pair is installed first (TORCH_SPEC overrides it), because
# timm fails to import when torchvision was built for another torch. Without an NVIDIA GPU the
# pair comes from PyTorch's CPU-only index (a 0.7 GB install instead of 5.3 GB of CUDA): the GPU
# probe is `nvidia-smi -L` or /proc/driver/nvidia/gpus; PETWATCH_TORCH=cpu|cuda decides instead.
# Where the CPU index cannot be reached within seconds, PyPI's default build is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_PAIR="torch==2.14.1 torchvision==0.29.1"
CPU_INDEX=${PETWATCH_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
NVIDIA_SMI=${PETWATCH_NVIDIA_SMI:-nvidia-smi}             # tests point these at stubs
NVIDIA_PROC=${PETWATCH_NVIDIA_PROC:-/proc/driver/nvidia/gpus}
INDEX_PROBE_SECONDS=5

has_nvidia_gpu() {
    if command -v "$NVIDIA_SMI" >/dev/null 2>&1 && "$NVIDIA_SMI" -L 2>/dev/null | grep -q GPU; then
        return 0
    fi
    [[ -d "$NVIDIA_PROC" && -n "$(ls -A "$NVIDIA_PROC" 2>/dev/null)" ]]
}

index_reachable() {
    "$PYTHON" - "$1" "$INDEX_PROBE_SECONDS" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/", timeout=float(sys.argv[2])).close()
EOF
}

# The torch to install, on stdout; the reason, one line on stderr.
torch_spec() {
    if [[ -n "${TORCH_SPEC:-}" ]]; then
        echo "setup: torch from TORCH_SPEC" >&2
        echo "$TORCH_SPEC"
        return
    fi
    local want=${PETWATCH_TORCH:-auto}
    case "$want" in
        cpu | cuda) ;;
        auto) if has_nvidia_gpu; then want=cuda; else want=cpu; fi ;;
        *) echo "setup: PETWATCH_TORCH must be cpu, cuda or unset, not '$want'" >&2; return 2 ;;
    esac
    if [[ "$want" == cuda ]]; then
        echo "setup: NVIDIA GPU (or PETWATCH_TORCH=cuda): PyTorch's CUDA build from PyPI (about 5 GB)" >&2
        echo "$TORCH_PAIR"
    elif index_reachable "$CPU_INDEX"; then
        echo "setup: no NVIDIA GPU: PyTorch's CPU-only build from $CPU_INDEX (0.7 GB instead of 5 GB)" >&2
        echo "$TORCH_PAIR --index-url $CPU_INDEX"
    else
        echo "setup: no NVIDIA GPU, but $CPU_INDEX is unreachable: PyPI's default torch build instead (about 5 GB)" >&2
        echo "$TORCH_PAIR"
    fi
}

extras=""
case "${1:-}" in
    --print-torch-spec) torch_spec; exit ;;
    --test) extras="[test]" ;;
esac

spec=$(torch_spec)
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip wheel "setuptools>=77,<81"
# shellcheck disable=SC2086
.venv/bin/python -m pip install --quiet $spec
.venv/bin/python -m pip install --quiet -e ".${extras}"
echo "petwatch installed in .venv: run .venv/bin/petwatch --help" >&2
