"""ImapBackend against a real Dovecot on loopback (tests/support/dovecot.py).

Faults come from a TCP proxy between the backend and Dovecot
(tests/support/faultproxy.py): a connection cut mid-FETCH, refused connects.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

import pytest
from imapclient import IMAPClient

from config.schema import OAuth2Settings
from daemon.backends.base import AckOutcome, BackendError
from daemon.backends.imap import ImapBackend
from daemon.backends.oauth import xoauth2_string
from tests.support.dovecot import NO_MOVE_CAPABILITIES, DovecotServer
from tests.support.faultproxy import FaultProxy
from tests.support.ports import free_port
from tests.support.tokens import Tokens

pytestmark = pytest.mark.realserver


def raw(n: int, body: bytes = b"") -> bytes:
    return (
        b"From: Alice <alice@example.com>\r\n"
        b"To: support@example.com\r\n"
        + f"Subject: VPN broken {n}\r\nMessage-ID: <m{n}@example.com>\r\n".encode()
        + b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + b"Gr\xc3\xbc\xc3\x9fe, the VPN drops every minute.\r\n"
        + body
    )


PLACEHOLDER = (
    b"From: Microsoft Exchange Server <postmaster@example.com>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: Retrieval using the IMAP4 protocol failed for the following message: 7\r\n"
    b"\r\n"
    b"The server couldn't retrieve the following message:\r\n"
)


OAUTH2 = OAuth2Settings(tenant_id="tenant", client_id="client", client_secret="unused")


@pytest.fixture
def backends() -> Callable[..., ImapBackend]:
    made: list[ImapBackend] = []

    def make(settings, tokens=None, **kw) -> ImapBackend:
        b = ImapBackend(settings, tokens, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def test_fetch_returns_the_exact_bytes_with_stable_refs(
    dovecot: DovecotServer, backends: Callable[..., ImapBackend]
) -> None:
    uids = [dovecot.append(raw(n)) for n in range(3)]
    b = backends(dovecot.settings())
    first = b.fetch_new(None, 10)
    validity = dovecot.uidvalidity()
    assert [m.raw for m in first.mails] == [raw(n) for n in range(3)]
    assert [m.ref for m in first.mails] == [f"INBOX:{validity}:{u}" for u in uids]
    assert isinstance(first.mails[0].received_at, datetime)
    assert not first.more
    assert [m.ref for m in b.fetch_new(None, 10).mails] == [m.ref for m in first.mails]
    with dovecot.client() as c:  # BODY.PEEK: nothing marked \Seen
        c.select_folder("INBOX", readonly=True)
        assert c.search(["SEEN"]) == []


def test_limit_and_more(dovecot: DovecotServer, backends: Callable[..., ImapBackend]) -> None:
    for n in range(5):
        dovecot.append(raw(n))
    b = backends(dovecot.settings(), fetch_chunk=2)
    result = b.fetch_new(None, 3)
    assert [m.raw for m in result.mails] == [raw(n) for n in range(3)]
    assert result.more


def test_ack_moves_to_the_processed_and_quarantine_folders(
    dovecot: DovecotServer, backends: Callable[..., ImapBackend]
) -> None:
    for n in range(3):
        dovecot.append(raw(n))
    b = backends(dovecot.settings())
    m0, m1, m2 = b.fetch_new(None, 10).mails
    b.ack(m0.ref, AckOutcome.PROCESSED)
    b.ack(m1.ref, AckOutcome.QUARANTINED)
    b.ack(m0.ref, AckOutcome.PROCESSED)  # idempotent: the UID is gone
    assert dovecot.messages("Processed") == [raw(0)]
    assert dovecot.messages("Quarantine") == [raw(1)]
    assert dovecot.messages("INBOX") == [raw(2)]
    assert [m.ref for m in b.fetch_new(None, 10).mails] == [m2.ref]


def test_ack_without_move_copies_deletes_and_expunges(
    make_dovecot: Callable[..., DovecotServer],
    backends: Callable[..., ImapBackend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make_dovecot(capabilities=NO_MOVE_CAPABILITIES)
    for n in range(2):
        server.append(raw(n))
    b = backends(server.settings())
    m0, _ = b.fetch_new(None, 10).mails
    caplog.set_level(logging.DEBUG, logger="imapclient")
    b.ack(m0.ref, AckOutcome.PROCESSED)
    b.ack(m0.ref, AckOutcome.PROCESSED)  # no second copy
    sent = "\n".join(r.getMessage() for r in caplog.records)
    assert "UID COPY" in sent and "UID EXPUNGE" in sent and "MOVE" not in sent
    assert server.messages("Processed") == [raw(0)]
    assert server.messages("INBOX") == [raw(1)]


@pytest.mark.parametrize("move", [True, False], ids=["move", "copy-expunge"])
def test_a_batch_is_acked_in_one_command(
    make_dovecot: Callable[..., DovecotServer],
    backends: Callable[..., ImapBackend],
    caplog: pytest.LogCaptureFixture,
    move: bool,
) -> None:
    server = make_dovecot(capabilities=None if move else NO_MOVE_CAPABILITIES)
    for n in range(4):
        server.append(raw(n))
    b = backends(server.settings())
    mails = b.fetch_new(None, 10).mails
    caplog.set_level(logging.DEBUG, logger="imapclient")
    b.ack_many([m.ref for m in mails[:3]], AckOutcome.PROCESSED)
    sent = [r.getMessage() for r in caplog.records if "> b'" in r.getMessage()]
    verb = "UID MOVE" if move else "UID COPY"
    assert sum(verb in line for line in sent) == 1, sent
    b.ack_many([m.ref for m in mails[:3]], AckOutcome.PROCESSED)  # again: no second copy
    assert sorted(server.messages("Processed")) == sorted(raw(n) for n in range(3))
    assert server.messages("INBOX") == [raw(3)]


def test_uidvalidity_change_gives_new_refs_and_old_acks_do_nothing(
    dovecot: DovecotServer, backends: Callable[..., ImapBackend]
) -> None:
    for n in range(2):
        dovecot.append(raw(n))
    b = backends(dovecot.settings(), backoff=0.01)
    old = b.fetch_new(None, 10).mails
    new_validity = dovecot.reset_uidvalidity()  # Dovecot also drops our selected session
    again = b.fetch_new(None, 10).mails  # reconnects transparently
    b.ack(old[0].ref, AckOutcome.PROCESSED)  # the old UID space is gone: no-op
    assert dovecot.messages("INBOX") == [raw(0), raw(1)]
    assert [m.raw for m in again] == [raw(0), raw(1)]
    assert all(m.ref.startswith(f"INBOX:{new_validity}:") for m in again)
    assert {m.ref for m in again}.isdisjoint(m.ref for m in old)
    b.ack(again[0].ref, AckOutcome.PROCESSED)
    assert dovecot.messages("Processed") == [raw(0)]


def test_cursor_records_uidvalidity_and_a_change_across_restarts_is_logged(
    dovecot: DovecotServer,
    backends: Callable[..., ImapBackend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    dovecot.append(raw(1))
    first = backends(dovecot.settings()).fetch_new(None, 10)
    assert first.cursor == f"INBOX:{dovecot.uidvalidity()}"
    new_validity = dovecot.reset_uidvalidity()
    restarted = backends(dovecot.settings())  # a new process: it knows only the stored cursor
    again = restarted.fetch_new(first.cursor, 10)
    assert again.cursor == f"INBOX:{new_validity}"
    assert [m.ref for m in again.mails] == [f"INBOX:{new_validity}:1"]
    assert any("UIDVALIDITY of INBOX changed" in r.getMessage() for r in caplog.records)


def test_idle_wakes_up_promptly_on_new_mail(
    dovecot: DovecotServer, backends: Callable[..., ImapBackend]
) -> None:
    b = backends(dovecot.settings())
    assert b.fetch_new(None, 10).mails == []
    assert b.wait_for_new(0.3) is False
    assert b.wait_for_new(0.3) is False  # still the same IDLE
    appended: list[float] = []

    def deliver() -> None:
        appended.append(time.monotonic())
        dovecot.append(raw(1))

    timer = threading.Timer(0.5, deliver)
    timer.start()
    assert b.wait_for_new(10) is True
    latency = time.monotonic() - appended[0]
    timer.join()
    assert latency < 2.0
    assert [m.raw for m in b.fetch_new(None, 10).mails] == [raw(1)]


def test_mail_arriving_between_fetch_and_idle_is_not_missed(
    dovecot: DovecotServer, backends: Callable[..., ImapBackend]
) -> None:
    b = backends(dovecot.settings())
    assert b.fetch_new(None, 10).mails == []
    dovecot.append(raw(1))  # after the SEARCH, before IDLE: Dovecot would not announce it
    started = time.monotonic()
    assert b.wait_for_new(10) is True
    assert time.monotonic() - started < 0.5
    assert [m.raw for m in b.fetch_new(None, 10).mails] == [raw(1)]


def test_idle_rearm_and_watchdog_keep_listening(
    dovecot: DovecotServer, backends: Callable[..., ImapBackend], caplog: pytest.LogCaptureFixture
) -> None:
    b = backends(dovecot.settings(), idle_rearm=0.4, idle_watchdog=0.25)
    caplog.set_level(logging.DEBUG, logger="imapclient")
    assert b.wait_for_new(1.2) is False
    sent = "\n".join(r.getMessage() for r in caplog.records)
    assert sent.count(" IDLE") >= 3 and "NOOP" in sent
    timer = threading.Timer(0.3, dovecot.append, args=(raw(1),))
    timer.start()
    assert b.wait_for_new(5) is True
    timer.join()


def test_idle_keeps_settling_after_mail_then_backs_off(
    dovecot: DovecotServer, backends: Callable[..., ImapBackend], caplog: pytest.LogCaptureFixture
) -> None:
    """Every DONE + NOOP + IDLE reopens the window in which Dovecot may not announce
    new mail: rounds come every ``idle_settle`` for ten rounds, then at doubling intervals."""
    b = backends(dovecot.settings(), idle_settle=0.05, idle_watchdog=30)
    caplog.set_level(logging.DEBUG, logger="imapclient")
    assert b.wait_for_new(0.75) is False  # 10 rounds of 0.05 s, then 0.1, 0.2 ...
    noops = [r for r in caplog.records if "NOOP" in r.getMessage() and "> b" in r.getMessage()]
    assert 11 <= len(noops) <= 15, len(noops)
    caplog.clear()
    assert b.wait_for_new(1.0) is False  # backed off: 0.4, 0.8 ...
    noops = [r for r in caplog.records if "NOOP" in r.getMessage() and "> b" in r.getMessage()]
    assert 1 <= len(noops) <= 3, len(noops)


def test_polling_when_idle_is_off_or_not_offered(
    make_dovecot: Callable[..., DovecotServer], backends: Callable[..., ImapBackend]
) -> None:
    server = make_dovecot(capabilities="IMAP4rev1 UIDPLUS MOVE")  # no IDLE
    for settings in (
        server.settings(poll_seconds=0.3),
        server.settings(idle=False, poll_seconds=0.3),
    ):
        b = backends(settings)
        b.fetch_new(None, 10)
        assert b.wait_for_new(0.1) is False
        started = time.monotonic()
        assert b.wait_for_new(5) is True
        assert 0.1 < time.monotonic() - started < 1.0


def test_connection_cut_mid_fetch_reconnects_and_returns_all_mail(
    dovecot: DovecotServer,
    backends: Callable[..., ImapBackend],
    fault_proxy: Callable[..., FaultProxy],
) -> None:
    big = raw(0, b"x" * 76 + b"\r\n") * 1 + b"y" * 300_000 + b"\r\n"
    mails = [big, raw(1), raw(2)]
    for m in mails:
        dovecot.append(m)
    proxy = fault_proxy(dovecot.port)
    b = backends(dovecot.settings(port=proxy.port), backoff=0.01)
    b.fetch_new(None, 10)
    proxy.drop_after(100_000)  # inside the 300 kB literal
    assert [m.raw for m in b.fetch_new(None, 10).mails] == mails
    assert proxy.accepted == 2


def test_unreachable_server_raises_backend_error_after_backoff(
    dovecot: DovecotServer,
    backends: Callable[..., ImapBackend],
    fault_proxy: Callable[..., FaultProxy],
) -> None:
    dovecot.append(raw(1))
    proxy = fault_proxy(dovecot.port)
    sleeps: list[float] = []
    b = backends(dovecot.settings(port=proxy.port), sleep=sleeps.append)
    b.fetch_new(None, 10)
    proxy.refuse()
    proxy.cut_all()
    with pytest.raises(BackendError, match=f"connection refused to 127.0.0.1:{proxy.port}"):
        b.fetch_new(None, 10)
    assert sleeps == [0.5, 1.0, 2.0]
    proxy.allow()
    assert [m.raw for m in b.fetch_new(None, 10).mails] == [raw(1)]


def test_placeholder_and_bodiless_answers_are_skipped(
    dovecot: DovecotServer,
    backends: Callable[..., ImapBackend],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dovecot.append(PLACEHOLDER)
    bodiless = dovecot.append(raw(1))
    dovecot.append(raw(2))
    real_fetch = IMAPClient.fetch

    def fetch(self, messages, data, modifiers=None):  # Exchange's empty answer
        answer = real_fetch(self, messages, data, modifiers)
        answer.get(bodiless, {}).pop(b"BODY[]", None)
        return answer

    monkeypatch.setattr(IMAPClient, "fetch", fetch)
    b = backends(dovecot.settings())
    result = b.fetch_new(None, 10)
    assert [m.raw for m in result.mails] == [raw(2)]
    assert len(result.notes) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Retrieval using the IMAP4 protocol failed" in w for w in warnings)
    assert any("no body" in w for w in warnings)
    assert len(dovecot.uids()) == 3  # left in place for the next poll


def test_xoauth2_login_refreshes_a_refused_token_once(
    dovecot: DovecotServer, backends: Callable[..., ImapBackend]
) -> None:
    dovecot.append(raw(1))
    tokens = Tokens("expired-token", dovecot.token)
    b = backends(dovecot.settings(password=None, oauth2=OAUTH2), tokens)
    assert [m.raw for m in b.fetch_new(None, 10).mails] == [raw(1)]
    assert tokens.invalidations == 1
    bad = backends(dovecot.settings(password=None, oauth2=OAUTH2), Tokens("bad-1", "bad-2"))
    with pytest.raises(BackendError, match="authentication failed for user support"):
        bad.fetch_new(None, 10)


def test_credentials_never_reach_the_debug_logs(
    dovecot: DovecotServer, backends: Callable[..., ImapBackend], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backends(dovecot.settings()).fetch_new(None, 10)
    tokens = Tokens("refused-token-xyz", dovecot.token)
    backends(dovecot.settings(password=None, oauth2=OAUTH2), tokens).fetch_new(None, 10)
    with pytest.raises(BackendError):
        backends(dovecot.settings(password="wrong-pw-123")).check()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "LOGIN **REDACTED**" in text and "AUTHENTICATE **REDACTED**" in text
    secrets = [dovecot.password, "wrong-pw-123", dovecot.token, "refused-token-xyz"]
    secrets += [
        base64.b64encode(xoauth2_string(dovecot.user, t).encode()).decode()
        for t in (dovecot.token, "refused-token-xyz")
    ]
    for secret in secrets:
        assert secret not in text


def test_check_reports_in_plain_words(
    dovecot: DovecotServer, backends: Callable[..., ImapBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    line = backends(dovecot.settings()).check()
    assert "folder 'INBOX' holds 0 message(s)" in line and "IDLE yes, MOVE yes" in line
    assert dovecot.uids("Processed") == [] and "Processed" in _folders(dovecot)
    with pytest.raises(BackendError, match=r"^authentication failed for user support"):
        backends(dovecot.settings(password="wrong")).check()
    port = free_port()
    with pytest.raises(BackendError, match=rf"^connection refused to 127\.0\.0\.1:{port}$"):
        backends(dovecot.settings(port=port)).check()
    with pytest.raises(BackendError, match=r"^TLS handshake failed"):
        backends(dovecot.settings(ssl=True)).check()  # TLS spoken to the plain port
    with pytest.raises(BackendError, match=r"^TLS handshake failed: self-signed certificate"):
        backends(dovecot.settings(port=dovecot.tls_port, ssl=True)).check()
    with pytest.raises(BackendError, match=r"^folder 'Support' does not exist for user support$"):
        backends(dovecot.settings(folder="Support")).check()
    with pytest.raises(BackendError, match=r"^folder '~bad' missing and cannot be created"):
        backends(dovecot.settings(processed_folder="~bad")).check()
    monkeypatch.setenv("SSL_CERT_FILE", dovecot.ca_file)  # trust the throw-away CA
    assert "(TLS, password)" in backends(dovecot.settings(port=dovecot.tls_port, ssl=True)).check()
    assert "(STARTTLS, password)" in backends(dovecot.settings(starttls=True)).check()


def _folders(server: DovecotServer) -> list[str]:
    with server.client() as c:
        return [name for _, _, name in c.list_folders()]


def test_fetch_is_bounded_by_bytes_from_rfc822_size(
    dovecot: DovecotServer, backends: Callable[..., ImapBackend]
) -> None:
    for n in range(3):
        dovecot.append(raw(n))
    b = backends(dovecot.settings())
    sizes = [len(raw(n).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")) for n in range(2)]
    first = b.fetch_new(None, 10, max_bytes=sum(sizes))
    assert [m.raw for m in first.mails] == [raw(0), raw(1)] and first.more
    alone = b.fetch_new(None, 10, max_bytes=1)
    assert [m.raw for m in alone.mails] == [raw(0)] and alone.more
