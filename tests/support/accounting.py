"""Every input mail is accounted for: exactly one ledger or quarantine row, with a reason.

The daemon's promise is "never lose, never duplicate". After a pass over the
mailbox this module checks it from the database alone:

* every delivered ref has EXACTLY ONE row, in ``message_ledger`` or in ``quarantine``;
* no row names a ref that was never delivered (nothing invented, nothing counted twice);
* each row explains itself:

  ==============  ==============================================================
  ledger outcome  must have
  ==============  ==============================================================
  ticket          ``ticket_id`` naming an existing ticket
  comment         ``ticket_id`` naming an existing ticket
  ignored         a non-empty reason
  duplicate       ``duplicate_of`` naming another existing ledger row, and a
                  reason that names that original (its ref, Message-ID or id)
  anything else   a non-empty reason (e.g. approval decisions)
  ==============  ==============================================================

  a quarantine row must have a non-empty reason.

:func:`account` raises ``AssertionError`` listing every problem at once (a fuzz
run should show all of them, not the first), and returns a Counter of outcomes
(``quarantined`` for quarantine rows) for tests and the fuzz bench to print;
:func:`audit` returns the counts and the problems without asserting.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from daemon.store.models import LedgerEntry, QuarantineEntry, Ticket

QUARANTINED = "quarantined"


@dataclass(frozen=True)
class _Row:
    """One ledger or quarantine row, as far as accounting cares."""

    table: str
    id: int
    ref: str
    outcome: str
    reason: str
    ticket_id: str | None = None
    duplicate_of: int | None = None
    message_id: str = ""


def _factory(app_or_factory) -> sessionmaker[Session]:
    """Accept an App (anything with ``.factory``) or a session factory."""
    return getattr(app_or_factory, "factory", app_or_factory)


def _load(factory: sessionmaker[Session]) -> tuple[list[_Row], set[str], dict[int, _Row]]:
    """All ledger and quarantine rows, the existing ticket ids, ledger rows by id."""
    # Columns only: the raw bytes of a large fuzz run would not fit in memory.
    L, Q = LedgerEntry, QuarantineEntry
    with factory() as session:
        ledger = [
            _Row("ledger", i, ref, outcome, reason or "", ticket, dup, mid or "")
            for i, ref, outcome, reason, ticket, dup, mid in session.execute(
                select(L.id, L.ref, L.outcome, L.reason, L.ticket_id, L.duplicate_of, L.message_id)
            )
        ]
        quarantine = [
            _Row("quarantine", i, ref, QUARANTINED, reason or "")
            for i, ref, reason in session.execute(select(Q.id, Q.ref, Q.reason))
        ]
        tickets = set(session.scalars(select(Ticket.id)))
    return ledger + quarantine, tickets, {r.id: r for r in ledger}


def _names(reason: str, original: _Row) -> bool:
    """True when ``reason`` names ``original`` by its ref, Message-ID or ledger id."""
    if original.ref and original.ref in reason:
        return True
    if original.message_id and original.message_id in reason:
        return True
    return re.search(rf"(?<!\d){original.id}(?!\d)", reason) is not None


def _problems(row: _Row, tickets: set[str], ledger: dict[int, _Row]) -> list[str]:
    """What is wrong with one row ('' list when it accounts for its mail properly)."""
    where = f"{row.table} row {row.id} ({row.ref!r}, {row.outcome})"
    if row.table == "quarantine":
        return [] if row.reason.strip() else [f"{where}: quarantined without a reason"]
    if row.outcome in ("ticket", "comment"):
        if not row.ticket_id:
            return [f"{where}: no ticket_id"]
        if row.ticket_id not in tickets:
            return [f"{where}: ticket {row.ticket_id} does not exist"]
        return []
    if row.outcome == "duplicate":
        return _duplicate_problems(row, ledger, where)
    return [] if row.reason.strip() else [f"{where}: no reason"]


def _duplicate_problems(row: _Row, ledger: dict[int, _Row], where: str) -> list[str]:
    """A duplicate must point at another ledger row and say which one in its reason."""
    if row.duplicate_of is None:
        return [f"{where}: duplicate_of is not set"]
    original = ledger.get(row.duplicate_of)
    if original is None or original.id == row.id:
        return [f"{where}: duplicate_of={row.duplicate_of} is not another ledger row"]
    if not row.reason.strip():
        return [f"{where}: no reason"]
    if not _names(row.reason, original):
        return [f"{where}: reason {row.reason!r} does not name original {original.ref!r}"]
    return []


def audit(app_or_factory, refs: Iterable[str]) -> tuple[Counter[str], list[str]]:
    """The outcome counts and every accounting problem (see the module docstring).

    ``refs`` are the maildir file names delivered (all of them, for every pass
    run so far on this site): a row for any other ref is a problem too.
    """
    wanted = list(refs)
    problems = [f"ref {r!r} delivered twice" for r, n in Counter(wanted).items() if n > 1]
    rows, tickets, ledger = _load(_factory(app_or_factory))
    by_ref: dict[str, list[_Row]] = {}
    for row in rows:
        by_ref.setdefault(row.ref, []).append(row)
    outcomes: Counter[str] = Counter()
    for ref in dict.fromkeys(wanted):
        found = by_ref.get(ref, [])
        if not found:
            problems.append(f"ref {ref!r}: neither in the ledger nor in quarantine")
            continue
        if len(found) > 1:
            kinds = ", ".join(f"{r.table}:{r.outcome}" for r in found)
            problems.append(f"ref {ref!r}: counted {len(found)} times ({kinds})")
        for row in found:
            problems.extend(_problems(row, tickets, ledger))
            outcomes[row.outcome] += 1
    unknown = sorted(set(by_ref) - set(wanted))
    problems.extend(f"ref {r!r}: a row for a mail that was never delivered" for r in unknown)
    return outcomes, problems


def account(app_or_factory, refs: Iterable[str]) -> Counter[str]:
    """Assert every ref in ``refs`` is accounted for exactly once; return the outcome counts."""
    outcomes, problems = audit(app_or_factory, refs)
    assert not problems, f"{len(problems)} accounting problem(s):\n" + "\n".join(problems[:100])
    return outcomes


def outcome_of(app_or_factory, ref: str) -> _Row | None:
    """The one row that accounts for ``ref`` (None when there is none)."""
    rows, _tickets, _ledger = _load(_factory(app_or_factory))
    return next((r for r in rows if r.ref == ref), None)
