"""A backlog processed in batches gives what one by one gives, and a poison mail stays alone.

``daemon/batch.py`` charges, decides and acks several waiting mails together.
These tests hold it to the promises of the one-by-one path: the same outcomes
(threading, sender rate, assignment) as mail by mail; a mail that kills the
process or raises is isolated and quarantined without harming its neighbours;
and twenty SIGKILLs of the real daemon during a backlog lose and duplicate
nothing.
"""

from __future__ import annotations

import email.policy
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.app import App, build_text_understanding
from daemon.backends.maildir import deliver
from daemon.store.models import Attempt, LedgerEntry, OutboxEntry, QuarantineEntry, Ticket
from daemon.store.raw import load_raw
from tests.e2e.helpers import BIN, acks, mailtriage
from tests.support.backlog import deliver_backlog, warm_up
from tests.support.drive import Killed, pending
from tests.support.mail import make_mail

# -- helpers -------------------------------------------------------------------


def deliver_in_order(inbox: Path, mails: list[tuple[str, bytes]]) -> list[str]:
    """Deliver ``(ref, raw)`` pairs arriving ten seconds apart, within the last hour."""
    start = time.time() - 1800
    for i, (ref, raw) in enumerate(mails):
        when = start + 10 * i
        os.utime(deliver(inbox, raw, ref), (when, when))
    return [ref for ref, _ in mails]


def count_batches(app: App, monkeypatch) -> list[int]:
    """Record the size of every batch decided in one transaction."""
    sizes: list[int] = []
    real = app.runner.batches._in_one_transaction

    def counted(mails, stats):
        sizes.append(len(mails))
        return real(mails, stats)

    monkeypatch.setattr(app.runner.batches, "_in_one_transaction", counted)
    return sizes


def poison(app: App, ref: str, error: BaseException) -> None:
    """Make deciding the mail ``ref`` raise ``error`` (its neighbours are decided as usual)."""
    real = app.pipeline.decide

    def decide(session, mail, msg, release=None):
        if mail.ref == ref:
            raise error
        return real(session, mail, msg, release)

    app.pipeline.decide = decide


def fates(app: App, refs: list[str]) -> list[tuple]:
    """What became of each mail, in arrival order, without the random ticket ids.

    A new ticket shows its category, priority, team and assignee; a comment shows
    the ref of the mail whose ticket it joined; a held mail shows its reason code.
    """
    with app.factory() as s:
        ledger = {row.ref: row for row in s.scalars(select(LedgerEntry))}
        held = {row.ref: row for row in s.scalars(select(QuarantineEntry))}
        tickets = {t.id: t for t in s.scalars(select(Ticket))}
    opened_by = {row.ticket_id: ref for ref, row in ledger.items() if row.outcome == "ticket"}
    out: list[tuple] = []
    for ref in refs:
        if ref in held:
            out.append((ref, "held", held[ref].reason_code))
        elif ledger[ref].outcome == "ticket":
            t = tickets[ledger[ref].ticket_id]
            out.append((ref, "ticket", t.category, t.priority, t.team, t.assignee))
        else:
            row = ledger[ref]
            out.append((ref, row.outcome, opened_by.get(row.ticket_id)))
    return out


# -- 1. a batch decides as one by one would ---------------------------------------

PEOPLE = {
    "ann": "Ann Example <ann@example.com>",
    "bob": "bob@example.com",
    "cy": "cy@example.com",
    "dee": "dee@example.com",
    "eve": "eve@example.com",
    "fay": "fay@example.com",
    "gus": "gus@example.com",
    "flood": "flood@example.com",
}


