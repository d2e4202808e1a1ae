"""Ingest N generated mails from a local Dovecot through the full pipeline; IDLE latency.

    .venv/bin/python bench/bench_imap.py --n 2000 --idle 100

Starts a private Dovecot (tests/support/dovecot.py) and a capturing aiosmtpd
server (tests/support/smtpd.py) on loopback, APPENDs N varied requests to
INBOX, then measures in one run:

1. the floor: a bare imapclient loop (UID FETCH BODY.PEEK[] in chunks of 50,
   stdlib parse, one SQLite insert per mail, commit per chunk), nothing else;
2. the daemon: ``build_app`` exactly as ``mailtriage run`` builds it (IMAP
   backend, SMTP transport, SQLite), one ``run_pass`` that fetches, parses,
   guards, classifies, routes, commits, moves each mail to Processed and sends
   every acknowledgement and team notice over SMTP; printed as a ratio to (1);
3. IDLE latency: the daemon waits in IDLE; each of M mails is APPENDed and the
   time until its acknowledgement reaches the SMTP server is taken (p50/p95/p99).

For context it also times a bare imapclient IDLE client (APPEND -> EXISTS):
Dovecot itself waits about half a second before it tells IDLE clients of new
mail, so that is the floor of (3). The SMTP capture runs in its own process
so the daemon does not share its interpreter (and GIL) with it.

The SMTP rate cap is lifted for the run (Exchange Online's 30/min would make
(2) a measurement of the cap) and the per-sender guard widened, as in
bench_pipeline.py. Needs Debian's dovecot-imapd.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_pipeline import generate, pct  # noqa: E402

from config.loader import load_settings  # noqa: E402
from daemon.app import App, build_app  # noqa: E402
from daemon.backends.smtp import crlf  # noqa: E402
from mailtriage.commands import init_project  # noqa: E402
from tests.support.dovecot import DovecotServer, running_dovecot  # noqa: E402
from tests.support.mail import make_mail  # noqa: E402
from tests.support.smtpd import running_smtp_server  # noqa: E402

CHUNK = 50


TARGET_RATIO = 0.35


def cpu_seconds() -> float:
    """User + system CPU of this process so far."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def fill(server: DovecotServer, mails: list[bytes]) -> float:
    """MULTIAPPEND ``mails`` to INBOX; return the seconds it took."""
    started = time.perf_counter()
    with server.client() as c:
        for i in range(0, len(mails), 200):
            c.multiappend("INBOX", mails[i : i + 200])
    return time.perf_counter() - started


def floor(server: DovecotServer, db: Path) -> tuple[int, float]:
    """Bare imapclient fetch + parse + insert of everything in INBOX; (count, seconds)."""
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE mail (uid INTEGER PRIMARY KEY, sender, subject, body, raw BLOB)")
    started = time.perf_counter()
    count = 0
    with server.client() as c:
        c.select_folder("INBOX", readonly=True)
        uids = sorted(c.search(["NOT", "DELETED"]))
        for i in range(0, len(uids), CHUNK):
            answer = c.fetch(uids[i : i + CHUNK], ["BODY.PEEK[]"])
            for uid, data in answer.items():
                raw = data[b"BODY[]"]
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                part = msg.get_body(("plain", "html"))
                body = part.get_content() if part is not None else ""
                conn.execute(
                    "INSERT INTO mail VALUES (?, ?, ?, ?, ?)",
                    (uid, str(msg["From"]), str(msg["Subject"]), body, raw),
                )
                count += 1
            conn.commit()
    elapsed = time.perf_counter() - started
    conn.close()
    return count, elapsed


@dataclass
class RemoteSmtp:
    """The capture server in a child process; counts what it received, as it arrives."""

    host: str
    port: int
    user: str
    password: str
    total: int = 0
    acks: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def follow(self, lines) -> None:
        """Count the child's one line per received message."""
        for line in lines:
            with self.changed:
                self.total += 1
                self.acks += line.startswith("ACK")
                self.changed.notify_all()

    def wait_acks(self, more_than: int, timeout: float) -> int:
        """Block until more than ``more_than`` acks arrived (or timeout); return the count."""
        with self.changed:
            self.changed.wait_for(lambda: self.acks > more_than, timeout)
            return self.acks


