"""Attachments: found in the raw mail part by part, decoded in pieces, stored once.

``locate`` finds each attachment's byte range in the raw mail (no parser holds
the mail), ``decode`` turns a range into decoded pieces (base64,
quoted-printable or as is), ``names`` makes names safe and flags dangerous
types, ``store`` keeps the bytes once by SHA-256 (zlib chunks) with one
``attachments`` row per occurrence, in the ticket's transaction.
"""

from daemon.attachments.store import Carrier, keep_attachments, notice_context

__all__ = ["Carrier", "keep_attachments", "notice_context"]
