"""Memory is bounded by one mail, not by a batch: 40 mails of 23 MB through ``run --once``.

The daemon's own baseline (classifier model + spelling dictionary, loaded by the
first ticket) is about 223 MiB; one 23 MB mail is held once (parsed from its
skeleton, hashed and compressed in pieces), so the peak stays under 250 MiB: 238.5
MiB measured (1,327 MiB before batches were bounded by bytes). glibc's mmap threshold
is fixed at start (mailtriage.cli), or each freed mail would stay in the heap.
Every mail is stored once, compressed, in raw_mail (not twice); its attachment is
found in the raw bytes and decoded in pieces into attachment_blobs (once).
"""

from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.backends.maildir import deliver
from tests.e2e.helpers import BIN, mailtriage
from tests.support.mail import make_mail

REPO = Path(__file__).resolve().parents[2]
BIG = 23_000_000
MIB = 1024 * 1024
# Runs the command and prints its peak RSS (kB): a fresh process, so only that child counts.
PEAK = (
    "import resource, subprocess, sys; "
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)"
)


def big_mail(i: int) -> bytes:
    """A request with a 23 MB base64 attachment of random bytes (compresses to ~76 %)."""
    head = (
        f"From: User {i} <user{i}@example.com>\r\nTo: support@example.com\r\n"
        f"Subject: Build server {i} crashed, dump attached\r\n"
        f"Message-ID: <big-{i}@example.com>\r\nDate: Mon, 05 Jan 2026 09:00:00 +0000\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "The build server crashed again, the dump is attached. Please have a look.\r\n\r\n"
        '--b\r\nContent-Type: application/octet-stream; name="dump.bin"\r\n'
        'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="dump.bin"'
        "\r\n\r\n"
    ).encode()
    body = base64.encodebytes(os.urandom(BIG * 3 // 4)).replace(b"\n", b"\r\n")
    return head + body + b"\r\n--b--\r\n"


RSS_GUARD_MIB = 250


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_forty_mails_of_23_mb_stay_bounded(site: Path) -> None:
    env = {"PYTHONPATH": str(REPO)}
    inbox = site / "var/mail/inbox"
    # First run: trains the default model and builds the spelling dictionary into the
    # cache (once per installation, about 310 MiB at its peak); not what is measured.
    deliver(inbox, make_mail(subject="Warm up", sender="w@example.com"))
    warm = mailtriage(site, "run", "--once", env=env)
    assert warm.returncode == 0, warm.stderr
    total = 0
    for i in range(40):
        raw = big_mail(i)
        total += len(raw)
        deliver(inbox, raw, f"big{i:02d}")
        del raw
    for i in range(5):
        deliver(inbox, make_mail(subject=f"Printer {i} jammed", sender=f"s{i}@example.com"))
    cmd = [str(BIN), "--config", str(site / "mailtriage.toml"), "run", "--once"]
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *cmd],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=800,
        check=False,
    )
    code, peak_kb = map(int, done.stdout.split())
    assert code == 0, done.stderr
    assert "ticket 45" in done.stderr, done.stderr
    print(f"peak RSS {peak_kb / 1024:.1f} MiB for 40 x {BIG / 1e6:.0f} MB + 5 small mails")
    assert peak_kb < RSS_GUARD_MIB * 1024

    db = site / "var/mailtriage.db"
    with sqlite3.connect(db) as conn:
        rows, size, stored = conn.execute(
            "SELECT count(*), sum(size), sum(stored_size) FROM raw_mail"
        ).fetchone()
        blobs, files, kept = conn.execute(
            "SELECT count(*), sum(size), sum(stored_size) FROM attachment_blobs"
        ).fetchone()
    conn.close()
    db_bytes = sum(p.stat().st_size for p in db.parent.glob("mailtriage.db*"))
    print(
        f"database {db_bytes / MIB:.0f} MiB; raw {size / MIB:.0f} MiB stored as {stored / MIB:.0f}"
    )
    assert rows == 46 and size >= total
    assert stored < 0.8 * size  # compressed
    # Each dump.bin is kept once more, decoded (an attachment the agent can open).
    assert blobs == 40 and files == 40 * (BIG * 3 // 4) and kept >= files
    assert db_bytes < stored + kept + 16 * MIB  # stored once each: no copy in the ledger
