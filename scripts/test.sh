#!/usr/bin/env bash
# README command 2: install everything (pip + Debian packages), lint, run all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
