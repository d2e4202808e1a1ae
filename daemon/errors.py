"""Exceptions grouped by who must act (imapclient/Zulip style): docstrings only."""

from __future__ import annotations


class MailtriageError(Exception):
    """Base of every error mailtriage raises on purpose."""


class UserError(MailtriageError):
    """The person at the command line must act (bad argument, unknown ticket)."""


class RuntimeFailure(MailtriageError):
    """The system failed (database, mailbox, transport); retrying may help."""


class StoreUnavailable(RuntimeFailure):
    """The database cannot be used now (locked, full, read-only, connection lost).

    Not the fault of the mail in hand: the runner backs off and retries it
    without counting an attempt.
    """
