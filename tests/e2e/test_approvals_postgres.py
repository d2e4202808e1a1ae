"""Two workers deciding the same approval at once, on a real PostgreSQL.

Each worker is a whole app (its own engine and pipeline) on one database. The
crash hook holds every transaction open for a moment at its commit point, so the
two replies really overlap: the second worker waits for the ticket lock and then
sees the first worker's decision.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from sqlalchemy import select

from daemon.backends.base import RawMail
from daemon.store.models import Ticket
from daemon.store.queries import get_ticket
from tests.e2e.helpers import sent_mail
from tests.e2e.test_approvals import BOSS, CFO, REQUESTER, answer, history, votes, with_approval
from tests.support.mail import make_mail

pytestmark = [pytest.mark.realserver, pytest.mark.slow]


def _hold(point: str) -> None:
    if point == "in_transaction":
        time.sleep(0.3)


@pytest.fixture
def workers(settings, make_app, postgres_server):
    """Build two workers on one fresh PostgreSQL database with the given approval policy."""

    def build(mode: str):
        url = postgres_server.new_database()
        s = with_approval(settings, (BOSS, CFO), mode)
        s = s.model_copy(update={"database": s.database.model_copy(update={"url": url})})
        return make_app(s, crash=_hold), make_app(s, crash=_hold)

    return build


def _open_request(app, site, inbox) -> str:
    inbox(make_mail(subject="New laptop", body="A new laptop for Carol.", sender=REQUESTER))
    app.runner.run_pass()
    with app.factory() as s:
        return s.scalars(select(Ticket.id)).one()


def _requests(site, ticket_id: str) -> dict[str, object]:
    return {
        str(m["To"]): m
        for m in sent_mail(site)
        if "Approval needed" in str(m["Subject"]) and ticket_id in str(m["Subject"])
    }


def _race(apps, raws: list[bytes]) -> list:
    """Process one mail per worker at the same moment; return their outcomes."""
    barrier = threading.Barrier(len(apps))
    outcomes: list = [None] * len(apps)

    def work(i: int) -> None:
        barrier.wait()
        try:
            mail = RawMail(f"race-{i}-{time.time_ns()}", raws[i], datetime(2026, 1, 5, 9))
            outcomes[i] = apps[i].pipeline.process(mail)
        except Exception as exc:  # reported below: a thread must not swallow it
            outcomes[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(apps))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for app in apps:
        app.sender.send_due()
    return outcomes


def _ticket(app, ticket_id: str) -> dict:
    with app.factory() as s:
        return get_ticket(s, ticket_id)


def test_approve_and_reject_racing_on_an_any_step_one_wins(workers, site, inbox) -> None:
    one, two = workers("any")
    tid = _open_request(one, site, inbox)
    req = _requests(site, tid)
    outcomes = _race(
        (one, two), [answer(req[BOSS], "Approve"), answer(req[CFO], "Reject, too expensive")]
    )
    assert all(o.kind == "approval" for o in outcomes), outcomes
    t = _ticket(one, tid)
    decided = [v for v in votes(t) if v[2] != "pending"]
    assert len(decided) == 1
    winner = decided[0][1]
    assert t["status"] == ("assigned" if winner == BOSS else "rejected")
    loser = CFO if winner == BOSS else BOSS
    [late] = history(t, "approval_refused")
    assert late["actor"] == loser and late["details"]["reason"] == "already decided"
    told = [m for m in sent_mail(site) if "Already decided" in str(m["Subject"])]
    assert [str(m["To"]) for m in told] == [loser]
    assert len([m for m in sent_mail(site) if "Request " in str(m["Subject"])]) == 1


def test_two_approvals_racing_on_an_all_step_both_count(workers, site, inbox) -> None:
    one, two = workers("all")
    tid = _open_request(one, site, inbox)
    req = _requests(site, tid)
    outcomes = _race((one, two), [answer(req[BOSS], "Approve"), answer(req[CFO], "Approved")])
    assert all(o.kind == "approval" for o in outcomes), outcomes
    t = _ticket(one, tid)
    # without the ticket lock each worker would see the other's vote pending: stuck forever
    assert votes(t) == [(1, BOSS, "approved"), (1, CFO, "approved")]
    assert t["status"] == "assigned"
    assert len(history(t, "approval_completed")) == 1
    assert len([m for m in sent_mail(site) if "Assigned to you" in str(m["Subject"])]) == 1


def test_the_same_approver_twice_at_once_counts_once(workers, site, inbox) -> None:
    one, two = workers("all")
    tid = _open_request(one, site, inbox)
    req = _requests(site, tid)
    outcomes = _race((one, two), [answer(req[BOSS], "Approve"), answer(req[BOSS], "Reject, sorry")])
    assert all(o.kind == "approval" for o in outcomes), outcomes
    t = _ticket(one, tid)
    assert votes(t)[0][2] in ("approved", "rejected") and votes(t)[1] == (1, CFO, "pending")
    assert len(history(t, "approval_approved") + history(t, "approval_rejected")) == 1
    assert history(t, "approval_refused")[0]["details"]["reason"] == "already decided"
