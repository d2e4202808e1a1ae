"""The channel outbox: rows written with the ticket's change, POSTed after the commit.

Retries follow the mail outbox (``daemon.outbox.OutboxSender``): a 4xx answer
is final (except 429 Too Many Requests), 5xx, timeouts and refused connections
are retried with doubling backoff (at least what ``Retry-After`` asks), and a
row is ``failed`` after the channel's ``max_attempts``.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.errors import ServiceError
from config.schema import PRIORITIES, ChannelSettings, Settings
from daemon.channels.formats import build
from daemon.clock import Clock
from daemon.store.models import ChannelMessage, Ticket

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

BACKOFF_CAP = timedelta(hours=1)


def wants(channel: ChannelSettings, event: str, ticket: Ticket) -> bool:
    """Whether ``channel`` is told of ``event`` on ``ticket`` (its events, its min_priority)."""
    if event not in channel.events:
        return False
    if channel.min_priority is None or ticket.priority not in PRIORITIES:
        return True
    return PRIORITIES.index(ticket.priority) <= PRIORITIES.index(channel.min_priority)


def announce(
    session: Session, settings: Settings, event: str, ticket: Ticket, text: str, at: datetime
) -> int:
    """Queue ``event`` on ``ticket`` for every channel that wants it; return the rows added.

    Runs in the caller's transaction, so the notification exists exactly when
    the change it announces does. Nothing is sent here.
    """
    added = 0
    for channel in settings.channels:
        if wants(channel, event, ticket):
            session.flush()  # a ticket added in this transaction goes in before its rows
            for request in build(channel, event, ticket, text, at):
                session.add(_row(channel, event, ticket, request, at))
                added += 1
    return added


def _row(channel: ChannelSettings, event: str, ticket: Ticket, request, at: datetime):
    return ChannelMessage(
        channel=channel.name,
        kind=channel.kind,
        event=event,
        ticket_id=ticket.id,
        url=request.url,
        content_type=request.content_type,
        body=request.body,
        status="pending",
        attempts=0,
        last_error="",
        created_at=at,
        next_attempt_at=at,
    )


class SendFailed(ServiceError):
    """A POST failed; ``final`` when retrying cannot help; ``wait`` is Retry-After."""

    def __init__(self, message: str, final: bool, wait: float = 0) -> None:
        super().__init__(message)
        self.final = final
        self.wait = wait


class ChannelSender:
    """Sends due channel rows; one lock per process, row locks across processes."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings, clock: Clock) -> None:
        self.factory = factory
        self.channels = {c.name: c for c in settings.channels}
        self.clock = clock
        self._http: Any = None
        self._lock = threading.Lock()

    @property
    def http(self):
        """The HTTP session, made on first use: ``requests`` costs about 16 MiB of memory,
        which a desk without channels should not pay."""
        if self._http is None:
            import requests

            self._http = requests.Session()
        return self._http

    def send_due(self, limit: int = 200) -> int:
        """Send every due row; return how many were delivered."""
        if not self.channels:
            return 0
        with self._lock:
            return sum(self._send_one(row_id) for row_id in self._due_ids(limit))

    def _due_ids(self, limit: int) -> list[int]:
        now = self.clock.now()
        stmt = select(ChannelMessage.id).where(
            ChannelMessage.status == "pending", ChannelMessage.next_attempt_at <= now
        )
        with self.factory() as session:
            return list(session.scalars(stmt.order_by(ChannelMessage.id).limit(limit)))

    def _send_one(self, row_id: int) -> int:
        with self.factory() as session, session.begin():
            stmt = select(ChannelMessage).where(ChannelMessage.id == row_id)
            row = session.scalars(stmt.with_for_update(skip_locked=True)).first()
            if row is None or row.status != "pending":
                return 0
            try:
                self._post(row)
            except SendFailed as exc:
                self._failed(row, exc)
                return 0
            row.status, row.sent_at, row.attempts = "sent", self.clock.now(), row.attempts + 1
        log.info("channel %s: %s of %s sent", row.channel, row.event, row.ticket_id)
        return 1

    def _post(self, row: ChannelMessage) -> None:
        channel = self.channels.get(row.channel)
        if channel is None:
            raise SendFailed(f"channel {row.channel!r} is no longer configured", final=True)
        headers = {"Content-Type": f"{row.content_type}; charset=utf-8"}
        try:
            answer = self.http.post(
                row.url,
                data=row.body.encode("utf-8"),
                headers=headers,
                auth=twilio_auth(channel) if channel.kind == "twilio" else None,
                timeout=channel.timeout_seconds,
                allow_redirects=False,
            )
        except _request_errors() as exc:  # refused, reset, timed out: try again later
            raise SendFailed(f"{type(exc).__name__}: {exc}", final=False) from exc
        _judge(answer)

    def _failed(self, row: ChannelMessage, exc: SendFailed) -> None:
        row.attempts += 1
        row.last_error = str(exc)[:2000]
        limit = self.channels[row.channel].max_attempts if row.channel in self.channels else 1
        if exc.final or row.attempts >= limit:
            row.status = "failed"
            log.error("channel %s: %s of %s failed: %s", row.channel, row.event, row.ticket_id, exc)
            return
        delay = min(timedelta(seconds=30 * 2 ** (row.attempts - 1)), BACKOFF_CAP)
        row.next_attempt_at = self.clock.now() + max(delay, timedelta(seconds=exc.wait))
        log.warning("channel %s: %s; retry in %s", row.channel, exc, delay)


def _request_errors() -> type[Exception]:
    import requests

    return requests.RequestException


def _judge(answer: requests.Response) -> None:
    """Raise :class:`SendFailed` unless the endpoint accepted the request (2xx)."""
    if 200 <= answer.status_code < 300:
        return
    detail = f"HTTP {answer.status_code}: {answer.text[:300]}"
    retry = answer.status_code == 429 or answer.status_code >= 500
    raise SendFailed(detail, final=not retry, wait=_retry_after(answer) if retry else 0)


def _retry_after(answer: requests.Response) -> float:
    try:
        return min(float(answer.headers.get("Retry-After", 0)), BACKOFF_CAP.total_seconds())
    except ValueError:  # an HTTP date: the doubling backoff is good enough
        return 0


def twilio_auth(channel: ChannelSettings) -> tuple[str, str]:
    """HTTP basic auth for Twilio: the account SID and its auth token (config or env)."""
    token = channel.auth_token.get_secret_value() if channel.auth_token else None
    token = token or os.environ.get(channel.auth_token_env, "")
    if not token:
        raise SendFailed(f"no Twilio auth token: set auth_token or ${channel.auth_token_env}", True)
    return channel.account_sid or "", token
