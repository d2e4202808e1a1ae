"""MsalTokenProvider: real msal against a local stand-in for Entra ID's token endpoint.

No Microsoft tenant can run here, so a small HTTPS server on 127.0.0.1 serves
the documented wire format msal uses for client credentials: the tenant's
OpenID discovery document and the v2.0 token endpoint (``client_secret`` or a
signed ``client_assertion`` JWT, whose signature and thumbprint header it
checks). msal only accepts https authorities; the throw-away CA is trusted via
``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import itertools
import json
import logging
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

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
from tests.support.dovecot import DovecotServer, write_self_signed
from tests.support.ports import free_port
from tests.support.smtpd import SmtpServer

TENANT, CLIENT, SECRET = "contoso-tenant", "app-client-id", "app-secret-value"


class TokenEndpoint:
    """Entra ID's discovery document + client-credentials token endpoint, on loopback."""

    def __init__(self, folder: Path) -> None:
        self.requests: list[dict[str, str]] = []
        self.expires_in = 3599
        self.certificate: x509.Certificate | None = None  # accepted for client assertions
        self.next_tokens: list[str] = []  # handed out first, then token-1, token-2, ...
        self._ids = itertools.count(1)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.endpoint = self  # type: ignore[attr-defined]
        cert, key = write_self_signed(folder)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.ca_file = str(cert)
        self.base = f"https://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def discovery(self) -> dict[str, Any]:
        root = f"{self.base}/{TENANT}"
        return {
            "issuer": f"{root}/v2.0",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "token id_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        }

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.requests.append(form)
        if form.get("grant_type") != "client_credentials" or form.get("client_id") != CLIENT:
            return 400, {
                "error": "invalid_request",
                "error_description": "AADSTS900144: bad request",
            }
        if not (form.get("client_secret") == SECRET or self._assertion_ok(form)):
            desc = "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nTimestamp: now"
            return 401, {"error": "invalid_client", "error_description": desc}
        return 200, {
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "ext_expires_in": self.expires_in,
            "access_token": self.next_tokens.pop(0)
            if self.next_tokens
            else f"token-{next(self._ids)}",
        }

    def _assertion_ok(self, form: dict[str, str]) -> bool:
        """Check the JWT's signature with the registered certificate and its thumbprint header."""
        if self.certificate is None or "client_assertion" not in form:
            return False
        head, body, sig = form["client_assertion"].split(".")
        header = json.loads(_unb64(head))
        key: Any = self.certificate.public_key()
        signed, signature = f"{head}.{body}".encode(), _unb64(sig)
        if header["alg"] == "PS256":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            key.verify(signature, signed, pss, hashes.SHA256())
            expected = _b64(self.certificate.fingerprint(hashes.SHA256()))
            return bool(header["x5t#S256"].rstrip("=") == expected)
        key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        return bool(header["x5t"].rstrip("=") == _b64(self.certificate.fingerprint(hashes.SHA1())))  # noqa: S303


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        endpoint: TokenEndpoint = self.server.endpoint  # type: ignore[attr-defined]
        if self.path.split("?")[0].endswith("/.well-known/openid-configuration"):
            self._reply(200, endpoint.discovery())
        else:
            self._reply(404, {"error": "not_found"})

    def do_POST(self) -> None:
        endpoint: TokenEndpoint = self.server.endpoint  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length", 0))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if self.path.startswith(f"/{TENANT}/oauth2/v2.0/token"):
            self._reply(*endpoint.token(form))
        else:
            self._reply(404, {"error": "not_found"})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def entra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", endpoint.ca_file)
    yield endpoint
    endpoint.stop()


def settings(entra: TokenEndpoint, **kw: Any) -> OAuth2Settings:
    values = {"tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET}
    return OAuth2Settings(**(values | {"authority_host": entra.base} | kw))


def test_client_secret_token_is_cached_until_invalidated(entra: TokenEndpoint) -> None:
    provider = MsalTokenProvider(settings(entra), OUTLOOK_SCOPE)
    assert provider.token() == provider.token() == "token-1"
    [form] = entra.requests
    assert form["grant_type"] == "client_credentials"
    assert (form["client_id"], form["client_secret"]) == (CLIENT, SECRET)
    assert form["scope"] == OUTLOOK_SCOPE
    provider.invalidate()  # the server refused token-1
    assert provider.token() == "token-2"
    assert len(entra.requests) == 2


def test_token_is_renewed_five_minutes_before_it_expires(entra: TokenEndpoint) -> None:
    now = [1_000_000.0]
    provider = MsalTokenProvider(settings(entra), GRAPH_SCOPE, clock=lambda: now[0])
    assert provider.token() == "token-1"
    now[0] += 3599 - 301
    assert provider.token() == "token-1"
    now[0] += 2  # now within 5 minutes of expiry
    assert provider.token() == "token-2"
    assert [f["scope"] for f in entra.requests] == [GRAPH_SCOPE, GRAPH_SCOPE]


def test_wrong_secret_is_a_backend_error_with_entras_words(entra: TokenEndpoint) -> None:
    provider = MsalTokenProvider(settings(entra, client_secret="wrong"), OUTLOOK_SCOPE)
    with pytest.raises(BackendError, match=r"AADSTS7000215: Invalid client secret provided\.$"):
        provider.token()


@pytest.mark.parametrize(
    "with_thumbprint", [False, True], ids=["ps256-from-cert", "rs256-thumbprint"]
)
def test_certificate_credential_sends_a_signed_assertion(
    entra: TokenEndpoint, tmp_path: Path, with_thumbprint: bool
) -> None:
    pem, cert = _rsa_certificate()
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
    header = json.loads(_unb64(form["client_assertion"].split(".")[0]))
    assert header["alg"] == ("RS256" if with_thumbprint else "PS256")


def test_missing_certificate_file_is_a_backend_error(entra: TokenEndpoint, tmp_path: Path) -> None:
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


def _rsa_certificate() -> tuple[bytes, x509.Certificate]:
    """An app certificate as Entra ID takes it: RSA key + self-signed cert, one PEM file."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailtriage")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ) + cert.public_bytes(serialization.Encoding.PEM)
    return pem, cert


def test_xoauth2_through_msal_to_dovecot_and_smtp_keeps_secrets_out_of_debug_logs(
    entra: TokenEndpoint,
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
