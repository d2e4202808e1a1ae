"""Crash safety: SIGKILL the real daemon at each named point, restart it, count.

Every mail must end as exactly one ticket and exactly one acknowledgement.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from daemon.runner import CRASH_POINTS
from tests.e2e.helpers import acks, mailtriage, tickets
from tests.support.mail import make_mail

SUBJECTS = ("Printer jammed on floor 2", "VPN drops every hour", "Password expired")


@pytest.mark.slow
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_sigkill_at_each_point_then_restart_gives_exactly_once(site, inbox, point) -> None:
    for i, subject in enumerate(SUBJECTS):
        inbox(make_mail(subject=subject, message_id=f"<crash-{i}@mail.example.com>"), f"m{i}")
    crashed = mailtriage(site, "run", "--once", env={"MAILTRIAGE_CRASH_AT": point})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    restarted = mailtriage(site, "run", "--once")
    assert restarted.returncode == 0, restarted.stderr

    found = tickets(site)
    assert sorted(t["source_message_id"] for t in found) == [
        f"<crash-{i}@mail.example.com>" for i in range(len(SUBJECTS))
    ]
    per_ticket = Counter(a["X-Mailtriage-Ticket"] for a in acks(site))
    assert per_ticket == Counter({t["id"]: 1 for t in found})
    assert list((site / "var/mail/inbox/new").iterdir()) == []


def test_unknown_crash_point_is_a_clear_error(site) -> None:
    done = mailtriage(site, "run", "--once", env={"MAILTRIAGE_CRASH_AT": "nowhere"})
    assert done.returncode == 1
    assert "MAILTRIAGE_CRASH_AT must be one of" in done.stderr
    assert "Traceback" not in done.stderr
