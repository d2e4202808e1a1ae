"""The commands that set up and run mailtriage: init, run, web, check-config.

Each ``cmd_*`` takes the parsed arguments and returns an exit code; errors are
raised (:mod:`config.errors`) and turned into one line by :mod:`mailtriage.cli`.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from config.errors import UserError
from config.loader import default_config_path, load_settings, starter_toml
from config.schema import Settings

log = logging.getLogger("mailtriage")


def settings_of(args) -> Settings:
    """The settings named by ``--config`` (mailbox credentials required)."""
    return load_settings(args.config or default_config_path())


def readonly_settings(args) -> Settings:
    """Settings for commands that never touch the mailbox: credentials may be absent."""
    return load_settings(args.config or default_config_path(), secrets_optional=True)


# -- init ------------------------------------------------------------------
def read_session(settings: Settings):
    """A session on the configured database (migrated first, so a new install reads empty)."""
    from daemon.app import open_store

    _engine, factory = open_store(settings)
    return factory()


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

    settings = settings_of(args)
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
            _say_what_waits(app)
            return 0
        return _run_daemon(app, web=not args.no_web and settings.web.enabled)
    finally:
        app.close()


def _say_what_waits(app) -> None:
    """After ``run --once``: how many messages the transport's rate cap holds, and until when."""
    from daemon.outbox import pending_count

    until = app.sender.capped_until
    if until is None:
        return
    with app.factory() as session:
        waiting = pending_count(session, until)
    print(
        f"{waiting} message(s) wait for the transport's rate cap; the next can go at "
        f"{until:%H:%M:%S} (the daemon, or the next 'mailtriage run --once', sends them)"
    )


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


def cmd_web(args) -> int:
    from web_status.server import start_in_thread

    settings = readonly_settings(args)
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
    settings = settings_of(args)
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
