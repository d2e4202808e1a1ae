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


# glibc raises its mmap threshold to the size of the largest block freed (up to 32 MiB),
# so after one 23 MB mail the next ones come from the heap, which keeps the memory of
# each freed mail. A fixed threshold keeps big blocks mmapped: freed means returned.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 256 * 1024
# One arena per thread (up to 8 per core) each keeps its own freed memory; the
# daemon's threads (runner, scheduler, status page requests) share two instead.
_M_ARENA_MAX = -8
_ARENA_MAX = 2


def tune() -> None:
    """Fix glibc's mmap threshold and arena count, at start (a no-op elsewhere)."""
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        mallopt(_M_ARENA_MAX, _ARENA_MAX)


def release() -> None:
    """Return free heap pages to the system (glibc's ``malloc_trim``)."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
