#!/usr/bin/env bash
# Debian packages for the real-server tests: Dovecot (IMAP), PostgreSQL,
# headless Chromium. Skips apt-get when everything is already there.
set -euo pipefail
need=()
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "install-system: need root to apt-get install ${need[*]}; tests needing them will skip" >&2
        exit 0
    fi
else
    SUDO=
fi
echo "install-system: apt-get install ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged services; the tests run their own private instances.
$SUDO systemctl stop dovecot postgresql >/dev/null 2>&1 || true
