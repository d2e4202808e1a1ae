"""Exchange Web Services mailbox backend and transport (exchangelib, on-premises Exchange).

Exchange Online blocks EWS for apps not on the tenant's allow-list from
2026-10-01 and removes it on 2027-04-01: use the Graph backend there. This one
serves on-premises Exchange with a username and password (NTLM when the
username is ``DOMAIN\\user``, else Basic).

The folder itself is the queue: everything still in it is unprocessed, because
``ack`` moves mail out. So there is no cursor; a mail fetched but not yet acked
is fetched again, and the runner's ledger recognises it. The server version is
pinned (Exchange 2016 schema) and autodiscover is off, so the first request is
real work, not probing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    NTLM,
    Account,
    Configuration,
    Credentials,
    Folder,
    Message,
    Version,
)
from exchangelib import errors as ews_errors
from exchangelib.protocol import BaseProtocol, NoVerifyHTTPAdapter
from exchangelib.version import EXCHANGE_2016

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

log = logging.getLogger(__name__)

# Refusals that concern the message itself: sending it again cannot help.
PERMANENT_SEND_ERRORS: tuple[type[Exception], ...] = (
    ews_errors.ErrorInvalidRecipients,
    ews_errors.ErrorInvalidSmtpAddress,
    ews_errors.ErrorMessageSizeExceeded,
    ews_errors.ErrorMimeContentConversionFailed,
    ews_errors.ErrorMimeContentInvalid,
)


class _RedactAuthorization(logging.Filter):
    """exchangelib logs request headers, Authorization included, at DEBUG: blank that value."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict) and args.get("request_headers"):
            headers = {
                k: "[redacted]" if str(k).lower() == "authorization" else v
                for k, v in dict(args["request_headers"]).items()
            }
            record.args = {**args, "request_headers": headers}
        return True


_EXCHANGELIB_LOG = logging.getLogger("exchangelib.util")
if not any(isinstance(f, _RedactAuthorization) for f in _EXCHANGELIB_LOG.filters):
    _EXCHANGELIB_LOG.addFilter(_RedactAuthorization())


