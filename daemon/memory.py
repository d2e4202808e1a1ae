"""Giving freed memory back to the system over a long run (glibc; elsewhere a no-op).

glibc keeps freed blocks in its arenas for reuse and returns only the top of
each heap. Over a long backlog that is memory the daemon no longer uses but
still holds: ``malloc_trim(0)`` gives back every free page, in every arena. The
runner calls :func:`release` every :data:`RELEASE_EVERY` batches and after
each pass; it costs a few milliseconds.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

RELEASE_EVERY = 20  # batches between two releases


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to trim
        return None


_LIBC = _libc()


def release() -> None:
    """Return free heap pages to the system (glibc's ``malloc_trim``)."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
