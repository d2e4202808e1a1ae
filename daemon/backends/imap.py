"""IMAP mailbox backend (imapclient): UIDs only, ``BODY.PEEK[]``, move after commit, IDLE.

A mail's ref is ``folder:UIDVALIDITY:UID``. When the folder's UIDVALIDITY
changes (a server migration, a rebuilt index) every mail still in the folder is
fetched again under new refs, and acks of old refs do nothing: the runner's
content key (Message-ID + sha256) recognises the mail, so no ticket is doubled.

Acknowledged mail leaves the folder: ``UID MOVE`` to the processed (or
quarantine) folder when the server offers MOVE, else ``UID COPY`` + ``\\Deleted``
+ ``UID EXPUNGE`` (plain ``EXPUNGE`` without UIDPLUS). Fetching never sets
``\\Seen`` (``BODY.PEEK[]``), so a crash before the ack leaves the mail as it was.

Exchange Online answers some FETCHes with no body or with a stand-in message
("Retrieval using the IMAP4 protocol failed ..."): such mail is skipped with a
warning and tried again on the next poll, never turned into a ticket.

Waiting for new mail (IDLE, or polling) is in :mod:`daemon.backends.imap_idle`.

Credentials never reach the logs: imapclient's ``IMAPlibLoggerAdapter``
redacts LOGIN/AUTHENTICATE lines, and nothing here logs a password or token.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from typing import Any, TypeVar

from imapclient import IMAPClient, exceptions

from config.schema import MailboxSettings
from daemon.backends.base import (
    DEFAULT_BATCH_BYTES,
    AckOutcome,
    BackendError,
    FetchResult,
    RawMail,
    describe_connection_error,
    security_label,
    tls_context,
)
from daemon.backends.imap_idle import (
    IDLE_REARM_SECONDS,
    IDLE_SETTLE_SECONDS,
    IDLE_WATCHDOG_SECONDS,
    LINK_ERRORS,
    IdleWaiting,
)
from daemon.backends.oauth import TokenProvider

log = logging.getLogger(__name__)

T = TypeVar("T")

FETCH_CHUNK = 50  # UIDs per UID FETCH
PLACEHOLDER_SUBJECT = "retrieval using the imap4 protocol failed"
DELETED = b"\\Deleted"


class ImapUnreachable(BackendError):
    """The connection could not be made or was lost: worth reconnecting."""


def make_ref(folder: str, uidvalidity: int, uid: int) -> str:
    """Return the ref of ``uid`` in ``folder`` under ``uidvalidity``."""
    return f"{folder}:{uidvalidity}:{uid}"


def make_cursor(folder: str, uidvalidity: int) -> str:
    """Return the stored cursor: the folder and the UIDVALIDITY its refs belong to."""
    return f"{folder}:{uidvalidity}"


def parse_ref(ref: str) -> tuple[str, int, int]:
    """Split a ref into (folder, UIDVALIDITY, UID); the folder may contain colons."""
    folder, validity, uid = ref.rsplit(":", 2)
    return folder, int(validity), int(uid)


def is_placeholder(raw: bytes) -> bool:
    """True for Exchange's stand-in for a message it could not convert for IMAP."""
    head = raw[:16384].split(b"\r\n\r\n", 1)[0]
    subject = BytesHeaderParser().parsebytes(head).get("Subject", "")
    return str(subject).strip().lower().startswith(PLACEHOLDER_SUBJECT)