def equivalence_mails() -> list[tuple[str, bytes]]:
    """A reply to a mail of the same batch, a sender over the limit, several teams."""
    vpn = "<eq-vpn@mail.example.com>"

    def mail(ref, who, subject, body, **headers):
        return ref, make_mail(subject=subject, body=body, sender=PEOPLE[who], **headers)

    return [
        mail("m01", "ann", "VPN drops", "My VPN disconnects every few minutes.", message_id=vpn),
        mail("m02", "bob", "Printer offline", "The printer on floor 3 shows offline."),
        mail(
            "m03",
            "ann",
            "Re: VPN drops",
            "It dropped again just now, twice.",
            In_Reply_To=vpn,
            References=vpn,
        ),
        mail("m04", "flood", "Password expired", "My password expired, I am locked out."),
        mail("m05", "flood", "Install Visio", "Please install Visio on my PC."),
        mail("m06", "flood", "Outlook calendar", "Outlook does not sync my calendar."),
        mail("m07", "cy", "Laptop screen", "The laptop screen flickers and the keyboard is dead."),
        mail("m08", "flood", "Laptop battery", "My laptop battery dies after an hour."),
        mail("m09", "dee", "Suspicious email", "I clicked a phishing link asking for my password."),
        mail("m10", "eve", "Printer jammed", "The printer next to the kitchen has a paper jam."),
        mail("m11", "fay", "Install software", "I need Adobe Acrobat installed, please."),
        mail("m12", "gus", "Monitor broken", "My second monitor stays black since Monday."),
        mail("m13", "bob", "Toner empty", "The printer on floor 3 is out of toner."),
    ]


def test_a_batch_decides_each_mail_as_one_by_one_would(settings, make_app, site, monkeypatch):
    settings.guards.sender_rate_limit = 2
    mails = equivalence_mails()
    batched = make_app(settings)
    sizes = count_batches(batched, monkeypatch)
    refs = deliver_in_order(site / "var/mail/inbox", mails)
    batched.runner.run_pass()
    assert max(sizes, default=0) == len(mails), f"the backlog was not batched: {sizes}"

    # The same mail, arriving at the same times, into a second store read one mail per fetch.
    other = site / "var/one-by-one"
    single_settings = settings.model_copy(
        update={
            "database": settings.database.model_copy(update={"url": f"sqlite:///{other}/db"}),
            "mailbox": settings.mailbox.model_copy(update={"path": str(other / "inbox")}),
            "outbound": settings.outbound.model_copy(update={"path": str(other / "sent")}),
        }
    )
    single = make_app(single_settings)
    single.runner.batch = 1
    single_sizes = count_batches(single, monkeypatch)
    deliver_in_order(other / "inbox", mails)
    single.runner.run_pass()
    assert single_sizes == []

    got = fates(batched, refs)
    # (a) the reply joins the ticket its original opened earlier in the same batch
    assert got[2] == ("m03", "comment", "m01")
    # (b) exactly the sender's mails beyond the limit are held
    held = [f[0] for f in got if f[1] == "held"]
    assert held == ["m06", "m08"] and {f[2] for f in got if f[1] == "held"} == {"sender-rate"}
    # (c) outcomes, categories, teams and the assignee sequence are those of one by one
    assert got == fates(single, refs)
    assignees = [f[5] for f in got if f[1] == "ticket"]
    assert len(set(assignees)) > 3, assignees  # assignment had choices to get wrong


# -- 2. a mail that kills the process mid-batch is isolated --------------------------


def test_a_mail_that_kills_the_process_mid_batch_is_quarantined_alone(settings, make_app, site):
    goods = [f"good{i}" for i in range(5)]
    mails = [
        (ref, make_mail(subject=f"Request {ref}", sender=f"{ref}@example.com")) for ref in goods
    ]
    poison_raw = make_mail(subject="The poison", sender="poison@example.com")
    mails.insert(2, ("poison", poison_raw))
    deliver_in_order(site / "var/mail/inbox", mails)
    text = build_text_understanding(settings)  # the model loads once; each restart reuses it

    deaths = 0
    for _restart in range(6):
        app = make_app(text=text)  # a restarted daemon: nothing kept but the database
        poison(app, "poison", Killed("SIGKILL"))
        try:
            app.runner.run_pass()
        except Killed:
            deaths += 1
            continue
        if not pending(app):
            break
    assert not pending(app), f"mail still waiting after {deaths} deaths"

    with app.factory() as s:
        tickets = Counter(s.scalars(select(Ticket.requester)))
        ack_rows = Counter(
            s.scalars(select(OutboxEntry.ticket_id).where(OutboxEntry.kind == "ack"))
        )
        [held] = s.scalars(select(QuarantineEntry)).all()  # no good mail was ever held
        kept = load_raw(s, held.raw_sha256)
        attempts = {a.ref: a.count for a in s.scalars(select(Attempt))}
        ticket_ids = {t.requester: t.id for t in s.scalars(select(Ticket))}
    assert tickets == Counter({f"{ref}@example.com": 1 for ref in goods})
    assert ack_rows == Counter({ticket_ids[f"{ref}@example.com"]: 1 for ref in goods})
    sent = Counter(str(m["X-Mailtriage-Ticket"]) for m in acks(site))
    assert sent == Counter({ticket_ids[f"{ref}@example.com"]: 1 for ref in goods})
    assert (held.ref, held.reason_code) == ("poison", "failed") and kept == poison_raw
    assert all(attempts[ref] <= 2 for ref in goods), attempts
    assert 1 <= deaths <= 4, deaths


