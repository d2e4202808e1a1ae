"""MsalTokenProvider: real msal against a local stand-in for Entra ID's token endpoint.

No Microsoft tenant can run here, so :class:`tests.support.fake_entra.FakeEntra`
serves on 127.0.0.1 the documented wire format msal uses for client credentials:
the tenant's OpenID discovery document and the v2.0 token endpoint
(``client_secret`` or a signed ``client_assertion`` JWT, whose signature and
thumbprint header it checks). msal only accepts https authorities; the
throw-away CA is trusted via ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes

from config.schema import OAuth2Settings
from daemon.backends.base import BackendError, OutgoingMail
from daemon.backends.imap import ImapBackend
from daemon.backends.oauth import (
    GRAPH_SCOPE,
    OUTLOOK_SCOPE,
    MsalTokenProvider,
    xoauth2_string,
)
from daemon.backends.smtp import SmtpTransport
from tests.support.dovecot import DovecotServer
from tests.support.fake_entra import FakeEntra, unb64
from tests.support.ports import free_port
from tests.support.smtpd import SmtpServer
from tests.support.tls import app_certificate

TENANT, CLIENT, SECRET = "contoso-tenant", "app-client-id", "app-secret-value"


@pytest.fixture
def entra(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEntra]:
    with FakeEntra(TENANT, CLIENT, SECRET) as endpoint:
        assert endpoint.ca_file
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", endpoint.ca_file)
        yield endpoint


def settings(entra: FakeEntra, **kw: Any) -> OAuth2Settings:
    values = {"tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET}
    return OAuth2Settings(**(values | {"authority_host": entra.base} | kw))


def test_client_secret_token_is_cached_until_invalidated(entra: FakeEntra) -> None:
    provider = MsalTokenProvider(settings(entra), OUTLOOK_SCOPE)
    assert provider.token() == provider.token() == "token-1"
    [form] = entra.requests
    assert form["grant_type"] == "client_credentials"
    assert (form["client_id"], form["client_secret"]) == (CLIENT, SECRET)
    assert form["scope"] == OUTLOOK_SCOPE
    provider.invalidate()  # the server refused token-1
    assert provider.token() == "token-2"
    assert len(entra.requests) == 2


def test_token_is_renewed_five_minutes_before_it_expires(entra: FakeEntra) -> None:
    now = [1_000_000.0]
    provider = MsalTokenProvider(settings(entra), GRAPH_SCOPE, clock=lambda: now[0])
    assert provider.token() == "token-1"
    now[0] += 3599 - 301
    assert provider.token() == "token-1"
    now[0] += 2  # now within 5 minutes of expiry
    assert provider.token() == "token-2"
    assert [f["scope"] for f in entra.requests] == [GRAPH_SCOPE, GRAPH_SCOPE]


def test_wrong_secret_is_a_backend_error_with_entras_words(entra: FakeEntra) -> None:
    provider = MsalTokenProvider(settings(entra, client_secret="wrong"), OUTLOOK_SCOPE)
    with pytest.raises(BackendError, match=r"AADSTS7000215: Invalid client secret provided\.$"):
        provider.token()


@pytest.mark.parametrize(
    "with_thumbprint", [False, True], ids=["ps256-from-cert", "rs256-thumbprint"]
)
def test_certificate_credential_sends_a_signed_assertion(
    entra: FakeEntra, tmp_path: Path, with_thumbprint: bool
) -> None:
    pem, cert = app_certificate()
    path = tmp_path / "app.pem"
    path.write_bytes(pem)
    entra.certificate = cert
    thumbprint = cert.fingerprint(hashes.SHA1()).hex() if with_thumbprint else None  # noqa: S303
    oauth2 = settings(
        entra, client_secret=None, certificate_path=str(path), certificate_thumbprint=thumbprint
    )
    assert MsalTokenProvider(oauth2, OUTLOOK_SCOPE).token() == "token-1"
    form = entra.requests[0]
    assert "client_secret" not in form
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    header = json.loads(unb64(form["client_assertion"].split(".")[0]))
    assert header["alg"] == ("RS256" if with_thumbprint else "PS256")


def test_missing_certificate_file_is_a_backend_error(entra: FakeEntra, tmp_path: Path) -> None:
    oauth2 = settings(entra, client_secret=None, certificate_path=str(tmp_path / "nope.pem"))
    with pytest.raises(BackendError, match="cannot read certificate_path"):
        MsalTokenProvider(oauth2, OUTLOOK_SCOPE).token()


def test_unreachable_authority_is_a_backend_error() -> None:
    oauth2 = OAuth2Settings(
        tenant_id=TENANT,
        client_id=CLIENT,
        client_secret=SECRET,
        authority_host=f"https://127.0.0.1:{free_port()}",
    )
    with pytest.raises(BackendError):
        MsalTokenProvider(oauth2, OUTLOOK_SCOPE).token()


class FakeApp:
    """Stands in for msal's ConfidentialClientApplication."""

    def __init__(self, *results: Any) -> None:
        self.results, self.calls = list(results), 0

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
        self.calls += 1
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def test_errors_from_msal_become_backend_errors() -> None:
    oauth2 = OAuth2Settings(tenant_id=TENANT, client_id=CLIENT, client_secret=SECRET)
    app = FakeApp(
        {"error": "unauthorized_client", "error_description": "AADSTS700016: app not found\nmore"},
        ValueError("Unable to get authority configuration"),
        {"access_token": "t", "expires_in": 3600},
    )
    provider = MsalTokenProvider(oauth2, OUTLOOK_SCOPE, app=app)
    with pytest.raises(BackendError, match=r"failed: AADSTS700016: app not found$"):
        provider.token()
    with pytest.raises(BackendError, match="Unable to get authority configuration"):
        provider.token()
    assert provider.token() == "t"


