"""Push N generated mails through the full pipeline on the embedded default.

    .venv/bin/python bench/bench_pipeline.py --n 2000

Prints messages/second, per-mail latency percentiles, per-stage time shares
and peak RSS. The mails are varied IT requests (8 categories, typos, quoted
replies, HTML), written into a fresh Maildir; the app is built exactly as
``mailtriage run`` builds it (SQLite WAL + Maildir transport).
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.loader import load_settings
from daemon.app import build_app
from daemon.backends.maildir import deliver
from daemon.cli import init_project
from tests.support.mail import make_mail

REQUESTS = [
    ("VPN conection drops", "My VPN disconnects every few minutes, netwrok otherwise fine."),
    ("Pritner offline", "The printer on floor {n} shows offline and the queue is stuck."),
    ("Pasword expired", "My password expired and I am locked out of my account. MFA fails too."),
    ("Suspicious email", "I got a phishing mail asking for my credentials and clicked the link."),
    ("Outlok calendar", "Outlook does not sync my calendar with Teams since yesterday."),
    ("Laptop screen", "Laptop LT-{n:05d} screen flickers and the keybaord is dead."),
    ("Install Visio", "Please install Visio on my PC, the sofware center does not list it."),
    ("Question about expenses", "Where do I find the expense policy? Thanks."),
]
QUOTE = "\n\nOn Mon, Jan 5, 2026 at 9:00 AM Support <support@example.com> wrote:\n> earlier text\n> more"


def generate(n: int, seed: int = 7) -> list[bytes]:
    """Return ``n`` varied request mails."""
    rng = random.Random(seed)
    mails = []
    for i in range(n):
        subject, body = rng.choice(REQUESTS)
        body = (
            body.format(n=rng.randint(1, 99999))
            + "\n\n"
            + "Some more detail. " * rng.randint(3, 30)
        )
        if rng.random() < 0.2:
            body += QUOTE
        sender = f"user{rng.randint(1, 400)}@example.com"
        html = f"<p>{body}</p>" if rng.random() < 0.3 else None
        mails.append(
            make_mail(
                subject=f"{subject} #{i}",
                body=body,
                sender=sender,
                html=html,
                message_id=f"<bench-{i}@mail.example.com>",
            )
        )
    return mails


def pct(values: list[float], q: float) -> float:
    """The q-quantile of ``values``."""
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
        if len(values) > 1
        else values[0]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--dir", help="site folder (default: a temporary one)")
    args = parser.parse_args()
    site = Path(args.dir or tempfile.mkdtemp(prefix="mt-bench-"))
    config = init_project(site, force=True)
    text = config.read_text().replace("sender_rate_limit = 20", "sender_rate_limit = 100000")
    config.write_text(text)
    settings = load_settings(config)
    for i, raw in enumerate(generate(args.n)):
        deliver(site / "var/mail/inbox", raw, f"{i:06d}")
    t0 = time.perf_counter()
    app = build_app(settings)
    startup = time.perf_counter() - t0
    latencies: list[float] = []
    handle = app.runner.handle

    def timed(mail, stats):
        start = time.perf_counter()
        handle(mail, stats)
        latencies.append(time.perf_counter() - start)

    app.runner.handle = timed
    t0 = time.perf_counter()
    stats = app.runner.run_pass()
    elapsed = time.perf_counter() - t0
    app.close()
    stages = dict(app.pipeline.timer.seconds)
    stage_total = sum(stages.values())
    stages["runner (ledger lookup, attempts, ack)"] = max(0.0, sum(latencies) - stage_total)
    stages["outbox send"] = max(0.0, elapsed - sum(latencies))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ms = [x * 1000 for x in latencies]
    print(f"mails: {stats.fetched}  outcomes: {stats.outcomes}  sent: {stats.sent}")
    print(f"start-up (model load/train, migrations): {startup:.2f} s")
    print(
        f"throughput: {stats.fetched / elapsed:.1f} messages/s (incl. sending {stats.sent} mails)"
    )
    print(
        f"latency per mail: p50 {pct(ms, 50):.2f} ms  p95 {pct(ms, 95):.2f} ms  p99 {pct(ms, 99):.2f} ms"
    )
    print("stage shares:")
    for name, secs in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<40} {secs:7.2f} s  {100 * secs / elapsed:5.1f} %")
    print(f"peak RSS: {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
