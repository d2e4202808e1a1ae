"""Waiting for new IMAP mail: IDLE when the server offers it, else polling.

RFC 2177 lets servers drop an IDLE after 30 minutes, so IDLE is re-issued every
:data:`IDLE_REARM_SECONDS`; a link silent for :data:`IDLE_WATCHDOG_SECONDS` is
proven alive with DONE + NOOP (a NAT box may have forgotten it without a word).
Mail that lands between the last SEARCH and IDLE may never be announced
(Dovecot then reports it only with its next change, up to 30 s later), so a
NOOP precedes IDLE and the watchdog rounds come every
:data:`IDLE_SETTLE_SECONDS` for :data:`IDLE_SETTLE_ROUNDS` rounds after mail
was last handled (each round's DONE + NOOP + IDLE opens the same window again),
then at doubling intervals up to the full watchdog. A lost link ends the wait with True: the next fetch
reconnects and picks up whatever arrived meanwhile.
"""

from __future__ import annotations

import imaplib
import logging
from collections.abc import Callable
from typing import Any

from imapclient import IMAPClient, exceptions

from config.schema import MailboxSettings

log = logging.getLogger(__name__)

IDLE_REARM_SECONDS = 600.0  # RFC 2177: re-issue IDLE well within the servers' 29-30 minutes
IDLE_WATCHDOG_SECONDS = 120.0  # silent this long in IDLE: NOOP to prove the link still works
IDLE_SETTLE_SECONDS = 1.0  # watchdog rounds this often right after mail was handled
IDLE_SETTLE_ROUNDS = 10  # ... for this many rounds, then doubling up to the watchdog
# Socket-level failures: imaplib's abort (= IMAPClientAbortError), OSError (incl. TLS, timeouts).
LINK_ERRORS = (OSError, imaplib.IMAP4.abort)


def has_new_mail(responses: list[Any]) -> bool:
    """True when untagged responses announce new messages (EXISTS, RECENT > 0)."""
    return any(
        isinstance(r, tuple)
        and len(r) >= 2
        and isinstance(r[0], int)
        and (r[1] == b"EXISTS" or (r[1] == b"RECENT" and r[0] > 0))
        for r in responses
    )


class IdleWaiting:
    """``wait_for_new`` for :class:`daemon.backends.imap.ImapBackend` (its connection state)."""

    settings: MailboxSettings
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    idle_rearm: float
    idle_watchdog: float
    idle_settle: float
    _client: IMAPClient | None
    _idle_since: float | None
    _idle_heard: float
    _settle_left: int
    _round: float
    _next_poll: float
    _run: Callable[..., Any]
    _select: Callable[..., int]
    _drop: Callable[[], None]
    _describe: Callable[[BaseException], str]

    def wait_for_new(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds in IDLE (or polling); True when mail may be waiting."""
        timeout = max(0.0, timeout)
        if not self.settings.idle:
            return self._poll_wait(timeout)
        if self._client is not None and self._idle_since is not None:
            client: IMAPClient | None = self._client  # still idling since the last call
        else:
            client, arrived = self._run("idle", self._start_idle)
            if arrived:
                return True
        if client is None:
            return self._poll_wait(timeout)
        try:
            return self._idle_wait(client, timeout)
        except (*LINK_ERRORS, exceptions.IMAPClientError) as exc:
            # The next fetch reconnects and picks up whatever arrived meanwhile.
            log.info("IMAP IDLE connection lost (%s); fetching again", self._describe(exc))
            self._drop()
            return True

    def _start_idle(self, client: IMAPClient) -> tuple[IMAPClient | None, bool]:
        """Enter IDLE; (client or None when IDLE is not offered, True when mail already came).

        Mail that lands between the last SEARCH and IDLE may never be announced
        (Dovecot, for one, reports it only with the next change): a NOOP just
        before IDLE, and a first watchdog round after :data:`IDLE_SETTLE_SECONDS`
        instead of the full interval, catch it.
        """
        if not client.has_capability("IDLE"):
            return None, False
        self._select(client, self.settings.folder)
        _, responses = client.noop()
        if has_new_mail(list(responses)):
            return client, True
        client.idle()
        self._idle_since = self.clock()
        self._settle_left, self._round = IDLE_SETTLE_ROUNDS, self.idle_settle
        self._next_round_in(self._round)
        return client, False

    def _next_round_in(self, seconds: float) -> None:
        """Schedule the next watchdog round ``seconds`` from now (it counts from ``_idle_heard``)."""
        self._idle_heard = self.clock() - self.idle_watchdog + seconds

    def _end_idle(self, client: IMAPClient) -> list[Any]:
        self._idle_since = None
        _, responses = client.idle_done()
        return list(responses)

    def _idle_wait(self, client: IMAPClient, timeout: float) -> bool:
        deadline = self.clock() + timeout
        while True:
            now = self.clock()
            assert self._idle_since is not None
            if (
                now - self._idle_since >= self.idle_rearm
                or now - self._idle_heard >= self.idle_watchdog
            ):
                if self._rearm(client):
                    return True
                continue
            remaining = deadline - now
            if remaining <= 0:
                return False
            step = min(
                remaining,
                self._idle_since + self.idle_rearm - now,
                self._idle_heard + self.idle_watchdog - now,
            )
            responses = client.idle_check(timeout=step)
            if responses:
                self._idle_heard = self.clock()
                if has_new_mail(responses):
                    self._end_idle(client)
                    return True
            elif step >= 0.05 and self.clock() - now < step / 2 and self._rearm(client):
                # idle_check returns at once, empty-handed, when the socket hit EOF:
                # the re-arm (DONE + NOOP) raises then, or reports what it saw.
                return True

    def _rearm(self, client: IMAPClient) -> bool:
        """DONE + NOOP (the watchdog) + IDLE again; True when new mail was announced."""
        responses = self._end_idle(client)
        _, noop_responses = client.noop()
        if has_new_mail(responses) or has_new_mail(list(noop_responses)):
            return True
        client.idle()
        self._idle_since = self.clock()
        # Each re-entry opens the same window again: keep settling a while, then back off.
        if self._settle_left > 0:
            self._settle_left -= 1
        else:
            self._round = min(self._round * 2, self.idle_watchdog)
        self._next_round_in(self._round)
        return False

    def _poll_wait(self, timeout: float) -> bool:
        wait = min(timeout, max(0.0, self._next_poll - self.clock()))
        if wait > 0:
            self.sleep(wait)
        if self.clock() < self._next_poll:
            return False
        self._next_poll = self.clock() + self.settings.poll_seconds
        return True
