"""SmtpTransport against a real SMTP server on loopback (aiosmtpd, tests/support/smtpd.py)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator

import pytest

from daemon.backends.base import BackendError, OutgoingMail, PermanentSendError, RateCapped
from daemon.backends.smtp import SmtpTransport
from tests.support.faultproxy import FaultProxy
from tests.support.ports import free_port
from tests.support.smtpd import TOKEN, SmtpServer
from tests.support.tokens import Tokens

RAW = (
    b"From: IT Support <support@example.com>\r\n"
    b"To: alice@example.com\r\n"
    b"Subject: [#42] We got your request\r\n"
    b"Message-ID: <t42.1@mailtriage>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Gr\xc3\xbc\xc3\x9fe,\r\n.leading dot stays\r\n\r\n-- \r\nIT Support\r\n"
)


def mail(n: int = 1, to: tuple[str, ...] = ("alice@example.com",)) -> OutgoingMail:
    raw = RAW.replace(b"<t42.1@", f"<t42.{n}@".encode())
    return OutgoingMail(f"<t42.{n}@mailtriage>", "support@example.com", to, raw)


@pytest.fixture
def transport(smtp_server: SmtpServer) -> Iterator[SmtpTransport]:
    t = SmtpTransport(smtp_server.settings())
    yield t
    t.close()


def test_sends_the_exact_bytes_with_password_auth(
    transport: SmtpTransport, smtp_server: SmtpServer
) -> None:
    transport.send(mail(to=("alice@example.com", "bob@example.com")))
    [got] = smtp_server.received
    assert got.raw == RAW
    assert (got.mail_from, got.rcpt_tos) == (
        "support@example.com",
        ["alice@example.com", "bob@example.com"],
    )
    assert got.message["Message-ID"] == "<t42.1@mailtriage>"
    assert got.login == smtp_server.user


def test_lf_only_mail_goes_out_with_crlf_line_ends(
    transport: SmtpTransport, smtp_server: SmtpServer
) -> None:
    long_body = b"a fairly long line of text for the body\n" * 60  # > 1000 bytes in all
    lf = OutgoingMail(
        "<lf@mailtriage>",
        "support@example.com",
        ("alice@example.com",),
        RAW.replace(b"\r\n", b"\n") + long_body,
    )
    transport.send(lf)
    [got] = smtp_server.received
    assert got.raw == RAW + long_body.replace(b"\n", b"\r\n")
    assert got.message["Subject"] == "[#42] We got your request"


def test_connection_is_reused_and_rebuilt_after_the_server_drops_it(
    smtp_server: SmtpServer, fault_proxy: Callable[..., FaultProxy]
) -> None:
    proxy = fault_proxy(smtp_server.port)
    t = SmtpTransport(smtp_server.settings(port=proxy.port))
    for n in range(3):
        t.send(mail(n))
    assert proxy.accepted == 1
    proxy.cut_all()  # server restart / idle timeout, as the client sees it
    t.send(mail(4))  # reused at once (no NOOP): the lost link is noticed and replaced
    assert proxy.accepted == 2
    t.send(mail(5))
    assert proxy.accepted == 2
    assert len(smtp_server.received) == 5
    t.close()


def test_a_connection_idle_for_a_while_is_checked_with_noop_first(
    smtp_server: SmtpServer, fault_proxy: Callable[..., FaultProxy]
) -> None:
    now = [0.0]
    proxy = fault_proxy(smtp_server.port)
    t = SmtpTransport(smtp_server.settings(port=proxy.port), clock=lambda: now[0])
    t.send(mail(1))
    proxy.cut_all()
    now[0] += 60  # idle past FRESH_SECONDS: NOOP finds it dead, a new one is made
    t.send(mail(2))
    assert proxy.accepted == 2 and len(smtp_server.received) == 2
    t.close()


@pytest.mark.parametrize("code", [421, 451])
def test_transient_answers_are_retryable(
    transport: SmtpTransport, smtp_server: SmtpServer, code: int
) -> None:
    smtp_server.fail_next(code)
    with pytest.raises(BackendError) as info:
        transport.send(mail())
    assert not isinstance(info.value, PermanentSendError)
    assert str(code) in str(info.value)
    transport.send(mail())  # the outbox's retry goes through
    assert len(smtp_server.received) == 1


def test_4xx_to_every_recipient_is_retryable(
    transport: SmtpTransport, smtp_server: SmtpServer
) -> None:
    smtp_server.fail_next(452, stage="RCPT")
    with pytest.raises(BackendError) as info:
        transport.send(mail())
    assert not isinstance(info.value, PermanentSendError)


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
def test_550_is_permanent_with_the_servers_code_and_text(
    transport: SmtpTransport, smtp_server: SmtpServer, stage: str
) -> None:
    smtp_server.fail_next(550, stage=stage)
    with pytest.raises(PermanentSendError, match=r"550 5\.1\.1 Mailbox unavailable"):
        transport.send(mail())
    transport.send(mail(2))  # the connection is still usable
    assert [r.message["Message-ID"] for r in smtp_server.received] == ["<t42.2@mailtriage>"]


def test_partial_refusal_sends_to_the_others(
    transport: SmtpTransport, smtp_server: SmtpServer
) -> None:
    smtp_server.fail_next(550, stage="RCPT")
    transport.send(mail(to=("gone@example.com", "bob@example.com")))  # no retry: no duplicate
    assert smtp_server.received[0].rcpt_tos == ["bob@example.com"]


def test_bad_password_is_retryable_and_plainly_worded(smtp_server: SmtpServer) -> None:
    t = SmtpTransport(smtp_server.settings(password="wrong"))
    with pytest.raises(BackendError, match="authentication failed for user mailer") as info:
        t.send(mail())
    assert not isinstance(info.value, PermanentSendError)
    with pytest.raises(BackendError, match="authentication failed for user mailer"):
        t.check()


def test_connection_refused_and_timeout_are_retryable() -> None:
    from config.schema import OutboundSettings

    port = free_port()
    s = OutboundSettings(transport="smtp", host="127.0.0.1", port=port, starttls=False)
    with pytest.raises(BackendError, match=f"connection refused to 127.0.0.1:{port}"):
        SmtpTransport(s).send(mail())
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never greets
        s = s.model_copy(update={"port": silent.getsockname()[1], "timeout_seconds": 0.3})
        with pytest.raises(BackendError, match="timed out"):
            SmtpTransport(s).check()


def test_xoauth2_refreshes_a_refused_token_once(smtp_server: SmtpServer) -> None:
    tokens = Tokens("expired-token", TOKEN)
    t = SmtpTransport(smtp_server.settings(password=None), tokens)
    t.send(mail())
    assert tokens.invalidations == 1
    assert [ok for _, _, ok in smtp_server.logins] == [False, True]
    assert smtp_server.received[0].login == smtp_server.user
    t.close()


def test_xoauth2_gives_up_after_the_fresh_token_is_refused_too(smtp_server: SmtpServer) -> None:
    t = SmtpTransport(smtp_server.settings(password=None), Tokens("bad-1", "bad-2"))
    with pytest.raises(BackendError, match=r"authentication failed for user mailer \(XOAUTH2"):
        t.send(mail())


def test_starttls_and_implicit_tls(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = smtp_server.settings(starttls=True)
    with pytest.raises(BackendError, match="TLS handshake failed: self-signed certificate"):
        SmtpTransport(s).check()
    monkeypatch.setenv("SSL_CERT_FILE", smtp_server.ca_file)  # trust the throw-away CA
    t = SmtpTransport(s)
    assert "STARTTLS" in t.check()
    t.send(mail())
    t.close()
    tls = SmtpTransport(smtp_server.settings(port=smtp_server.ssl_port, ssl=True))
    tls.send(mail(2))
    tls.close()
    assert len(smtp_server.received) == 2


def test_rate_cap_leaves_the_rest_for_later_instead_of_blocking(smtp_server: SmtpServer) -> None:
    now = [1000.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    t = SmtpTransport(smtp_server.settings(rate_per_minute=2), clock=lambda: now[0], sleep=sleep)
    t.send(mail(1))
    now[0] += 10
    t.send(mail(2))
    with pytest.raises(RateCapped) as capped:  # 2 sent in the last minute
        t.send(mail(3))
    assert capped.value.wait == pytest.approx(50.0) and sleeps == []
    now[0] += 49.5  # half a second from the next slot: worth waiting for
    t.send(mail(3))
    assert sleeps == [pytest.approx(0.5)]
    assert len(smtp_server.received) == 3
    t.close()


def test_credentials_never_reach_the_logs(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    SmtpTransport(smtp_server.settings()).send(mail())
    tokens = Tokens("refused-token-xyz", TOKEN)
    SmtpTransport(smtp_server.settings(password=None), tokens).send(mail(2))
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail.log"))
    assert "SMTP sent" in ours
    for secret in (smtp_server.password, TOKEN, "refused-token-xyz"):
        assert secret not in ours


def test_check_reports_the_connection(smtp_server: SmtpServer) -> None:
    line = SmtpTransport(smtp_server.settings()).check()
    assert f"127.0.0.1:{smtp_server.port}" in line and "as mailer" in line
