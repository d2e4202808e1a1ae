"""``mailtriage`` command line: the only place that turns errors into exit codes.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration. Errors are
one line on stderr plus a hint; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from config.loader import ConfigError, default_config_path, load_settings, starter_toml
from config.schema import Settings
from daemon.errors import RuntimeFailure, UserError

log = logging.getLogger("mailtriage")


def _settings(args) -> Settings:
    return load_settings(args.config or default_config_path())


def _readonly_settings(args) -> Settings:
    """Settings for commands that never touch the mailbox: credentials may be absent."""
    return load_settings(args.config or default_config_path(), secrets_optional=True)


# -- init ------------------------------------------------------------------
def init_project(target: Path, force: bool = False) -> Path:
    """Write the starter config and the embedded-default folders under ``target``."""
    from daemon.backends.maildir import ensure_maildir

    target.mkdir(parents=True, exist_ok=True)
    config = target / "mailtriage.toml"
    if config.exists() and not force:
        raise UserError(f"{config} already exists (use --force to overwrite)")
    config.write_text(starter_toml(), encoding="utf-8")
    for sub in ("var/mail/inbox", "var/mail/sent"):
        ensure_maildir(target / sub)
    return config


def cmd_init(args) -> int:
    config = init_project(Path(args.dir), args.force)
    print(f"wrote {config}")
    print(
        f"mail dropped into {config.parent / 'var/mail/inbox/new'} becomes tickets while "
        "'mailtriage run' is running ('mailtriage run --once' processes it and exits)"
    )
    return 0


# -- run -------------------------------------------------------------------
def cmd_run(args) -> int:
    from daemon.app import build_app
    from daemon.runner import crash_hook
    from daemon.scheduler import run_due

    settings = _settings(args)
    app = build_app(settings, crash=crash_hook())
    try:
        if args.once:
            app.runner.outage_patience = settings.database.outage_patience_seconds
            stats = app.runner.run_pass()
            changed = app.runner.patiently(run_due, app)
            sent = app.runner.patiently(app.sender.drain)
            print(
                f"processed {stats.fetched} mail(s): "
                + (
                    ", ".join(f"{k} {v}" for k, v in sorted(stats.outcomes.items()))
                    or "nothing new"
                )
                + f"; quarantined {stats.quarantined}; scheduler changes {changed}; sent {stats.sent + sent}"
            )
            return 0
        return _run_daemon(app, web=not args.no_web and settings.web.enabled)
    finally:
        app.close()


def _run_daemon(app, web: bool) -> int:
    from daemon.scheduler import start_scheduler

    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()
        app.runner.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = None
    if web:
        from web_status.server import start_in_thread

        server, _thread = start_in_thread(app.settings)
        log.info("status page on http://%s:%s/", app.settings.web.host, server.server_port)
    scheduler = start_scheduler(app)
    log.info("mailtriage running: mailbox %s, transport %s", app.backend.name, app.transport.name)
    try:
        app.runner.run_forever(idle_timeout=app.settings.mailbox.poll_seconds)
    finally:
        scheduler.shutdown(wait=False)
        if server is not None:
            server.shutdown()
        log.info("stopped cleanly")
    return 0


# -- tickets -----------------------------------------------------------------
def _read_session(settings: Settings):
    from daemon.app import open_store

    _engine, factory = open_store(settings)
    return factory()


def _parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--since: not an ISO date/time: {value!r}") from None
    if parsed.tzinfo is not None:
        from datetime import UTC

        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def cmd_tickets(args) -> int:
    from daemon.store.queries import TicketFilter, list_tickets

    flt = TicketFilter(args.status, args.category, args.priority, _parse_since(args.since))
    with _read_session(_readonly_settings(args)) as session:
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


def cmd_ticket(args) -> int:
    from daemon.store.queries import get_ticket

    with _read_session(_readonly_settings(args)) as session:
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
    for h in ticket["history"]:
        print(f"  {h['at']}  {h['actor']:<28} {h['action']}")
    return 0


# -- quarantine ---------------------------------------------------------------
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

    with _read_session(_readonly_settings(args)) as session:
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

    with _read_session(_readonly_settings(args)) as session:
        entry = session.get(QuarantineEntry, args.id)
        if entry is None:
            raise UserError(f"no quarantined mail #{args.id}")
        if args.raw:
            sys.stdout.buffer.write(entry.raw)
            return 0
        for key, value in _quarantine_row(entry).items():
            print(f"{key:>16}: {value if value is not None else '-'}")
        print()
        print(entry.raw[:4096].decode("utf-8", "replace"))
    return 0


def _quarantine_release(args) -> int:
    from daemon.app import build_app
    from daemon.quarantine import entries, release

    if bool(args.ids) == bool(args.reason):
        raise UserError("name the mail to release: IDs, or --reason CODE (e.g. sender-rate)")
    app = build_app(_settings(args))
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


# -- web, check-config --------------------------------------------------------
def cmd_web(args) -> int:
    from web_status.server import start_in_thread

    settings = _readonly_settings(args)
    from daemon.app import open_store

    open_store(settings)  # migrate so a fresh install shows an empty page, not an error
    server, thread = start_in_thread(settings)
    print(f"status page on http://{settings.web.host}:{server.server_port}/ (Ctrl-C stops)")
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


def cmd_check_config(args) -> int:
    settings = _settings(args)
    print(f"config ok: {args.config or default_config_path()}")
    print(f"  database:  {settings.database.url}")
    print(f"  mailbox:   {settings.mailbox.backend} ({settings.mailbox.support_address})")
    print(f"  outbound:  {settings.outbound.transport} (from {settings.outbound.from_address})")
    print(f"  teams:     {', '.join(t.name for t in settings.teams) or 'none'}")
    print(f"  categories:{' ' + ', '.join(c.name for c in settings.categories) or ' none'}")
    if not args.connect:
        return 0
    from daemon.app import BACKENDS, TRANSPORTS
    from daemon.backends.base import BackendError

    failed = False
    for label, build in (
        ("mailbox", BACKENDS[settings.mailbox.backend]),
        ("outbound", TRANSPORTS[settings.outbound.transport]),
    ):
        try:
            part = build(settings)
            print(f"  {label} connect: ok: {part.check()}")
            part.close()
        except BackendError as exc:
            failed = True
            print(f"  {label} connect: FAILED: {exc}")
    return 1 if failed else 0


# -- parser ---------------------------------------------------------------------
def _common_options(default: object) -> argparse.ArgumentParser:
    """``--config``, ``--log-level``, ``--debug``, each with ``default`` as its default."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=default,
        help="config file (default: $MAILTRIAGE_CONFIG or ./mailtriage.toml)",
    )
    common.add_argument(
        "--log-level", default=default, choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    common.add_argument("--debug", action="store_true", default=default, help="show tracebacks")
    return common


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog="mailtriage",
        parents=[_common_options(argparse.SUPPRESS)],
        description="Help-desk mail daemon: support mail in, tickets out.",
    )
    parser.set_defaults(config=None, log_level="INFO", debug=False)
    # The options work before and after the command. A subparser's defaults would
    # overwrite what was given before the command, so neither level has any.
    common = _common_options(argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", parents=[common], help="write a starter config and folders")
    p.add_argument("dir", nargs="?", default=".")
    p.add_argument("--force", action="store_true", help="overwrite an existing mailtriage.toml")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("run", parents=[common], help="run the daemon")
    p.add_argument("--once", action="store_true", help="process what is there now, then exit")
    p.add_argument("--no-web", action="store_true", help="do not serve the status page")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", parents=[common], help="a self-contained tour with sample mail")
    p.add_argument("--dir", help="where to set up the demo (default: a new temporary folder)")
    p.add_argument("--port", type=int, default=None, help="status page port (default 8025)")
    p.add_argument("--no-serve", action="store_true", help="process the samples and exit")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("tickets", parents=[common], help="list tickets")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--status")
    p.add_argument("--category")
    p.add_argument("--priority")
    p.add_argument("--since", help="ISO date/time, e.g. 2026-11-01")
    p.set_defaults(func=cmd_tickets)

    p = sub.add_parser("ticket", parents=[common], help="show one ticket")
    p.add_argument("id")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_ticket)

    p = sub.add_parser("web", parents=[common], help="serve the read-only status page alone")
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("check-config", parents=[common], help="validate the config")
    p.add_argument("--connect", action="store_true", help="also try the mailbox and transport")
    p.set_defaults(func=cmd_check_config)

    _add_quarantine(sub, common)
    _add_classifier(sub, common)
    return parser