class ImapBackend(IdleWaiting):
    """Reads one IMAP folder by UID; acks by moving mail out of it.

    ``sleep``/``clock`` are injectable; ``retries`` reconnects (with capped
    exponential backoff from ``backoff`` seconds) are tried before a
    :class:`BackendError` tells the runner to back off itself.
    """

    name = "imap"

    def __init__(
        self,
        settings: MailboxSettings,
        token_provider: TokenProvider | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        idle_rearm: float = IDLE_REARM_SECONDS,
        idle_watchdog: float = IDLE_WATCHDOG_SECONDS,
        idle_settle: float = IDLE_SETTLE_SECONDS,
        fetch_chunk: int = FETCH_CHUNK,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not settings.host:
            raise ValueError("mailbox.host is required for the imap backend")
        self.settings = settings
        self.host = settings.host
        self.port = settings.port or (993 if settings.ssl else 143)
        self.user = settings.username or settings.user or ""
        self.tokens = token_provider
        self.timeout, self.retries = timeout, retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.idle_rearm, self.idle_watchdog = idle_rearm, idle_watchdog
        self.idle_settle = min(idle_settle, idle_watchdog)
        self.fetch_chunk = fetch_chunk
        self.sleep, self.clock = sleep, clock
        self._client: IMAPClient | None = None
        self._selected: tuple[str, int] | None = None  # (folder, UIDVALIDITY) on this connection
        self._validity: dict[str, int] = {}  # last UIDVALIDITY seen per folder
        self._folders: set[str] = set()  # target folders known to exist
        self._idle_since: float | None = None  # IDLE is active on the connection
        self._idle_heard = 0.0
        self._settle_left, self._round = 0, idle_settle
        self._next_poll = 0.0

    # -- the MailboxBackend contract ----------------------------------------------------
    def fetch_new(
        self, cursor: str | None, limit: int, max_bytes: int = DEFAULT_BATCH_BYTES
    ) -> FetchResult:
        """Return up to ``limit`` mails (``max_bytes`` in all, at least one) still in the folder.

        Oldest UID first; sizes come from ``RFC822.SIZE`` before any body is fetched.

        Acknowledged mail leaves the folder, so the cursor only records the
        folder's UIDVALIDITY (``folder:UIDVALIDITY``, kept in the store): a change
        since the last run, even across a restart, is logged as a resync.
        """
        self._remember_cursor(cursor)
        result = self._run("fetch", lambda c: self._fetch(c, max(1, limit), max_bytes))
        self._next_poll = self.clock() + self.settings.poll_seconds
        return result

    def _remember_cursor(self, cursor: str | None) -> None:
        folder = self.settings.folder
        if not cursor or folder in self._validity:
            return
        name, _, validity = cursor.rpartition(":")
        if name == folder and validity.isdigit():
            self._validity[folder] = int(validity)

    def ack(self, ref: str, outcome: AckOutcome) -> None:
        """Move ``ref`` to the processed or quarantine folder; idempotent."""
        self.ack_many([ref], outcome)

    def ack_many(self, refs: list[str], outcome: AckOutcome) -> None:
        """Move a batch in one ``UID MOVE`` (or COPY + STORE + EXPUNGE) per folder; idempotent."""
        groups: dict[tuple[str, int], list[int]] = {}
        for ref in refs:
            try:
                folder, validity, uid = parse_ref(ref)
            except ValueError:
                log.error("imap ack: %r is not an IMAP ref; ignored", ref)
                continue
            groups.setdefault((folder, validity), []).append(uid)
        s = self.settings
        target = s.processed_folder if outcome is AckOutcome.PROCESSED else s.quarantine_folder
        for (folder, validity), uids in groups.items():
            what = refs[0] if len(refs) == 1 else f"{len(uids)} mail(s) of {folder}"
            self._run(
                "ack",
                lambda c, w=what, f=folder, v=validity, u=uids: self._ack(c, w, f, v, u, target),
            )

    def check(self) -> str:
        """Connect, log in, open the folder, create the target folders; one line back."""
        s = self.settings
        client = self._connect()
        try:
            if not client.folder_exists(s.folder):
                raise BackendError(f"folder {s.folder!r} does not exist for user {self.user}")
            try:
                info = client.select_folder(s.folder, readonly=True)
            except exceptions.IMAPClientAbortError:
                raise
            except exceptions.IMAPClientError as exc:
                raise BackendError(
                    f"folder {s.folder!r} cannot be opened (permission?): {_text(exc)}"
                ) from exc
            for name in (s.processed_folder, s.quarantine_folder):
                self._ensure_folder(client, name)
            caps = ", ".join(
                f"{c} {'yes' if client.has_capability(c) else 'no'}" for c in ("IDLE", "MOVE")
            )
            return (
                f"imap {self.user}@{self.host}:{self.port} ({security_label(self.settings)}, "
                f"{'XOAUTH2' if self.tokens else 'password'}): folder {s.folder!r} holds "
                f"{info.get(b'EXISTS', 0)} message(s), UIDVALIDITY {info.get(b'UIDVALIDITY')}; {caps}"
            )
        except LINK_ERRORS as exc:
            raise BackendError(self._describe(exc)) from exc
        finally:
            _logout(client)

    def close(self) -> None:
        """End IDLE and log out (errors ignored: the connection may be gone)."""
        client, self._client = self._client, None
        if client is None:
            return
        if self._idle_since is not None:
            with contextlib.suppress(Exception):
                client.idle_done()
        self._idle_since, self._selected = None, None
        _logout(client)

    # -- connection -----------------------------------------------------------------------
    def _run(self, what: str, op: Callable[[IMAPClient], T]) -> T:
        """Run ``op`` on a live connection, reconnecting with backoff when the link fails."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return op(self._ready())
            except ImapUnreachable as exc:
                error: BackendError = exc
            except LINK_ERRORS as exc:
                self._drop()
                error = ImapUnreachable(self._describe(exc))
            except exceptions.IMAPClientError as exc:
                if self._alive():
                    raise BackendError(f"IMAP {what} failed: {exc}") from exc
                self._drop()
                error = ImapUnreachable(f"connection to {self.host}:{self.port} lost: {exc}")
            if attempt < self.retries:
                log.warning("IMAP %s: %s; reconnecting in %.1fs", what, error, delay)
                self.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        raise error

    def _ready(self) -> IMAPClient:
        if self._client is None:
            self._client = self._connect()
            self._selected, self._idle_since = None, None
        elif self._idle_since is not None:
            self._end_idle(self._client)
        return self._client

    def _connect(self) -> IMAPClient:
        s = self.settings
        context = tls_context(self.settings.verify_tls)
        try:
            client = IMAPClient(
                self.host,
                self.port,
                ssl=s.ssl,
                ssl_context=context if s.ssl else None,
                timeout=self.timeout,
            )
        except LINK_ERRORS as exc:
            raise self._link_error(exc) from exc
        try:
            if s.starttls and not s.ssl:
                client.starttls(context)
            self._login(client)
        except exceptions.CapabilityError as exc:
            _shutdown(client)
            raise BackendError(f"{self.host}:{self.port} does not offer STARTTLS") from exc
        except LINK_ERRORS as exc:
            _shutdown(client)
            raise self._link_error(exc) from exc
        except BaseException:
            _shutdown(client)
            raise
        client.normalise_times = False  # INTERNALDATE with its zone; stored as UTC
        log.info(
            "IMAP connected to %s:%s as %s (%s)",
            self.host,
            self.port,
            self.user,
            security_label(self.settings),
        )
        return client

    def _login(self, client: IMAPClient) -> None:
        if self.tokens is None:
            if self.settings.password is None:
                raise BackendError(f"no password or oauth2 configured for user {self.user}")
            try:
                client.login(self.user, self.settings.password.get_secret_value())
            except exceptions.LoginError as exc:
                raise BackendError(f"authentication failed for user {self.user}: {exc}") from None
            return
        for attempt in (1, 2):
            token = self.tokens.token()
            try:
                client.oauth2_login(self.user, token)
                return
            except exceptions.LoginError as exc:
                # An expired or revoked token: drop it and try once with a fresh one.
                log.info(
                    "IMAP XOAUTH2 login for %s refused (attempt %s): %s", self.user, attempt, exc
                )
                self.tokens.invalidate()
        raise BackendError(f"authentication failed for user {self.user} (XOAUTH2 token refused)")

    def _alive(self) -> bool:
        try:
            assert self._client is not None
            self._client.noop()
            return True
        except Exception:  # any failure of a NOOP means the link is unusable: reconnect
            return False

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._selected, self._idle_since = None, None
        if client is not None:
            _shutdown(client)

    def _link_error(self, exc: BaseException) -> BackendError:
        # Certificate and protocol mismatches do not heal by retrying.
        message = self._describe(exc)
        is_tls = isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError)
        return BackendError(message) if is_tls else ImapUnreachable(message)

    def _describe(self, exc: BaseException) -> str:
        lost = f"connection to {self.host}:{self.port} lost: {exc}"
        return describe_connection_error(exc, self.host, self.port, lost)

    # -- fetch and ack --------------------------------------------------------------------------
    def _select(self, client: IMAPClient, folder: str, *, force: bool = False) -> int:
        if not force and self._selected and self._selected[0] == folder:
            return self._selected[1]
        info = client.select_folder(folder)
        validity = int(info[b"UIDVALIDITY"])
        known = self._validity.get(folder)
        if known is not None and known != validity:
            log.warning(
                "IMAP UIDVALIDITY of %s changed from %s to %s: its mail is fetched again "
                "under new refs (the ledger's content key drops duplicates)",
                folder,
                known,
                validity,
            )
        self._validity[folder] = validity
        self._selected = (folder, validity)
        return validity

    def _fetch(self, client: IMAPClient, limit: int, max_bytes: int) -> FetchResult:
        folder = self.settings.folder
        validity = self._select(client, folder, force=True)
        uids = sorted(client.search(["NOT", "DELETED"]))
        mails: list[RawMail] = []
        notes: list[str] = []
        pos = total = 0
        while pos < len(uids) and len(mails) < limit:
            window = uids[pos : pos + min(self.fetch_chunk, limit - len(mails))]
            sizes = client.fetch(window, ["RFC822.SIZE"])
            chunk = []
            for uid in window:  # only the bodies that fit the byte bound; the first always
                size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
                if (pos or chunk) and total + size > max_bytes:
                    break
                chunk.append(uid)
                total += size
            if not chunk:
                break
            pos += len(chunk)
            answer = client.fetch(chunk, ["BODY.PEEK[]", "INTERNALDATE"])
            for uid in chunk:
                mail = self._mail(make_ref(folder, validity, uid), answer.get(uid, {}))
                if mail is None:
                    notes.append(f"{make_ref(folder, validity, uid)} skipped: no readable body")
                else:
                    mails.append(mail)
        cursor = make_cursor(folder, validity)
        return FetchResult(mails=mails, cursor=cursor, more=pos < len(uids), notes=notes)

    @staticmethod
    def _mail(ref: str, data: dict[bytes, Any]) -> RawMail | None:
        raw = data.get(b"BODY[]")
        if not raw:
            log.warning("IMAP %s: FETCH returned no body; trying again next poll", ref)
            return None
        if is_placeholder(raw):
            log.warning(
                "IMAP %s: the server sent its 'Retrieval using the IMAP4 protocol failed' "
                "stand-in instead of the message; trying again next poll",
                ref,
            )
            return None
        when = data.get(b"INTERNALDATE")
        if isinstance(when, datetime) and when.tzinfo is not None:
            when = when.astimezone(UTC).replace(tzinfo=None)
        return RawMail(
            ref=ref, raw=bytes(raw), received_at=when if isinstance(when, datetime) else None
        )

    def _ack(
        self, client: IMAPClient, ref: str, folder: str, validity: int, uids: list[int], target: str
    ) -> None:
        """Move ``uids`` of ``folder`` to ``target``."""
        current = self._select(client, folder)
        if current != validity:
            log.info(
                "IMAP ack %s skipped: %s now has UIDVALIDITY %s; the mail is fetched again",
                ref,
                folder,
                current,
            )
            return
        self._ensure_folder(client, target)
        try:
            self._transfer(client, uids, target)
        except exceptions.IMAPClientAbortError:
            raise
        except exceptions.IMAPClientError as exc:
            if "TRYCREATE" not in str(exc):
                raise
            self._folders.discard(target)  # deleted behind our back
            self._ensure_folder(client, target)
            self._transfer(client, uids, target)
        log.debug("IMAP %s moved to %s", ref, target)

    @staticmethod
    def _transfer(client: IMAPClient, uids: list[int], target: str) -> None:
        if client.has_capability("MOVE"):
            client.move(uids, target)  # UIDs already gone move nothing: fine
            return
        flags = client.get_flags(uids)
        # Not copied yet (a copy+flag is one step for us); gone ones were acknowledged before.
        fresh = [u for u in uids if u in flags and DELETED not in flags[u]]
        if fresh:
            client.copy(fresh, target)
            client.add_flags(fresh, [DELETED], silent=True)
        present = [u for u in uids if u in flags]
        if not present:
            return
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(present)
        else:
            client.expunge()  # without UIDPLUS this removes every \Deleted mail in the folder

    def _ensure_folder(self, client: IMAPClient, name: str) -> None:
        if name in self._folders:
            return
        if not client.folder_exists(name):
            try:
                client.create_folder(name)
            except exceptions.IMAPClientAbortError:
                raise
            except exceptions.IMAPClientError as exc:
                if not client.folder_exists(name):  # else another worker just made it
                    raise BackendError(
                        f"folder {name!r} missing and cannot be created: {exc}"
                    ) from exc
            log.info("IMAP created folder %s", name)
        self._folders.add(name)


def _text(exc: BaseException) -> str:
    """The server's answer as text (imapclient wraps the raw bytes)."""
    return str(
        exc.args[0].decode("utf-8", "replace")
        if exc.args and isinstance(exc.args[0], bytes)
        else exc
    )


def _shutdown(client: IMAPClient) -> None:
    with contextlib.suppress(Exception):
        client.shutdown()


def _logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # a link that cannot even say goodbye is closed the hard way
        _shutdown(client)
