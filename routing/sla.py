"""SLA arithmetic: business calendars, targets, due times, warnings and the ladder's rungs.

Pure: instants in and out are naive UTC (the store's convention), the calendar
is built from ``[sla.calendar]``; nothing here reads a clock or a database.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from config.schema import WEEKDAYS, Settings, SlaCalendarSettings, SlaSettings, hours_span

#: A calendar that never opens would make every search endless: give up after this.
SEARCH_DAYS = 3 * 366
DAY_MINUTES = 24 * 60


class BusinessCalendar:
    """Working hours per weekday in a time zone, minus holidays; or round the clock.

    ``hours`` maps a weekday (0 = Monday) to its open span in minutes of the local
    day; a weekday not in it is closed. Holidays are local dates.
    """

    def __init__(
        self,
        zone: ZoneInfo | None = None,
        hours: Mapping[int, tuple[int, int]] | None = None,
        holidays: Container[date] = frozenset(),
    ) -> None:
        self.zone = zone or ZoneInfo("UTC")
        self.hours = dict(hours) if hours is not None else None
        self.holidays = holidays

    @property
    def always_open(self) -> bool:
        """True for the 24x7 calendar: business time is wall time."""
        return self.hours is None

    def add(self, start: datetime, minutes: float) -> datetime:
        """The instant ``minutes`` business minutes after ``start``."""
        if minutes <= 0 or self.always_open:
            return start + timedelta(minutes=max(minutes, 0))
        left = timedelta(minutes=minutes)
        for opens, closes in self._spans_from(start):
            opens = max(opens, start)
            if closes - opens >= left:
                return opens + left
            left -= max(closes - opens, timedelta(0))
        raise ValueError("the SLA calendar has no working hours within three years")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Business time from ``start`` to ``end`` (zero when ``end`` is not later)."""
        if end <= start:
            return timedelta(0)
        if self.always_open:
            return end - start
        total = timedelta(0)
        for opens, closes in self._spans_from(start):
            if opens >= end:
                break
            total += max(min(closes, end) - max(opens, start), timedelta(0))
        return total

    def _spans_from(self, start: datetime):
        """Open spans (naive UTC) of the local days from ``start``'s on, in order."""
        day = _local(start, self.zone).date()
        for _ in range(SEARCH_DAYS):
            span = self._span(day)
            if span and span[1] > start:
                yield span
            day += timedelta(days=1)

    def _span(self, day: date) -> tuple[datetime, datetime] | None:
        """The open span of one local day in naive UTC, or None when closed."""
        if day in self.holidays or day.weekday() not in self.hours:
            return None
        start, end = self.hours[day.weekday()]
        return _utc(day, start, self.zone), _utc(day, end, self.zone)