# -- 3. a mail that raises inside a batch leaves its neighbours processed -----------


def test_a_mail_that_raises_in_a_batch_lets_its_neighbours_through_at_once(
    make_app, site, monkeypatch
):
    app = make_app()
    sizes = count_batches(app, monkeypatch)
    poison(app, "poison", RuntimeError("a bug in one mail"))
    goods = [f"good{i}" for i in range(4)]
    mails = [
        (ref, make_mail(subject=f"Request {ref}", sender=f"{ref}@example.com")) for ref in goods
    ]
    mails.insert(2, ("poison", make_mail(subject="The poison", sender="poison@example.com")))
    deliver_in_order(site / "var/mail/inbox", mails)

    first = app.runner.run_pass()
    assert sizes == [len(mails)]
    assert first.outcomes == {"ticket": len(goods)} and first.failed == 1
    with app.factory() as s:
        done = {row.ref: row.outcome for row in s.scalars(select(LedgerEntry))}
        attempts = {a.ref: a.count for a in s.scalars(select(Attempt))}
    assert done == dict.fromkeys(goods, "ticket")
    assert attempts == {**dict.fromkeys(goods, 1), "poison": 1}  # neighbours charged once
    assert (site / "var/mail/inbox/new/poison").exists()

    second = app.runner.run_pass()
    assert (second.failed, second.quarantined) == (1, 0)
    third = app.runner.run_pass()
    assert (third.failed, third.quarantined) == (1, 1)
    with app.factory() as s:
        held = s.scalars(select(QuarantineEntry)).one()
    assert held.ref == "poison" and held.reason_code == "failed"
    assert "failed 3 times" in held.reason and "a bug in one mail" in held.reason
    assert not pending(app)


# -- 4. twenty SIGKILLs during a backlog ----------------------------------------


