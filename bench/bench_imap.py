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
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_pipeline import generate, pct  # noqa: E402

from config.loader import load_settings  # noqa: E402
from daemon.app import App, build_app  # noqa: E402
from daemon.backends.smtp import crlf  # noqa: E402
from daemon.cli import init_project  # noqa: E402
from tests.support.dovecot import DovecotServer, running_dovecot  # noqa: E402
from tests.support.mail import make_mail  # noqa: E402
from tests.support.smtpd import SmtpServer, running_smtp_server  # noqa: E402

CHUNK = 50


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


def make_site(imap: DovecotServer, smtp: SmtpServer, idle: bool) -> Path:
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


def ingest(app: App) -> tuple[int, dict[str, int], float]:
    """One pass over the whole INBOX; (fetched, outcomes, seconds)."""
    started = time.perf_counter()
    stats = app.runner.run_pass()
    return stats.fetched, stats.outcomes, time.perf_counter() - started


def ack_count(smtp: SmtpServer) -> int:
    """Acknowledgements captured so far."""
    return sum("] Received:" in str(r.message["Subject"]) for r in list(smtp.received))


def idle_latencies(app: App, imap: DovecotServer, smtp: SmtpServer, n: int) -> list[float]:
    """APPEND n mails one by one to a daemon waiting in IDLE; seconds until each ack."""
    worker = threading.Thread(target=app.runner.run_forever, kwargs={"idle_timeout": 60})
    worker.start()
    latencies: list[float] = []
    try:
        time.sleep(1.0)  # first pass done, IDLE armed
        with imap.client() as c:
            for i in range(n):
                raw = crlf(
                    make_mail(subject=f"Dock {i} not charging", sender=f"idle{i}@example.com")
                )
                before = ack_count(smtp)
                started = time.perf_counter()
                c.append("INBOX", raw)
                while ack_count(smtp) <= before and time.perf_counter() - started < 30:
                    time.sleep(0.0005)
                latencies.append(time.perf_counter() - started)
    finally:
        app.runner.stop()
        worker.join(timeout=30)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="mails to ingest")
    parser.add_argument("--idle", type=int, default=100, help="mails for the IDLE latency")
    args = parser.parse_args()
    mails = [crlf(m) for m in generate(args.n)]
    with running_dovecot() as imap, running_smtp_server() as smtp:
        appended = fill(imap, mails)
        print(f"appended {len(mails)} mails to Dovecot in {appended:.2f} s")
        n_floor, t_floor = floor(imap, Path(tempfile.mkdtemp(prefix="mt-floor-")) / "floor.db")
        site = make_site(imap, smtp, idle=False)
        app = build_app(load_settings(site / "mailtriage.toml"))
        fetched, outcomes, t_app = ingest(app)
        app.close()
        sent = len(smtp.received)
        left = len(imap.uids("INBOX"))
        moved = len(imap.uids("Processed"))
        idle_app = build_app(load_settings(make_site(imap, smtp, idle=True) / "mailtriage.toml"))
        lat = [x * 1000 for x in idle_latencies(idle_app, imap, smtp, args.idle)]
        idle_app.close()
    rate_floor, rate_app = n_floor / t_floor, fetched / t_app
    print(
        f"floor (bare imapclient fetch+parse+insert): {n_floor} mails in {t_floor:.2f} s = {rate_floor:.0f} messages/s"
    )
    print(
        f"daemon (full pipeline, move, SMTP send):    {fetched} mails in {t_app:.2f} s = {rate_app:.1f} messages/s"
    )
    print(
        f"  outcomes {outcomes}; {sent} mails captured by SMTP; INBOX left {left}; Processed {moved}"
    )
    print(
        f"ratio daemon/floor: {rate_app / rate_floor:.3f} (floor is {rate_floor / rate_app:.1f}x faster)"
    )
    print(
        f"IDLE latency APPEND -> ack at SMTP over {len(lat)} mails: p50 {pct(lat, 50):.1f} ms  "
        f"p95 {pct(lat, 95):.1f} ms  p99 {pct(lat, 99):.1f} ms  max {max(lat):.1f} ms"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS (this process: daemon + SMTP capture): {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