@contextmanager
def smtp_in_child() -> Iterator[RemoteSmtp]:
    """Start ``bench_imap.py --serve-smtp`` and follow what it captures."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-smtp"], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    host, port, user, password = child.stdout.readline().split()
    remote = RemoteSmtp(host, int(port), user, password)
    threading.Thread(target=remote.follow, args=(child.stdout,), daemon=True).start()
    try:
        yield remote
    finally:
        child.terminate()
        child.wait(timeout=10)


def serve_smtp() -> int:
    """Child side: run the capture server, print one line per received message."""
    with running_smtp_server() as server:
        print(server.host, server.port, server.user, server.password, flush=True)
        seen = 0
        while True:
            for r in server.received[seen:]:
                kind = "ACK" if "] Received:" in str(r.message["Subject"]) else "OTHER"
                print(kind, flush=True)
                seen += 1
            time.sleep(0.0002)


def bare_idle_latencies(server: DovecotServer, n: int) -> list[float]:
    """Seconds from APPEND to the EXISTS a bare imapclient IDLE client sees."""
    latencies = []
    with server.client() as watcher, server.client() as writer:
        watcher.select_folder("INBOX")
        for i in range(n):
            watcher.idle()
            started = time.perf_counter()
            writer.append("INBOX", crlf(make_mail(subject=f"bare idle {i}")))
            while not any(r[1] == b"EXISTS" for r in watcher.idle_check(timeout=10)):
                pass
            latencies.append(time.perf_counter() - started)
            watcher.idle_done()
    return latencies


def make_site(imap: DovecotServer, smtp: RemoteSmtp, idle: bool) -> Path:
    """A fresh ``mailtriage init`` site pointed at the two servers."""
    site = Path(tempfile.mkdtemp(prefix="mt-bench-imap-"))
    config = init_project(site, force=True)
    text = config.read_text().replace("sender_rate_limit = 20", "sender_rate_limit = 100000")
    text = text.replace(
        'backend = "maildir"\npath = "var/mail/inbox"',
        f'backend = "imap"\nhost = "{imap.host}"\nport = {imap.port}\nssl = false\n'
        f'username = "{imap.user}"\npassword = "{imap.password}"\n'
        f"idle = {str(idle).lower()}\npoll_seconds = 60",
        1,
    )
    text = text.replace(
        'transport = "maildir"\npath = "var/mail/sent"',
        f'transport = "smtp"\nhost = "{smtp.host}"\nport = {smtp.port}\nstarttls = false\n'
        f'username = "{smtp.user}"\npassword = "{smtp.password}"',
        1,
    ).replace("rate_per_minute = 30 ", "rate_per_minute = 1000000 ", 1)
    config.write_text(text)
    return site


def timed(target: object, name: str, totals: dict[str, float], label: str) -> None:
    """Wrap ``target.name`` so its time adds up in ``totals[label]``."""
    inner = getattr(target, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            totals[label] = totals.get(label, 0.0) + time.perf_counter() - started

    setattr(target, name, wrapper)


def shares(app: App) -> dict[str, float]:
    """Seconds per part of the ingest: IMAP, SMTP, pipeline stages, the rest."""
    totals: dict[str, float] = {}
    timed(app.backend, "fetch_new", totals, "IMAP fetch (SELECT, SEARCH, UID FETCH)")
    timed(app.backend, "ack", totals, "IMAP ack (UID MOVE)")
    timed(app.transport, "send", totals, "SMTP send")
    return totals


def pipeline_parts(stages: dict[str, float]) -> dict[str, float]:
    """The pipeline's stage times (each stage counted once by its timer)."""
    return {f"pipeline: {k}": v for k, v in stages.items()}


def ingest(app: App) -> tuple[int, dict[str, int], float]:
    """One pass over the whole INBOX, then the rest of the outbox; (fetched, outcomes, seconds).

    A pass sends at most 500 outbox rows (the scheduler sends the rest in the
    daemon); here the outbox is drained, as ``run --once`` does, so every
    acknowledgement and notice is in the time.
    """
    started = time.perf_counter()
    stats = app.runner.run_pass()
    while app.sender.send_due():
        pass
    return stats.fetched, stats.outcomes, time.perf_counter() - started