class EwsConnection:
    """One mailbox over EWS: builds the exchangelib Account lazily, names errors plainly."""

    def __init__(
        self, endpoint: str, username: str, password: str, address: str, verify_tls: bool
    ) -> None:
        self.endpoint, self.username, self.address = endpoint, username, address
        self._password = password
        self._verify_tls = verify_tls
        self._account: Account | None = None

    @property
    def account(self) -> Account:
        """The exchangelib Account (no network traffic until a folder or item is used)."""
        if self._account is None:
            if not self._verify_tls:
                # exchangelib only offers this switch process-wide: every EWS endpoint in this
                # process then skips certificate checks. Only set when asked for.
                log.warning("EWS TLS certificate verification is off (verify_tls = false)")
                BaseProtocol.HTTP_ADAPTER_CLS = NoVerifyHTTPAdapter
            config = Configuration(
                service_endpoint=self.endpoint,
                credentials=Credentials(self.username, self._password),
                auth_type=NTLM if "\\" in self.username else BASIC,
                version=Version(build=EXCHANGE_2016),
            )
            self._account = Account(
                primary_smtp_address=self.address,
                config=config,
                autodiscover=False,
                access_type=DELEGATE,
            )
        return self._account

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Turn exchangelib and network failures during ``what`` into plain BackendErrors."""
        try:
            yield
        except BackendError:
            raise
        except ews_errors.UnauthorizedError as e:
            raise BackendError(
                f"EWS authentication failed for {self.username} at {self.endpoint} ({what})"
            ) from e
        except ews_errors.ErrorAccessDenied as e:
            raise BackendError(f"EWS permission denied for {self.username} ({what}): {e}") from e
        except ews_errors.ErrorNonExistentMailbox as e:
            raise BackendError(f"EWS has no mailbox {self.address} ({what}): {e}") from e
        except ews_errors.ErrorFolderNotFound as e:
            raise BackendError(f"EWS folder missing in {self.address} ({what}): {e}") from e
        except (ews_errors.RateLimitError, ews_errors.ErrorServerBusy) as e:
            raise BackendError(f"EWS server is busy (throttled) during {what}; retry later") from e
        except ews_errors.ErrorTimeoutExpired as e:  # exchangelib's wrapper for connection errors
            raise BackendError(f"cannot reach EWS endpoint {self.endpoint} ({what}): {e}") from e
        except ews_errors.ResponseMessageError as e:
            raise BackendError(f"EWS refused {what}: {e}") from e
        except (ews_errors.TransportError, requests.exceptions.RequestException, OSError) as e:
            if isinstance(e, requests.exceptions.SSLError) or "certificate" in str(e).lower():
                raise BackendError(
                    f"TLS verification failed for EWS endpoint {self.endpoint}: {e}"
                ) from e
            raise BackendError(f"cannot reach EWS endpoint {self.endpoint} ({what}): {e}") from e
        except ews_errors.EWSError as e:
            raise BackendError(f"EWS error during {what}: {e}") from e

    def folder(self, path: str, *, create: bool) -> Folder:
        """Resolve ``path`` ("Inbox", "Processed", "Inbox/Sub"); new folders go under the top of
        the mailbox (beside the Inbox), or under the Inbox for "Inbox/..."."""
        parts = [p for p in path.split("/") if p]
        if not parts:
            raise BackendError(f"empty EWS folder name {path!r}")
        account = self.account
        if parts[0].lower() == "inbox":
            folder, parts = account.inbox, parts[1:]
        else:
            folder = account.msg_folder_root
        for name in parts:
            try:
                folder = folder // name
            except ews_errors.ErrorFolderNotFound:
                if not create:
                    raise BackendError(
                        f"folder {name!r} not found in mailbox {self.address}"
                    ) from None
                folder = Folder(parent=folder, name=name, folder_class="IPF.Note")
                folder.save()
                log.info("created EWS folder %r in %s", name, self.address)
        return folder

    def close(self) -> None:
        """Close this account's HTTP sessions."""
        if self._account is not None:
            self._account.protocol.close()
            self._account = None


def _connection(
    endpoint: str | None, host: str | None, port: int | None, username: str | None, password: Any
) -> tuple[str, str, str]:
    url = endpoint or (
        f"https://{host}{f':{port}' if port else ''}/EWS/Exchange.asmx" if host else None
    )
    if not url:
        raise BackendError("ews_url: the ews backend needs ews_url (or host)")
    if not username or password is None:
        raise BackendError("username/password: the ews backend needs both")
    return url, username, password.get_secret_value()


def _address(user: str | None, username: str, fallback: str) -> str:
    return user or (username if "@" in username else fallback)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value.timestamp(), tz=UTC)