def _ledger_rows(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM message_ledger").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # not created yet, or locked for a moment


def _headers(path: Path) -> EmailMessage:
    with path.open("rb") as fh:
        return BytesParser(policy=email.policy.default).parse(fh, headersonly=True)


def _kill_while_processing(site: Path, rng: random.Random, inbox_new: Path) -> tuple[int, int]:
    """Start the daemon, SIGKILL it 1-4 s after it processed something; (rows before, after)."""
    db = site / "var/mailtriage.db"
    config = str(site / "mailtriage.toml")
    cmd = [str(BIN), "--config", config, "--log-level", "WARNING", "run", "--no-web"]
    before = _ledger_rows(db)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while _ledger_rows(db) == before and any(os.scandir(inbox_new)):
            assert proc.poll() is None, f"the daemon exited with {proc.returncode}"
            assert time.monotonic() < deadline, "the daemon processed nothing for 60 s"
            time.sleep(0.05)
        time.sleep(rng.uniform(1.0, 4.0))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return before, _ledger_rows(db)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_twenty_sigkills_during_a_backlog_lose_and_duplicate_nothing(site):
    """``MAILTRIAGE_KILL_BACKLOG`` mails drained by a daemon SIGKILLed 20 times, each time
    1-4 s after it started processing, then ``run --once`` until the inbox is empty.

    The default is the issue's figure, ``MAILTRIAGE_KILL_BACKLOG=5000`` (about 3 min on
    two cores): batched, the daemon decides about 100 mails a second, and each life
    commits about 200 of them before its kill, so 1,500 mails drain after about eight
    kills. The kill waits at least a second after the first mail committed: a mail
    being processed when the daemon dies is charged again, and it must not be killed
    three times in a row (it would rightly be quarantined as a poison mail).
    """
    n = int(os.environ.get("MAILTRIAGE_KILL_BACKLOG", "5000"))
    config = site / "mailtriage.toml"
    text = config.read_text()
    assert "sender_rate_limit = 20" in text
    config.write_text(text.replace("sender_rate_limit = 20", "sender_rate_limit = 100000"))
    began = time.monotonic()
    warm_up(site)
    inbox_new = site / "var/mail/inbox/new"
    deliver_backlog(site / "var/mail/inbox", n)
    delivered = [str(_headers(p)["Message-ID"]) for p in inbox_new.iterdir()]
    assert len(delivered) == n == len(set(delivered))

    rng, kills, progress = random.Random(12), 0, []
    started = time.monotonic()
    for _ in range(20):
        if not any(os.scandir(inbox_new)):
            break
        before, after = _kill_while_processing(site, rng, inbox_new)
        kills += 1
        progress.append(after - before)
    killed_for = time.monotonic() - started
    left_after_kills = sum(1 for _ in os.scandir(inbox_new))
    for _ in range(5):
        if not any(os.scandir(inbox_new)):
            break
        done = mailtriage(site, "run", "--once", timeout=600)
        assert done.returncode == 0, done.stderr
    elapsed = time.monotonic() - began

    with sqlite3.connect(site / "var/mailtriage.db") as conn:
        sources = Counter(r[0] for r in conn.execute("SELECT source_message_id FROM tickets"))
        held = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        refs = Counter(r[0] for r in conn.execute("SELECT ref FROM message_ledger"))
        unsent = conn.execute("SELECT count(*) FROM outbox WHERE status != 'sent'").fetchone()[0]
        kinds = dict(conn.execute("SELECT kind, count(*) FROM outbox GROUP BY kind"))
    sent = [_headers(p) for p in (site / "var/mail/sent/new").iterdir()]
    outgoing = Counter(str(h["Message-ID"] or "") for h in sent)
    ack_tickets = Counter(
        str(h["X-Mailtriage-Ticket"]) for h in sent if "] Received:" in str(h["Subject"])
    )
    print(
        f"\n{kills} kills over {n} mails ({killed_for:.0f} s killing, {left_after_kills} left "
        f"for run --once, mails per life {progress}); {len(sent)} sent {kinds}; "
        f"{elapsed:.0f} s in all"
    )
    lost = [mid for mid in delivered if mid not in sources]
    assert lost == [], f"{len(lost)} lost, e.g. {lost[:5]}"
    assert [m for m, c in sources.items() if c > 1] == []
    assert [r for r, c in refs.items() if c > 1] == []
    assert [m for m, c in outgoing.items() if c > 1 or not m] == []
    assert [t for t, c in ack_tickets.items() if c > 1] == []
    assert len(ack_tickets) == len(sources) == n + 1  # the warm-up mail is one more
    assert list(inbox_new.iterdir()) == [] and held == 0 and unsent == 0
    assert list((site / "var/mail/inbox/.Quarantine/cur").iterdir()) == []
    assert kills == 20, f"the backlog drained after {kills} kills: raise MAILTRIAGE_KILL_BACKLOG"


def test_an_unparseable_mail_does_not_cost_its_batch_the_vectorised_understanding(
    make_app, inbox, caplog
):
    app = make_app()
    calls = []
    many = app.pipeline.classifier.classify_many
    app.pipeline.classifier.classify_many = lambda items: calls.append(len(items)) or many(items)
    inbox(make_mail(subject="Printer jammed"), "a")
    inbox(b"\x00" * 10 + b"not a mail at all", "b")
    inbox(make_mail(subject="VPN drops", sender="carol@example.com"), "c")
    stats = app.runner.run_pass()
    assert stats.outcomes == {"ticket": 2} and stats.quarantined == 1
    assert calls == [2]  # one call for the two that parsed; none one at a time
    assert "one mail at a time" not in caplog.text
