"""Time, injected: SLA, approval expiry and reminders never call ``now()`` directly."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Tells the time as a naive UTC datetime (the store's convention)."""

    def now(self) -> datetime:
        """Return the current time, naive UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the current time, naive UTC."""
        return datetime.now(UTC).replace(tzinfo=None)


class ManualClock:
    """A clock tests move by hand (Mailman's ``DateFactory.fast_forward``, injected)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, 0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """Return the clock's current time."""
        with self._lock:
            return self._now

    def advance(self, **delta: float) -> datetime:
        """Move the clock forward by ``timedelta(**delta)`` and return the new time."""
        with self._lock:
            self._now += timedelta(**delta)
            return self._now