class EwsBackend:
    """Reads the support mailbox over EWS (see the module docstring)."""

    name = "ews"

    def __init__(self, settings: MailboxSettings) -> None:
        url, username, password = _connection(
            settings.ews_url, settings.host, settings.port, settings.username, settings.password
        )
        address = _address(settings.user, username, settings.support_address)
        self.settings = settings
        self.connection = EwsConnection(url, username, password, address, settings.verify_tls)
        self._folders: dict[str, Folder] = {}

    def _folder(self, path: str, *, create: bool) -> Folder:
        if path.lower() not in self._folders:
            self._folders[path.lower()] = self.connection.folder(path, create=create)
        return self._folders[path.lower()]

    def fetch_new(
        self, cursor: str | None, limit: int, max_bytes: int = DEFAULT_BATCH_BYTES
    ) -> FetchResult:
        """Return the oldest ``limit`` mails in the folder, ``max_bytes`` in all (at least one).

        Item sizes are read first (FindItem); only the MIME of the items that fit is
        fetched. ``cursor`` is unused: the folder is the queue.
        """
        notes: list[str] = []
        mails: list[RawMail] = []
        with self.connection.errors("fetch mail"):
            folder = self._folder(self.settings.folder, create=False)
            heads = folder.all().only("id", "changekey", "size").order_by("datetime_received")
            picked, total, full = [], 0, False
            for head in heads[:limit]:
                size = int(getattr(head, "size", 0) or 0)
                if picked and total + size > max_bytes:
                    full = True
                    break
                picked.append((head.id, head.changekey))
                total += size
            fields = ["mime_content", "datetime_received"]
            items = list(self.connection.account.fetch(ids=picked, only_fields=fields))
        for item in items:
            if isinstance(item, Exception) or not item.mime_content:
                note = f"EWS item without MIME content skipped: {item if isinstance(item, Exception) else item.id}"
                log.warning("%s", note)
                notes.append(note)
                continue
            mails.append(RawMail(item.id, bytes(item.mime_content), _utc(item.datetime_received)))
        return FetchResult(mails, None, more=full or len(picked) >= limit, notes=notes)

    def ack(self, ref: str, outcome: AckOutcome) -> None:
        """Move ``ref`` to the processed or quarantine folder; an item already gone is fine."""
        self.ack_many([ref], outcome)

    def ack_many(self, refs: list[str], outcome: AckOutcome) -> None:
        """Move ``refs`` in one ``MoveItem`` request; items already gone are fine."""
        name = (
            self.settings.quarantine_folder
            if outcome is AckOutcome.QUARANTINED
            else self.settings.processed_folder
        )
        try:
            with self.connection.errors("move mail"):
                dest = self._folder(name, create=True)
                ids = [(ref, None) for ref in refs]
                results = self.connection.account.bulk_move(ids=ids, to_folder=dest)
            for ref, result in zip(refs, results, strict=False):
                if isinstance(result, ews_errors.ErrorItemNotFound):
                    log.info("EWS item %s was already moved; ack is a no-op", ref)
                elif isinstance(result, Exception):
                    raise BackendError(f"EWS refused to move {ref} to {name!r}: {result}")
        except BackendError:
            self._folders.pop(name.lower(), None)  # the folder may have been deleted or renamed
            raise

    def check(self) -> str:
        """Log in, open the folder and report its size; raise BackendError in plain words."""
        with self.connection.errors("check mailbox"):
            folder = self._folder(self.settings.folder, create=False)
            folder.refresh()
        return (
            f"ews: {self.connection.address} at {self.connection.endpoint}: folder "
            f"{self.settings.folder!r} readable, {folder.total_count} message(s)"
        )

    def close(self) -> None:
        """Release connections."""
        self.connection.close()
        self._folders.clear()


class EwsTransport:
    """Sends outgoing mail over EWS from its MIME (CreateItem, SendAndSaveCopy to Sent Items).

    Uses ``outbound.ews_url`` and outbound credentials when set, else the mailbox's.
    """

    name = "ews"

    def __init__(self, settings: OutboundSettings, mailbox: MailboxSettings) -> None:
        own = settings.ews_url is not None
        username = settings.username or mailbox.username
        password = settings.password or mailbox.password
        url, username, secret = _connection(
            settings.ews_url or mailbox.ews_url, mailbox.host, mailbox.port, username, password
        )
        address = settings.user or mailbox.user or settings.from_address
        verify = settings.verify_tls if own else mailbox.verify_tls
        self.connection = EwsConnection(url, username, secret, address, verify)

    def send(self, mail: OutgoingMail) -> None:
        """Send ``mail``; PermanentSendError when Exchange refuses the message itself."""
        raw = add_missing_bcc(mail.raw, mail.recipients)
        try:
            with self.connection.errors(f"send {mail.message_id}"):
                account = self.connection.account
                Message(account=account, folder=account.sent, mime_content=raw).send_and_save()
        except BackendError as e:
            if isinstance(e.__cause__, PERMANENT_SEND_ERRORS):
                raise PermanentSendError(str(e)) from e.__cause__
            raise

    def check(self) -> str:
        """Log in and open Sent Items (without sending anything)."""
        with self.connection.errors("check sending mailbox"):
            self.connection.account.sent.refresh()
        return f"ews transport: {self.connection.address} at {self.connection.endpoint} reachable"

    def close(self) -> None:
        """Release connections."""
        self.connection.close()