def test_configured_scope_wins() -> None:
    oauth2 = OAuth2Settings(
        tenant_id=TENANT, client_id=CLIENT, client_secret=SECRET, scope="api://x/.default"
    )
    assert MsalTokenProvider(oauth2, OUTLOOK_SCOPE).scope == "api://x/.default"
    assert (
        MsalTokenProvider(oauth2, OUTLOOK_SCOPE).authority
        == f"https://login.microsoftonline.com/{TENANT}"
    )


def test_xoauth2_string() -> None:
    assert (
        xoauth2_string("support@contoso.com", "tok")
        == "user=support@contoso.com\x01auth=Bearer tok\x01\x01"
    )


def test_xoauth2_through_msal_to_dovecot_and_smtp_keeps_secrets_out_of_debug_logs(
    entra: FakeEntra,
    dovecot: DovecotServer,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The whole chain: msal client credentials -> token -> XOAUTH2 at real servers."""
    caplog.set_level(logging.DEBUG)
    entra.next_tokens = ["revoked-token-7", dovecot.token]  # the first one is refused
    smtp_server.tokens.add(dovecot.token)
    provider = MsalTokenProvider(settings(entra), OUTLOOK_SCOPE)
    dovecot.append(b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n")
    imap = ImapBackend(dovecot.settings(password=None, oauth2=settings(entra)), provider)
    assert len(imap.fetch_new(None, 10).mails) == 1
    imap.close()
    assert len(entra.requests) == 2  # refreshed once after the refusal
    smtp = SmtpTransport(smtp_server.settings(password=None), provider)
    raw = b"From: support@example.com\r\nTo: bob@example.com\r\nSubject: t\r\n\r\nx\r\n"
    smtp.send(OutgoingMail("<t@x>", "support@example.com", ("bob@example.com",), raw))
    smtp.close()
    assert smtp_server.logins[-1] == ("XOAUTH2", smtp_server.user, True)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "AUTHENTICATE **REDACTED**" in text
    secrets = [SECRET, "revoked-token-7", dovecot.token]
    secrets += [
        base64.b64encode(xoauth2_string(user, token).encode()).decode()
        for user in (dovecot.user, smtp_server.user)
        for token in ("revoked-token-7", dovecot.token)
    ]
    for secret in secrets:
        assert secret not in text
