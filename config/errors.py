"""One error tree, grouped by who must act (imapclient's and Zulip's habit).

Every error mailtriage raises on purpose derives from :class:`MailtriageError`
through the group that says who must act; the command line catches the base
and prints one line with the group's hint. Anything else that escapes is a bug.

MailtriageError
├── UserError      the person at the command line (a bad argument, an unknown ticket)
├── ConfigError    the admin's configuration (the message names the key)
├── DataError      the admin's data files (a model, a training set, a dictionary)
├── MailError      the sender's mail: it cannot be processed as it is, so it is quarantined
└── ServiceError   the mailbox, the transport or the database: retried with back-off
"""

from __future__ import annotations

KEY_HINT = "fix the key named above; 'mailtriage check-config' re-checks"


class MailtriageError(Exception):
    """Base of every error mailtriage raises on purpose."""

    hint = ""

    def __init__(self, message: str = "", hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class UserError(MailtriageError):
    """The person at the command line must act (a bad argument, an unknown ticket)."""


class ConfigError(MailtriageError):
    """The configuration is missing or invalid; the message names the key."""

    hint = KEY_HINT


class DataError(MailtriageError):
    """A data file cannot be used (a model, a training set, a dictionary); said in one line."""

    hint = "fix or regenerate the file named above"


class MailError(MailtriageError):
    """The sender's mail cannot be processed as it is; it is quarantined with this reason."""


class ServiceError(MailtriageError):
    """The mailbox, the transport or the database is unavailable; retrying may help."""

    hint = "check the service named above; the daemon retries on its own"
