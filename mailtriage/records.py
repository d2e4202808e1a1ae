"""The commands that read the records and release held mail: tickets, ticket, quarantine.

Reading commands open the database read-only in spirit (they never write) and
need no mailbox credentials; ``quarantine release`` builds the pipeline.
"""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime

from config.errors import UserError
from mailtriage.commands import read_session, readonly_settings, settings_of


def _parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--since: not an ISO date/time: {value!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def cmd_tickets(args) -> int:
    from daemon.store.queries import TicketFilter, list_tickets

    flt = TicketFilter(args.status, args.category, args.priority, _parse_since(args.since))
    with read_session(readonly_settings(args)) as session:
        rows = list_tickets(session, flt)
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        _print_table(rows)
    return 0


def _print_table(rows: list[dict]) -> None:
    cols = ("id", "status", "priority", "category", "team", "assignee", "requester", "subject")
    widths = {c: max([len(c)] + [len(str(r[c] or "-")[:40]) for r in rows]) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c] or "-")[:40].ljust(widths[c]) for c in cols))
    print(f"{len(rows)} ticket(s)")


#: ``mailtriage ticket ID --NAME VALUE``: the e-mail commands an admin may give.
ADMIN_COMMANDS = (
    ("status", "STATUS"),
    ("assign", "ADDRESS"),
    ("priority", "PRIORITY"),
    ("category", "NAME"),
    ("team", "NAME"),
    ("note", "TEXT"),
    ("cc", "ADDRESS"),
    ("reason", "TEXT"),
)


def _admin_commands(args) -> list:
    from routing.commands import Command

    found = [Command("take", "", "#take")] if getattr(args, "take", False) else []
    for name, _meta in ADMIN_COMMANDS:
        value = getattr(args, name, None)
        if value is not None:
            found.append(Command(name, value, f"#{name} {value}"))
    return found


def _work_ticket(args, commands: list) -> int:
    """Apply ``commands`` as the admin, with the same rules and history as by e-mail."""
    from daemon.app import build_app
    from daemon.store.models import Ticket
    from daemon.work import CommandRunner

    app = build_app(settings_of(args), text=_no_text_understanding())
    actor = args.by or f"admin:{getpass.getuser()}"
    try:
        with app.factory() as session, session.begin():
            ticket = session.get(Ticket, args.id)
            if ticket is None:
                raise UserError(f"no ticket {args.id!r}")
            runner = CommandRunner(app.settings, app.composer)
            report = runner.apply(session, ticket, commands, actor, app.clock.now())
    finally:
        app.close()
    for result in report.results:
        print(f"{'applied' if result.applied else 'refused'}: {result.line}  {result.reason}")
    return 0 if not report.refused else 1


def _no_text_understanding():
    """Working a ticket needs no classifier: skip loading the model."""
    from classifier.factory import IdentityCorrector
    from classifier.keywords import KeywordClassifier

    return IdentityCorrector(), KeywordClassifier(["general"])


def cmd_ticket(args) -> int:
    from daemon.store.queries import get_ticket

    commands = _admin_commands(args)
    if commands:
        return _work_ticket(args, commands)
    with read_session(readonly_settings(args)) as session:
        ticket = get_ticket(session, args.id)
    if ticket is None:
        raise UserError(f"no ticket {args.id!r}")
    if args.format == "json":
        print(json.dumps(ticket, indent=2, ensure_ascii=False))
        return 0
    for key in (
        "id",
        "subject",
        "requester",
        "status",
        "category",
        "priority",
        "team",
        "assignee",
        "created_at",
        "sla_due_at",
        "escalated",
    ):
        print(f"{key:>12}: {ticket[key]}")
    print("\n" + ticket["corrected_text"])
    _print_attachments(ticket["attachments"])
    for h in ticket["history"]:
        print(f"  {h['at']}  {h['actor']:<28} {h['action']}")
    return 0


def _print_attachments(rows: list[dict]) -> None:
    """One line per attachment: name, size, type, and whether it is dangerous or not kept."""
    if not rows:
        return
    print(f"\nattachments ({len(rows)}):")
    for a in rows:
        flags = " DANGEROUS" if a["dangerous"] else ""
        flags += "" if a["stored"] else f" ({a['note']})"
        print(f"  {a['name']:<40} {a['size']:>10} bytes  {a['content_type']}{flags}")


def cmd_quarantine(args) -> int:
    return {"list": _quarantine_list, "show": _quarantine_show, "release": _quarantine_release}[
        args.quarantine_command
    ](args)


def _quarantine_row(e) -> dict:
    return {
        "id": e.id,
        "ref": e.ref,
        "reason_code": e.reason_code,
        "reason": e.reason,
        "sender": e.sender,
        "subject": e.subject,
        "quarantined_at": e.created_at.isoformat(timespec="seconds"),
        "released_at": e.released_at.isoformat(timespec="seconds") if e.released_at else None,
        "released_by": e.released_by,
        "release_outcome": e.release_outcome,
    }


def _quarantine_list(args) -> int:
    from daemon.quarantine import entries

    with read_session(readonly_settings(args)) as session:
        rows = [_quarantine_row(e) for e in entries(session, args.reason, args.all)]
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for r in rows:
        state = f"released {r['released_at']}" if r["released_at"] else "held"
        print(
            f"#{r['id']:<6} {r['reason_code'] or '-':<12} {state:<10} {r['sender'][:40]:<40} "
            f"{r['subject'][:50]}"
        )
    print(f"{len(rows)} quarantined mail(s)")
    return 0


def _quarantine_show(args) -> int:
    from daemon.store.models import QuarantineEntry
    from daemon.store.raw import load_raw

    with read_session(readonly_settings(args)) as session:
        entry = session.get(QuarantineEntry, args.id)
        if entry is None:
            raise UserError(f"no quarantined mail #{args.id}")
        raw = load_raw(session, entry.raw_sha256) or b""
        if args.raw:
            sys.stdout.buffer.write(raw)
            return 0
        for key, value in _quarantine_row(entry).items():
            print(f"{key:>16}: {value if value is not None else '-'}")
        print()
        print(raw[:4096].decode("utf-8", "replace"))
    return 0


def _quarantine_release(args) -> int:
    from daemon.app import build_app
    from daemon.quarantine import entries, release

    if bool(args.ids) == bool(args.reason):
        raise UserError("name the mail to release: IDs, or --reason CODE (e.g. sender-rate)")
    app = build_app(settings_of(args))
    try:
        if args.reason:
            with app.factory() as session:
                ids = [e.id for e in entries(session, args.reason)]
        else:
            ids = list(args.ids)
        actor = args.by or f"admin:{getpass.getuser()}"
        for entry_id in ids:
            outcome = release(app.pipeline, app.factory, entry_id, actor)
            print(f"#{entry_id}: {outcome.kind} {outcome.ticket_id or ''}".rstrip())
    finally:
        app.close()
    print(f"released {len(ids)} mail(s); the daemon (or run --once) sends what they queued")
    return 0
