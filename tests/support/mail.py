"""Build small test mails (Mailman's rule tests: a 5-line message, one assert)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

_counter = itertools.count(1)


def make_mail(
    subject: str = "Printer on 2nd floor is jammed",
    body: str = "The printer next to the kitchen shows a paper jam.\n\nBob",
    sender: str = "Bob Example <bob@example.com>",
    to: str = "support@example.com",
    message_id: str | None = None,
    html: str | None = None,
    **headers: str,
) -> bytes:
    """Return the bytes of a simple mail; ``headers`` use ``_`` for ``-``."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    msg["Message-ID"] = message_id or f"<test-{next(_counter)}@mail.example.com>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return bytes(msg)
