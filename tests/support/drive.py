"""Drive an in-process daemon over its mailbox the way ``mailtriage run`` would."""

from __future__ import annotations

import itertools
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from daemon.app import App
from daemon.backends.maildir import deliver
from daemon.runner import PassStats
from tests.support import outgoing
from tests.support.accounting import audit


class Killed(BaseException):
    """Stands in for SIGKILL inside the test process: nothing in the daemon catches it."""


def pending(app: App) -> int:
    """How many mails the backend still offers (not finished, retried or quarantined)."""
    return len(app.backend.fetch_new(None, 100_000).mails)


def drain(app: App) -> list[PassStats]:
    """Run passes until the mailbox is empty, at most ``guards.max_attempts + 1`` of them.

    A mail whose processing raises stays in the mailbox and is retried by the next
    pass, then quarantined after ``max_attempts``: draining walks that whole path,
    including the quarantining of a mail that never parses. Any exception out of
    ``run_pass`` propagates: that is the daemon dying.
    """
    passes = [app.runner.run_pass()]
    while pending(app) and len(passes) <= app.settings.guards.max_attempts:
        passes.append(app.runner.run_pass())
    return passes


def caught_failures(passes: list[PassStats]) -> int:
    """How many times the runner's catch-all had to catch an exception from processing."""
    return sum(p.failed for p in passes)


@dataclass
class BatchReport:
    """What a fuzz run through the whole daemon found (printed by bench/fuzz.py)."""

    cases: int = 0
    deaths: list[str] = field(default_factory=list)  # exceptions out of run_pass
    caught: int = 0  # exceptions the runner's per-mail catch-all caught
    accounting: list[str] = field(default_factory=list)
    outgoing: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0  # time inside run_pass only

    @property
    def accounted(self) -> int:
        """Ledger and quarantine rows found for delivered mails (a mail counted twice, which
        the accounting problems then name, counts twice)."""
        return sum(self.outcomes.values())


def _drain_recording(app: App, report: BatchReport, retries: int = 2) -> None:
    """Drain; a pass that raises is recorded as a death and the daemon 'restarted'."""
    for _ in range(retries + 1):
        started = time.perf_counter()
        try:
            report.caught += caught_failures(drain(app))
            return
        except Exception:
            report.deaths.append(traceback.format_exc())
        finally:
            report.seconds += time.perf_counter() - started


def run_batches(
    app: App,
    site: Path,
    mails: Iterable[bytes],
    batch: int = 100,
    prefix: str = "fuzz",
    progress: Callable[[BatchReport, int], None] | None = None,
) -> BatchReport:
    """Deliver ``mails`` (any iterable, consumed lazily) in batches, drain after each,
    then audit everything delivered and check everything sent."""
    report = BatchReport()
    refs: list[str] = []
    mails = iter(mails)
    while chunk := list(itertools.islice(mails, batch)):
        for data in chunk:
            ref = f"{prefix}-{len(refs):07d}"
            deliver(site / "var/mail/inbox", data, ref)
            refs.append(ref)
        _drain_recording(app, report)
        if progress is not None:
            progress(report, len(refs))
    report.cases = len(refs)
    counts, report.accounting = audit(app, refs)
    report.outcomes.update(counts)
    report.outgoing = outgoing.site_problems(site)
    return report
