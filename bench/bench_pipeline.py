"""Push N generated mails through the full pipeline on the embedded default.

    .venv/bin/python bench/bench_pipeline.py --n 2000

Prints messages/second, per-mail latency percentiles, per-stage time shares
and peak RSS. The mails are varied IT requests (8 categories, typos, quoted
replies, HTML), written into a fresh Maildir; the app is built exactly as
``mailtriage run`` builds it (SQLite WAL + Maildir transport).
"""

from __future__ import annotations

import argparse
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
from mailtriage.commands import init_project
from tests.support.backlog import generate


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
