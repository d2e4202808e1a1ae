"""``daemon.notify.Composer``: the outgoing messages, parsed back as a mail client would.

The app factory needs the trained classifier, which these tests do not: they build the
:class:`Composer` on the site's migrated store instead.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from config.schema import Settings
from daemon.app import open_store
from daemon.clock import ManualClock
from daemon.notify import LOOP_HEADER, Composer, Threading
from daemon.store.models import OutboxEntry, Ticket
from templates import TemplateRenderer

TICKET_ID = "TKT-20260105-AB12CD"
REQUEST_ID = "<req-1@mail.example.com>"
HOSTILE_SUBJECT = "Drucker\r\nBcc: x@evil.com kaputt \u2013 \u00c4rger <script>alert(1)</script>"
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
KINDS = sorted(p.name.removesuffix(".subject.j2") for p in TEMPLATES.glob("*.subject.j2"))
# What the pipeline, scheduler and approval flow pass besides ``ticket``; extra keys are unused.
CONTEXT = {
    "author": "ann@example.com",
    "text": "Paper tray 2 <b>still</b> jams.",
    "reasons": ["category printing -> Facilities", "keyword 'jam'"],
    "approver": "boss@example.com",
    "token": "APR-ABCDEFGHIJKLMNOP",
    "step": 1,
    "step_count": 2,
    "mode": "all",
    "state": "approved",
    "outcome": "approved",
    "reason": "no-decision",
    "comment": "Fine <b>by me</b>.",
    "requested_at": datetime(2026, 1, 5, 9, 0),
    "expires_at": datetime(2026, 1, 8, 9, 0),
    "approve_link": "mailto:support@example.com?subject=APPROVE&body=<x>",
    "reject_link": "mailto:support@example.com?subject=REJECT",
    "reply_address": "support@example.com",
    "applied": [{"line": "#take"}],
    "refused": [{"line": "#status done", "reason": "status must be one of ..."}],
    "reopen_days": 7,
}


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    """A session on the site's migrated SQLite store."""
    engine, factory = open_store(settings)
    with factory() as s:  # closing it rolls back: nothing is committed
        yield s
    engine.dispose()


@pytest.fixture
def composer(settings: Settings, clock: ManualClock) -> Composer:
    return Composer(settings, TemplateRenderer(), clock)


@pytest.fixture
def ticket(session: Session, clock: ManualClock) -> Ticket:
    now = clock.now()
    row = Ticket(
        id=TICKET_ID,
        subject=HOSTILE_SUBJECT,
        requester="bob@example.com",
        status="new",
        category="printing",
        priority="high",
        team="Facilities",
        assignee="ann@example.com",
        original_text="The printr <script>x()</script> jams.",
        corrected_text="The printer <script>x()</script> jams.",
        created_at=now,
        updated_at=now,
        sla_due_at=now + timedelta(hours=8),
        source_message_id=REQUEST_ID,
    )
    session.add(row)
    session.flush()
    return row


@pytest.fixture
def ack(composer: Composer, session: Session, ticket: Ticket) -> OutboxEntry:
    thread = Threading(REQUEST_ID, (REQUEST_ID,))
    return composer.compose(session, "ack", ticket, [ticket.requester], thread)


def parsed(row: OutboxEntry) -> EmailMessage:
    return email.message_from_bytes(row.raw, policy=email.policy.default)


def part(row: OutboxEntry, subtype: str) -> str:
    body = parsed(row).get_body(preferencelist=(subtype,))
    assert body is not None and body.get_content_subtype() == subtype
    return body.get_content()


# --- the acknowledgement


def test_ack_parses_back_without_defects(ack: OutboxEntry):
    assert parsed(ack).defects == []


def test_ack_subject_carries_the_ticket_tag(ack: OutboxEntry):
    assert parsed(ack)["Subject"].startswith(f"[{TICKET_ID}] ")


def test_ack_subject_is_one_line_with_its_unicode(ack: OutboxEntry):
    subject = parsed(ack)["Subject"]
    assert (
        "\n" not in subject
        and "Drucker Bcc: x@evil.com kaputt" in subject
        and "\u00c4rger" in subject
    )


def test_ack_subject_round_trips_exactly(ack: OutboxEntry):
    assert parsed(ack)["Subject"] == f"[{TICKET_ID}] Received: " + " ".join(HOSTILE_SUBJECT.split())


def test_ack_has_no_injected_header(ack: OutboxEntry):
    assert parsed(ack).get_all("Bcc") is None


def test_ack_message_id_is_the_rows(ack: OutboxEntry):
    assert parsed(ack)["Message-ID"] == ack.message_id


