"""The full pipeline on Maildir against its floor, measured in the same run.

    .venv/bin/python bench/bench_pipeline.py --n 2000
    .venv/bin/python bench/bench_pipeline.py --n 2000 --database postgresql://user@host/db

N generated support mails (8 categories, typos, quoted replies, HTML; see
``tests/support/backlog.generate``) are written into a fresh Maildir, then:

1. **floor**: the same files read, parsed by mail-parser and inserted into
   SQLite (sender, subject, body, raw), 500 rows per transaction; nothing else;
2. **mailtriage**: ``build_app`` exactly as ``mailtriage run`` builds it, one
   ``run_pass`` and the outbox drained, as ``run --once`` does: parse, guards,
   threading, correction, classification, routing, storage, composing and
   writing the acknowledgement and the agent's notice.

Prints both rates and their ratio, CPU milliseconds per mail (user + system of
this process during the run), per-batch latency percentiles, stage shares and
peak RSS, each against the issue's target. The machine is shared and noisy:
compare the ratio, not the absolute rates, across runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mailparser

from config.loader import load_settings
from daemon.app import build_app
from daemon.backends.maildir import deliver
from mailtriage.commands import init_project
from tests.support.backlog import generate

FLOOR_ROWS = 500
TARGET_RATIO = 0.5
TARGET_CPU_MS = 1.5


def pct(values: list[float], q: float) -> float:
    """The q-quantile of ``values``."""
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def cpu_seconds() -> float:
    """User + system CPU of this process so far."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def floor(inbox: Path, db: Path) -> tuple[int, float, float]:
    """mail-parser + SQLite over the Maildir files; (count, seconds, CPU seconds)."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE mail (name TEXT PRIMARY KEY, sender, subject, body, raw BLOB)")
    cpu, started, count = cpu_seconds(), time.perf_counter(), 0
    rows = []
    for entry in sorted(os.scandir(inbox / "new"), key=lambda e: e.name):
        raw = Path(entry.path).read_bytes()
        mail = mailparser.parse_from_bytes(raw)
        rows.append((entry.name, str(mail.from_), mail.subject, mail.body, raw))
        if len(rows) == FLOOR_ROWS:
            count += _insert(conn, rows)
    count += _insert(conn, rows)
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    conn.close()
    return count, elapsed, cpu


def _insert(conn: sqlite3.Connection, rows: list) -> int:
    with conn:
        conn.executemany("INSERT INTO mail VALUES (?, ?, ?, ?, ?)", rows)
    n = len(rows)
    rows.clear()
    return n


def make_site(n: int, database: str | None) -> Path:
    """A fresh site with N mails in its inbox; the sender rate guard widened."""
    site = Path(tempfile.mkdtemp(prefix="mt-bench-"))
    config = init_project(site, force=True)
    text = config.read_text().replace("sender_rate_limit = 20", "sender_rate_limit = 100000")
    if database:
        text = text.replace('url = "sqlite:///var/mailtriage.db"', f'url = "{database}"')
    config.write_text(text)
    for i, raw in enumerate(generate(n)):
        deliver(site / "var/mail/inbox", raw, f"{i:06d}")
    return site


def run_daemon(site: Path):
    """One pass and the outbox drained; (app, stats, seconds, CPU seconds, batch latencies)."""
    t0 = time.perf_counter()
    app = build_app(load_settings(site / "mailtriage.toml"))
    app.pipeline.corrector.correct("warm the lexicon up")  # start-up, not per mail
    print(f"start-up (model load, migrations, lexicon): {time.perf_counter() - t0:.2f} s")
    per_mail = _time_batches(app)
    cpu, started = cpu_seconds(), time.perf_counter()
    stats = app.runner.run_pass()
    stats.sent += app.sender.drain()
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    app.close()
    return app, stats, elapsed, cpu, per_mail


def _time_batches(app) -> list[float]:
    """Wrap the batch handler: each mail's latency is its batch's time (it is acked then)."""
    per_mail: list[float] = []
    handle = app.runner.batches.handle

    def timed(mails, stats):
        start = time.perf_counter()
        handle(mails, stats)
        per_mail.extend([time.perf_counter() - start] * len(mails))

    app.runner.batches.handle = timed
    return per_mail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--database", help="a database URL for mailtriage (default: SQLite)")
    args = parser.parse_args()
    site = make_site(args.n, args.database)
    n_floor, t_floor, cpu_floor = floor(site / "var/mail/inbox", site / "floor.db")
    app, stats, elapsed, cpu, per_mail = run_daemon(site)
    report(args, (n_floor, t_floor, cpu_floor), app, stats, elapsed, cpu, per_mail)
    return 0


def report(args, floor_run, app, stats, elapsed: float, cpu: float, per_mail) -> None:
    """Print the figures, each against its target."""
    n_floor, t_floor, cpu_floor = floor_run
    rate_floor, rate = n_floor / t_floor, stats.fetched / elapsed
    cpu_ms = 1000 * cpu / max(stats.fetched, 1)
    print(f"database: {args.database or 'SQLite (WAL)'}; mails: {stats.fetched}")
    print(f"  outcomes: {stats.outcomes}  sent: {stats.sent}  quarantined: {stats.quarantined}")
    print(
        f"floor (mail-parser + SQLite, {FLOOR_ROWS} rows/transaction): {rate_floor:.0f} mail/s, "
        f"{1000 * cpu_floor / n_floor:.2f} CPU-ms/mail"
    )
    print(f"mailtriage (full pipeline + outbox):  {rate:.1f} mail/s, {cpu_ms:.2f} CPU-ms/mail")
    ratio = rate / rate_floor
    print(f"ratio mailtriage/floor: {ratio:.3f}  (target >= {TARGET_RATIO}: {_met(ratio >= 0.5)})")
    print(f"CPU per mail: {cpu_ms:.2f} ms  (target <= {TARGET_CPU_MS}: {_met(cpu_ms <= 1.5)})")
    ms = [x * 1000 for x in per_mail]
    print(
        f"latency (fetch to ack, per batch): p50 {pct(ms, 50):.0f} ms  p95 {pct(ms, 95):.0f} ms  "
        f"p99 {pct(ms, 99):.0f} ms"
    )
    stages = dict(app.pipeline.timer.seconds)
    stages["runner, ledger, outbox rows, sending"] = max(0.0, elapsed - sum(stages.values()))
    print("stage shares:")
    for name, secs in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<40} {secs:7.2f} s  {100 * secs / elapsed:5.1f} %")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss:.0f} MiB")


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
