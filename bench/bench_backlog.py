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
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.backends.maildir import deliver
from mailtriage.commands import init_project
from tests.support.backlog import DaemonWatch, deliver_backlog, warm_up
from tests.support.mail import make_mail
from tests.support.ports import free_port

RSS_FLOOR_MIB = 250
PROBE_ID = "<probe-new-mail@bench.example.com>"


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
    port = free_port()
    config = site / "mailtriage.toml"
    config.write_text(config.read_text().replace("port = 8025", f"port = {port}"))
    probe = Probe(site, port, args.n)
    watch = DaemonWatch(site, Path(sys.executable).parent / "mailtriage", web=True)
    watch.on_sample = probe.look
    took = watch.run(expected_sent=2 * args.n + 4)
    held = _count(site, "SELECT count(*) FROM quarantine")
    tickets = _count(site, "SELECT count(*) FROM tickets") - 2  # the warm-up mail, the probe
    # The warm-up mail's two are in sent/ before the daemon starts.
    first = next((s.at for s in watch.samples if s.sent > 2), float("nan"))
    print(f"drained {args.n} mails in {took:.1f}s: {args.n / took:.1f} mail/s")
    print(f"tickets {tickets}, held by the rate limit or quarantined {held} (must be 0)")
    print(f"first acknowledgement after {first:.1f}s; {watch.sent_while_waiting()} mails sent")
    print("  while at least half the backlog still waited (must be > 0)")
    probe.report()
    verdict = "ok" if watch.peak_rss_mib < RSS_FLOOR_MIB else "OVER"
    print(f"peak RSS {watch.peak_rss_mib:.0f} MiB (floor {RSS_FLOOR_MIB} MiB: {verdict})")
    return 0


class Probe:
    """Half-way through the drain a new request arrives: how long until it is a ticket?

    Meanwhile the status page's ``/healthz`` and ticket list are timed at every look.
    """

    def __init__(self, site: Path, port: int, n: int) -> None:
        self.site, self.base, self.n = site, f"http://127.0.0.1:{port}", n
        self.sent_at: float | None = None
        self.waited: float | None = None
        self.page_ms: list[float] = []

    def look(self, sample) -> None:
        """One sample of the daemon: deliver the probe at half, time the page, see the ticket."""
        self._time_page()
        if self.sent_at is None and sample.waiting and sample.waiting <= self.n / 2:
            deliver(
                self.site / "var/mail/inbox",
                make_mail(
                    subject="New: printer on fire", message_id=PROBE_ID, sender="late@example.com"
                ),
                "zz-probe",
            )
            self.sent_at = time.monotonic()
        elif self.sent_at is not None and self.waited is None and self._probe_done():
            self.waited = time.monotonic() - self.sent_at

    def _time_page(self) -> None:
        started = time.perf_counter()
        for path in ("/healthz", "/tickets"):
            try:
                urllib.request.urlopen(self.base + path, timeout=10).read()  # noqa: S310 (loopback)
            except OSError:
                return  # not serving yet (start-up)
        self.page_ms.append(1000 * (time.perf_counter() - started))

    def _probe_done(self) -> bool:
        sql = f"SELECT count(*) FROM message_ledger WHERE message_id = '{PROBE_ID}'"
        return _count(self.site, sql) > 0

    def report(self) -> None:
        """Print the probe's wait and the status page's response times."""
        wait = f"{self.waited:.1f}s" if self.waited is not None else "not seen"
        print(f"a new mail arriving half-way through waited {wait} to become a ticket")
        if self.page_ms:
            ms = sorted(self.page_ms)
            print(
                f"status page (/healthz + /tickets) during the drain: median "
                f"{ms[len(ms) // 2]:.0f} ms, max {ms[-1]:.0f} ms over {len(ms)} looks"
            )


def _count(site: Path, sql: str) -> int:
    with sqlite3.connect(site / "var/mailtriage.db") as conn:
        return int(conn.execute(sql).fetchone()[0])


if __name__ == "__main__":
    sys.exit(main())
