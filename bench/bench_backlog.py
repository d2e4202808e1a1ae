"""A weekend's backlog drained by the real daemon: time, memory, and when requesters hear back.

    .venv/bin/python bench/bench_backlog.py --n 20000

Delivers N realistic requests (about three per person, arriving over 60
hours) into a fresh Maildir site, starts ``mailtriage run --no-web`` and
samples it twice a second until every mail is processed and every outgoing
mail written. Prints the time to drain, mails/s, peak RSS against the
250 MiB floor, how many mails were held by the sender rate limit (must be 0:
mail is judged by when it arrived), and how much mail went out while at
least half of the backlog still waited (must be > 0: acknowledgements flow
during the drain, not after it).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailtriage.commands import init_project
from tests.support.backlog import DaemonWatch, deliver_backlog, warm_up

RSS_FLOOR_MIB = 250


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="mails in the backlog")
    parser.add_argument("--dir", help="work folder (default: a new temporary folder)")
    args = parser.parse_args()
    site = Path(args.dir or tempfile.mkdtemp(prefix="mt-backlog-"))
    init_project(site)
    warm_up(site)
    t0 = time.perf_counter()
    deliver_backlog(site / "var/mail/inbox", args.n)
    print(f"delivered {args.n} mails in {time.perf_counter() - t0:.1f}s into {site}")
    watch = DaemonWatch(site, Path(sys.executable).parent / "mailtriage")
    took = watch.run(expected_sent=2 * args.n + 2)
    held = _count(site, "SELECT count(*) FROM quarantine")
    tickets = _count(site, "SELECT count(*) FROM tickets") - 1  # the warm-up mail
    first = next((s.at for s in watch.samples if s.sent > 0), float("nan"))
    print(f"drained {args.n} mails in {took:.1f}s: {args.n / took:.1f} mail/s")
    print(f"tickets {tickets}, held by the rate limit or quarantined {held} (must be 0)")
    print(f"first acknowledgement after {first:.1f}s; {watch.sent_while_waiting()} mails sent")
    print("  while at least half the backlog still waited (must be > 0)")
    verdict = "ok" if watch.peak_rss_mib < RSS_FLOOR_MIB else "OVER"
    print(f"peak RSS {watch.peak_rss_mib:.0f} MiB (floor {RSS_FLOOR_MIB} MiB: {verdict})")
    return 0


def _count(site: Path, sql: str) -> int:
    with sqlite3.connect(site / "var/mailtriage.db") as conn:
        return int(conn.execute(sql).fetchone()[0])


if __name__ == "__main__":
    sys.exit(main())
