"""Machine endpoints: ``/healthz`` (JSON) and ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flask import Blueprint, Response, jsonify

from config import STATUSES
from daemon.store import queries as q
from web_status.store import get_session, now
from web_status.views import STALE_AFTER_SECONDS

log = logging.getLogger(__name__)
bp = Blueprint("probes", __name__)

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@bp.get("/healthz")
def healthz():
    """Report whether the database answers and how old the newest heartbeat is.

    503 when the database is unreachable; a stale daemon is reported but is
    not an error of the status page itself.
    """
    at = now()
    try:
        session = get_session()
        q.ping(session)
        beats = [b for b in q.heartbeats(session) if b.state != "stopped"]
    except q.StoreError as exc:
        log.warning("healthz: database unreachable: %s", type(exc).__name__)
        body = {"ok": False, "db": False, "error": type(exc).__name__}
        return jsonify(body | {"heartbeat_age_seconds": None, "heartbeat_stale": True}), 503
    ages = {b.worker: (at - b.last_beat).total_seconds() for b in beats}
    # A worker backing off (database or mailbox unavailable) says so on its heartbeat.
    degraded = {b.worker: b.condition for b in beats if b.state == "degraded"}
    age = min(ages.values()) if ages else None
    return jsonify(
        ok=not degraded,
        db=True,
        heartbeat_age_seconds=None if age is None else round(age, 3),
        heartbeat_stale=age is None or age > STALE_AFTER_SECONDS,
        workers={w: round(a, 3) for w, a in sorted(ages.items())},
        degraded=degraded,
    )


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(
    name: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        number = str(value) if isinstance(value, int) else f"{value:.3f}"
        lines.append(f"{name}{{{text}}} {number}" if text else f"{name} {number}")
    return lines


@bp.get("/metrics")
def metrics():
    """Expose ticket, quarantine, outbox and heartbeat gauges for Prometheus."""
    at = now()
    try:
        session = get_session()
        by_status = q.ticket_counts(session)["status"]
        quarantined = q.quarantine_count(session)
        outbox = q.outbox_counts(session)
        inbound = q.ledger_counts(session)
        beats = q.heartbeats(session)
    except q.StoreError as exc:
        log.warning("metrics: database unreachable: %s", type(exc).__name__)
        text = "\n".join(_family("mailtriage_db_up", "1 when the database answers.", [({}, 0)]))
        return Response(text + "\n", status=503, content_type=PROMETHEUS_TYPE)
    statuses = [*STATUSES, *sorted(s for s in by_status if s not in STATUSES)]
    outbox_statuses = [
        "pending",
        "failed",
        "sent",
        *sorted(set(outbox) - {"pending", "failed", "sent"}),
    ]
    lines = [
        *_family("mailtriage_db_up", "1 when the database answers.", [({}, 1)]),
        *_family(
            "mailtriage_tickets",
            "Tickets by status.",
            [({"status": s}, by_status.get(s, 0)) for s in statuses],
        ),
        *_family("mailtriage_quarantine_messages", "Mails in quarantine.", [({}, quarantined)]),
        *_family(
            "mailtriage_outbox_messages",
            "Outgoing mails by status.",
            [({"status": s}, outbox.get(s, 0)) for s in outbox_statuses],
        ),
        *_family(
            "mailtriage_inbound_messages",
            "Inbound mails by outcome.",
            [({"outcome": o}, n) for o, n in sorted(inbound.items())],
        ),
        *_family(
            "mailtriage_heartbeat_age_seconds",
            "Seconds since each worker's last heartbeat.",
            [({"worker": b.worker}, (at - b.last_beat).total_seconds()) for b in beats],
        ),
    ]
    return Response("\n".join(lines) + "\n", content_type=PROMETHEUS_TYPE)
