"""EwsBackend and EwsTransport (exchangelib) against a local fake EWS endpoint.

No Exchange server can run here: every test talks to ``FakeEws``
(tests/support/fake_ews.py), an HTTP server on 127.0.0.1 that answers the
documented EWS SOAP operations exchangelib sends for this usage (GetFolder,
FindFolder, CreateFolder, FindItem, GetItem with MimeContent, MoveItem,
CreateItem from MimeContent), behind HTTP Basic auth.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from exchangelib.protocol import BaseProtocol, NoVerifyHTTPAdapter

from config.schema import MailboxSettings, OutboundSettings
from daemon.backends.base import AckOutcome, BackendError, OutgoingMail, PermanentSendError
from daemon.backends.ews import EwsBackend, EwsTransport
from tests.support.fake_ews import FakeEws
from tests.support.ports import free_port

RAW = b"From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: vpn %d\r\nMessage-ID: <e%d@example.org>\r\n\r\nbody \xe9 %d\r\n"
OUT = b"From: IT Support <support@example.com>\r\nTo: ann@example.org\r\nSubject: [#3] Received\r\nMessage-ID: <out3@example.com>\r\n\r\nWe got it.\r\n"


def raw(n: int) -> bytes:
    return RAW % (n, n, n)


@pytest.fixture
def fake() -> Iterator[FakeEws]:
    with FakeEws() as server:
        yield server


def settings(fake: FakeEws, **kw: object) -> MailboxSettings:
    values: dict[str, object] = {
        "backend": "ews",
        "ews_url": fake.url,
        "username": fake.username,
        "password": fake.password,
        "user": "support@example.com",
    }
    return MailboxSettings(**(values | kw))


@pytest.fixture
def backend(fake: FakeEws) -> Iterator[EwsBackend]:
    b = EwsBackend(settings(fake))
    yield b
    b.close()


def test_fetch_returns_exact_bytes_oldest_first(fake: FakeEws, backend: EwsBackend) -> None:
    """Against the local fake EWS: FindItem + GetItem(MimeContent) give the exact bytes, oldest first."""
    now = datetime.now(UTC)
    late = fake.deliver(raw(2), received=now)
    early = fake.deliver(raw(1), received=now - timedelta(minutes=5))
    result = backend.fetch_new(None, 10)
    assert [m.raw for m in result.mails] == [raw(1), raw(2)]
    assert [m.ref for m in result.mails] == [early, late]
    assert result.mails[0].received_at == (now - timedelta(minutes=5)).replace(microsecond=0)
    assert result.cursor is None and not result.more


def test_fetch_respects_limit(fake: FakeEws, backend: EwsBackend) -> None:
    """Against the local fake EWS: a full batch says ``more``; acked mail leaves the queue."""
    for n in range(3):
        fake.deliver(raw(n))
    first = backend.fetch_new(None, 2)
    assert len(first.mails) == 2 and first.more
    for m in first.mails:
        backend.ack(m.ref, AckOutcome.PROCESSED)
    rest = backend.fetch_new(None, 2)
    assert [m.raw for m in rest.mails] == [raw(2)] and not rest.more


def test_ack_moves_to_processed_and_quarantine(fake: FakeEws, backend: EwsBackend) -> None:
    """Against the local fake EWS: MoveItem into folders created beside the Inbox; re-ack is a no-op."""
    fake.deliver(raw(1))
    fake.deliver(raw(2))
    one, two = backend.fetch_new(None, 10).mails
    backend.ack(one.ref, AckOutcome.PROCESSED)
    backend.ack(two.ref, AckOutcome.QUARANTINED)
    backend.ack(one.ref, AckOutcome.PROCESSED)  # ErrorItemNotFound: already moved
    assert fake.mimes("Inbox") == []
    assert fake.mimes("Processed") == [raw(1)]
    assert fake.mimes("Quarantine") == [raw(2)]
    assert fake.by_name("Processed").parent == "f-msgfolderroot"
    assert fake.operations.count("CreateFolder") == 2


def test_a_batch_is_moved_in_one_request(fake: FakeEws, backend: EwsBackend) -> None:
    """Against the local fake EWS: one MoveItem carrying every ItemId; a second one moves nothing."""
    for n in range(4):
        fake.deliver(raw(n))
    mails = backend.fetch_new(None, 10).mails
    before = fake.operations.count("MoveItem")
    backend.ack_many([m.ref for m in mails[:3]], AckOutcome.PROCESSED)
    assert fake.operations.count("MoveItem") == before + 1
    backend.ack_many([m.ref for m in mails[:3]], AckOutcome.PROCESSED)  # all already moved
    assert fake.mimes("Processed") == [raw(0), raw(1), raw(2)]
    assert fake.mimes("Inbox") == [raw(3)]


def test_existing_folder_is_reused(fake: FakeEws) -> None:
    """Against the local fake EWS: an existing "Inbox/Done" folder is found, not created again."""
    fake.folders["f-done"] = type(fake.by_name("Inbox"))("f-done", "Done", "f-inbox")
    b = EwsBackend(settings(fake, processed_folder="Inbox/Done"))
    fake.deliver(raw(1))
    b.ack(b.fetch_new(None, 10).mails[0].ref, AckOutcome.PROCESSED)
    assert fake.mimes("Done") == [raw(1)]
    assert "CreateFolder" not in fake.operations


def test_named_source_folder(fake: FakeEws) -> None:
    """Against the local fake EWS: a non-Inbox source folder is found by display name."""
    fake.folders["f-hd"] = type(fake.by_name("Inbox"))("f-hd", "Helpdesk", "f-msgfolderroot")
    fake.deliver(raw(7), folder="Helpdesk")
    fake.deliver(raw(8))
    b = EwsBackend(settings(fake, folder="Helpdesk"))
    assert [m.raw for m in b.fetch_new(None, 10).mails] == [raw(7)]


def test_wrong_password_is_authentication_failed(fake: FakeEws) -> None:
    """Against the local fake EWS (401 to bad Basic credentials): plain "authentication failed"."""
    b = EwsBackend(settings(fake, password="wrong"))
    with pytest.raises(BackendError, match="EWS authentication failed for support"):
        b.fetch_new(None, 10)


def test_unreachable_endpoint(fake: FakeEws) -> None:
    """Nothing listening: BackendError says the EWS endpoint cannot be reached."""
    url = f"http://127.0.0.1:{free_port()}/EWS/Exchange.asmx"
    with pytest.raises(BackendError, match="cannot reach EWS endpoint"):
        EwsBackend(settings(fake, ews_url=url)).check()


def test_server_busy_is_transient(fake: FakeEws, backend: EwsBackend) -> None:
    """Against the local fake EWS: ErrorServerBusy -> BackendError (back off, retry)."""
    fake.fail_next("FindItem", "ErrorServerBusy")
    with pytest.raises(BackendError, match="busy"):
        backend.fetch_new(None, 10)


def test_check(fake: FakeEws, backend: EwsBackend) -> None:
    """Against the local fake EWS: check() reports the folder; a missing folder is named."""
    fake.deliver(raw(1))
    assert "folder 'INBOX' readable, 1 message(s)" in backend.check()
    with pytest.raises(BackendError, match="folder 'Tickets' not found"):
        EwsBackend(settings(fake, folder="Tickets")).check()


def test_missing_credentials_are_a_config_error(fake: FakeEws) -> None:
    """No password configured: a plain error naming the keys, before any network use."""
    with pytest.raises(BackendError, match="username/password"):
        EwsBackend(settings(fake, password=None))


def test_auth_type_follows_username(fake: FakeEws) -> None:
    """DOMAIN\\user -> NTLM, anything else -> Basic (no request needed to tell)."""
    ntlm = EwsBackend(settings(fake, username="CORP\\support")).connection.account
    basic = EwsBackend(settings(fake)).connection.account
    assert (ntlm.protocol.auth_type, basic.protocol.auth_type) == ("NTLM", "basic")


def test_verify_tls_off_switches_the_global_adapter(
    fake: FakeEws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify_tls = false installs exchangelib's process-global NoVerifyHTTPAdapter; true leaves it."""
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", BaseProtocol.HTTP_ADAPTER_CLS)
    EwsBackend(settings(fake)).connection.account  # noqa: B018
    assert BaseProtocol.HTTP_ADAPTER_CLS is not NoVerifyHTTPAdapter
    EwsBackend(settings(fake, verify_tls=False)).connection.account  # noqa: B018
    assert BaseProtocol.HTTP_ADAPTER_CLS is NoVerifyHTTPAdapter


