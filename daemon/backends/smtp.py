"""SMTP transport (smtplib): SSL or STARTTLS, password or XOAUTH2, a send rate cap.

The cap (``outbound.rate_per_minute``, Exchange Online's 30) never blocks for
long: when the next slot is more than a second away, ``send`` raises
:class:`RateCapped` and the outbox keeps the rest for later.

Errors are sorted by who must act: a 4xx answer, a refused or dropped
connection or a timeout raises :class:`BackendError` (the outbox retries with
backoff); a 5xx answer to the message raises :class:`PermanentSendError` with
the server's code and text (recorded on the outbox row, not retried). 530/535
(authentication) are the configuration's fault, not the message's: retryable.

One connection is reused across sends and checked with NOOP before reuse;
the raw bytes go out as rendered (``sendmail``, no re-serialising) except
that bare LF line ends become CRLF: smtplib sends bytes unchanged, and a
message without CRLF is one over-long line to a strict server (500).
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import time
from collections import deque
from collections.abc import Callable

from config.schema import OutboundSettings
from daemon.backends.base import (
    BackendError,
    OutgoingMail,
    PermanentSendError,
    RateCapped,
    describe_connection_error,
    security_label,
    tls_context,
)
from daemon.backends.oauth import TokenProvider, xoauth2_string

log = logging.getLogger(__name__)

RATE_WINDOW = 60.0  # seconds: Exchange Online counts 30 messages per minute per mailbox
AUTH_CODES = frozenset({530, 535})  # "authentication required/failed": not this message's fault
MAX_BLOCK = 1.0  # seconds the cap may hold a send; a longer wait leaves the rest for later
FRESH_SECONDS = 5.0  # a connection used this recently is reused without a NOOP first
BARE_LF = re.compile(rb"(?<!\r)\n")


class _LinkLost(BackendError):
    """The connection broke mid-transaction: nothing was accepted, worth one new connection."""


class SmtpTransport:
    """Sends outgoing mail over one reused SMTP connection, at most ``rate_per_minute``."""

    name = "smtp"

    def __init__(
        self,
        settings: OutboundSettings,
        token_provider: TokenProvider | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not settings.host:
            raise ValueError("outbound.host is required for the smtp transport")
        self.settings = settings
        self.host = settings.host
        self.port = settings.port or (465 if settings.ssl else 587 if settings.starttls else 25)
        self.user = settings.username or settings.user or settings.from_address
        self.tokens = token_provider
        self.clock, self.sleep = clock, sleep
        self._smtp: smtplib.SMTP | None = None
        self._sent: deque[float] = deque()  # clock() of recent sends, for the rate cap
        self._used_at = float("-inf")  # clock() when the connection last answered

    # -- the Transport contract ----------------------------------------------------------
    def send(self, mail: OutgoingMail) -> None:
        """Send ``mail.raw`` (CRLF line ends) to ``mail.recipients``; see the module doc for errors."""
        self._wait_for_rate()
        reused = self._smtp is not None
        try:
            refused = self._transmit(self._connection(), mail)
        except _LinkLost:
            if not reused:
                raise
            # The kept connection died while idle (server timeout): once more on a new one.
            refused = self._transmit(self._connection(), mail)
        self._sent.append(self.clock())
        self._used_at = self.clock()
        if refused:
            # Already accepted for the others: a retry would send them a duplicate.
            log.warning("SMTP %s: some recipients refused: %s", mail.message_id, _codes(refused))
        log.info("SMTP sent %s to %d recipient(s)", mail.message_id, len(mail.recipients))

    def _transmit(self, smtp: smtplib.SMTP, mail: OutgoingMail) -> dict[str, tuple[int, bytes]]:
        """One SMTP transaction; server answers and lost links mapped to our errors."""
        try:
            return smtp.sendmail(
                mail.sender, list(mail.recipients), crlf(mail.raw), self._mail_options(smtp, mail)
            )
        except smtplib.SMTPRecipientsRefused as exc:
            raise _refused(mail, exc.recipients) from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:
                self._drop()
            raise _by_code(mail, exc.smtp_code, exc.smtp_error) from exc
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            raise _LinkLost(f"{self._where()} dropped the connection while sending: {exc}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise _LinkLost(f"sending to {self._where()} failed: {self._describe(exc)}") from exc

    def check(self) -> str:
        """Connect, TLS, authenticate; one line back, or BackendError in plain words."""
        smtp = self._connect()
        try:
            auth = f"as {self.user} ({'XOAUTH2' if self.tokens else 'password'})"
            return (
                f"smtp {self._where()} ({security_label(self.settings)}): authenticated "
                f"{auth if self._authenticates() else 'no: none configured'}; "
                f"at most {self.settings.rate_per_minute} message(s) per minute"
            )
        finally:
            _quit(smtp)

    def close(self) -> None:
        """QUIT the reused connection (errors ignored)."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            _quit(smtp)

    # -- rate cap -------------------------------------------------------------------------
    def _wait_for_rate(self) -> None:
        limit = self.settings.rate_per_minute
        while True:
            now = self.clock()
            while self._sent and now - self._sent[0] >= RATE_WINDOW:
                self._sent.popleft()
            if len(self._sent) < limit:
                return
            delay = RATE_WINDOW - (now - self._sent[0])
            if delay > MAX_BLOCK:
                # The outbox keeps the rest for later: the runner goes on with mail meanwhile.
                raise RateCapped(f"SMTP rate cap ({limit}/min) reached", delay)
            self.sleep(delay)

    # -- connection -----------------------------------------------------------------------
    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            if self.clock() - self._used_at < FRESH_SECONDS:
                return self._smtp  # just used: a NOOP per message would double the round trips
            try:
                if self._smtp.noop()[0] == 250:
                    return self._smtp
            except (OSError, smtplib.SMTPException):
                pass  # closed by the server while idle: reconnect below
            self._drop()
        self._smtp = self._connect()
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = tls_context(self.settings.verify_tls)
        try:
            if s.ssl:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=s.timeout_seconds, context=context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=s.timeout_seconds)
        except (OSError, smtplib.SMTPException) as exc:
            raise BackendError(self._describe(exc)) from exc
        try:
            smtp.ehlo_or_helo_if_needed()
            if s.starttls and not s.ssl:
                smtp.starttls(context=context)
                smtp.ehlo()
            self._authenticate(smtp)
        except smtplib.SMTPNotSupportedError as exc:
            _close(smtp)
            raise BackendError(f"{self._where()}: {exc}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            _close(smtp)
            raise BackendError(self._describe(exc)) from exc
        except BaseException:
            _close(smtp)
            raise
        log.info("SMTP connected to %s (%s)", self._where(), security_label(self.settings))
        return smtp

    def _authenticates(self) -> bool:
        return self.tokens is not None or bool(self.settings.username and self.settings.password)

    def _authenticate(self, smtp: smtplib.SMTP) -> None:
        if self.tokens is not None:
            self._xoauth2(smtp)
        elif self._authenticates():
            assert self.settings.password is not None
            try:
                smtp.login(self.user, self.settings.password.get_secret_value())
            except smtplib.SMTPAuthenticationError as exc:
                raise BackendError(
                    f"authentication failed for user {self.user}: {_text(exc.smtp_code, exc.smtp_error)}"
                ) from None

    def _xoauth2(self, smtp: smtplib.SMTP) -> None:
        assert self.tokens is not None
        for attempt in (1, 2):
            token = self.tokens.token()

            def answer(challenge: bytes | None = None, token: str = token) -> str:
                # After a failure the server sends a JSON error as a 334 challenge;
                # an empty reply then ends the exchange with 535.
                return xoauth2_string(self.user, token) if challenge is None else ""

            try:
                smtp.auth("XOAUTH2", answer)
                return
            except smtplib.SMTPAuthenticationError as exc:
                log.info(
                    "SMTP XOAUTH2 for %s refused (attempt %s): %s",
                    self.user,
                    attempt,
                    _text(exc.smtp_code, exc.smtp_error),
                )
                self.tokens.invalidate()
        raise BackendError(f"authentication failed for user {self.user} (XOAUTH2 token refused)")

    def _mail_options(self, smtp: smtplib.SMTP, mail: OutgoingMail) -> list[str]:
        options = []
        if any(b > 127 for b in mail.raw) and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        addresses = (mail.sender, *mail.recipients)
        if not all(a.isascii() for a in addresses) and smtp.has_extn("smtputf8"):
            options.append("SMTPUTF8")
        return options

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            _close(smtp)

    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _describe(self, exc: BaseException) -> str:
        where = self._where()
        # Before the generic cases: smtplib's errors are OSErrors too.
        if isinstance(exc, smtplib.SMTPResponseException):
            return f"{where} answered {_text(exc.smtp_code, exc.smtp_error)}"
        return describe_connection_error(exc, self.host, self.port, f"{where}: {exc}")


def crlf(raw: bytes) -> bytes:
    """Return ``raw`` with every bare LF turned into CRLF (SMTP's line end)."""
    return BARE_LF.sub(b"\r\n", raw)


def _text(code: int, error: bytes | str) -> str:
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    return f"{code} {text}".strip()


def _codes(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{rcpt}: {_text(code, msg)}" for rcpt, (code, msg) in refused.items())


def _by_code(mail: OutgoingMail, code: int, error: bytes | str) -> BackendError:
    """5xx for this message is permanent; 4xx, 530/535 and odd codes are worth a retry."""
    text = _text(code, error)
    if 500 <= code < 600 and code not in AUTH_CODES:
        return PermanentSendError(f"server refused {mail.message_id}: {text}")
    return BackendError(f"server deferred {mail.message_id}: {text}")


def _refused(mail: OutgoingMail, refused: dict[str, tuple[int, bytes]]) -> BackendError:
    """Every recipient refused: permanent only when every refusal is a 5xx."""
    if all(500 <= code < 600 and code not in AUTH_CODES for code, _ in refused.values()):
        return PermanentSendError(
            f"server refused every recipient of {mail.message_id}: {_codes(refused)}"
        )
    return BackendError(f"server deferred recipients of {mail.message_id}: {_codes(refused)}")


def _close(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        smtp.close()


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except Exception:  # a link that cannot even say goodbye is closed the hard way
        _close(smtp)
