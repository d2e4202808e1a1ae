"""Business-time arithmetic (routing/sla.py), table-driven: weekends, holidays, DST, 24x7."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from config.schema import CategorySettings, Settings, SlaCalendarSettings, SlaSettings
from routing.sla import ROUND_THE_CLOCK, SlaPolicy, calendar_for, raised, targets_for

BERLIN = ZoneInfo("Europe/Berlin")
WORKDAYS = {d: "08:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")}
CALENDAR = SlaCalendarSettings(
    timezone="Europe/Berlin",
    hours=WORKDAYS,
    country="DE",
    subdivision="BY",
    extra_holidays=[date(2026, 12, 24)],
    critical_24x7=True,
)
SLA = SlaSettings(calendar=CALENDAR)


def local(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    """A Berlin wall time as the store's naive UTC."""
    return datetime(y, m, d, hh, mm, tzinfo=BERLIN).astimezone(UTC).replace(tzinfo=None)


ADD_CASES = [
    # (why, priority, start, business minutes, expected)
    ("within a day", "high", local(2026, 1, 12, 9), 60, local(2026, 1, 12, 10)),
    ("before opening", "high", local(2026, 1, 12, 6), 30, local(2026, 1, 12, 8, 30)),
    ("after closing", "high", local(2026, 1, 12, 19), 30, local(2026, 1, 13, 8, 30)),
    ("ends at closing", "high", local(2026, 1, 9, 16), 120, local(2026, 1, 9, 18)),
    ("over a weekend", "high", local(2026, 1, 9, 17), 120, local(2026, 1, 12, 9)),
    ("from a Saturday", "high", local(2026, 1, 10, 12), 60, local(2026, 1, 12, 9)),
    ("over Epiphany (BY)", "high", local(2026, 1, 5, 17), 120, local(2026, 1, 7, 9)),
    ("over Easter", "high", local(2026, 4, 2, 17), 120, local(2026, 4, 7, 9)),
    ("extra holiday + Christmas", "high", local(2026, 12, 23, 17), 120, local(2026, 12, 28, 9)),
    ("DST starts on the Sunday", "high", local(2026, 3, 27, 17), 120, local(2026, 3, 30, 9)),
    ("DST ends on the Sunday", "high", local(2026, 10, 23, 17), 120, local(2026, 10, 26, 9)),
    ("several days", "medium", local(2026, 1, 12, 8), 24 * 60, local(2026, 1, 14, 12)),
    ("critical is 24x7", "critical", local(2026, 1, 9, 17), 120, local(2026, 1, 9, 19)),
    ("24x7 over a holiday", "critical", local(2026, 1, 5, 23), 120, local(2026, 1, 6, 1)),
    ("nothing to add", "high", local(2026, 1, 10, 12), 0, local(2026, 1, 10, 12)),
]


@pytest.mark.parametrize(
    ("why", "priority", "start", "minutes", "expected"), ADD_CASES, ids=[c[0] for c in ADD_CASES]
)
def test_adding_business_minutes(why, priority, start, minutes, expected) -> None:
    assert calendar_for(SLA, priority).add(start, minutes) == expected


BETWEEN_CASES = [
    # (why, priority, start, end, business hours between)
    ("Friday evening to Monday morning", "high", local(2026, 1, 9, 17), local(2026, 1, 12, 9), 2),
    ("a weekend alone", "high", local(2026, 1, 10, 0), local(2026, 1, 12, 0), 0),
    ("Thursday noon to Monday noon", "high", local(2026, 1, 8, 12), local(2026, 1, 12, 12), 20),
    ("over a holiday", "high", local(2026, 1, 5, 12), local(2026, 1, 7, 12), 10),
    ("across DST", "high", local(2026, 3, 27, 8), local(2026, 3, 30, 18), 20),
    ("backwards is zero", "high", local(2026, 1, 12, 12), local(2026, 1, 12, 9), 0),
    ("24x7 counts the weekend", "critical", local(2026, 1, 9, 17), local(2026, 1, 12, 9), 64),
]