# --- transport ---------------------------------------------------------------


def outgoing(*recipients: str) -> OutgoingMail:
    return OutgoingMail(
        "<out3@example.com>", "support@example.com", recipients or ("ann@example.org",), OUT
    )


def test_send_carries_exact_mime(fake: FakeEws) -> None:
    """Against the local fake EWS: CreateItem(MimeContent, SendAndSaveCopy) with the exact bytes.

    The transport falls back to the mailbox's ews_url and credentials.
    """
    t = EwsTransport(OutboundSettings(transport="ews"), settings(fake))
    t.send(outgoing())
    assert fake.sent == [("SendAndSaveCopy", OUT)]
    assert fake.mimes("Sent Items") == [OUT]
    t.close()


def test_send_adds_bcc_for_envelope_only_recipient(fake: FakeEws) -> None:
    """Against the local fake EWS: a recipient missing from the headers is added as Bcc."""
    EwsTransport(OutboundSettings(transport="ews"), settings(fake)).send(
        outgoing("ann@example.org", "lead@example.org")
    )
    assert fake.sent[0][1] == b"Bcc: lead@example.org\r\n" + OUT


def test_send_refusal_is_permanent_busy_is_not(fake: FakeEws) -> None:
    """Against the local fake EWS: ErrorInvalidRecipients -> PermanentSendError; ErrorServerBusy -> retry."""
    t = EwsTransport(OutboundSettings(transport="ews"), settings(fake))
    fake.fail_next("CreateItem", "ErrorInvalidRecipients")
    with pytest.raises(PermanentSendError):
        t.send(outgoing())
    fake.fail_next("CreateItem", "ErrorServerBusy")
    with pytest.raises(BackendError) as caught:
        t.send(outgoing())
    assert not isinstance(caught.value, PermanentSendError)