def test_ack_message_id_is_ours(ack: OutboxEntry):
    assert ack.message_id.startswith(f"<{TICKET_ID}.") and ack.message_id.endswith("@example.com>")


def test_ack_is_stamped_against_loops(ack: OutboxEntry):
    msg = parsed(ack)
    stamps = {h: msg[h] for h in ("Auto-Submitted", "X-Auto-Response-Suppress", "Precedence")}
    assert stamps == {
        "Auto-Submitted": "auto-replied",
        "X-Auto-Response-Suppress": "All",
        "Precedence": "bulk",
    }


def test_ack_carries_our_loop_header(ack: OutboxEntry, composer: Composer):
    assert parsed(ack)[LOOP_HEADER] == composer.loop_marker


def test_ack_threads_under_the_request(ack: OutboxEntry):
    msg = parsed(ack)
    assert (msg["In-Reply-To"], msg["References"]) == (REQUEST_ID, REQUEST_ID)


def test_ack_goes_to_the_requester_from_us(ack: OutboxEntry):
    msg = parsed(ack)
    assert (msg["To"], msg["From"]) == ("bob@example.com", "IT Support <support@example.com>")


def test_ack_has_text_and_html_parts(ack: OutboxEntry):
    msg = parsed(ack)
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_ack_html_escapes_subject_and_body(ack: OutboxEntry):
    html = part(ack, "html")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_ack_text_keeps_the_subject_readable(ack: OutboxEntry):
    assert "kaputt \u2013 \u00c4rger <script>alert(1)</script>" in part(ack, "plain")


def test_ack_row_is_pending_and_due_now(ack: OutboxEntry, clock: ManualClock):
    assert (ack.status, ack.attempts, ack.next_attempt_at) == ("pending", 0, clock.now())


def test_references_are_capped_at_twenty(composer, session, ticket):
    refs = tuple(f"<r{n}@x>" for n in range(30))
    row = composer.compose(session, "ack", ticket, ["bob@example.com"], Threading("<r29@x>", refs))
    assert parsed(row)["References"].split() == list(refs[-20:])


def test_ack_without_thread_has_no_threading_headers(composer, session, ticket):
    msg = parsed(composer.compose(session, "ack", ticket, ["bob@example.com"]))
    assert (msg["In-Reply-To"], msg["References"]) == (None, None)


def test_every_message_gets_its_own_message_id(composer, session, ticket):
    rows = [composer.compose(session, "ack", ticket, ["bob@example.com"]) for _ in range(3)]
    assert len({r.message_id for r in rows}) == 3


# --- every template kind that exists renders


def test_template_kinds_are_found():
    assert {"ack", "assigned", "comment", "sla_reminder", "sla_escalation"} <= set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_kind_renders_text_and_html(kind, composer, session, ticket):
    row = composer.compose(
        session, kind, ticket, ["ann@example.com"], auto="auto-generated", **CONTEXT
    )
    text, html = part(row, "plain"), part(row, "html")
    assert TICKET_ID in parsed(row)["Subject"] and TICKET_ID in text and TICKET_ID in html


@pytest.mark.parametrize("kind", KINDS)
def test_kind_html_escapes_what_people_wrote(kind, composer, session, ticket):
    row = composer.compose(session, kind, ticket, ["ann@example.com"], **CONTEXT)
    html = part(row, "html")
    assert "<script>" not in html and "<b>" not in html


# --- control characters from the request (issue: NUL copied into a 7bit body)


def test_control_bytes_of_the_request_never_reach_a_body(composer, session, ticket):
    ticket.corrected_text = "line one\x00\x01\x1b[31m red\x0c\x7f end\ttab"
    row = composer.compose(session, "assigned", ticket, ["ann@example.com"], reasons=[])
    message = parsed(row)
    for leaf in message.walk():
        if leaf.is_multipart():
            continue
        cte = str(leaf["Content-Transfer-Encoding"] or "7bit").lower()
        assert cte in ("7bit", "quoted-printable", "base64")
        assert not any(b in leaf.get_payload().encode() for b in (b"\x00", b"\x1b", b"\x7f"))
        text = leaf.get_content()
        assert "\x00" not in text and "\x1b" not in text and "line one" in text


def test_non_ascii_bodies_go_out_seven_bit_clean(composer, session, ticket):
    ticket.corrected_text = "Drucker im Büro \u2013 \u00c4rger" * 3
    row = composer.compose(session, "assigned", ticket, ["ann@example.com"], reasons=[])
    assert max(row.raw) < 0x80
    assert "Drucker im Büro" in part(row, "plain")
