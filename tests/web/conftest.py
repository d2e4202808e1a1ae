"""Fixtures for the status page: a migrated temp SQLite store, seed rows, app and client.

Rows are written with the models through the daemon's own (writable) engine;
the app reads them through ``open_readonly``, as in production.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine

from config.schema import Settings
from daemon.clock import ManualClock
from daemon.store.db import make_engine, migrate, session_factory, transaction
from daemon.store.models import (
    Approval,
    Comment,
    Event,
    Heartbeat,
    LedgerEntry,
    OutboxEntry,
    QuarantineEntry,
    Ticket,
)
from daemon.store.queries import open_readonly
from daemon.store.raw import raw_sha256, store_raw
from web_status import create_app

NOW = datetime(2026, 1, 5, 12, 0, 0)
VPN = "TKT-20260105-VPN001"
XSS_TICKET = "TKT-20260105-XSS001"
OVERDUE = "TKT-20260104-LATE01"
RESOLVED = "TKT-20260103-DONE01"
XSS = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=2">'
XSS_SENDER = '"<script>window.__xss=3</script>"@evil.example'


def make_ticket(tid: str, created: datetime, **kw) -> Ticket:
    """Return a ticket row with sensible defaults for any field not given."""
    fields = {
        "subject": f"Subject of {tid}",
        "requester": "alice@example.com",
        "status": "new",
        "category": "general",
        "priority": "medium",
        "team": None,
        "assignee": None,
        "original_text": "Hello",
        "corrected_text": "Hello",
        "created_at": created,
        "updated_at": created,
        "sla_due_at": created + timedelta(hours=24),
        "source_message_id": f"<{tid}@mail.example.com>",
    }
    return Ticket(id=tid, **(fields | kw))


def _tickets() -> list[Ticket]:
    vpn = make_ticket(
        VPN,
        NOW - timedelta(hours=2),
        subject="VPN keeps dropping",
        requester="bob@example.com",
        status="assigned",
        category="network",
        priority="high",
        team="Network Support",
        assignee="sarah.net@example.com",
        original_text="The vpn keeps droping evry hour.",
        corrected_text="The vpn keeps dropping every hour.",
        sla_due_at=NOW + timedelta(hours=6),
        escalated=True,
    )
    xss = make_ticket(
        XSS_TICKET,
        NOW - timedelta(hours=1),
        subject=f"Printer {XSS}",
        requester=XSS_SENDER,
        category="printing",
        original_text=f"Body {XSS} {XSS_IMG}",
        corrected_text=f"Body {XSS} {XSS_IMG}",
    )
    late = make_ticket(
        OVERDUE,
        NOW - timedelta(days=1),
        subject="Laptop will not boot",
        category="hardware",
        priority="critical",
        sla_due_at=NOW - timedelta(hours=3),
    )
    done = make_ticket(
        RESOLVED,
        NOW - timedelta(days=2),
        subject="Password reset",
        status="resolved",
        category="access",
        priority="low",
        sla_due_at=NOW - timedelta(days=1),
        resolved_at=NOW - timedelta(days=1, hours=2),
    )
    return [vpn, xss, late, done]


def _ticket_children() -> list:
    at = NOW - timedelta(hours=2)
    return [
        Event(ticket_id=VPN, at=at, actor="system", action="created", details={"rule": "r1"}),
        Event(
            ticket_id=VPN,
            at=at + timedelta(minutes=1),
            actor="router",
            action="assigned",
            details={"team": "Network Support", "rule_hits": ["category:network", "load"]},
        ),
        Event(ticket_id=XSS_TICKET, at=at, actor=XSS_SENDER, action="created", details={"x": XSS}),
        Comment(
            ticket_id=VPN, at=at + timedelta(minutes=5), author="bob@example.com", text="Still down"
        ),
        Comment(
            ticket_id=VPN,
            at=at + timedelta(minutes=9),
            author="sarah.net@example.com",
            text="Checking the concentrator",
            internal=True,
        ),
        Comment(ticket_id=XSS_TICKET, at=at, author=XSS_SENDER, text=XSS_IMG),
        Approval(
            ticket_id=VPN,
            step=1,
            mode="all",
            approver="boss@example.com",
            decision="approved",
            decided_at=at + timedelta(minutes=3),
        ),
        Approval(ticket_id=VPN, step=2, mode="all", approver="cto@example.com"),
    ]


QUARANTINED_RAW = (
    f"From: {XSS_SENDER}\r\n"
    "To: support@example.com\r\n"
    f"Subject: =?utf-8?q?Broken_=C3=BCmlaut?= {XSS}\r\n"
    "Message-ID: <q1@evil.example>\r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    f"<html><body>{XSS}{XSS_IMG}<p>hello</p></body></html>\r\n"
).encode()


def _mail_rows() -> list:
    ledger = [
        LedgerEntry(
            ref=f"maildir:{i}",
            content_key=f"key{i}",
            outcome=outcome,
            received_at=NOW - timedelta(minutes=i),
            processed_at=NOW - timedelta(minutes=i),
        )
        for i, outcome in enumerate(["ticket", "ticket", "ticket", "comment", "ignored"])
    ]
    quarantine = QuarantineEntry(
        ref="maildir:bad1",
        sender=XSS_SENDER,
        subject=f"Broken {XSS}",
        reason="ValueError: cannot decode part 2",
        raw_sha256=raw_sha256(QUARANTINED_RAW),
        created_at=NOW - timedelta(minutes=30),
    )
    outbox = [
        _outbox(1, "pending", ""),
        _outbox(2, "failed", "SMTP 550 mailbox unavailable"),
        _outbox(3, "sent", ""),
    ]
    beats = [
        Heartbeat(
            worker="runner-1",
            pid=4242,
            started_at=NOW - timedelta(hours=5),
            last_beat=NOW - timedelta(seconds=30),
            processed=17,
            last_error="imap: connection reset",
            backend="maildir",
        ),
        Heartbeat(
            worker="scheduler",
            pid=4243,
            started_at=NOW - timedelta(hours=5),
            last_beat=NOW - timedelta(minutes=5),
        ),
    ]
    return [*ledger, quarantine, *outbox, *beats]


def _outbox(n: int, status: str, error: str) -> OutboxEntry:
    return OutboxEntry(
        message_id=f"<out{n}@mailtriage>",
        ticket_id=VPN,
        kind="acknowledgement",
        sender="support@example.com",
        recipients=[f"user{n}@example.com"],
        subject=f"[{VPN}] outbox {status}",
        raw=b"raw",
        status=status,
        attempts=3 if status == "failed" else 0,
        last_error=error,
        created_at=NOW - timedelta(minutes=n),
        next_attempt_at=NOW + timedelta(minutes=n),
    )


def seed(engine: Engine) -> None:
    """Write the standard scenario: four tickets, mail flow, quarantine, outbox, heartbeats."""
    factory = session_factory(engine)
    with transaction(factory) as s:
        s.add_all(_tickets())
    with transaction(factory) as s:
        store_raw(s, QUARANTINED_RAW, NOW)
        s.add_all(_ticket_children() + _mail_rows())


@pytest.fixture
def db_url(tmp_path) -> Iterator[str]:
    """A migrated, empty SQLite database; yields its URL."""
    url = f"sqlite:///{tmp_path / 'status.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    return url


@pytest.fixture
def writer(db_url) -> Iterator[Engine]:
    """The daemon's side: a writable engine on the test database."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    """The injected clock, at ``NOW``."""
    return ManualClock(NOW)


@pytest.fixture
def make_app(clock) -> Iterator[Callable[..., Flask]]:
    """Build status apps on a given database URL; their engines are disposed afterwards."""
    factories = []

    def build(url: str, **config) -> Flask:
        factory = open_readonly(url)
        factories.append(factory)
        app = create_app(Settings(database={"url": url}), session_factory=factory, clock=clock)
        app.config.update(TESTING=True, **config)
        return app

    yield build
    for factory in factories:
        factory.kw["bind"].dispose()


@pytest.fixture
def app(db_url, writer, make_app) -> Flask:
    """The status app on the seeded database."""
    seed(writer)
    return make_app(db_url)


@pytest.fixture
def client(app):
    """A Flask test client of the seeded app."""
    return app.test_client()
