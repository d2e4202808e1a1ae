"""``mailtriage`` command line: the parser, and the only place errors become exit codes.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration. Errors are
one line on stderr plus a hint; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sqlalchemy.exc import SQLAlchemyError

from config.errors import ConfigError, MailtriageError, UserError
from daemon import memory
from mailtriage.commands import (
    cmd_check_config,
    cmd_init,
    cmd_run,
    cmd_web,
    read_session,
    settings_of,
)
from mailtriage.records import ADMIN_COMMANDS, cmd_quarantine, cmd_ticket, cmd_tickets

log = logging.getLogger("mailtriage")


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

    p = sub.add_parser("ticket", parents=[common], help="show one ticket, or work it")
    p.add_argument("id")
    p.add_argument("--format", choices=["table", "json"], default="table")
    for name, meta in ADMIN_COMMANDS:
        p.add_argument(f"--{name}", metavar=meta, help=f"as the e-mail command #{name}")
    p.add_argument("--take", action="store_true", help="assign the ticket to --by")
    p.add_argument("--by", help="who acts (recorded in the history; default admin:LOGIN)")
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
    from mailtriage.demo import run_demo

    return run_demo(args)


def _add_classifier(sub, common) -> None:
    from classifier.cli import add_classifier_commands

    p = sub.add_parser("classifier", parents=[common], help="train or evaluate the classifier")
    inner = p.add_subparsers(dest="classifier_command", required=True, metavar="ACTION")
    add_classifier_commands(inner, _load_corrections, parents=[common])


def _load_corrections(args) -> list[tuple[str, str]]:
    from daemon.store.queries import category_corrections

    with read_session(settings_of(args)) as session:
        return category_corrections(session)


def _fail(message: str, hint: str, code: int) -> int:
    print(f"mailtriage: error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mailtriage`` console script."""
    memory.tune()  # before anything big is allocated
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
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the one place errors become exit codes
        if args.debug:
            raise
        return _report(exc, args.command)


def _report(exc: Exception, command: str) -> int:
    """One line and a hint for ``exc``; the exit code its group calls for."""
    if isinstance(exc, ConfigError):
        return _fail(str(exc), exc.hint, 2)
    if isinstance(exc, UserError):
        return _fail(str(exc), exc.hint, 1 if command == "ticket" else 2)
    if isinstance(exc, MailtriageError):
        return _fail(_first_line(exc), exc.hint or "run with --debug for details", 1)
    if isinstance(exc, SQLAlchemyError | OSError):
        return _fail(_first_line(exc), "check the database and files named above", 1)
    log.debug("unexpected error", exc_info=True)
    return _fail(
        f"unexpected {type(exc).__name__}: {exc}",
        "this is a bug: run with --debug for the traceback and report it",
        1,
    )


def _first_line(exc: Exception) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
