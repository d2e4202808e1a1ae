"""GraphBackend and GraphTransport against a local fake of Microsoft Graph.

No Microsoft 365 tenant can run here: every test talks to ``FakeGraph``
(tests/support/fake_graph.py), an HTTP server on 127.0.0.1 that speaks Graph's
documented JSON wire format (token endpoint, mailFolders, delta links, $value,
move, sendMail in MIME form) with injectable faults.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config.schema import MailboxSettings, OAuth2Settings, OutboundSettings
from daemon.backends.base import (
    AckOutcome,
    BackendError,
    OutgoingMail,
    PermanentSendError,
    add_missing_bcc,
)
from daemon.backends.graph import GraphBackend, GraphTransport
from tests.support.fake_graph import ClientCredentialsTokens, FakeGraph, Fault
from tests.support.ports import free_port

RAW = b"From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: printer %d  \r\nMessage-ID: <m%d@example.org>\r\n\r\nbody \xe9 %d\r\n"


def raw(n: int) -> bytes:
    return RAW % (n, n, n)


@pytest.fixture
def fake() -> Iterator[FakeGraph]:
    with FakeGraph() as server:
        yield server


@pytest.fixture
def tokens(fake: FakeGraph) -> ClientCredentialsTokens:
    return ClientCredentialsTokens(fake)


@pytest.fixture
def sleeps() -> list[float]:
    return []


def settings(fake: FakeGraph, **kw: object) -> MailboxSettings:
    oauth2 = OAuth2Settings(
        tenant_id=fake.tenant,
        client_id=fake.client_id,
        client_secret=fake.client_secret,
        authority_host=fake.base,
    )
    values: dict[str, object] = {
        "backend": "graph",
        "user": fake.user,
        "graph_url": fake.graph_url,
        "oauth2": oauth2,
        "poll_seconds": 5,
    }
    return MailboxSettings(**(values | kw))


@pytest.fixture
def backend(
    fake: FakeGraph, tokens: ClientCredentialsTokens, sleeps: list[float]
) -> Iterator[GraphBackend]:
    b = GraphBackend(settings(fake), tokens, sleep=sleeps.append)
    yield b
    b.close()


def test_fetch_returns_exact_bytes(fake: FakeGraph, backend: GraphBackend) -> None:
    """The local Graph fake serves $value; the backend hands back the very bytes, ref = Graph id."""
    ids = [fake.deliver(raw(1)), fake.deliver(raw(2))]
    result = backend.fetch_new(None, 10)
    assert [m.raw for m in result.mails] == [raw(1), raw(2)]
    assert [m.ref for m in result.mails] == ids
    assert all(m.received_at is not None for m in result.mails)
    assert result.cursor and "$deltatoken=" in result.cursor and not result.more


def test_delta_pages_are_followed_in_limit_sized_batches(
    fake: FakeGraph, backend: GraphBackend
) -> None:
    """Against the local fake: nextLink pages are returned batch by batch, cursor = next page."""
    for n in range(7):
        fake.deliver(raw(n))
    got, cursor, calls = [], None, 0
    while True:
        result = backend.fetch_new(cursor, 3)
        got += [m.raw for m in result.mails]
        cursor, calls = result.cursor, calls + 1
        if not result.more:
            break
        assert "$skiptoken=" in (cursor or "")
    assert got == [raw(n) for n in range(7)]
    assert calls == 3


def test_all_pages_followed_within_one_call(fake: FakeGraph, backend: GraphBackend) -> None:
    """Against the local fake with 2-message pages: one call follows every nextLink to the deltaLink."""
    fake.default_page = 2
    for n in range(5):
        fake.deliver(raw(n))
    result = backend.fetch_new(None, 50)
    assert [m.raw for m in result.mails] == [raw(n) for n in range(5)]
    assert not result.more and "$deltatoken=" in (result.cursor or "")


def test_cursor_reuse_returns_only_new_mail(fake: FakeGraph, backend: GraphBackend) -> None:
    """Against the local fake: the saved deltaLink yields only later mail; @removed entries are skipped."""
    fake.deliver(raw(1))
    first = backend.fetch_new(None, 10)
    backend.ack(first.mails[0].ref, AckOutcome.PROCESSED)  # an @removed entry in the next round
    fake.deliver(raw(2))
    second = backend.fetch_new(first.cursor, 10)
    assert [m.raw for m in second.mails] == [raw(2)]
    assert backend.fetch_new(second.cursor, 10).mails == []


def test_changed_message_is_replayed(fake: FakeGraph, backend: GraphBackend) -> None:
    """Against the local fake: a changed message comes back in the next round (the runner dedups)."""
    msg_id = fake.deliver(raw(1))
    first = backend.fetch_new(None, 10)
    fake.touch(msg_id)
    assert [m.ref for m in backend.fetch_new(first.cursor, 10).mails] == [msg_id]


@pytest.mark.parametrize("expire", ["token", "resyncRequired"])
def test_expired_delta_state_runs_full_resync(
    fake: FakeGraph, backend: GraphBackend, expire: str
) -> None:
    """Against the local fake: 410 SyncStateNotFound / resyncRequired -> full delta, replays included.

    Every message still in the folder comes back (the runner's content-key dedup
    absorbs the replays); nothing escapes as an exception.
    """
    fake.deliver(raw(1))
    fake.deliver(raw(2))
    cursor = backend.fetch_new(None, 10).cursor
    fake.deliver(raw(3))
    if expire == "token":
        fake.expire_delta_state()
    else:
        fake.fail_next(410, code="resyncRequired", path_contains="/delta")
    result = backend.fetch_new(cursor, 10)
    assert [m.raw for m in result.mails] == [raw(1), raw(2), raw(3)]
    assert result.notes and "resync" in result.notes[0]
    fake.deliver(raw(4))
    assert [m.raw for m in backend.fetch_new(result.cursor, 10).mails] == [raw(4)]


def test_ack_moves_to_processed_and_quarantine(fake: FakeGraph, backend: GraphBackend) -> None:
    """Against the local fake: ack POSTs /move; missing folders are created; a second ack is a no-op."""
    fake.deliver(raw(1))
    fake.deliver(raw(2))
    one, two = backend.fetch_new(None, 10).mails
    backend.ack(one.ref, AckOutcome.PROCESSED)
    backend.ack(two.ref, AckOutcome.QUARANTINED)
    backend.ack(one.ref, AckOutcome.PROCESSED)  # already moved: 404, fine
    assert fake.raws("inbox") == []
    assert fake.raws("Processed") == [raw(1)]
    assert fake.raws("Quarantine") == [raw(2)]
    assert len([p for p in fake.paths("POST") if p.endswith("/mailFolders")]) == 2


def test_a_batch_is_moved_by_json_batching(fake: FakeGraph, backend: GraphBackend) -> None:
    """Against the local fake: 23 moves go as two $batch requests (20 + 3), none alone."""
    for n in range(25):
        fake.deliver(raw(n))
    mails = backend.fetch_new(None, 30).mails
    backend.ack_many([m.ref for m in mails[:23]], AckOutcome.PROCESSED)
    assert fake.batches == 2
    assert not [p for p in fake.paths("POST") if p.endswith("/move")]
    backend.ack_many([m.ref for m in mails[:3]], AckOutcome.PROCESSED)  # gone: 404s, fine
    assert sorted(fake.raws("Processed")) == sorted(raw(n) for n in range(23))
    assert sorted(fake.raws("inbox")) == sorted([raw(23), raw(24)])


def test_a_move_the_batch_could_not_do_is_done_alone(
    fake: FakeGraph, backend: GraphBackend
) -> None:
    """Against the local fake: a throttled move inside the batch is retried on its own."""
    for n in range(3):
        fake.deliver(raw(n))
    mails = backend.fetch_new(None, 10).mails
    fake.faults.append(Fault(429, retry_after="0", path_contains=f"{mails[1].ref}/move"))
    backend.ack_many([m.ref for m in mails], AckOutcome.PROCESSED)
    assert sorted(fake.raws("Processed")) == sorted(raw(n) for n in range(3))


def test_nested_processed_folder_is_created_under_inbox(
    fake: FakeGraph, tokens: ClientCredentialsTokens
) -> None:
    """Against the local fake: "Inbox/Done" resolves the well-known inbox, then creates a child folder."""
    b = GraphBackend(settings(fake, processed_folder="Inbox/Done"), tokens)
    fake.deliver(raw(1))
    b.ack(b.fetch_new(None, 10).mails[0].ref, AckOutcome.PROCESSED)
    assert fake.folder("Done").parent == "F-inbox"
    assert fake.raws("Done") == [raw(1)]


def test_retry_after_is_honoured(
    fake: FakeGraph, backend: GraphBackend, sleeps: list[float]
) -> None:
    """Against the local fake: 429 with Retry-After: 7 -> sleep(7) and the request is repeated."""
    fake.deliver(raw(1))
    fake.fail_next(429, retry_after="7", path_contains="$value")
    fake.fail_next(503, retry_after="3", path_contains="/delta")
    assert [m.raw for m in backend.fetch_new(None, 10).mails] == [raw(1)]
    assert sleeps == [3.0, 7.0]


def test_throttling_is_bounded(fake: FakeGraph, backend: GraphBackend, sleeps: list[float]) -> None:
    """Against the local fake: endless 503s end in a BackendError after a few waits."""
    fake.fail_next(503, retry_after="1", times=50)
    with pytest.raises(BackendError, match="throttling or unavailable"):
        backend.fetch_new(None, 10)
    assert sleeps == [1.0] * 4


def test_rejected_token_is_invalidated_and_retried_once(
    fake: FakeGraph, backend: GraphBackend, tokens: ClientCredentialsTokens
) -> None:
    """Against the local fake: a revoked token (401) -> invalidate(), new token, same request succeeds."""
    fake.deliver(raw(1))
    backend.fetch_new(None, 10)
    fake.revoke_tokens()
    fake.deliver(raw(2))
    assert len(backend.fetch_new(None, 10).mails) == 2
    assert tokens.invalidations == 1


def test_persistent_401_is_an_authentication_error(
    fake: FakeGraph, backend: GraphBackend, tokens: ClientCredentialsTokens
) -> None:
    """Against the local fake: 401 twice -> BackendError naming authentication, one invalidate only."""
    fake.fail_next(401, times=2)
    with pytest.raises(BackendError, match="authentication failed"):
        backend.fetch_new(None, 10)
    assert tokens.invalidations == 1


def test_bad_client_secret_is_reported(fake: FakeGraph) -> None:
    """Against the local fake token endpoint: a wrong secret -> BackendError about the token."""
    b = GraphBackend(settings(fake), ClientCredentialsTokens(fake, secret="wrong"))
    with pytest.raises(BackendError, match=r"cannot get an access token.*AADSTS7000215"):
        b.check()


def test_unreachable_graph_is_plain_words(fake: FakeGraph, tokens: ClientCredentialsTokens) -> None:
    """No server on the port: BackendError says Graph cannot be reached."""
    b = GraphBackend(settings(fake, graph_url=f"http://127.0.0.1:{free_port()}/v1.0"), tokens)
    with pytest.raises(BackendError, match="cannot reach Microsoft Graph"):
        b.fetch_new(None, 10)


def test_check(fake: FakeGraph, backend: GraphBackend, tokens: ClientCredentialsTokens) -> None:
    """Against the local fake: check() names the folder and its size; a missing folder is named too."""
    fake.deliver(raw(1))
    assert "folder 'INBOX' readable, 1 message(s)" in backend.check()
    with pytest.raises(BackendError, match="folder 'Tickets' not found"):
        GraphBackend(settings(fake, folder="Tickets"), tokens).check()
    other = settings(fake, user="nobody@example.com")
    with pytest.raises(BackendError, match="wrong mailbox user"):
        GraphBackend(other, tokens).check()


def test_wait_for_new_polls_the_delta_link(
    fake: FakeGraph, tokens: ClientCredentialsTokens
) -> None:
    """Against the local fake: wait_for_new polls every poll_seconds; True once mail arrives."""
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            fake.deliver(raw(9))

    b = GraphBackend(settings(fake), tokens, sleep=sleep)
    b.fetch_new(None, 10)  # empty folder: just a deltaLink to poll
    assert b.wait_for_new(60) is True
    assert polls == [5, 5]


def test_wait_for_new_times_out(
    fake: FakeGraph, backend: GraphBackend, sleeps: list[float]
) -> None:
    """Against the local fake: no new mail (removals only) -> False after sleeping the timeout."""
    fake.deliver(raw(1))
    result = backend.fetch_new(None, 10)
    backend.ack(result.mails[0].ref, AckOutcome.PROCESSED)
    assert backend.wait_for_new(12) is False
    assert sleeps == [5, 5, 2]


# --- transport ---------------------------------------------------------------


def outbound(fake: FakeGraph) -> OutboundSettings:
    return OutboundSettings(transport="graph", user=fake.user, graph_url=fake.graph_url)


def mail(raw_bytes: bytes, *recipients: str) -> OutgoingMail:
    return OutgoingMail(
        "<out1@example.com>", "support@example.com", recipients or ("ann@example.org",), raw_bytes
    )


OUT = b"From: IT Support <support@example.com>\r\nTo: ann@example.org\r\nSubject: [#12] Received\r\nMessage-ID: <out1@example.com>\r\nX-Mailtriage: 1\r\n\r\nWe got it.\r\n"


def test_send_mail_carries_the_exact_mime(fake: FakeGraph, tokens: ClientCredentialsTokens) -> None:
    """Against the local fake: POST sendMail, text/plain, base64 of the exact raw MIME; 202 = sent."""
    t = GraphTransport(outbound(fake), tokens)
    t.send(mail(OUT))
    assert fake.sent == [OUT]
    assert fake.paths("POST")[-1] == f"/v1.0/users/{fake.user}/sendMail"


def test_envelope_only_recipients_become_bcc() -> None:
    """A recipient not named in To/Cc/Bcc is added as Bcc (MIME sends read only headers)."""
    assert add_missing_bcc(OUT, ("ANN@example.org",)) == OUT
    assert (
        add_missing_bcc(OUT, ("ann@example.org", "boss@example.org"))
        == b"Bcc: boss@example.org\r\n" + OUT
    )


def test_send_retries_after_429_then_gives_up_transiently(
    fake: FakeGraph, tokens: ClientCredentialsTokens, sleeps: list[float]
) -> None:
    """Against the local fake: 429 Retry-After honoured; exhausted retries are a (transient) BackendError."""
    t = GraphTransport(outbound(fake), tokens, sleep=sleeps.append)
    fake.fail_next(429, retry_after="2", path_contains="sendMail")
    t.send(mail(OUT))
    assert sleeps == [2.0] and fake.sent == [OUT]
    fake.fail_next(503, path_contains="sendMail", times=10)
    with pytest.raises(BackendError) as caught:
        t.send(mail(OUT))
    assert not isinstance(caught.value, PermanentSendError)


def test_send_refused_is_permanent(fake: FakeGraph, tokens: ClientCredentialsTokens) -> None:
    """Against the local fake: a 400 about the message -> PermanentSendError (no retry)."""
    t = GraphTransport(outbound(fake), tokens)
    fake.fail_next(400, code="ErrorMimeContentInvalidBase64String", path_contains="sendMail")
    with pytest.raises(PermanentSendError, match="ErrorMimeContentInvalidBase64String"):
        t.send(mail(OUT))


def test_send_auth_failure_is_not_permanent(
    fake: FakeGraph, tokens: ClientCredentialsTokens
) -> None:
    """Against the local fake: 401 after re-auth / 403 are configuration, so retry later (not permanent)."""
    t = GraphTransport(outbound(fake), tokens)
    for status in (401, 403):
        fake.fail_next(status, path_contains="sendMail", times=2)
        with pytest.raises(BackendError) as caught:
            t.send(mail(OUT))
        assert not isinstance(caught.value, PermanentSendError)
    assert fake.sent == []


def test_transport_check(fake: FakeGraph, tokens: ClientCredentialsTokens) -> None:
    """Against the local fake: check() gets a token and reaches the mailbox without sending."""
    assert "reachable" in GraphTransport(outbound(fake), tokens).check()
    assert fake.sent == []


# --- msal against the fake token endpoint ----------------------------------------


@pytest.fixture
def tls_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGraph]:
    """The fake over TLS (msal only accepts https authorities), its CA trusted via env.

    REQUESTS_CA_BUNDLE is what requests consults first, even before a session's ``verify``.
    """
    with FakeGraph(tls=True) as server:
        assert server.ca_file
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_file)
        monkeypatch.setenv("CURL_CA_BUNDLE", server.ca_file)
        yield server


class _MsalTokens:
    """msal's confidential client behind the token()/invalidate() interface (test only)."""

    def __init__(self, fake: FakeGraph) -> None:
        import msal

        self.app = msal.ConfidentialClientApplication(
            fake.client_id,
            client_credential=fake.client_secret,
            authority=f"{fake.base}/{fake.tenant}",
            instance_discovery=False,  # no login.microsoftonline.com lookup from a test
        )

    def token(self) -> str:
        result = self.app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
        return str(result["access_token"])

    def invalidate(self) -> None:
        pass


