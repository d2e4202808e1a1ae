#!/usr/bin/env bash
# README command 1: install and run the daemon on the embedded default
# (SQLite + local Maildir, no server). Drop .eml files into
# var/mail/inbox/new; acknowledgements appear in var/mail/sent/new; the status
# page is on http://127.0.0.1:8025/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
[ -f mailtriage.toml ] || .venv/bin/mailtriage init .
exec .venv/bin/mailtriage run "$@"
