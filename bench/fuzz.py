"""Fuzz the daemon with mutated real mails: in memory, then through the whole daemon.

    .venv/bin/python bench/fuzz.py --cases 100000
    .venv/bin/python bench/fuzz.py --cases 100000 --daemon-cases 5000 --seed 7

The mutations are the test suite's (``tests/support/mutate.py``) over the fixture
mails (``tests/data/emails`` or ``../shared/data/emails``; ``MAILTRIAGE_EMAILS``
overrides). Level 1 runs every case through parse -> guards -> composed replies
in memory (``tests/support/inmemory.py``); level 2 delivers ``--daemon-cases``
mails into a fresh SQLite + Maildir site in batches, drains each batch with the
runner, then audits the ledger and quarantine (``tests/support/accounting.py``)
and every mail sent (``tests/support/outgoing.py``).

Prints figures, asserts nothing: cases, exceptions by kind and place (the daemon
must have none), outcome histograms, accounted-for mails, problems in outgoing
mail, mails/s. The sender rate limit is raised (as in bench_pipeline.py) so
mutations of one fixture are not all held as a flood.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.loader import load_settings
from daemon.app import build_app
from mailtriage.commands import init_project
from tests.support import mutate, outgoing
from tests.support.drive import BatchReport, run_batches
from tests.support.inmemory import InMemoryDaemon

REPO = Path(__file__).resolve().parents[1]


def where(exc: BaseException) -> str:
    """Exception type and the innermost frame of this repository that it passed."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if str(REPO) in f.filename]
    place = f"{Path(frames[-1].filename).relative_to(REPO)}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {place}"


def problem_kind(problem: str) -> str:
    """A problem line without its file label and quoted bytes, for a histogram."""
    text = problem.split(": ", 1)[-1]
    return text.split(" holds ")[0].split(": ")[0][:80]


def in_memory(cases: int, seed: int, corpus: list[bytes]) -> None:
    """Level 1: parse + guards + compose for every case."""
    rng = random.Random(seed)
    daemon = InMemoryDaemon()
    kinds: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    problems: Counter[str] = Counter()
    examples: dict[str, bytes] = {}
    started = time.perf_counter()
    for _ in range(cases):
        raw = mutate.mutated_mail(rng, corpus)
        try:
            result = daemon.run(raw)
        except Exception as exc:
            key = where(exc)
            errors[key] += 1
            if key not in examples or len(raw) < len(examples[key]):
                examples[key] = raw
            continue
        kinds[result.kind] += 1
        for problem in outgoing.problems(result.outgoing):
            problems[problem_kind(problem)] += 1
    elapsed = time.perf_counter() - started
    print(f"== in memory: parse -> guards -> compose (seed {seed})")
    print(f"cases: {cases}   mails/s: {cases / elapsed:.0f}   time: {elapsed:.1f} s")
    print(f"results: {dict(kinds.most_common())}")
    print(f"exceptions other than UnparseableMail: {sum(errors.values())}")
    for key, n in errors.most_common():
        print(f"  {n:6d}  {key}   smallest: {len(examples[key])} bytes")
    print(f"problems in composed mail: {sum(problems.values())}")
    for key, n in problems.most_common(15):
        print(f"  {n:6d}  {key}")


def through_daemon(cases: int, seed: int, corpus: list[bytes], batch: int, folder: str) -> None:
    """Level 2: the whole daemon, batch after batch, then the audit."""
    site = Path(folder or tempfile.mkdtemp(prefix="mt-fuzz-"))
    config = init_project(site, force=True)
    config.write_text(
        config.read_text().replace("sender_rate_limit = 20", "sender_rate_limit = 1000000")
    )
    app = build_app(load_settings(config))
    rng = random.Random(seed + 1)
    mails = (mutate.mutated_mail(rng, corpus) for _ in range(cases))

    def progress(report: BatchReport, done: int) -> None:
        print(
            f"  {done:7d} delivered  deaths {len(report.deaths)}  caught {report.caught}"
            f"  {done / max(report.seconds, 1e-9):.0f} mails/s",
            file=sys.stderr,
        )

    try:
        report = run_batches(app, site, mails, batch, progress=progress)
    finally:
        app.close()
    print(f"== whole daemon: {site} (seed {seed + 1}, batches of {batch})")
    print(f"cases: {report.cases}   mails/s (inside run_pass): {report.cases / report.seconds:.1f}")
    print(f"daemon exits (exceptions out of run_pass): {len(report.deaths)}")
    for kind, n in Counter(d.strip().splitlines()[-1][:100] for d in report.deaths).most_common():
        print(f"  {n:6d}  {kind}")
    print(f"exceptions caught by the runner's per-mail catch-all: {report.caught}")
    print(f"accounted for: {report.accounted} of {report.cases}")
    print(f"outcomes: {dict(report.outcomes.most_common())}")
    print(f"accounting problems: {len(report.accounting)}")
    for kind, n in Counter(problem_kind(p) for p in report.accounting).most_common(10):
        print(f"  {n:6d}  {kind}")
    print(f"problems in sent mail: {len(report.outgoing)}")
    for kind, n in Counter(problem_kind(p) for p in report.outgoing).most_common(10):
        print(f"  {n:6d}  {kind}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="in-memory cases")
    parser.add_argument(
        "--daemon-cases", type=int, help="cases through the whole daemon (default: --cases)"
    )
    parser.add_argument("--batch", type=int, default=500, help="mails per run_pass batch")
    parser.add_argument("--seed", type=int, default=20260105)
    parser.add_argument("--dir", default="", help="site folder (default: a temporary one)")
    args = parser.parse_args()
    corpus = mutate.load_corpus()
    if not corpus:
        print("no fixture mails found in tests/data/emails", file=sys.stderr)
        return 1
    print(f"fixture mails: {len(corpus)}")
    in_memory(args.cases, args.seed, corpus)
    daemon_cases = args.cases if args.daemon_cases is None else args.daemon_cases
    if daemon_cases:
        through_daemon(daemon_cases, args.seed, corpus, args.batch, args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