def idle_latencies(
    app: App, imap: DovecotServer, smtp: RemoteSmtp, n: int, gap: float
) -> list[float]:
    """APPEND n mails, ``gap`` seconds apart, to a daemon waiting in IDLE; seconds until each ack."""
    worker = threading.Thread(target=app.runner.run_forever, kwargs={"idle_timeout": 60})
    worker.start()
    latencies: list[float] = []
    try:
        with imap.client() as c:
            for i in range(n):
                time.sleep(gap)  # the daemon is back in IDLE, not still finishing a pass
                raw = crlf(
                    make_mail(subject=f"Dock {i} not charging", sender=f"idle{i}@example.com")
                )
                before = smtp.acks
                started = time.perf_counter()
                c.append("INBOX", raw)
                smtp.wait_acks(before, timeout=30)
                latencies.append(time.perf_counter() - started)
    finally:
        app.runner.stop()
        worker.join(timeout=30)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="mails to ingest")
    parser.add_argument("--idle", type=int, default=100, help="mails for the IDLE latency")
    parser.add_argument("--gap", type=float, default=1.5, help="seconds between IDLE mails")
    parser.add_argument("--serve-smtp", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_smtp:
        return serve_smtp()
    mails = [crlf(m) for m in generate(args.n)]
    with running_dovecot() as imap, smtp_in_child() as smtp:
        appended = fill(imap, mails)
        print(f"appended {len(mails)} mails to Dovecot in {appended:.2f} s")
        n_floor, t_floor = floor(imap, Path(tempfile.mkdtemp(prefix="mt-floor-")) / "floor.db")
        site = make_site(imap, smtp, idle=False)
        app = build_app(load_settings(site / "mailtriage.toml"))
        parts = shares(app)
        cpu = cpu_seconds()
        fetched, outcomes, t_app = ingest(app)
        cpu = cpu_seconds() - cpu
        app.close()
        parts |= pipeline_parts(dict(app.pipeline.timer.seconds))
        parts["other (runner, ledger, outbox rows)"] = max(0.0, t_app - sum(parts.values()))
        time.sleep(0.5)  # the child reports what it captured a moment later
        sent = smtp.total
        left = len(imap.uids("INBOX"))
        moved = len(imap.uids("Processed"))
        bare = [x * 1000 for x in bare_idle_latencies(imap, min(20, args.idle))]
        idle_app = build_app(load_settings(make_site(imap, smtp, idle=True) / "mailtriage.toml"))
        lat = [x * 1000 for x in idle_latencies(idle_app, imap, smtp, args.idle, args.gap)]
        idle_app.close()
    report(n_floor, t_floor, fetched, t_app, parts)
    ratio = (fetched / t_app) / (n_floor / t_floor)
    print(f"target ratio >= {TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else 'MISSED'}")
    print(f"CPU of the daemon process per mail: {1000 * cpu / max(fetched, 1):.2f} ms")
    print(
        f"  outcomes {outcomes}; {sent} mails captured by SMTP; INBOX left {left}; Processed {moved}"
    )
    if lat:
        print(
            f"IDLE latency APPEND -> ack at SMTP over {len(lat)} mails: p50 {pct(lat, 50):.1f} ms  "
            f"p95 {pct(lat, 95):.1f} ms  p99 {pct(lat, 99):.1f} ms  max {max(lat):.1f} ms"
        )
        print(
            f"  floor: bare imapclient IDLE, APPEND -> EXISTS over {len(bare)} mails: "
            f"p50 {pct(bare, 50):.1f} ms  max {max(bare):.1f} ms (Dovecot's own notify delay)"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the daemon process: {rss:.0f} MB")
    return 0


def report(n_floor: int, t_floor: float, fetched: int, t_app: float, parts) -> None:
    """Print throughput, the ratio to the floor and where the daemon's time went."""
    rate_floor, rate_app = n_floor / t_floor, fetched / t_app
    print(
        f"floor (bare imapclient fetch+parse+insert): {n_floor} mails in {t_floor:.2f} s "
        f"= {rate_floor:.0f} messages/s"
    )
    print(
        f"daemon (full pipeline, move, SMTP send):    {fetched} mails in {t_app:.2f} s "
        f"= {rate_app:.1f} messages/s"
    )
    print(
        f"ratio daemon/floor: {rate_app / rate_floor:.3f} (floor is {rate_floor / rate_app:.1f}x faster)"
    )
    print("where the daemon's time went:")
    for name, secs in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<45} {secs:7.2f} s  {100 * secs / t_app:5.1f} %")


if __name__ == "__main__":
    sys.exit(main())
