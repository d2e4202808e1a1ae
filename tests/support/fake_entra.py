"""A local stand-in for Microsoft Entra ID's token endpoint (client credentials).

No Microsoft tenant can run here, so this speaks the documented wire format msal
uses for app-only tokens: the tenant's OpenID discovery document
(``/{tenant}/v2.0/.well-known/openid-configuration``) and the v2.0 token endpoint
(``/{tenant}/oauth2/v2.0/token``, ``grant_type=client_credentials`` with a
``client_secret`` or a signed ``client_assertion`` JWT, whose signature and
thumbprint header it checks against ``certificate``). Errors carry Entra's
``AADSTS`` codes and, like Entra, trace lines after the first line.

:class:`EntraTokens` is the endpoint's logic, answered through :meth:`EntraTokens.answer`
by any fake's handler (the Graph fake serves it next to the API, as one
authority host). :class:`FakeEntra` serves it alone over TLS: msal only accepts
https authorities.
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.http_fake import FakeHandler, LoopbackHTTPFake

BAD_SECRET = "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1\r\nTimestamp: now"


class EntraTokens:
    """One tenant's discovery document and token endpoint; hands out ``token-1``, ``token-2``, ..."""

    def __init__(self, tenant: str, client_id: str, client_secret: str) -> None:
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.requests: list[dict[str, str]] = []  # every token request's form
        self.issued: set[str] = set()  # tokens handed out and not revoked
        self.expires_in = 3599
        self.certificate: Any = None  # an x509.Certificate accepted for client assertions
        self.next_tokens: list[str] = []  # handed out first, then token-1, token-2, ...
        self._ids = itertools.count(1)

    def answer(self, base: str, method: str, path: str, body: bytes) -> tuple[int, Any] | None:
        """(status, JSON) for a discovery or token request to ``base``; None for other paths."""
        root = f"/{self.tenant}"
        path = urlsplit(path).path
        if method == "GET" and path == f"{root}/v2.0/.well-known/openid-configuration":
            return 200, self.discovery(base)
        if method == "POST" and path == f"{root}/oauth2/v2.0/token":
            return self.issue({k: v[0] for k, v in parse_qs(body.decode()).items()})
        return None

    def discovery(self, base: str) -> dict[str, Any]:
        """The tenant's OpenID discovery document (what msal reads first)."""
        root = f"{base}/{self.tenant}"
        return {
            "issuer": f"{root}/v2.0",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        }

    def issue(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Client-credentials grant: check the client and its credential, hand out a token."""
        self.requests.append(form)
        if form.get("grant_type") != "client_credentials":
            return 400, _error("unsupported_grant_type", "AADSTS70003: unsupported grant type")
        if form.get("client_id") != self.client_id:
            return 400, _error("unauthorized_client", "AADSTS700016: application not found")
        if not (form.get("client_secret") == self.client_secret or self._assertion_ok(form)):
            return 401, _error("invalid_client", BAD_SECRET)
        token = self.next_tokens.pop(0) if self.next_tokens else f"token-{next(self._ids)}"
        self.issued.add(token)
        return 200, {
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "ext_expires_in": self.expires_in,
            "access_token": token,
        }

    def revoke(self) -> None:
        """Invalidate every token handed out (a resource server then answers 401)."""
        self.issued.clear()

    def _assertion_ok(self, form: dict[str, str]) -> bool:
        """Check the JWT's signature with the registered certificate and its thumbprint header."""
        if self.certificate is None or "client_assertion" not in form:
            return False
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        head, body, sig = form["client_assertion"].split(".")
        header = json.loads(unb64(head))
        key: Any = self.certificate.public_key()
        signed, signature = f"{head}.{body}".encode(), unb64(sig)
        if header["alg"] == "PS256":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            key.verify(signature, signed, pss, hashes.SHA256())
            expected = b64(self.certificate.fingerprint(hashes.SHA256()))
            return bool(header["x5t#S256"].rstrip("=") == expected)
        key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        return bool(header["x5t"].rstrip("=") == b64(self.certificate.fingerprint(hashes.SHA1())))  # noqa: S303


class _EntraHandler(FakeHandler):
    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    def _answer(self, body: bytes) -> None:
        fake: FakeEntra = self.fake
        found = fake.answer(fake.base, self.command, self.path, body)
        self.reply_json(*(found or (404, _error("not_found", f"no such endpoint {self.path}"))))


class FakeEntra(EntraTokens, LoopbackHTTPFake):
    """:class:`EntraTokens` alone on an https loopback server: ``base`` is the authority host."""

    handler = _EntraHandler

    def __init__(self, tenant: str, client_id: str, client_secret: str) -> None:
        EntraTokens.__init__(self, tenant, client_id, client_secret)
        LoopbackHTTPFake.__init__(self, tls=True)


def b64(data: bytes) -> str:
    """Unpadded base64url, as in a JWT."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    """Decode unpadded base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _error(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description}
