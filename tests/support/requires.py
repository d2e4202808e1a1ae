"""Skip-or-fail for tests that need a real server or binary.

Locally a missing server skips with a clear reason; under CI (``CI=true``) the
same absence is a failure, because ``.ci/run`` installs everything.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    """True when running under ``.ci/run`` (``CI=true``)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip the test locally, fail it in CI."""
    if in_ci():
        pytest.fail(f"required in CI but missing: {reason}", pytrace=False)
    pytest.skip(reason)


def require_executable(*candidates: str) -> str:
    """Return the first existing executable of ``candidates`` or skip/fail."""
    for c in candidates:
        found = shutil.which(c) or (c if os.path.isfile(c) and os.access(c, os.X_OK) else None)
        if found:
            return found
    missing(f"none of {', '.join(candidates)} is installed (scripts/test.sh installs it)")
    raise AssertionError("unreachable")
