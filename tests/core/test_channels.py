"""Notification channels against loopback fakes of their endpoints."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from config.loader import parse_settings
from daemon.channels import ChannelSender, announce
from daemon.clock import ManualClock
from daemon.store.db import make_engine, migrate, session_factory
from daemon.store.models import ChannelMessage, Ticket
from tests.support.fake_channels import TWILIO_SID, TWILIO_TOKEN, ChannelFake


@pytest.fixture
def fake(request) -> Iterator[ChannelFake]:
    with ChannelFake(request.param) as server:
        yield server


def _settings(tmp_path, fake: ChannelFake, **extra):
    channel = {"kind": fake.kind, "url": fake.base, "events": ["created", "escalated"], **extra}
    if fake.kind == "twilio":
        channel |= {
            "account_sid": TWILIO_SID,
            "from_number": "+15550001111",
            "to_numbers": ["+15550002222", "whatsapp:+15550003333"],
        }
    return parse_settings({"channels": [channel]}, tmp_path, {})


def _world(tmp_path, settings):
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    return session_factory(engine), ManualClock()


def _ticket(priority: str = "high") -> Ticket:
    return Ticket(
        id="TKT-20260105-ABC123",
        subject="VPN down",
        requester="bob@example.com",
        status="assigned",
        category="network",
        priority=priority,
        team="Network Support",
        assignee="john.tech@example.com",
        original_text="",
        corrected_text="",
    )


def _queue(factory, settings, clock, event="escalated", priority="high") -> int:
    with factory() as session, session.begin():
        ticket = _ticket(priority)
        ticket.created_at = ticket.updated_at = clock.now()
        session.add(ticket)
        return announce(session, settings, event, ticket, "SLA breached", clock.now())


def _rows(factory) -> list[ChannelMessage]:
    with factory() as session:
        return list(session.query(ChannelMessage).order_by(ChannelMessage.id))


@pytest.mark.parametrize("fake", ["webhook", "slack", "teams", "twilio"], indirect=True)
def test_each_wire_format_is_accepted_by_its_endpoint(tmp_path, fake, monkeypatch) -> None:
    monkeypatch.setenv("MAILTRIAGE_TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    settings = _settings(tmp_path, fake, ticket_url="https://desk.example.com/t/{id}")
    factory, clock = _world(tmp_path, settings)
    queued = _queue(factory, settings, clock)
    sent = ChannelSender(factory, settings, clock).send_due()
    assert sent == queued == len(fake.received) == (2 if fake.kind == "twilio" else 1)
    assert {r.status for r in _rows(factory)} == {"sent"}
    got = fake.received[0]
    if fake.kind == "webhook":
        assert got["event"] == "escalated" and got["ticket"]["id"] == "TKT-20260105-ABC123"
        assert got["ticket"]["url"] == "https://desk.example.com/t/TKT-20260105-ABC123"
    elif fake.kind == "slack":
        assert "TKT-20260105-ABC123" in got["text"] and "SLA breached" in got["text"]
    elif fake.kind == "twilio":
        assert got["sid"].startswith("SM") and got["to"] == "whatsapp:+15550002222"
        assert fake.received[1]["to"] == "whatsapp:+15550003333"


@pytest.mark.parametrize("fake", ["teams"], indirect=True)
def test_teams_messagecard_is_accepted(tmp_path, fake) -> None:
    settings = _settings(tmp_path, fake, card="messagecard")
    factory, clock = _world(tmp_path, settings)
    _queue(factory, settings, clock)
    assert ChannelSender(factory, settings, clock).send_due() == 1
    assert fake.received[0]["@type"] == "MessageCard"


@pytest.mark.parametrize("fake", ["webhook"], indirect=True)
def test_500_and_429_are_retried_with_backoff(tmp_path, fake) -> None:
    settings = _settings(tmp_path, fake)
    factory, clock = _world(tmp_path, settings)
    _queue(factory, settings, clock)
    sender = ChannelSender(factory, settings, clock)
    fake.script = [500, 429]
    assert sender.send_due() == 0
    [row] = _rows(factory)
    assert row.status == "pending" and row.attempts == 1 and "HTTP 500" in row.last_error
    assert sender.send_due() == 0  # not due yet: backing off
    clock.advance(seconds=31)
    assert sender.send_due() == 0 and "HTTP 429" in _rows(factory)[0].last_error
    clock.advance(seconds=61)
    assert sender.send_due() == 1 and _rows(factory)[0].status == "sent"


@pytest.mark.parametrize("fake", ["slack"], indirect=True)
def test_400_fails_for_good_and_max_attempts_ends_retries(tmp_path, fake) -> None:
    settings = _settings(tmp_path, fake, max_attempts=2)
    factory, clock = _world(tmp_path, settings)
    _queue(factory, settings, clock)
    sender = ChannelSender(factory, settings, clock)
    fake.script = [400]
    sender.send_due()
    [row] = _rows(factory)
    assert row.status == "failed" and row.attempts == 1 and "HTTP 400" in row.last_error
    with factory() as session, session.begin():
        ticket = session.get(Ticket, "TKT-20260105-ABC123")
        announce(session, settings, "created", ticket, "again", clock.now())
    fake.script = [503, 503]
    sender.send_due()
    clock.advance(minutes=5)
    sender.send_due()
    assert _rows(factory)[1].status == "failed" and "HTTP 503" in _rows(factory)[1].last_error


@pytest.mark.parametrize("fake", ["twilio"], indirect=True)
def test_twilio_refuses_a_wrong_token_for_good(tmp_path, fake, monkeypatch) -> None:
    monkeypatch.setenv("MAILTRIAGE_TWILIO_AUTH_TOKEN", "wrong")
    settings = _settings(tmp_path, fake)
    factory, clock = _world(tmp_path, settings)
    _queue(factory, settings, clock)
    ChannelSender(factory, settings, clock).send_due()
    assert {(r.status, "HTTP 401" in r.last_error) for r in _rows(factory)} == {("failed", True)}


@pytest.mark.parametrize("fake", ["webhook"], indirect=True)
def test_events_and_min_priority_choose_what_is_announced(tmp_path, fake) -> None:
    settings = _settings(tmp_path, fake, events=["escalated"], min_priority="high")
    factory, clock = _world(tmp_path, settings)
    assert _queue(factory, settings, clock, event="created") == 0
    with factory() as session, session.begin():
        ticket = session.get(Ticket, "TKT-20260105-ABC123")
        ticket.priority = "low"
        assert announce(session, settings, "escalated", ticket, "x", clock.now()) == 0
        ticket.priority = "critical"
        assert announce(session, settings, "escalated", ticket, "x", clock.now()) == 1
    body = json.loads(_rows(factory)[0].body)
    assert body["ticket"]["priority"] == "critical"
