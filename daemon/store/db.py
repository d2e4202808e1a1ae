"""Engine creation and migrations.

SQLite runs in WAL mode with a busy timeout so the status page can read while
the daemon writes; PostgreSQL is used as given. Migrations (Alembic) run on
every start and are a no-op when the schema is current.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from config.errors import ServiceError

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_CACHE_KIB = 512  # page cache per connection


def _sqlite_pragmas(busy_ms: int):
    def apply(dbapi_conn, _record) -> None:
        _pragmas(dbapi_conn, busy_ms)

    return apply


def _pragmas(dbapi_conn, busy_ms: int) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    # NORMAL is durable across process crashes in WAL mode (only an OS crash
    # can lose the last commits), which is the failure the daemon guards.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # Each pooled connection keeps its own page cache (2 MiB by default); with the
    # runner's, the scheduler's and the status page's connections that was tens of
    # MiB of a long-running daemon's memory once the database outgrew the caches.
    cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cur.close()


def make_engine(url: str, echo: bool = False, busy_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    """Create the engine for ``url`` with the project's connection settings."""
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"timeout": busy_ms / 1000})
        event.listen(engine, "connect", _sqlite_pragmas(busy_ms))
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    """Return an Alembic config whose migrations live in this package."""
    cfg = Config()
    cfg.set_main_option("script_location", "daemon.store:migrations")
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    command.upgrade(alembic_config(engine), "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory that keeps objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session


def insert_new(session: Session, model, rows: list[dict]) -> int:
    """Insert ``rows`` into ``model``'s table, skipping any whose key exists; the count added.

    ``INSERT ... ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL): a row another
    worker inserted first is left alone instead of failing the transaction.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = model.__table__
    # Counted by RETURNING: psycopg reports no row count for this statement.
    stmt = insert(table).values(rows).on_conflict_do_nothing().returning(*table.primary_key)
    return len(session.execute(stmt).all())


# A full disk or quota shows up as OSError where files are written next to the database.
_OUTAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


class StoreUnavailable(ServiceError):
    """The database cannot be used now (locked, full, read-only, connection lost).

    Not the fault of the mail in hand: the runner backs off and retries it
    without counting an attempt.
    """


def is_outage(error: BaseException) -> bool:
    """True when ``error`` says the database is unusable now, not that the data is bad.

    SQLite reports a lock held too long, a full disk and a read-only file as
    OperationalError; PostgreSQL a lost connection, a restart, a serialization
    failure or a deadlock the same way (psycopg's subclasses). Integrity and
    data errors are the mail's (or a bug's) and are not outages.
    """
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, exc.OperationalError | exc.InterfaceError | exc.TimeoutError):
        return True
    if isinstance(error, exc.DisconnectionError | exc.ResourceClosedError):
        return True
    return isinstance(error, OSError) and error.errno in _OUTAGE_ERRNOS
