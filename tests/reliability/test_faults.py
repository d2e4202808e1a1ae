"""Database faults are nobody's mail's fault: the daemon stays up, loses nothing, charges nothing.

A write lock held by another process far longer than the busy timeout, a full
database (SQLite's own SQLITE_FULL through ``max_page_count``), a PostgreSQL
restart in the middle of a run, and a second daemon on the same mailbox and
database: each ends with every mail a ticket, no attempt charged for the
outage, and nothing in quarantine.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from daemon.store.locks import MailboxLock
from daemon.store.models import Attempt, Heartbeat, LedgerEntry, QuarantineEntry
from tests.e2e.helpers import mailtriage, tickets
from tests.support.mail import make_mail

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def _configure(site: Path, **database: object) -> None:
    """Set keys of the site's [database] section (replacing ``url``)."""
    config = site / "mailtriage.toml"
    text = config.read_text()
    if "url" in database:
        text = re.sub(r'(?m)^url = "sqlite:[^"]*"\n', "", text, count=1)
    lines = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in database.items())
    config.write_text(text.replace("[database]\n", "[database]\n" + lines, 1))


def _deliver(inbox, n: int, prefix: str = "m") -> None:
    for i in range(n):
        inbox(make_mail(subject=f"Request {i}", sender=f"user{i}@example.com"), f"{prefix}{i:03d}")


def _no_charge_no_quarantine(factory) -> None:
    with factory() as s:
        assert s.scalar(select(func.max(Attempt.count))) == 1
        assert s.scalar(select(func.count(QuarantineEntry.id))) == 0


@pytest.mark.slow
def test_a_write_lock_held_by_another_process_is_waited_out(site, inbox, make_app):
    _configure(site, busy_timeout_seconds=0.2)
    assert mailtriage(site, "run", "--once").returncode == 0  # creates the database
    _deliver(inbox, 5)
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(site / "var/mailtriage.db"), "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout.readline().strip() == "locked"
    done = mailtriage(site, "run", "--once")
    locker.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    assert "database unavailable" in done.stderr and "Traceback" not in done.stderr
    assert len(tickets(site)) == 5
    app = make_app()
    _no_charge_no_quarantine(app.factory)
    with app.factory() as s:
        assert any("recovered" in e for e in s.scalars(select(Heartbeat.last_error)))


def _cap_pages(engine, limit: list[int]) -> None:
    """Every new connection sees a database that cannot grow past ``limit[0]`` pages."""

    @event.listens_for(engine, "connect")
    def cap(dbapi_conn, _record) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count = {limit[0]}")

    engine.dispose()


def _pages(engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA page_count").scalar())


@pytest.mark.slow
def test_a_full_disk_is_ridden_out_and_charges_no_mail(make_app, inbox, caplog):
    app = make_app()
    app.runner.run_pass()
    limit = [_pages(app.engine) + 2]  # room for a mail or two, then SQLITE_FULL
    _cap_pages(app.engine, limit)
    _deliver(inbox, 12)
    runner = threading.Thread(target=app.runner.run_pass)
    runner.start()
    time.sleep(3)  # the disk is "full" for a while: the runner backs off
    limit[0] = 1_000_000  # room again
    app.engine.dispose()
    runner.join(timeout=120)
    assert not runner.is_alive()
    assert "database or disk is full" in caplog.text and "available again" in caplog.text
    with app.factory() as s:
        assert s.scalar(select(func.count(LedgerEntry.id))) == 12
    _no_charge_no_quarantine(app.factory)


@pytest.mark.slow
@pytest.mark.realserver
def test_a_postgresql_restart_mid_run_loses_nothing(
    settings, make_app, inbox, postgres_server, caplog
):
    url = postgres_server.new_database()
    s = settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})})
    app = make_app(s, crash=lambda point: time.sleep(0.01) if point == "after_commit" else None)
    _deliver(inbox, 150)
    runner = threading.Thread(target=app.runner.run_pass)
    runner.start()
    _wait_for_rows(app, 20)
    postgres_server.restart(down_seconds=2)
    runner.join(timeout=180)
    assert not runner.is_alive()
    assert "database unavailable" in caplog.text and "available again" in caplog.text
    with app.factory() as session:
        assert session.scalar(select(func.count(LedgerEntry.id))) == 150
    _no_charge_no_quarantine(app.factory)


def _wait_for_rows(app, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.factory() as s:
            if s.scalar(select(func.count(LedgerEntry.id))) >= n:
                return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} mails processed in {timeout}s")


def _two_at_once(site: Path) -> list[subprocess.CompletedProcess]:
    results: list[subprocess.CompletedProcess] = []
    threads = [
        threading.Thread(target=lambda: results.append(mailtriage(site, "run", "--once")))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.slow
@pytest.mark.realserver
def test_two_daemons_on_one_mailbox_and_postgresql_are_harmless(site, inbox, postgres_server):
    _configure(site, url=postgres_server.new_database())
    assert mailtriage(site, "run", "--once").returncode == 0  # migrate before the race
    _deliver(inbox, 200)
    for done in _two_at_once(site):
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "IntegrityError" not in done.stderr
    found = tickets(site)
    assert len(found) == 200 and len({t["source_message_id"] for t in found}) == 200


@pytest.mark.slow
def test_two_daemons_on_one_mailbox_and_sqlite_are_harmless(site, inbox):
    assert mailtriage(site, "run", "--once").returncode == 0
    _deliver(inbox, 100)
    for done in _two_at_once(site):
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    assert len(tickets(site)) == 100


def test_on_postgresql_one_worker_reads_a_mailbox_at_a_time(
    settings, make_app, inbox, site, postgres_server
):
    url = postgres_server.new_database()
    s = settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})})
    first, second = make_app(s), make_app(s)
    _deliver(inbox, 3)
    held = MailboxLock(first.engine, first.runner.backend.name).take()
    assert held.held
    try:
        stats = second.runner.run_pass()  # the other worker holds the mailbox: skip the pass
        assert stats.fetched == 0 and len(list((site / "var/mail/inbox/new").iterdir())) == 3
    finally:
        held.release()
    assert second.runner.run_pass().outcomes == {"ticket": 3}
    with second.factory() as session:
        assert session.scalar(select(func.count(LedgerEntry.id))) == 3
