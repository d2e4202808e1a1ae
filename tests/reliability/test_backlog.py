"""A weekend's backlog through the real daemon: nobody held, answers flowing, memory bounded.

The size is ``MAILTRIAGE_BACKLOG_MAILS`` (default 2,000 here; ``bench/bench_backlog.py
--n 20000`` runs the full figure and prints it).
"""

from __future__ import annotations

import os
import sqlite3

import pytest

from tests.e2e.helpers import BIN
from tests.support.backlog import DaemonWatch, deliver_backlog, warm_up

RSS_LIMIT_MIB = 250


@pytest.mark.slow
def test_a_backlog_drains_with_nobody_held_and_answers_flowing(site):
    n = int(os.environ.get("MAILTRIAGE_BACKLOG_MAILS", "2000"))
    warm_up(site)
    deliver_backlog(site / "var/mail/inbox", n)
    watch = DaemonWatch(site, BIN)
    watch.run(expected_sent=2 * n + 2, timeout=max(600, n / 5))
    with sqlite3.connect(site / "var/mailtriage.db") as conn:
        held = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        tickets = conn.execute("SELECT count(*) FROM tickets").fetchone()[0]
    assert (held, tickets) == (0, n + 1)
    assert watch.sent_while_waiting() > 0, "acknowledgements waited for the whole backlog"
    print(f"peak RSS {watch.peak_rss_mib:.1f} MiB")
    assert watch.peak_rss_mib < RSS_LIMIT_MIB
