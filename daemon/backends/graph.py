"""Microsoft Graph mailbox backend and transport (app-only tokens, delta queries, raw MIME).

The backend follows the folder with a delta query: the ``@odata.deltaLink`` (or,
mid-round, the ``@odata.nextLink``) is the cursor the runner saves. Graph may
return a message again (any change to it is a "change"); the runner's ledger
absorbs such replays, and the same holds for the full resync that an expired
delta state (``410``/``syncStateNotFound``) forces. Mail is read as raw MIME
(``/messages/{id}/$value``) and moved out of the folder only when acknowledged.

The transport uses ``sendMail`` in its MIME form (base64 body, ``text/plain``),
which keeps our headers, Message-ID included, as rendered.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from config.schema import MailboxSettings, OutboundSettings
from daemon.backends.base import (
    DEFAULT_BATCH_BYTES,
    AckOutcome,
    BackendError,
    FetchResult,
    OutgoingMail,
    PermanentSendError,
    RawMail,
    add_missing_bcc,
)
from daemon.backends.oauth import TokenProvider

log = logging.getLogger(__name__)

# Graph's well-known folder names (case-insensitive); any other name is a display name.
WELL_KNOWN_FOLDERS = frozenset(
    {"inbox", "archive", "deleteditems", "drafts", "junkemail", "outbox", "sentitems"}
    | {"msgfolderroot", "clutter", "conversationhistory", "scheduled", "searchfolders"}
)
RETRY_STATUSES = frozenset({429, 503, 504})
RESYNC_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
DELTA_SELECT = "id,internetMessageId,receivedDateTime"
POLL_PAGE = 50
BATCH_LIMIT = 20  # requests per JSON batch (Graph's limit)


class GraphError(BackendError):
    """Graph answered with an error; ``status`` and ``code`` say which."""

    def __init__(self, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class GraphClient:
    """Authenticated JSON/bytes requests with ``Retry-After``, one re-auth on 401, plain errors."""

    def __init__(
        self,
        token_provider: TokenProvider,
        session: requests.Session | None,
        sleep: Callable[[float], None],
        *,
        verify: bool = True,
        timeout: float = 30.0,
        max_retries: int = 4,
        max_wait: float = 120.0,
    ) -> None:
        self._tokens = token_provider
        self._own_session = session is None
        self.session = session or requests.Session()
        self._sleep = sleep
        self._verify, self._timeout = verify, timeout
        self._max_retries, self._max_wait = max_retries, max_wait

    def request(
        self, method: str, url: str, what: str, *, ok: tuple[int, ...] = (200,), **kw: Any
    ) -> requests.Response:
        """Send one request; return the response if its status is in ``ok``, else raise GraphError."""
        reauthed = False
        attempt = 0
        while True:
            resp = self._send(method, url, what, **kw)
            if resp.status_code in ok:
                return resp
            if resp.status_code == 401 and not reauthed:
                log.info("Graph rejected the access token (%s); fetching a new one", what)
                self._tokens.invalidate()
                reauthed = True
                continue
            if resp.status_code in RETRY_STATUSES and attempt < self._max_retries:
                attempt += 1
                delay = _retry_after(resp, attempt, self._max_wait)
                log.warning(
                    "Graph answered %s to %s; retrying in %.0fs", resp.status_code, what, delay
                )
                self._sleep(delay)
                continue
            raise _error(resp, what, attempt)

    def _send(self, method: str, url: str, what: str, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", None) or {})
        headers["Authorization"] = f"Bearer {self._token()}"
        host = urlsplit(url).netloc
        try:
            return self.session.request(
                method, url, headers=headers, timeout=self._timeout, verify=self._verify, **kw
            )
        except requests.exceptions.SSLError as e:
            raise BackendError(f"TLS verification failed for {host} ({what}): {e}") from e
        except requests.exceptions.Timeout as e:
            raise BackendError(
                f"Graph at {host} did not answer within {self._timeout:g}s ({what})"
            ) from e
        except requests.exceptions.RequestException as e:
            raise BackendError(f"cannot reach Microsoft Graph at {host} ({what}): {e}") from e

    def _token(self) -> str:
        try:
            return self._tokens.token()
        except BackendError:
            raise
        except Exception as e:  # the provider's own failure, whatever its type
            raise BackendError(f"cannot get an access token for Graph: {e}") from e

    def close(self) -> None:
        """Close the HTTP session if we created it."""
        if self._own_session:
            self.session.close()


def _retry_after(resp: requests.Response, attempt: int, cap: float) -> float:
    """Seconds to wait: the ``Retry-After`` header (seconds or HTTP date), else backoff."""
    value = resp.headers.get("Retry-After", "").strip()
    delay: float = min(2.0**attempt, 60.0)
    if value.isdigit():
        delay = float(value)
    elif value:
        try:
            when = email.utils.parsedate_to_datetime(value)
            delay = max(0.0, (when - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            pass
    return min(delay, cap)


def _error(resp: requests.Response, what: str, retries: int) -> GraphError:
    """Turn a failed response into a GraphError whose message says what to fix."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    code, detail = str(err.get("code", "")), str(err.get("message", ""))
    detail = f"{code}: {detail}" if code else (detail or resp.reason or "")
    status = resp.status_code
    if status == 401:
        text = f"Graph authentication failed ({what}): the access token was rejected ({detail})"
    elif status == 403:
        text = f"Graph permission denied ({what}): check the app's Mail permissions and its mailbox scope ({detail})"
    elif status == 404:
        text = f"Graph found nothing ({what}): wrong mailbox user or folder? ({detail})"
    elif status in RETRY_STATUSES:
        text = f"Graph is throttling or unavailable ({status}, {what}) after {retries} retries; try later"
    else:
        text = f"Graph refused {what} with {status} ({detail})"
    return GraphError(text, status, code)


