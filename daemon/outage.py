"""Riding out a database outage: back off, retry the same step, say so on the heartbeat.

An outage (locked, full, read-only, connection lost: ``store.db.is_outage``) is
nobody's mail's fault, so the step that met it is simply run again once the
database answers. The daemon waits for ever; a bounded run (``run --once``)
gives up after its patience and reports one clear line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from daemon.store.db import StoreUnavailable, is_outage

log = logging.getLogger(__name__)

BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
T = TypeVar("T")


def describe_outage(exc: BaseException) -> str:
    """One line naming a database outage (SQLAlchemy's own text has SQL and a URL)."""
    inner = getattr(exc, "orig", None) or exc
    first = (str(inner).splitlines() or [""])[0].strip()
    return f"{type(inner).__name__}: {first}"[:300]


class Patience:
    """Runs one step through an outage; ``beat(condition, state)`` records what it sees."""

    def __init__(
        self,
        beat: Callable[[str, str], None],
        stop: threading.Event,
        patience: float | None = None,
    ) -> None:
        self.beat = beat
        self.stop = stop
        self.patience = patience
        self.began: float | None = None

    def run(self, step: Callable[..., T], *args) -> T:
        """Return ``step(*args)``; on an outage back off and try again.

        Raises :class:`StoreUnavailable` when stopped or out of patience.
        """
        delay = BACKOFF_START
        while True:
            try:
                result = step(*args)
            except Exception as exc:  # only outages are retried; everything else propagates
                if not (isinstance(exc, StoreUnavailable) or is_outage(exc)):
                    raise
                self._wait_out(exc, delay)
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            self._recovered()
            return result

    def _wait_out(self, exc: Exception, delay: float) -> None:
        text = str(exc) if isinstance(exc, StoreUnavailable) else describe_outage(exc)
        self.began = self.began if self.began is not None else time.monotonic()
        waited = time.monotonic() - self.began
        log.warning("database unavailable for %.0fs: %s; backing off", waited, text)
        self.beat(f"database unavailable: {text}", "degraded")
        if self.stop.is_set() or (self.patience is not None and waited >= self.patience):
            raise exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(text) from exc
        self.stop.wait(delay)

    def _recovered(self) -> None:
        if self.began is None:
            return
        waited = time.monotonic() - self.began
        self.began = None
        log.warning("database available again after %.0fs", waited)
        self.beat(f"database was unavailable for {waited:.0f}s; recovered", "running")
