"""The SLA at work (daemon/sla.py, daemon/tickets.py's pauses): pause, warn, breach, ladder."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from config.schema import Settings, SlaCalendarSettings, SlaSettings, TeamSettings
from daemon.sla import SlaDesk, record_explanation, record_first_response, running_tickets
from daemon.store.db import make_engine, migrate, session_factory
from daemon.store.models import Event, Ticket
from daemon.store.queries import ticket_to_dict
from daemon.tickets import change_status

MON = datetime(2026, 1, 5, 9, 0)  # a Monday; UTC is the calendar's zone below
TEAM = TeamSettings(name="Net", members=["a@x.com", "b@x.com"])
LADDER = [
    {"after_minutes": 60, "to": ["lead@x.com"]},
    {"after_minutes": 240, "to": ["boss@x.com"]},
]


def settings(**sla) -> Settings:
    return Settings(teams=[TEAM], sla=SlaSettings(**sla))


class Mailbox:
    """Stands in for the Composer: remembers what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str], dict]] = []

    def compose(self, session, kind, ticket, to, thread, auto, **ctx) -> None:
        self.sent.append((kind, list(to), ctx))

    def compose_for_agents(self, session, kind, ticket, agents, thread=None, **ctx) -> None:
        if agents:  # one entry per notice: who it went to, not one per copy
            self.sent.append((kind, list(agents), ctx))

    def kinds(self) -> list[str]:
        return [kind for kind, _to, _ctx in self.sent]


@pytest.fixture
def session(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    migrate(engine)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


def new_ticket(session, due_hours: float = 8, priority: str = "high", **fields) -> Ticket:
    ticket = Ticket(
        id="TKT-1",
        subject="s",
        requester="r@x.com",
        status="assigned",
        category="network",
        priority=priority,
        team="Net",
        assignee="a@x.com",
        original_text="t",
        corrected_text="t",
        created_at=MON,
        updated_at=MON,
        sla_due_at=MON + timedelta(hours=due_hours),
        **fields,
    )
    session.add(ticket)
    session.flush()
    return ticket


def check(session, cfg: Settings, at: datetime) -> Mailbox:
    """One SLA check at ``at`` over the running tickets."""
    box = Mailbox()
    desk = SlaDesk(cfg, box, at)
    for ticket in session.scalars(running_tickets(cfg)):
        desk.check(session, ticket)
    session.flush()
    return box


def actions(session) -> list[str]:
    return [e.action for e in session.scalars(select(Event).order_by(Event.id))]


# -- pauses -------------------------------------------------------------------------------------


def test_a_pause_over_the_due_time_does_not_breach_on_resume(session) -> None:
    cfg = settings()
    ticket = new_ticket(session, due_hours=8)
    change_status(session, ticket, "waiting", "a@x.com", MON + timedelta(hours=1), settings=cfg)
    back = MON + timedelta(days=3, hours=1)
    assert check(session, cfg, back).sent == []  # paused: the clock stands
    change_status(session, ticket, "in_progress", "r@x.com", back, settings=cfg)
    assert ticket.paused_seconds == 3 * 24 * 3600 and ticket.paused_since is None
    assert ticket.sla_due_at == MON + timedelta(days=3, hours=8)
    assert check(session, cfg, back + timedelta(minutes=1)).kinds() == []
    assert ticket.breached_at is None
    assert check(session, cfg, MON + timedelta(days=3, hours=8)).kinds()[0] == "sla_escalation"
    assert "sla_paused" in actions(session) and "sla_resumed" in actions(session)


def test_a_pause_is_measured_in_business_time(session) -> None:
    hours = {d: "08:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")}
    cfg = settings(calendar=SlaCalendarSettings(hours=hours))
    fri = datetime(2026, 1, 9, 17, 0)
    # Due at 20:00, after closing: in business time that is 18:00, one hour after the pause.
    ticket = new_ticket(session, first_response_due=fri + timedelta(hours=3))
    ticket.sla_due_at = datetime(2026, 1, 12, 12, 0)
    change_status(session, ticket, "waiting", "a@x.com", fri, settings=cfg)
    change_status(session, ticket, "assigned", "r@x.com", datetime(2026, 1, 12, 9), settings=cfg)
    assert ticket.paused_seconds == 2 * 3600  # Friday 17-18, Monday 08-09
    assert ticket.sla_due_at == datetime(2026, 1, 12, 14, 0)
    assert ticket.first_response_due == datetime(2026, 1, 12, 10, 0)


def test_closing_a_waiting_ticket_ends_its_pause(session) -> None:
    cfg = settings()
    ticket = new_ticket(session)
    change_status(session, ticket, "waiting", "a@x.com", MON, settings=cfg)
    change_status(session, ticket, "resolved", "a@x.com", MON + timedelta(hours=2), settings=cfg)
    assert ticket.paused_since is None and ticket.paused_seconds == 7200


# -- warnings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sla", "quiet_at", "warn_at"),
    [
        ({}, 5.9, 6),  # 75 % of 8 hours
        ({"warn_before_minutes": 30}, 7.4, 7.5),
    ],
)
def test_the_assignee_is_warned_once_before_the_due(session, sla, quiet_at, warn_at) -> None:
    cfg = settings(**sla)
    new_ticket(session, due_hours=8)
    assert check(session, cfg, MON + timedelta(hours=quiet_at)).sent == []
    [(kind, to, ctx)] = check(session, cfg, MON + timedelta(hours=warn_at)).sent
    assert (kind, to, ctx["target"]) == ("sla_reminder", ["a@x.com"], "resolution")
    assert check(session, cfg, MON + timedelta(hours=7.9)).sent == []