def test_outbound_settings_override_mailbox(fake: FakeEws) -> None:
    """Against the local fake EWS: outbound ews_url/credentials win over the mailbox's."""
    bad_mailbox = settings(
        fake, ews_url=f"http://127.0.0.1:{free_port()}/EWS/Exchange.asmx", password="x"
    )
    out = OutboundSettings(
        transport="ews",
        ews_url=fake.url,
        username=fake.username,
        password=fake.password,
        user="support@example.com",
    )
    t = EwsTransport(out, bad_mailbox)
    assert "reachable" in t.check()
    t.send(outgoing())
    assert fake.sent[-1] == ("SendAndSaveCopy", OUT)


def test_credentials_stay_out_of_debug_logs(
    fake: FakeEws, backend: EwsBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """Against the local fake EWS: exchangelib's DEBUG request-header log has Authorization redacted."""
    import base64

    caplog.set_level(logging.DEBUG, logger="exchangelib")
    fake.deliver(raw(1))
    backend.fetch_new(None, 10)
    basic = base64.b64encode(f"{fake.username}:{fake.password}".encode()).decode()
    assert "Request headers" in caplog.text
    assert basic not in caplog.text and fake.password not in caplog.text


def test_fetch_is_bounded_by_bytes(fake: FakeEws, backend: EwsBackend) -> None:
    """Sizes from FindItem first: only the MIME that fits is fetched, a big mail alone."""
    now = datetime.now(UTC)
    for n in range(3):
        fake.deliver(raw(n), received=now + timedelta(seconds=n))
    bound = len(raw(0)) + len(raw(1))
    first = backend.fetch_new(None, 10, max_bytes=bound)
    assert [m.raw for m in first.mails] == [raw(0), raw(1)] and first.more
    alone = backend.fetch_new(None, 10, max_bytes=1)
    assert [m.raw for m in alone.mails] == [raw(0)] and alone.more