def test_msal_client_credentials_against_fake_token_endpoint(tls_fake: FakeGraph) -> None:
    """Against the local fake (TLS): msal reads the OpenID document, gets a token, Graph accepts it."""
    tls_fake.deliver(raw(1))
    b = GraphBackend(settings(tls_fake), _MsalTokens(tls_fake))
    assert [m.raw for m in b.fetch_new(None, 10).mails] == [raw(1)]
    assert tls_fake.token_requests[0]["grant_type"] == "client_credentials"
    assert tls_fake.token_requests[0]["scope"] == "https://graph.microsoft.com/.default"
    b.close()


def test_msal_token_provider_from_oauth_module(tls_fake: FakeGraph) -> None:
    """Against the local fake (TLS): the project's MsalTokenProvider feeds GraphBackend."""
    oauth = pytest.importorskip(
        "daemon.backends.oauth", reason="daemon/backends/oauth.py not written yet"
    )
    s = settings(tls_fake)
    assert s.oauth2
    provider = oauth.MsalTokenProvider(s.oauth2, "https://graph.microsoft.com/.default")
    tls_fake.deliver(raw(1))
    b = GraphBackend(s, provider)
    assert [m.raw for m in b.fetch_new(None, 10).mails] == [raw(1)]
    tls_fake.revoke_tokens()
    tls_fake.deliver(raw(2))
    assert len(b.fetch_new(None, 10).mails) == 2  # 401 -> invalidate() -> a fresh token
    assert len(tls_fake.token_requests) == 2
    b.close()


def test_fetch_stops_reading_once_the_byte_bound_is_spent(
    fake: FakeGraph, backend: GraphBackend
) -> None:
    """Delta pages carry no sizes: reading stops at the bound; the rest comes next time."""
    for n in range(4):
        fake.deliver(raw(n))
    first = backend.fetch_new(None, 10, max_bytes=len(raw(0)) + 1)
    assert [m.raw for m in first.mails] == [raw(0), raw(1)] and first.more
    for m in first.mails:
        backend.ack(m.ref, AckOutcome.PROCESSED)
    rest = backend.fetch_new(first.cursor, 10)
    assert [m.raw for m in rest.mails] == [raw(2), raw(3)]
