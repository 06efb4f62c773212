#!/usr/bin/env bash
# Create .venv with petwatch and everything it needs. `scripts/setup.sh --test` adds test tools.
#
# torch/torchvision: a matching pair is installed first (TORCH_SPEC overrides it), because
# timm fails to import when torchvision was built for another torch.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
extras=""
[[ "${1:-}" == "--test" ]] && extras="[test]"

if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip wheel "setuptools>=77,<81"
# shellcheck disable=SC2086
.venv/bin/python -m pip install --quiet $TORCH_SPEC
.venv/bin/python -m pip install --quiet -e ".${extras}"
echo "petwatch installed in .venv: run .venv/bin/petwatch --help" >&2
