"""Read-only status page: a Flask app factory in the style of Flask's tutorial (flaskr).

Only ``GET`` routes; the database is opened through
``daemon.store.queries.open_readonly`` so the web process cannot write even by
mistake. Everything shown from mail is untrusted and rendered escaped.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, render_template

from config.loader import database_url
from config.schema import Settings
from daemon.store import queries as q
from web_status import present, store

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def create_app(
    settings: Settings | None = None, *, session_factory: Any = None, clock: Any = None
) -> Flask:
    """Create the status page app.

    ``session_factory`` (a SQLAlchemy ``sessionmaker``) defaults to a
    read-only one for ``settings.database``; ``clock`` is an object with
    ``now()`` (or a callable) returning naive UTC, defaulting to the system clock.
    """
    settings = settings or Settings()
    app = Flask(__name__)
    app.config.from_mapping(
        MAILTRIAGE_SETTINGS=settings,
        STATUS_PER_PAGE=50,
        STATUS_RAW_BYTES=64 * 1024,
        # What the ledger records of an inbound mail (approval replies: "approval").
        MAIL_OUTCOMES=("ticket", "comment", "approval", "ignored", "duplicate"),
    )
    if session_factory is None:
        session_factory = q.open_readonly(database_url(settings))
    store.init_app(app, session_factory, clock)

    from web_status import probes, views

    app.register_blueprint(views.bp)
    app.register_blueprint(probes.bp)
    app.add_template_filter(present.when, "when")
    app.add_template_filter(present.duration, "duration")
    app.add_template_filter(present.detail_items, "details")
    app.after_request(_secure)
    app.register_error_handler(q.StoreError, _store_unavailable)
    for code in (400, 404, 405):
        app.register_error_handler(code, _http_error)
    return app


def _secure(response):
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _http_error(exc):
    return render_template("error.html", code=exc.code, title=exc.name, text=exc.description), (
        exc.code
    )


def _store_unavailable(exc: Exception):
    log.warning("status page: database unavailable: %s", type(exc).__name__)
    text = "The database did not answer. The daemon may be migrating or stopped."
    return render_template("error.html", code=503, title="Database unavailable", text=text), 503
