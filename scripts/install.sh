#!/usr/bin/env bash
# Create .venv and install mailtriage into it.
#   scripts/install.sh          runtime only (the embedded default needs nothing else)
#   scripts/install.sh test     plus test tools, PostgreSQL driver and the system
#                               packages the real-server tests use (Dovecot,
#                               PostgreSQL, Chromium) via apt-get
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ "${1:-}" = "test" ]; then
    scripts/install-system.sh
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "${1:-}" = "test" ]; then
    .venv/bin/python -m pip install --quiet -e ".[test,postgres]"
else
    .venv/bin/python -m pip install --quiet -e .
fi
