"""A local stand-in for Microsoft Graph and its token endpoint, on 127.0.0.1.

No Microsoft 365 tenant can run here, so this threaded ``http.server`` speaks
the documented wire format of the parts mailtriage uses: the v2.0 token
endpoint (client credentials) and its OpenID discovery document, ``mailFolders``
(well-known names, ``$filter=displayName eq '...'``, create, ``childFolders``),
the messages delta query (``Prefer: odata.maxpagesize``, ``@odata.nextLink``
pages ending in an ``@odata.deltaLink``, ``@removed`` entries, ``410
SyncStateNotFound`` for expired state), ``/messages/{id}/$value``, ``move``
(the moved message gets a new id, as in Graph) and ``sendMail`` in MIME form.
Faults are injected with :meth:`FakeGraph.fail_next`. Optional TLS uses a
throw-away self-signed certificate (msal only talks to https authorities).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import http.server
import itertools
import json
import re
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests

WELL_KNOWN = {"inbox": "Inbox", "sentitems": "Sent Items", "deleteditems": "Deleted Items"}


@dataclass
class GraphMessage:
    """A message in the fake mailbox."""

    id: str
    raw: bytes
    received: dt.datetime
    seq: int  # change number: a delta round returns changes with seq above its watermark


@dataclass
class GraphFolder:
    """A mail folder with its messages (by id)."""

    id: str
    name: str
    parent: str | None
    well_known: str | None = None
    messages: dict[str, GraphMessage] = field(default_factory=dict)
    removed: list[tuple[int, str]] = field(default_factory=list)  # (seq, message id)


@dataclass
class Fault:
    """An injected answer for the next matching request."""

    status: int
    code: str = ""
    retry_after: str | None = None
    path_contains: str = ""


class FakeGraph:
    """Threaded fake of Graph + login endpoint: ``start()``, use ``graph_url``/``authority``."""

    def __init__(
        self,
        user: str = "support@example.com",
        tenant: str = "tenant-1",
        client_id: str = "client-1",
        client_secret: str = "s3cret",
        *,
        tls: bool = False,
    ) -> None:
        self.user, self.tenant = user, tenant
        self.client_id, self.client_secret = client_id, client_secret
        self.tls = tls
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._seq = 0
        self.epoch = 1  # bumping it expires every delta/skip token handed out
        self.folders: dict[str, GraphFolder] = {}
        for wk, name in WELL_KNOWN.items():
            self.folders[f"F-{wk}"] = GraphFolder(f"F-{wk}", name, None, wk)
        self.tokens: set[str] = set()
        self.token_requests: list[dict[str, str]] = []
        self.requests: list[tuple[str, str]] = []  # (method, path + query)
        self.sent: list[bytes] = []
        self.faults: list[Fault] = []
        self.default_page = 10
        self._server: http.server.ThreadingHTTPServer | None = None
        self.ca_file: str | None = None

    # --- lifecycle ----------------------------------------------------------------
    def start(self) -> FakeGraph:
        """Serve on a free loopback port in a daemon thread."""
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        if self.tls:
            self._wrap_tls()
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Shut the server down."""
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self.ca_file:
            shutil.rmtree(Path(self.ca_file).parent, ignore_errors=True)

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base(self) -> str:
        """``http(s)://127.0.0.1:port``."""
        assert self._server
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._server.server_port}"

    @property
    def graph_url(self) -> str:
        """The API base, like ``https://graph.microsoft.com/v1.0``."""
        return f"{self.base}/v1.0"

    @property
    def token_url(self) -> str:
        """The tenant's v2.0 token endpoint."""
        return f"{self.base}/{self.tenant}/oauth2/v2.0/token"

    # --- test-facing helpers -------------------------------------------------------
    def deliver(self, raw: bytes, folder: str = "inbox") -> str:
        """Put a message into ``folder`` (well-known name or display name); return its id."""
        with self.lock:
            self._seq += 1
            msg = GraphMessage(
                f"AAMk{next(self._ids):04d}=", raw, dt.datetime.now(dt.UTC), self._seq
            )
            self.folder(folder).messages[msg.id] = msg
        return msg.id

    def touch(self, message_id: str) -> None:
        """Change a message (e.g. mark read): the next delta round returns it again."""
        with self.lock:
            for f in self.folders.values():
                if message_id in f.messages:
                    self._seq += 1
                    f.messages[message_id].seq = self._seq

    def folder(self, name: str) -> GraphFolder:
        """The folder with that well-known or display name (case-insensitive)."""
        return next(
            f
            for f in self.folders.values()
            if name.lower() in (f.name.lower(), (f.well_known or "").lower())
        )

    def raws(self, folder: str) -> list[bytes]:
        """Raw bytes of the messages in ``folder``."""
        with self.lock:
            return [m.raw for m in self.folder(folder).messages.values()]

    def fail_next(
        self,
        status: int,
        *,
        code: str = "",
        retry_after: str | None = None,
        path_contains: str = "",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` Graph requests whose path contains ``path_contains`` with ``status``."""
        self.faults.extend(Fault(status, code, retry_after, path_contains) for _ in range(times))

    def expire_delta_state(self) -> None:
        """Invalidate every delta/skip token handed out (they then answer 410 SyncStateNotFound)."""
        self.epoch += 1

    def revoke_tokens(self) -> None:
        """Invalidate every access token handed out (Graph then answers 401)."""
        self.tokens.clear()

    def paths(self, method: str = "") -> list[str]:
        """Paths requested, optionally only for ``method``."""
        return [p for m, p in self.requests if not method or m == method]

    # --- token endpoint and discovery ----------------------------------------------------
    def openid_configuration(self) -> dict[str, Any]:
        """The tenant's OpenID discovery document (what msal reads first)."""
        root = f"{self.base}/{self.tenant}"
        return {
            "issuer": f"{root}/v2.0",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{self.base}/{self.tenant}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        }

    def issue_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Client-credentials grant: check the client and secret, hand out a bearer token."""
        self.token_requests.append(form)
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "AADSTS70003"}
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            desc = "AADSTS7000215: Invalid client secret provided."
            return 401, {"error": "invalid_client", "error_description": desc}
        token = f"tok-{next(self._ids)}"
        self.tokens.add(token)
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        }

    # --- Graph API ------------------------------------------------------------------------
    def api(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> tuple[int, Any]:
        """Answer one Graph request below ``/v1.0``: (status, JSON object or raw bytes)."""
        prefix = f"/users/{self.user.lower()}"
        if not path.lower().startswith(prefix):
            user = path.split("/")[2] if path.count("/") >= 2 else ""
            return 404, _err("ErrorInvalidUser", f"The requested user '{user}' is invalid.")
        parts = path[len(prefix) :].strip("/").split("/")
        with self.lock:
            if parts[0] == "mailFolders":
                return self._folders(method, parts[1:], query, headers, body)
            if parts[0] == "messages" and len(parts) == 3:
                return self._message(method, parts[1], parts[2], body)
            if parts == ["sendMail"] and method == "POST":
                return self._send_mail(headers, body)
        return 400, _err("BadRequest", f"Unsupported request {method} {path}")

    def _resolve(self, ref: str) -> GraphFolder | None:
        if ref.lower() in WELL_KNOWN:
            return self.folders[f"F-{ref.lower()}"]
        return self.folders.get(ref)

    def _folders(
        self, method: str, parts: list[str], query: dict[str, str], headers: Any, body: bytes
    ) -> tuple[int, Any]:
        if not parts or parts[-1] == "childFolders":
            parent = self._resolve(parts[0]) if parts else None
            if parts and parent is None:
                return 404, _err(
                    "ErrorItemNotFound", "The specified object was not found in the store."
                )
            return self._collection(method, parent.id if parent else None, query, body)
        folder = self._resolve(parts[0])
        if folder is None:
            return 404, _err(
                "ErrorItemNotFound", "The specified object was not found in the store."
            )
        if len(parts) == 1:
            return 200, self._folder_json(folder)
        if parts[1:] == ["messages", "delta"]:
            return self._delta(folder, query, headers)
        return 400, _err("BadRequest", "Unsupported folder request")

    def _collection(
        self, method: str, parent: str | None, query: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        kids = [f for f in self.folders.values() if f.parent == parent]
        if method == "POST":
            name = json.loads(body)["displayName"]
            if any(f.name.lower() == name.lower() for f in kids):
                return 409, _err(
                    "ErrorFolderExists", "A folder with the specified name already exists."
                )
            folder = GraphFolder(f"F-{next(self._ids)}", name, parent)
            self.folders[folder.id] = folder
            return 201, self._folder_json(folder)
        wanted = re.fullmatch(r"displayName eq '((?:[^']|'')*)'", query.get("$filter", ""))
        if wanted:
            name = wanted.group(1).replace("''", "'")
            kids = [f for f in kids if f.name.lower() == name.lower()]
        return 200, {"value": [self._folder_json(f) for f in kids]}

    def _folder_json(self, f: GraphFolder) -> dict[str, Any]:
        return {
            "id": f.id,
            "displayName": f.name,
            "parentFolderId": f.parent or "F-msgfolderroot",
            "childFolderCount": sum(1 for c in self.folders.values() if c.parent == f.id),
            "totalItemCount": len(f.messages),
            "unreadItemCount": 0,
        }

    def _delta(self, folder: GraphFolder, query: dict[str, str], headers: Any) -> tuple[int, Any]:
        # Tokens are "epoch.low.end.after": this round covers changes with low < seq <= end,
        # and the next page starts after change number ``after``.
        token = query.get("$deltatoken") or query.get("$skiptoken")
        low, end, after = 0, self._seq, 0
        if token:
            epoch, low, end, after = (int(x) for x in token.split("."))
            if epoch != self.epoch:
                return 410, _err("SyncStateNotFound", "The sync state generation is not found.")
            if "$deltatoken" in query:
                low, end, after = end, self._seq, end
        changes = sorted(self._changes(folder, low, end), key=lambda c: c[0])
        changes = [c for c in changes if c[0] > after]
        size = _page_size(headers.get("Prefer", ""), self.default_page)
        page = changes[:size]
        link = f"{self.graph_url}/users/{self.user}/mailFolders/{folder.id}/messages/delta"
        out: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#Collection(message)",
            "value": [entry for _, entry in page],
        }
        if len(changes) > size:
            out["@odata.nextLink"] = f"{link}?$skiptoken={self.epoch}.{low}.{end}.{page[-1][0]}"
        else:
            out["@odata.deltaLink"] = f"{link}?$deltatoken={self.epoch}.{low}.{end}.{end}"
        return 200, out

    def _changes(self, folder: GraphFolder, low: int, end: int) -> list[tuple[int, dict[str, Any]]]:
        out = [
            (
                m.seq,
                {
                    "@odata.type": "#microsoft.graph.message",
                    "id": m.id,
                    "internetMessageId": _message_id(m.raw),
                    "receivedDateTime": m.received.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            )
            for m in folder.messages.values()
            if low < m.seq <= end
        ]
        if low:  # an initial round does not report what was removed before it
            out += [
                (s, {"id": i, "@removed": {"reason": "deleted"}})
                for s, i in folder.removed
                if low < s <= end
            ]
        return out

    def _find(self, message_id: str) -> tuple[GraphFolder, GraphMessage] | None:
        for f in self.folders.values():
            if message_id in f.messages:
                return f, f.messages[message_id]
        return None

    def _message(self, method: str, message_id: str, action: str, body: bytes) -> tuple[int, Any]:
        found = self._find(message_id)
        if found is None:
            return 404, _err(
                "ErrorItemNotFound", "The specified object was not found in the store."
            )
        folder, msg = found
        if method == "GET" and action == "$value":
            return 200, msg.raw
        if method == "POST" and action == "move":
            dest = self._resolve(json.loads(body)["destinationId"])
            if dest is None:
                return 400, _err("ErrorInvalidIdMalformed", "Id is malformed.")
            self._seq += 1
            del folder.messages[message_id]
            folder.removed.append((self._seq, message_id))
            moved = GraphMessage(f"AAMk{next(self._ids):04d}=", msg.raw, msg.received, self._seq)
            dest.messages[moved.id] = moved
            return 201, {"id": moved.id, "parentFolderId": dest.id}
        return 400, _err("BadRequest", "Unsupported message request")

    def _send_mail(self, headers: Any, body: bytes) -> tuple[int, Any]:
        if not headers.get("Content-Type", "").startswith("text/plain"):
            return 400, _err(
                "ErrorInvalidRequest", "This fake only takes the MIME form of sendMail."
            )
        try:
            raw = base64.b64decode(body, validate=True)
        except binascii.Error:
            return 400, _err(
                "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
            )
        self.sent.append(raw)
        self._seq += 1
        sent = GraphMessage(f"AAMk{next(self._ids):04d}=", raw, dt.datetime.now(dt.UTC), self._seq)
        self.folders["F-sentitems"].messages[sent.id] = sent
        return 202, b""

    def take_fault(self, path: str) -> Fault | None:
        """Pop the first injected fault matching ``path``."""
        with self.lock:
            for i, f in enumerate(self.faults):
                if f.path_contains in path:
                    return self.faults.pop(i)
        return None

    def _wrap_tls(self) -> None:
        cert, key = _self_signed()
        folder = Path(tempfile.mkdtemp(prefix="fake-graph-"))
        (folder / "cert.pem").write_bytes(cert)
        (folder / "key.pem").write_bytes(key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
        assert self._server
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.ca_file = str(folder / "cert.pem")


def _err(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": "fake"}}}


def _page_size(prefer: str, default: int) -> int:
    found = re.search(r"odata\.maxpagesize=(\d+)", prefer)
    return max(1, int(found.group(1))) if found else default


def _message_id(raw: bytes) -> str | None:
    found = re.search(rb"^Message-ID:\s*(\S+)", raw, re.IGNORECASE | re.MULTILINE)
    return found.group(1).decode() if found else None


def _self_signed() -> tuple[bytes, bytes]:
    """A certificate for 127.0.0.1/localhost, valid for a day, and its key (PEM)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    @property
    def fake(self) -> FakeGraph:
        return self.server.fake  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        fake = self.fake
        fake.requests.append((method, self.path))
        tenant = f"/{fake.tenant}"
        if path == f"{tenant}/v2.0/.well-known/openid-configuration":
            self._json(200, fake.openid_configuration())
        elif path == f"{tenant}/oauth2/v2.0/token" and method == "POST":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            self._json(*fake.issue_token(form))
        elif path.startswith("/v1.0/"):
            self._graph(method, path[len("/v1.0") :], query, body)
        else:
            self._json(404, _err("NotFound", f"no such endpoint {path}"))

    def _graph(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        fake = self.fake
        auth = self.headers.get("Authorization", "")
        fault = fake.take_fault(path)
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            code = fault.code or {401: "InvalidAuthenticationToken", 429: "TooManyRequests"}.get(
                fault.status, "ServiceUnavailable"
            )
            self._json(fault.status, _err(code, f"injected {fault.status}"), headers)
            return
        if not auth.startswith("Bearer ") or auth[7:] not in fake.tokens:
            self._json(401, _err("InvalidAuthenticationToken", "Access token is empty or invalid."))
            return
        status, answer = fake.api(method, path, query, self.headers, body)
        if isinstance(answer, bytes):
            self._send(status, answer, {"Content-Type": "text/plain"})
        else:
            self._json(status, answer)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(
            status,
            json.dumps(obj).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class ClientCredentialsTokens:
    """A minimal token provider for tests: client-credentials POST to the fake, cached.

    Stands in for ``daemon.backends.oauth.MsalTokenProvider`` (same ``token()`` /
    ``invalidate()`` interface) and counts how often it was asked to forget.
    """

    def __init__(self, fake: FakeGraph, secret: str | None = None) -> None:
        self.fake, self.secret = fake, secret or fake.client_secret
        self.invalidations = 0
        self._token: str | None = None

    def token(self) -> str:
        """Return the cached token, fetching one when there is none."""
        if self._token is None:
            form = {
                "grant_type": "client_credentials",
                "client_id": self.fake.client_id,
                "client_secret": self.secret,
                "scope": "https://graph.microsoft.com/.default",
            }
            resp = requests.post(
                self.fake.token_url, data=form, timeout=10, verify=self.fake.ca_file or True
            )
            if resp.status_code != 200:
                raise RuntimeError(resp.json().get("error_description", "token request failed"))
            self._token = resp.json()["access_token"]
        return self._token

    def invalidate(self) -> None:
        """Forget the cached token."""
        self.invalidations += 1
        self._token = None
