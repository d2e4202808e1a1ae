"""A scripted token provider for backends that log in with OAuth2 (IMAP, SMTP XOAUTH2)."""

from __future__ import annotations


class Tokens:
    """A token provider that hands out ``tokens`` in turn and counts invalidations.

    Same ``token()``/``invalidate()`` interface as ``daemon.backends.oauth.TokenProvider``:
    each invalidation (the server refused the token) moves on to the next token, and
    the last one is kept for good.
    """

    def __init__(self, *tokens: str) -> None:
        self.tokens, self.invalidations = list(tokens), 0

    def token(self) -> str:
        """The current token."""
        return self.tokens[0]

    def invalidate(self) -> None:
        """Count the refusal and move on to the next token, if there is one."""
        self.invalidations += 1
        if len(self.tokens) > 1:
            self.tokens.pop(0)