def _local(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.replace(tzinfo=UTC).astimezone(zone)


def _utc(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """Minute ``minute`` of local ``day`` (1440: the next midnight) as naive UTC."""
    wall = datetime.combine(day, time()) + timedelta(minutes=minute)
    # The zone is attached to the wall time, so its offset is the one valid then (DST).
    return wall.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


ROUND_THE_CLOCK = BusinessCalendar()


class Holidays:
    """Public holidays of a country (and subdivision) plus explicit dates."""

    def __init__(self, country: str | None, subdivision: str | None, extra: tuple[date, ...]):
        self.table = _country_holidays(country, subdivision) if country else {}
        self.extra = frozenset(extra)

    def __contains__(self, day: object) -> bool:
        return day in self.extra or day in self.table


@lru_cache(maxsize=16)
def _business_calendar(
    zone: str,
    hours: tuple[tuple[str, str], ...],
    country: str | None,
    subdivision: str | None,
    extra: tuple[date, ...],
) -> BusinessCalendar:
    """One calendar per distinct configuration (holiday tables are filled lazily, per year)."""
    spans = {WEEKDAYS.index(day): hours_span(text) for day, text in hours}
    return BusinessCalendar(ZoneInfo(zone), spans, Holidays(country, subdivision, extra))


def calendar_for(sla: SlaSettings, priority: str) -> BusinessCalendar:
    """The calendar a ticket of ``priority`` is timed by."""
    cal: SlaCalendarSettings = sla.calendar
    if not cal.hours or (priority == "critical" and cal.critical_24x7):
        return ROUND_THE_CLOCK
    return _business_calendar(
        cal.timezone,
        tuple(sorted(cal.hours.items())),
        cal.country,
        cal.subdivision,
        tuple(sorted(cal.extra_holidays)),
    )


@dataclass(frozen=True, slots=True)
class Targets:
    """A ticket's SLA targets in business minutes (None: that clock does not run)."""

    resolution: float
    first_response: float | None = None
    next_update: float | None = None


def targets_for(settings: Settings, priority: str, category: str) -> Targets:
    """The targets of ``priority``, with the category's overrides."""
    sla = settings.sla
    cat = settings.category(category)
    resolution = sla.hours_for(priority) * 60
    first = sla.first_response_minutes_for(priority)
    update = sla.next_update_hours * 60 if sla.next_update_hours else None
    if cat is not None:
        resolution = _minutes(cat.sla_resolution_hours, resolution)
        first = _minutes(cat.sla_first_response_hours, first)
        update = _minutes(cat.sla_next_update_hours, update)
    return Targets(resolution, first, update)


def _minutes(hours: float | None, fallback: float | None) -> float | None:
    return hours * 60 if hours is not None else fallback


@dataclass(frozen=True, slots=True)
class Dues:
    """When each target falls due (naive UTC); None where the clock does not run."""

    resolution: datetime
    first_response: datetime | None = None
    next_update: datetime | None = None


class SlaPolicy:
    """The SLA rules of one configuration: calendars, targets and due times."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sla = settings.sla

    def calendar(self, priority: str) -> BusinessCalendar:
        """The calendar of ``priority``."""
        return calendar_for(self.sla, priority)

    def targets(self, priority: str, category: str) -> Targets:
        """The targets of a ticket of ``priority`` in ``category``."""
        return targets_for(self.settings, priority, category)

    def dues(self, priority: str, category: str, start: datetime) -> Dues:
        """Every target's due time for a clock started at ``start``."""
        cal, tgt = self.calendar(priority), self.targets(priority, category)
        return Dues(
            resolution=cal.add(start, tgt.resolution),
            first_response=_due(cal, start, tgt.first_response),
            next_update=_due(cal, start, tgt.next_update),
        )

    def warn_within(self, target_minutes: float) -> timedelta:
        """How much business time before a due the assignee is warned."""
        if self.sla.warn_before_minutes is not None:
            return timedelta(minutes=self.sla.warn_before_minutes)
        return timedelta(minutes=target_minutes * (1 - self.sla.remind_at_fraction))

    def escalation_level(self, breached_for: timedelta) -> int:
        """The ladder's rung after ``breached_for`` business time in breach: 1 at the breach."""
        passed = [s for s in self.sla.escalation if breached_for >= _td(s.after_minutes)]
        return 1 + len(passed)

    def rung_recipients(self, level: int) -> list[str]:
        """Who a rung above 1 tells (its ``to``), without ``always_cc``."""
        steps = sorted(self.sla.escalation, key=lambda s: s.after_minutes)
        return list(steps[level - 2].to) if 2 <= level <= len(steps) + 1 else []


def _due(cal: BusinessCalendar, start: datetime, minutes: float | None) -> datetime | None:
    return None if minutes is None else cal.add(start, minutes)


def _td(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


def raised(priority: str, order: tuple[str, ...]) -> str:
    """One step more urgent than ``priority`` in ``order`` (most urgent first)."""
    index = order.index(priority) if priority in order else len(order)
    return order[max(index - 1, 0)]


def _country_holidays(country: str, subdivision: str | None):
    """The ``holidays`` package's table: imported only when a country is configured,
    since the package costs about 9 MiB of memory a default desk does not need."""
    import holidays

    return holidays.country_holidays(country, subdiv=subdivision)