def _add_quarantine(sub, common) -> None:
    p = sub.add_parser("quarantine", parents=[common], help="list, show or release held mail")
    inner = p.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")
    q = inner.add_parser("list", parents=[common], help="quarantined mail, oldest first")
    q.add_argument("--reason", help="only this reason code (sender-rate, unparseable, failed)")
    q.add_argument("--all", action="store_true", help="include mail already released")
    q.add_argument("--format", choices=["table", "json"], default="table")
    q = inner.add_parser("show", parents=[common], help="one quarantined mail")
    q.add_argument("id", type=int)
    q.add_argument("--raw", action="store_true", help="write the raw bytes to stdout")
    q = inner.add_parser("release", parents=[common], help="process held mail now, once")
    q.add_argument("ids", nargs="*", type=int, metavar="ID")
    q.add_argument("--reason", help="release every held mail with this reason code")
    q.add_argument("--by", help="who releases (recorded in the history; default admin:LOGIN)")
    p.set_defaults(func=cmd_quarantine)


def _cmd_demo(args) -> int:
    from daemon.demo import run_demo

    return run_demo(args)


def _add_classifier(sub, common) -> None:
    from classifier.cli import add_classifier_commands

    p = sub.add_parser("classifier", parents=[common], help="train or evaluate the classifier")
    inner = p.add_subparsers(dest="classifier_command", required=True, metavar="ACTION")
    add_classifier_commands(inner, _load_corrections, parents=[common])


def _load_corrections(args) -> list[tuple[str, str]]:
    from daemon.store.queries import category_corrections

    with _read_session(_settings(args)) as session:
        return category_corrections(session)


def _fail(message: str, hint: str, code: int) -> int:
    print(f"mailtriage: error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mailtriage`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.log_level != "DEBUG":
        # Alembic logs every plugin and migration step at INFO: noise on every command.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        return _fail(str(exc), exc.hint, 2)
    except UserError as exc:
        return _fail(str(exc), "", 2 if args.command != "ticket" else 1)
    except (RuntimeFailure, SQLAlchemyError, OSError) as exc:
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _fail(f"{type(exc).__name__}: {first}", "run with --debug for details", 1)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        log.debug("unexpected error", exc_info=True)
        return _fail(
            f"unexpected {type(exc).__name__}: {exc}", "run with --debug for the traceback", 1
        )


if __name__ == "__main__":
    sys.exit(main())
