"""The real ``mailtriage`` CLI over Dovecot IMAP + aiosmtpd: run, crash and restart, check-config.

The config file points at the private servers; the passwords come from
``MAILTRIAGE_MAILBOX_PASSWORD``/``MAILTRIAGE_OUTBOUND_PASSWORD`` as in production.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from daemon.backends.smtp import crlf
from daemon.runner import CRASH_POINTS
from tests.e2e.helpers import mailtriage
from tests.support.dovecot import DovecotServer, dovecot, make_dovecot  # noqa: F401
from tests.support.mail import make_mail
from tests.support.smtpd import SmtpServer, smtp_server  # noqa: F401

pytestmark = [pytest.mark.realserver, pytest.mark.slow]

SUBJECTS = ("Printer jammed on floor 2", "VPN drops every hour", "Password expired")


def point_at(site: Path, imap: DovecotServer, smtp: SmtpServer, **extra: str) -> dict[str, str]:
    """Rewrite the site's [mailbox]/[outbound] for the servers; return the secrets' env."""
    config = site / "mailtriage.toml"
    text = config.read_text()
    folder = extra.get("folder", "INBOX")
    text = text.replace(
        'backend = "maildir"\npath = "var/mail/inbox"',
        f'backend = "imap"\nhost = "{imap.host}"\nport = {imap.port}\nssl = false\n'
        f'username = "{imap.user}"\nfolder = "{folder}"\npoll_seconds = 1',
        1,
    )
    text = text.replace(
        'transport = "maildir"\npath = "var/mail/sent"',
        f'transport = "smtp"\nhost = "{smtp.host}"\nport = {smtp.port}\nstarttls = false\n'
        f'username = "{smtp.user}"',
        1,
    )
    assert 'backend = "imap"' in text and 'transport = "smtp"' in text
    config.write_text(text)
    return {
        "MAILTRIAGE_MAILBOX_PASSWORD": extra.get("imap_password", imap.password),
        "MAILTRIAGE_OUTBOUND_PASSWORD": extra.get("smtp_password", smtp.password),
    }


def rewrite(site: Path, old: str, new: str) -> None:
    """Replace the first ``old`` in the site's config with ``new``."""
    config = site / "mailtriage.toml"
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))


def tickets(site: Path, env: dict[str, str]) -> list[dict]:
    """``mailtriage tickets --format json`` (the config needs its secrets to validate)."""
    done = mailtriage(site, "tickets", "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def acks_per_ticket(smtp: SmtpServer) -> Counter[str]:
    """Distinct acknowledgements (by Message-ID) per ticket id."""
    seen = {
        str(r.message["Message-ID"]): str(r.message["X-Mailtriage-Ticket"])
        for r in smtp.received
        if "] Received:" in str(r.message["Subject"])
    }
    return Counter(seen.values())


def test_run_once_reads_imap_and_answers_by_smtp(
    site: Path,
    dovecot: DovecotServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
) -> None:
    env = point_at(site, dovecot, smtp_server)
    dovecot.append(crlf(make_mail(subject="Outlook keeps asking for my password")))
    done = mailtriage(site, "run", "--once", env=env)
    assert done.returncode == 0, done.stderr
    [ticket] = tickets(site, env)
    assert acks_per_ticket(smtp_server) == Counter({ticket["id"]: 1})
    assert dovecot.uids("INBOX") == [] and len(dovecot.uids("Processed")) == 1
    for secret in (dovecot.password, smtp_server.password):
        assert secret not in done.stderr + done.stdout


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_sigkill_at_each_point_then_restart_gives_exactly_once_over_imap(
    site: Path,
    dovecot: DovecotServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
    point: str,
) -> None:
    env = point_at(site, dovecot, smtp_server)
    for i, subject in enumerate(SUBJECTS):
        dovecot.append(crlf(make_mail(subject=subject, message_id=f"<crash-{i}@mail.example.com>")))
    crashed = mailtriage(site, "run", "--once", env=env | {"MAILTRIAGE_CRASH_AT": point})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    restarted = mailtriage(site, "run", "--once", env=env)
    assert restarted.returncode == 0, restarted.stderr
    found = tickets(site, env)
    assert sorted(t["source_message_id"] for t in found) == [
        f"<crash-{i}@mail.example.com>" for i in range(len(SUBJECTS))
    ]
    # SMTP cannot take a message back: a kill between the server's 250 and the outbox
    # update resends it with the same Message-ID, which mail clients show once.
    assert acks_per_ticket(smtp_server) == Counter({t["id"]: 1 for t in found})
    if point != "after_send":
        assert len([r for r in smtp_server.received if "] Received:" in r.message["Subject"]]) == 3
    assert dovecot.uids("INBOX") == [] and len(dovecot.uids("Processed")) == len(SUBJECTS)


def test_check_config_connect_succeeds_against_the_servers(
    site: Path,
    dovecot: DovecotServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
) -> None:
    env = point_at(site, dovecot, smtp_server)
    done = mailtriage(site, "check-config", "--connect", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mailbox connect: ok: imap support@127.0.0.1" in done.stdout
    assert "folder 'INBOX' holds 0 message(s)" in done.stdout
    assert "outbound connect: ok: smtp 127.0.0.1" in done.stdout


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"imap_password": "wrong-imap-pw"}, "mailbox connect: FAILED: authentication failed"),
        ({"folder": "Helpdesk"}, "mailbox connect: FAILED: folder 'Helpdesk' does not exist"),
        ({"smtp_password": "wrong-smtp-pw"}, "outbound connect: FAILED: authentication failed"),
    ],
)
def test_check_config_connect_says_what_failed(
    site: Path,
    dovecot: DovecotServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
    extra: dict[str, str],
    expected: str,
) -> None:
    env = point_at(site, dovecot, smtp_server, **extra)
    done = mailtriage(site, "check-config", "--connect", env=env)
    assert done.returncode == 1
    assert expected in done.stdout, done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    for secret in ("wrong-imap-pw", "wrong-smtp-pw", dovecot.password, smtp_server.password):
        assert secret not in done.stdout + done.stderr


def test_check_config_connect_reports_a_tls_mismatch(
    site: Path,
    dovecot: DovecotServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
) -> None:
    env = point_at(site, dovecot, smtp_server)
    rewrite(site, "ssl = false", "ssl = true")
    done = mailtriage(site, "check-config", "--connect", env=env)
    assert done.returncode == 1
    assert "mailbox connect: FAILED: TLS handshake failed" in done.stdout, done.stdout


def test_run_once_leaves_what_the_rate_cap_holds_and_says_when_it_goes(
    site: Path,
    dovecot: DovecotServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
) -> None:
    env = point_at(site, dovecot, smtp_server)
    rewrite(site, "rate_per_minute = 30", "rate_per_minute = 2")
    for i, subject in enumerate(SUBJECTS):
        dovecot.append(crlf(make_mail(subject=subject, sender=f"user{i}@example.com")))
    started = time.monotonic()
    done = mailtriage(site, "run", "--once", env=env)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30, "run --once waited for the cap"
    assert len(smtp_server.received) == 2
    # 3 acknowledgements + 3 agent notices were queued, 2 went out.
    assert "4 message(s) wait for the transport's rate cap; the next can go at" in done.stdout
    assert len(tickets(site, env)) == 3 and dovecot.uids("INBOX") == []