def test_the_first_response_is_warned_and_breached_first(session) -> None:
    cfg = settings(first_response_high_minutes=60)
    ticket = new_ticket(session, first_response_due=MON + timedelta(hours=1))
    [(kind, _to, ctx)] = check(session, cfg, MON + timedelta(minutes=50)).sent
    assert (kind, ctx["target"]) == ("sla_reminder", "first_response")
    check(session, cfg, MON + timedelta(hours=1))
    assert ticket.breached_at == MON + timedelta(hours=1)


def test_a_first_response_stops_its_clock_and_renews_next_update(session) -> None:
    cfg = settings(first_response_high_minutes=60, next_update_hours=4)
    ticket = new_ticket(session, first_response_due=MON + timedelta(hours=1))
    answered = MON + timedelta(minutes=30)
    record_first_response(session, ticket, "a@x.com", answered, cfg)
    record_first_response(session, ticket, "a@x.com", answered + timedelta(hours=1), cfg)
    assert ticket.first_response_at == answered
    assert ticket.next_update_due == answered + timedelta(hours=5)
    assert check(session, cfg, MON + timedelta(hours=2)).sent == []
    assert actions(session).count("first_response") == 1


# -- breach and the ladder ----------------------------------------------------------------------


def test_breach_escalates_level_one_and_asks_why(session) -> None:
    cfg = settings(always_cc=["mgmt@x.com"], raise_priority_on_breach=True)
    ticket = new_ticket(session, due_hours=8)
    box = check(session, cfg, MON + timedelta(hours=8))
    # the agents get their own copies (reply tokens), management one shared copy
    assert box.kinds() == ["sla_escalation", "sla_escalation", "sla_explain"]
    assert [to for _kind, to, _ctx in box.sent] == [
        ["a@x.com", "b@x.com"],
        ["mgmt@x.com"],
        ["a@x.com"],
    ]
    assert (ticket.escalation_level, ticket.escalated, ticket.priority) == (1, True, "critical")
    assert actions(session) == [
        "sla_breached",
        "escalated",
        "priority_changed",
        "explanation_requested",
    ]
    data = ticket_to_dict(ticket)
    assert data["breached"] and data["explanation_missing"] and data["escalation_level"] == 1


def test_the_ladder_climbs_one_event_per_rung(session) -> None:
    cfg = settings(escalation=LADDER, always_cc=["mgmt@x.com"], ask_explanation=False)
    ticket = new_ticket(session, due_hours=8)
    due = MON + timedelta(hours=8)
    assert check(session, cfg, due).kinds() == ["sla_escalation"] * 2  # agents, management
    assert check(session, cfg, due + timedelta(minutes=59)).sent == []
    [(_k, to, ctx)] = check(session, cfg, due + timedelta(minutes=60)).sent
    assert (to, ctx["level"]) == (["lead@x.com", "mgmt@x.com"], 2)
    [(_k, to, ctx)] = check(session, cfg, due + timedelta(hours=5)).sent
    assert (to, ctx["level"]) == (["boss@x.com", "mgmt@x.com"], 3)
    assert check(session, cfg, due + timedelta(days=5)).sent == []  # the top rung
    assert ticket.escalation_level == 3 and actions(session).count("escalated") == 3


def test_a_check_after_a_long_outage_climbs_every_rung_it_missed(session) -> None:
    cfg = settings(escalation=LADDER, ask_explanation=False)
    new_ticket(session, due_hours=8)
    box = check(session, cfg, MON + timedelta(days=1))
    assert [ctx["level"] for _k, _to, ctx in box.sent] == [1, 2, 3]


def test_closed_tickets_are_left_alone(session) -> None:
    cfg = settings()
    new_ticket(session, due_hours=1, resolved_at=MON).status = "resolved"
    assert check(session, cfg, MON + timedelta(days=2)).sent == []


# -- the explanation ----------------------------------------------------------------------------


def test_an_explanation_is_recorded_only_for_a_breach(session) -> None:
    cfg = settings()
    ticket = new_ticket(session, due_hours=1)
    assert not record_explanation(session, ticket, "a@x.com", "busy", MON)
    check(session, cfg, MON + timedelta(hours=1))
    later = MON + timedelta(hours=2)
    assert record_explanation(session, ticket, "a@x.com", "  waiting for the vendor ", later)
    data = ticket_to_dict(ticket)
    assert (
        not data["explanation_missing"] and data["breach_explanation"] == "waiting for the vendor"
    )
    assert ticket.breach_explained_at == later and actions(session)[-1] == "breach_explained"


def test_the_ticket_json_shows_every_clock(session) -> None:
    ticket = new_ticket(session, due_hours=8, first_response_due=MON + timedelta(hours=1))
    data = ticket_to_dict(ticket)
    assert data["resolution_due"] == data["sla_due_at"] == "2026-01-05T17:00:00Z"
    assert data["first_response_due"] == "2026-01-05T10:00:00Z"
    assert data["next_update_due"] is None and data["paused_seconds"] == 0
    assert not data["breached"] and data["escalation_level"] == 0
    assert not data["explanation_missing"]


def test_an_escalation_is_announced_on_the_channels_that_want_it(session) -> None:
    from config.schema import ChannelSettings
    from daemon.store.models import ChannelMessage

    cfg = settings(ask_explanation=False).model_copy(
        update={
            "channels": [
                ChannelSettings(kind="slack", url="http://127.0.0.1:9/hook"),
                ChannelSettings(kind="webhook", url="http://127.0.0.1:9/x", events=["created"]),
            ]
        }
    )
    new_ticket(session, due_hours=8)
    check(session, cfg, MON + timedelta(hours=8))
    rows = session.scalars(select(ChannelMessage)).all()
    assert [(r.kind, r.event) for r in rows] == [("slack", "escalated")]
    assert "escalation level 1" in rows[0].body
