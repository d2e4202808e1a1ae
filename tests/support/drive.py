"""Drive an in-process daemon over its mailbox the way ``mailtriage run`` would."""

from __future__ import annotations

from daemon.app import App
from daemon.runner import PassStats


def pending(app: App) -> int:
    """How many mails the backend still offers (not finished, retried or quarantined)."""
    return len(app.backend.fetch_new(None, 10_000).mails)


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
