#!/usr/bin/env bash
# Lint, format and type checks, as .ci/run runs them (config in pyproject.toml).
# `scripts/check.sh --fix` applies ruff's fixes and formatting first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--fix" ]]; then
    .venv/bin/ruff check --fix src tests bench
    .venv/bin/ruff format src tests bench
fi
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
