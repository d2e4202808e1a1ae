"""App-only OAuth2 tokens (client credentials) from Microsoft Entra ID via msal.

One :class:`MsalTokenProvider` per resource: IMAP and SMTP AUTH use
:data:`OUTLOOK_SCOPE`, Microsoft Graph uses :data:`GRAPH_SCOPE`. Tokens are
cached here and fetched again :data:`REFRESH_MARGIN` seconds before they
expire, or at once after :meth:`TokenProvider.invalidate` (the server rejected
the token: revoked consent, rotated secret, clock skew).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import msal

from config.schema import OAuth2Settings
from daemon.backends.base import BackendError

log = logging.getLogger(__name__)

OUTLOOK_SCOPE = "https://outlook.office365.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
REFRESH_MARGIN = 300.0  # seconds before expiry when a cached token is renewed
# Hosts msal knows; for any other authority (a sovereign cloud msal lacks, a test
# server) authority validation and instance discovery would fail or go online.
KNOWN_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)


class TokenProvider(Protocol):
    """Hands out a bearer token; told to forget it when the server refuses it."""

    def token(self) -> str:
        """Return a valid access token (cached until shortly before expiry)."""
        ...

    def invalidate(self) -> None:
        """Forget the cached token; the next :meth:`token` fetches a new one."""
        ...


def xoauth2_string(user: str, token: str) -> str:
    """Return the SASL XOAUTH2 initial response (before base64) for ``user``."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def read_certificate(path: str, thumbprint: str | None) -> dict[str, str]:
    """Return msal's certificate credential from a PEM file: the private key, maybe the cert.

    With ``thumbprint`` (the SHA-1 shown in Entra ID) msal signs with RS256;
    without it the certificate must be in the same file, and msal derives its
    SHA-256 thumbprint and signs with PS256.
    """
    try:
        with open(path, encoding="ascii") as fh:
            pem = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise BackendError(f"cannot read certificate_path {path}: {exc}") from exc
    if thumbprint:
        return {"private_key": pem, "thumbprint": thumbprint.replace(":", "").upper()}
    start = pem.find("-----BEGIN CERTIFICATE-----")
    if start < 0:
        raise BackendError(
            f"certificate_thumbprint missing and {path} holds no certificate to derive it from"
        )
    return {"private_key": pem, "public_certificate": pem[start:]}


class MsalTokenProvider:
    """Client-credentials tokens from msal's ``ConfidentialClientApplication``.

    ``app`` replaces the msal application (tests inject a fake); ``clock`` is
    wall-clock seconds. Thread-safe: the runner and the outbox may share one.
    """

    def __init__(
        self,
        oauth2: OAuth2Settings,
        scope: str,
        *,
        app: Any | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.oauth2 = oauth2
        self.scope = oauth2.scope or scope
        self.clock = clock
        self._app = app
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    @property
    def authority(self) -> str:
        """The tenant's authority URL, ``{authority_host}/{tenant_id}``."""
        return f"{self.oauth2.authority_host.rstrip('/')}/{self.oauth2.tenant_id}"

    def token(self) -> str:
        """Return the cached token, or fetch one when it expires within 5 minutes."""
        with self._lock:
            if self._token is None or self.clock() >= self._expires_at - REFRESH_MARGIN:
                self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token; the next :meth:`token` asks the identity provider."""
        with self._lock:
            self._token = None
            self._expires_at = 0.0

    def _forget_msal_cache(self, app: Any) -> None:
        # We decide when to renew; msal's own cache would hand back the old token.
        cache = getattr(app, "token_cache", None)
        if isinstance(cache, msal.TokenCache):
            for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(item)

    def _fetch(self) -> None:
        app = self._application()
        self._forget_msal_cache(app)
        started = self.clock()
        try:
            result = app.acquire_token_for_client(scopes=[self.scope])
        except Exception as exc:  # msal raises plain ValueError/requests errors; none may escape
            raise BackendError(f"cannot get a token from {self.authority}: {exc}") from exc
        if not result or "access_token" not in result:
            result = result or {}
            detail = result.get("error_description") or result.get("error") or "no token"
            first_line = str(detail).splitlines()[0]
            raise BackendError(
                f"token request for client {self.oauth2.client_id} failed: {first_line}"
            )
        self._token = str(result["access_token"])
        self._expires_at = started + float(result.get("expires_in", 3599))
        log.info(
            "got an access token for %s (source %s, expires in %ss)",
            self.scope,
            result.get("token_source", "identity_provider"),
            result.get("expires_in", "?"),
        )

    def _application(self) -> Any:
        if self._app is None:
            o = self.oauth2
            if o.client_secret is not None:
                credential: Any = o.client_secret.get_secret_value()
            else:
                assert o.certificate_path
                credential = read_certificate(o.certificate_path, o.certificate_thumbprint)
            known = (urlsplit(o.authority_host).hostname or "") in KNOWN_AUTHORITY_HOSTS
            try:
                self._app = msal.ConfidentialClientApplication(
                    o.client_id,
                    client_credential=credential,
                    authority=self.authority,
                    validate_authority=known,
                    instance_discovery=None if known else False,
                    token_cache=msal.TokenCache(),
                )
            except (ValueError, OSError) as exc:  # bad authority URL, discovery unreachable
                raise BackendError(f"cannot set up msal for {self.authority}: {exc}") from exc
        return self._app