def _is_expired(e: GraphError) -> bool:
    return e.status == 410 or e.code.lower() in RESYNC_CODES


def _received(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _q(segment: str) -> str:
    return quote(segment, safe="=-_@.")


class GraphBackend:
    """Reads the support mailbox through Microsoft Graph (see the module docstring)."""

    name = "graph"

    def __init__(
        self,
        settings: MailboxSettings,
        token_provider: TokenProvider,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        *,
        timeout: float = 30.0,
    ) -> None:
        if not settings.user:
            raise BackendError("mailbox.user: the graph backend needs the mailbox's address or id")
        self.settings = settings
        self._base = f"{settings.graph_url.rstrip('/')}/users/{_q(settings.user)}"
        self._client = GraphClient(
            token_provider, session, sleep, verify=settings.verify_tls, timeout=timeout
        )
        self._sleep = sleep
        self._folder_ids: dict[str, str] = {}
        self._cursor: str | None = None  # the last cursor handed out: what wait_for_new polls
        self._round_open = False

    # --- reading ----------------------------------------------------------------
    def fetch_new(
        self, cursor: str | None, limit: int, max_bytes: int = DEFAULT_BATCH_BYTES
    ) -> FetchResult:
        """Run the delta query from ``cursor`` (or from scratch); return up to about ``limit`` mails.

        Graph's delta pages carry no sizes: reading stops once ``max_bytes`` are read
        (so a batch holds at most ``max_bytes`` plus one mail), and the cursor stays on
        the page, whose rest is read next time.
        """
        notes: list[str] = []
        try:
            mails, new_cursor, more = self._delta(
                cursor or self._initial_delta_url(), limit, max_bytes
            )
        except GraphError as e:
            if cursor is None or not _is_expired(e):
                raise
            log.warning("Graph delta state expired (%s); running a full resync", e.code or e.status)
            notes.append("delta state expired: full resync (replays are deduplicated)")
            mails, new_cursor, more = self._delta(self._initial_delta_url(), limit, max_bytes)
        self._cursor, self._round_open = new_cursor, more
        return FetchResult(mails, new_cursor, more, notes)

    def _initial_delta_url(self) -> str:
        folder = _q(self._folder_id(self.settings.folder, create=False))
        return f"{self._base}/mailFolders/{folder}/messages/delta?$select={DELTA_SELECT}"

    def _delta(
        self, url: str, limit: int, max_bytes: int = DEFAULT_BATCH_BYTES
    ) -> tuple[list[RawMail], str, bool]:
        """Follow pages from ``url``; stop before a page that would overflow ``limit``.

        The returned cursor never skips a message not returned: it is the URL of
        the first page not consumed (re-reading a page only replays), or the
        deltaLink. A first page bigger than ``limit`` (the server ignored
        ``odata.maxpagesize``) is returned whole, so the runner always progresses.
        """
        mails: list[RawMail] = []
        headers = {"Prefer": f"odata.maxpagesize={max(limit, 1)}"}
        while True:
            page = self._client.request("GET", url, "delta query", headers=headers).json()
            entries = [e for e in page.get("value", []) if "@removed" not in e]
            if mails and len(mails) + len(entries) > limit:
                return mails, url, True
            for entry in entries:
                if mails and sum(len(m.raw) for m in mails) >= max_bytes:
                    return mails, url, True  # the rest of this page next time (replays dedup)
                mail = self._fetch_raw(entry)
                if mail is not None:
                    mails.append(mail)
            if page.get("@odata.nextLink"):
                url = page["@odata.nextLink"]
                if len(mails) >= limit:
                    return mails, url, True
            elif page.get("@odata.deltaLink"):
                return mails, page["@odata.deltaLink"], False
            else:
                raise GraphError("Graph's delta answer had neither a nextLink nor a deltaLink")

    def _fetch_raw(self, entry: dict[str, Any]) -> RawMail | None:
        ref = str(entry["id"])
        url = f"{self._base}/messages/{_q(ref)}/$value"
        resp = self._client.request("GET", url, "fetch raw message", ok=(200, 404))
        if resp.status_code == 404:  # moved or deleted since the delta page was built
            log.info("Graph message %s vanished before it was read; skipped", ref)
            return None
        return RawMail(ref, resp.content, _received(entry.get("receivedDateTime")))

    def wait_for_new(self, timeout: float) -> bool:
        """Poll the delta link every ``poll_seconds`` until it shows new mail or ``timeout`` passes."""
        waited = 0.0
        while not self._has_changes():
            if waited >= timeout:
                return False
            step = min(self.settings.poll_seconds, timeout - waited)
            self._sleep(step)
            waited += step
        return True

    def _has_changes(self) -> bool:
        if self._cursor is None or self._round_open:
            return True
        url: str | None = self._cursor
        headers = {"Prefer": f"odata.maxpagesize={POLL_PAGE}"}
        try:
            while url:
                page = self._client.request("GET", url, "delta poll", headers=headers).json()
                if any("@removed" not in e for e in page.get("value", [])):
                    return True
                url = page.get("@odata.nextLink")  # only removals so far: look further
        except GraphError as e:
            if _is_expired(e):
                return True  # fetch_new resyncs
            raise
        return False

    # --- acknowledging -----------------------------------------------------------
    def ack(self, ref: str, outcome: AckOutcome) -> None:
        """Move ``ref`` to the processed or quarantine folder; a 404 means it already moved."""
        name = self._ack_folder(outcome)
        dest = self._folder_id(name, create=True)
        url = f"{self._base}/messages/{_q(ref)}/move"
        try:
            resp = self._client.request(
                "POST", url, "move message", ok=(200, 201, 404), json={"destinationId": dest}
            )
        except BackendError:
            self._folder_ids.pop(name.lower(), None)  # the folder may have been deleted
            raise
        if resp.status_code == 404:
            log.info("Graph message %s was already moved; ack is a no-op", ref)

    def ack_many(self, refs: list[str], outcome: AckOutcome) -> None:
        """Move ``refs`` through JSON batching, 20 moves per ``$batch`` request.

        A move the batch could not do (throttled, failed) is done again on its
        own, where the retries and ``Retry-After`` of :meth:`ack` apply.
        """
        name = self._ack_folder(outcome)
        dest = self._folder_id(name, create=True)
        root = self.settings.graph_url.rstrip("/")
        user = self._base[len(root) :]  # requests in a batch are relative to the version root
        for at in range(0, len(refs), BATCH_LIMIT):
            chunk = refs[at : at + BATCH_LIMIT]
            body = {
                "requests": [
                    _move(i, f"{user}/messages/{_q(r)}/move", dest) for i, r in enumerate(chunk)
                ]
            }
            resp = self._client.request("POST", f"{root}/$batch", "move messages", json=body)
            for answer in resp.json().get("responses", []):
                self._judge_move(chunk[int(answer["id"])], int(answer["status"]), outcome)

    def _judge_move(self, ref: str, status: int, outcome: AckOutcome) -> None:
        if status == 404:
            log.info("Graph message %s was already moved; ack is a no-op", ref)
        elif status not in (200, 201):
            log.info("Graph batch move of %s answered %s; moving it alone", ref, status)
            self.ack(ref, outcome)

    def _ack_folder(self, outcome: AckOutcome) -> str:
        s = self.settings
        return s.quarantine_folder if outcome is AckOutcome.QUARANTINED else s.processed_folder

    def _folder_id(self, path: str, *, create: bool) -> str:
        """Resolve ``path`` ("Inbox", "Processed", "Inbox/Sub") to a folder id, creating if asked."""
        key = path.lower()
        if key in self._folder_ids:
            return self._folder_ids[key]
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise BackendError(f"empty Graph folder name {path!r}")
        if parts[0].lower() in WELL_KNOWN_FOLDERS:
            url = f"{self._base}/mailFolders/{parts[0].lower()}"
            folder_id = str(self._client.request("GET", url, f"folder {parts[0]!r}").json()["id"])
            parts = parts[1:]
            collection = f"{self._base}/mailFolders/{_q(folder_id)}/childFolders"
        else:
            collection = f"{self._base}/mailFolders"
        for name in parts:
            folder_id = self._child_id(collection, name, create=create)
            collection = f"{self._base}/mailFolders/{_q(folder_id)}/childFolders"
        self._folder_ids[key] = folder_id
        return folder_id

    def _child_id(self, collection: str, name: str, *, create: bool) -> str:
        escaped = name.replace("'", "''")
        params = {"$filter": f"displayName eq '{escaped}'", "$select": "id,displayName"}
        for _ in range(2):  # a folder created concurrently makes the POST answer 409
            found = self._client.request(
                "GET", collection, f"look up folder {name!r}", params=params
            )
            values = found.json().get("value", [])
            if values:
                return str(values[0]["id"])
            if not create:
                raise BackendError(f"folder {name!r} not found in mailbox {self.settings.user}")
            made = self._client.request(
                "POST",
                collection,
                f"create folder {name!r}",
                ok=(201, 409),
                json={"displayName": name},
            )
            if made.status_code == 201:
                log.info("created Graph folder %r in %s", name, self.settings.user)
                return str(made.json()["id"])
        raise BackendError(f"cannot create or find folder {name!r} in mailbox {self.settings.user}")

    # --- housekeeping --------------------------------------------------------------
    def check(self) -> str:
        """Get a token, open the folder and report its size; raise BackendError in plain words."""
        folder_id = self._folder_id(self.settings.folder, create=False)
        url = f"{self._base}/mailFolders/{_q(folder_id)}"
        info = self._client.request("GET", url, "read folder").json()
        return (
            f"graph: {self.settings.user} folder {self.settings.folder!r} readable, "
            f"{info.get('totalItemCount', '?')} message(s)"
        )

    def close(self) -> None:
        """Release the HTTP session."""
        self._client.close()


class GraphTransport:
    """Sends outgoing mail with Graph ``sendMail`` (MIME form), saving a copy in Sent Items."""

    name = "graph"

    def __init__(
        self,
        settings: OutboundSettings,
        token_provider: TokenProvider,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        *,
        mailbox: MailboxSettings | None = None,
    ) -> None:
        user = settings.user or (mailbox.user if mailbox else None) or settings.from_address
        self.user = user
        self._base = f"{settings.graph_url.rstrip('/')}/users/{_q(user)}"
        self._client = GraphClient(
            token_provider,
            session,
            sleep,
            verify=settings.verify_tls,
            timeout=settings.timeout_seconds,
        )

    def send(self, mail: OutgoingMail) -> None:
        """Send ``mail``; BackendError when Graph is unavailable, PermanentSendError when it refuses."""
        body = base64.b64encode(add_missing_bcc(mail.raw, mail.recipients))
        try:
            self._client.request(
                "POST",
                f"{self._base}/sendMail",
                f"send {mail.message_id}",
                ok=(202,),
                data=body,
                headers={"Content-Type": "text/plain"},
            )
        except GraphError as e:
            # 401/403/404 are our configuration, not this message: retry once it is fixed.
            if (
                e.status is not None
                and 400 <= e.status < 500
                and e.status not in (401, 403, 404, 408, 429)
            ):
                raise PermanentSendError(str(e)) from e
            raise

    def check(self) -> str:
        """Get a token and reach the sending mailbox (without sending anything)."""
        url = f"{self._base}/mailFolders/sentitems"
        try:
            self._client.request("GET", url, "read Sent Items", params={"$select": "id"})
        except GraphError as e:
            if e.status != 403:
                raise
            return f"graph transport: token accepted for {self.user} (Mail.Send is proven only by sending)"
        return f"graph transport: token accepted, mailbox {self.user} reachable"

    def close(self) -> None:
        """Release the HTTP session."""
        self._client.close()


def _move(i: int, url: str, dest: str) -> dict:
    """One move inside a ``$batch`` request body."""
    return {
        "id": str(i),
        "method": "POST",
        "url": url,
        "headers": {"Content-Type": "application/json"},
        "body": {"destinationId": dest},
    }
