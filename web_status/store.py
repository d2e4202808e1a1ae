"""Per-request database session and clock (the status page's ``flaskr/db.py``).

One read-only session per request, opened on first use and closed on
teardown; the session factory and the clock are set once by ``create_app``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app, g

EXTENSION = "mailtriage_status"


def init_app(app: Flask, session_factory: Any, clock: Any) -> None:
    """Register the session factory and clock on ``app`` and close sessions on teardown."""
    app.extensions[EXTENSION] = {"session_factory": session_factory, "now": _now_function(clock)}
    app.teardown_appcontext(close_session)


def _now_function(clock: Any):
    # Accept the daemon's Clock protocol (``.now()``) or a bare callable.
    if clock is None:
        return lambda: datetime.now(UTC).replace(tzinfo=None)
    return clock.now if hasattr(clock, "now") else clock


def get_session() -> Any:
    """Return this request's read-only session, opening it on first use."""
    if "db_session" not in g:
        g.db_session = current_app.extensions[EXTENSION]["session_factory"]()
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    """Close this request's session, if one was opened (nothing to commit)."""
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def now() -> datetime:
    """Return the current time as naive UTC, from the injected clock."""
    return current_app.extensions[EXTENSION]["now"]()
