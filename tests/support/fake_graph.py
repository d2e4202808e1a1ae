"""A local stand-in for Microsoft Graph and its token endpoint, on 127.0.0.1.

No Microsoft 365 tenant can run here, so this threaded ``http.server`` speaks
the documented wire format of the parts mailtriage uses: the v2.0 token
endpoint (client credentials) and its OpenID discovery document, ``mailFolders``
(well-known names, ``$filter=displayName eq '...'``, create, ``childFolders``),
the messages delta query (``Prefer: odata.maxpagesize``, ``@odata.nextLink``
pages ending in an ``@odata.deltaLink``, ``@removed`` entries, ``410
SyncStateNotFound`` for expired state), ``/messages/{id}/$value``, ``move``
(the moved message gets a new id, as in Graph) and ``sendMail`` in MIME form.
Faults are injected with :meth:`FakeGraph.fail_next`. The token endpoint is
:class:`tests.support.fake_entra.EntraTokens`, served on the same host (the
authority is ``base``). Optional TLS uses a throw-away self-signed certificate
(msal only talks to https authorities).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests

from tests.support.fake_entra import EntraTokens
from tests.support.http_fake import FakeHandler, LoopbackHTTPFake

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


class _Handler(FakeHandler):
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        fake: FakeGraph = self.fake
        fake.requests.append((method, self.path))
        login = fake.entra.answer(fake.base, method, path, body)
        if login is not None:
            self.reply_json(*login)
        elif path.startswith("/v1.0/"):
            self._graph(method, path[len("/v1.0") :], query, body)
        else:
            self.reply_json(404, _err("NotFound", f"no such endpoint {path}"))

    def _graph(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        fake: FakeGraph = self.fake
        auth = self.headers.get("Authorization", "")
        fault = fake.take_fault(path)
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            code = fault.code or {401: "InvalidAuthenticationToken", 429: "TooManyRequests"}.get(
                fault.status, "ServiceUnavailable"
            )
            self.reply_json(fault.status, _err(code, f"injected {fault.status}"), headers)
            return
        if not auth.startswith("Bearer ") or auth[7:] not in fake.entra.issued:
            self.reply_json(
                401, _err("InvalidAuthenticationToken", "Access token is empty or invalid.")
            )
            return
        status, answer = fake.api(method, path, query, self.headers, body)
        if isinstance(answer, bytes):
            self.reply(status, answer, {"Content-Type": "text/plain"})
        else:
            self.reply_json(status, answer)


class FakeGraph(LoopbackHTTPFake):
    """Threaded fake of Graph + login endpoint: ``start()``, use ``graph_url``/``authority``."""

    handler = _Handler

    def __init__(
        self,
        user: str = "support@example.com",
        tenant: str = "tenant-1",
        client_id: str = "client-1",
        client_secret: str = "s3cret",
        *,
        tls: bool = False,
    ) -> None:
        super().__init__(tls=tls)
        self.user, self.tenant = user, tenant
        self.client_id, self.client_secret = client_id, client_secret
        self.entra = EntraTokens(tenant, client_id, client_secret)
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._seq = 0
        self.epoch = 1  # bumping it expires every delta/skip token handed out
        self.folders: dict[str, GraphFolder] = {}
        for wk, name in WELL_KNOWN.items():
            self.folders[f"F-{wk}"] = GraphFolder(f"F-{wk}", name, None, wk)
        self.requests: list[tuple[str, str]] = []  # (method, path + query)
        self.batches = 0  # $batch requests answered
        self.sent: list[bytes] = []
        self.faults: list[Fault] = []
        self.default_page = 10

    # --- addresses ------------------------------------------------------------------
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
        self.entra.revoke()

    @property
    def token_requests(self) -> list[dict[str, str]]:
        """The form of every token request, oldest first."""
        return self.entra.requests

    def paths(self, method: str = "") -> list[str]:
        """Paths requested, optionally only for ``method``."""
        return [p for m, p in self.requests if not method or m == method]

    # --- Graph API ------------------------------------------------------------------------
    def api(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> tuple[int, Any]:
        """Answer one Graph request below ``/v1.0``: (status, JSON object or raw bytes)."""
        if path == "/$batch" and method == "POST":
            return self._batch(json.loads(body))
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

    def _batch(self, batch: dict) -> tuple[int, Any]:
        """JSON batching: at most 20 requests, each answered as if sent alone, in one reply."""
        requests = batch.get("requests", [])
        if len(requests) > 20:
            return 400, _err("BadRequest", "A batch holds at most 20 requests.")
        self.batches += 1
        answers = []
        for r in requests:
            url = unquote(r["url"])
            fault = self.take_fault(url)
            if fault is not None:  # an injected answer applies inside a batch too
                answers.append({"id": r["id"], "status": fault.status, "body": _err("Fault", "")})
                continue
            body = json.dumps(r.get("body", {})).encode()
            status, answer = self.api(r["method"], url, {}, r.get("headers", {}), body)
            answers.append({"id": r["id"], "status": status, "body": answer})
        return 200, {"responses": answers}

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


def _err(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": "fake"}}}


def _page_size(prefer: str, default: int) -> int:
    found = re.search(r"odata\.maxpagesize=(\d+)", prefer)
    return max(1, int(found.group(1))) if found else default


def _message_id(raw: bytes) -> str | None:
    found = re.search(rb"^Message-ID:\s*(\S+)", raw, re.IGNORECASE | re.MULTILINE)
    return found.group(1).decode() if found else None


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