@pytest.mark.parametrize(
    ("why", "priority", "start", "end", "hours"), BETWEEN_CASES, ids=[c[0] for c in BETWEEN_CASES]
)
def test_business_time_between(why, priority, start, end, hours) -> None:
    assert calendar_for(SLA, priority).between(start, end) == timedelta(hours=hours)


def test_adding_what_lies_between_comes_back_to_the_end() -> None:
    cal = calendar_for(SLA, "high")
    start, end = local(2026, 1, 8, 12), local(2026, 1, 12, 12)
    assert cal.add(start, cal.between(start, end).total_seconds() / 60) == end


def test_no_hours_means_round_the_clock() -> None:
    assert calendar_for(SlaSettings(), "low") is ROUND_THE_CLOCK


def test_a_calendar_without_open_days_gives_up() -> None:
    sla = SlaSettings(calendar=SlaCalendarSettings(hours={"mon": "08:00-09:00"}))
    cal = calendar_for(sla, "low")
    cal.hours = {}
    with pytest.raises(ValueError, match="no working hours"):
        cal.add(datetime(2026, 1, 5), 60)


TARGET_CASES = [
    # (why, category overrides, priority, (resolution, first response, next update) minutes)
    ("priority defaults", {}, "high", (8 * 60, 60, 240)),
    ("category resolution", {"sla_resolution_hours": 2}, "high", (120, 60, 240)),
    ("category first response", {"sla_first_response_hours": 0.5}, "low", (72 * 60, 30, 240)),
    ("category next update", {"sla_next_update_hours": 1}, "medium", (24 * 60, None, 60)),
]


@pytest.mark.parametrize(
    ("why", "overrides", "priority", "expected"), TARGET_CASES, ids=[c[0] for c in TARGET_CASES]
)
def test_targets_per_priority_with_category_overrides(why, overrides, priority, expected) -> None:
    settings = Settings(
        sla=SlaSettings(
            first_response_high_minutes=60, first_response_low_minutes=120, next_update_hours=4
        ),
        categories=[CategorySettings(name="network", team="Net", **overrides)],
    )
    t = targets_for(settings, priority, "network")
    assert (t.resolution, t.first_response, t.next_update) == expected


def test_dues_use_the_calendar() -> None:
    settings = Settings(sla=SlaSettings(calendar=CALENDAR, first_response_high_minutes=30))
    dues = SlaPolicy(settings).dues("high", "network", local(2026, 1, 9, 17, 45))
    assert dues.first_response == local(2026, 1, 12, 8, 15)
    assert dues.resolution == local(2026, 1, 12, 15, 45)
    assert dues.next_update is None


LADDER = SlaSettings(
    escalation=[{"after_minutes": 60, "to": ["lead@x.com"]}, {"after_minutes": 240, "to": ["m@x"]}]
)


@pytest.mark.parametrize(
    ("breached_minutes", "level"), [(0, 1), (59, 1), (60, 2), (239, 2), (240, 3), (9999, 3)]
)
def test_the_ladder_climbs_after_its_delays(breached_minutes, level) -> None:
    policy = SlaPolicy(Settings(sla=LADDER))
    assert policy.escalation_level(timedelta(minutes=breached_minutes)) == level


def test_rungs_name_their_recipients() -> None:
    policy = SlaPolicy(Settings(sla=LADDER))
    assert [policy.rung_recipients(n) for n in (1, 2, 3, 4)] == [[], ["lead@x.com"], ["m@x"], []]


@pytest.mark.parametrize(
    ("sla", "target", "warn"),
    [
        (SlaSettings(), 480, 120),  # the default 75 %
        (SlaSettings(remind_at_fraction=0.5), 60, 30),
        (SlaSettings(warn_before_minutes=15), 480, 15),
    ],
)
def test_warning_comes_a_fraction_or_minutes_before(sla, target, warn) -> None:
    assert SlaPolicy(Settings(sla=sla)).warn_within(target) == timedelta(minutes=warn)


@pytest.mark.parametrize(
    ("priority", "up"), [("low", "medium"), ("medium", "high"), ("critical", "critical")]
)
def test_raising_a_priority(priority, up) -> None:
    assert raised(priority, ("critical", "high", "medium", "low")) == up
