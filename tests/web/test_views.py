"""The status page shows the right data: dashboard, lists, detail pages, probes."""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from config.schema import Settings
from daemon.store.db import session_factory, transaction
from daemon.store.models import Heartbeat
from daemon.store.queries import open_readonly
from tests.web.conftest import NOW, OVERDUE, RESOLVED, VPN, XSS_TICKET, make_ticket
from web_status import create_app
from web_status.server import start_in_thread


def text(response) -> str:
    """Return the decoded response body."""
    return response.get_data(as_text=True)


# --- dashboard -----------------------------------------------------------------------------


def test_dashboard_counts_and_mail_flow(client):
    page = text(client.get("/"))
    cards = dict(re.findall(r'class="label">([^<]+)</span><span class="value">(\d+)', page))
    assert cards == {"Tickets": "4", "Overdue": "1", "Quarantine": "1", "Outbox failed": "1"}
    assert "3 open" in page
    assert "1 pending" in page
    assert re.search(r"ticket</a></td><td class=\"num\">3<", page)  # inbound outcomes
    assert re.search(r"comment</a></td><td class=\"num\">1<", page)
    assert '<meta http-equiv="refresh" content="30">' in page


def test_dashboard_heartbeat_and_stale_warning(client):
    page = text(client.get("/"))
    assert "runner-1" in page and "4242" in page and "imap: connection reset" in page
    assert "30 s ago" in page
    assert "Worker <strong>scheduler</strong> has not reported for 5 min" in page
    assert "Worker <strong>runner-1</strong> has not" not in page


def test_dashboard_without_heartbeat_warns(db_url, make_app):
    page = text(make_app(db_url).test_client().get("/"))
    assert "No heartbeat yet" in page
    assert "No tickets yet." in page


def test_dashboard_recent_and_overdue(client):
    page = text(client.get("/"))
    recent = page.split('id="recent-h"')[1]
    overdue = page.split('id="overdue-h"')[1].split('id="recent-h"')[0]
    ids = re.compile(r">(TKT-\d{8}-\w{6})</a>")
    assert ids.findall(recent) == [XSS_TICKET, VPN, OVERDUE, RESOLVED]  # newest first
    assert OVERDUE in overdue and "3 h 0 min" in overdue
    assert RESOLVED not in overdue and VPN not in overdue


def test_dashboard_does_a_fixed_number_of_queries(app, writer, make_app, db_url):
    def count_queries() -> int:
        statements = []
        engine = app.extensions["mailtriage_status"]["session_factory"].kw["bind"]
        listener = lambda *a: statements.append(a[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            assert app.test_client().get("/").status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return len(statements)

    before = count_queries()
    with transaction(session_factory(writer)) as s:
        s.add_all(
            make_ticket(f"TKT-20260101-N{i:05d}", NOW - timedelta(days=9, minutes=i))
            for i in range(60)
        )
    assert count_queries() == before <= 10


# --- tickets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {VPN, XSS_TICKET, OVERDUE, RESOLVED}),
        ("?status=assigned", {VPN}),
        ("?category=hardware", {OVERDUE}),
        ("?priority=low", {RESOLVED}),
        ("?status=new&category=printing", {XSS_TICKET}),
        ("?status=new&priority=high", set()),
        ("?status=&category=", {VPN, XSS_TICKET, OVERDUE, RESOLVED}),
    ],
)
def test_ticket_list_filters(client, query, expected):
    page = text(client.get(f"/tickets{query}"))
    table = page.split("<form")[1]
    assert set(re.findall(r">(TKT-\d{8}-\w{6})</a>", table)) == expected
    if not expected:
        assert "No tickets match." in page


def test_ticket_list_keeps_the_selected_filter(client):
    page = text(client.get("/tickets?status=assigned"))
    assert '<option value="assigned" selected>' in page


def test_ticket_list_paginates_and_keeps_filters(db_url, writer, make_app):
    with transaction(session_factory(writer)) as s:
        s.add_all(
            make_ticket(f"TKT-20260101-P{i:05d}", NOW - timedelta(minutes=i), status="waiting")
            for i in range(5)
        )
    client = make_app(db_url, STATUS_PER_PAGE=2).test_client()
    pages = [text(client.get(f"/tickets?status=waiting&page={n}")) for n in (1, 2, 3)]
    found = [re.findall(r">(TKT-\d{8}-\w{6})</a>", p) for p in pages]
    assert found == [
        ["TKT-20260101-P00000", "TKT-20260101-P00001"],
        ["TKT-20260101-P00002", "TKT-20260101-P00003"],
        ["TKT-20260101-P00004"],
    ]
    assert "Page 2 of 3 · 5 in all" in pages[1]
    assert 'href="/tickets?page=3&amp;status=waiting" rel="next"' in pages[1]
    assert 'href="/tickets?page=1&amp;status=waiting" rel="prev"' in pages[1]
    nonsense = text(client.get("/tickets?status=waiting&page=abc"))
    assert "Page 1 of 3" in nonsense


# --- ticket detail ---------------------------------------------------------------------------


def test_ticket_detail_shows_contract_fields(client):
    page = text(client.get(f"/tickets/{VPN}"))
    for value in (
        VPN,
        "VPN keeps dropping",
        "bob@example.com",
        "assigned",
        "network",
        "high",
        "Network Support",
        "sarah.net@example.com",
        "2026-01-05 10:00",  # created_at
        "2026-01-05 18:00",  # sla_due_at
        f"&lt;{VPN}@mail.example.com&gt;",
        "escalated",
    ):
        assert value in page, value


def test_ticket_detail_shows_original_and_corrected_text(client):
    page = text(client.get(f"/tickets/{VPN}"))
    assert "The vpn keeps droping evry hour." in page
    assert "The vpn keeps dropping every hour." in page
    assert "<del>droping</del><ins>dropping</ins>" in page
    assert "<del>evry</del><ins>every</ins>" in page


def test_ticket_detail_shows_approvals_history_comments(client):
    page = text(client.get(f"/tickets/{VPN}"))
    approvals = page.split("<h2>Approvals</h2>")[1].split("</section>")[0]
    assert "boss@example.com" in approvals and "decision-approved" in approvals
    assert "cto@example.com" in approvals and "decision-pending" in approvals
    history = page.split('id="history"')[1].split("</section>")[0]
    assert history.index("created") < history.index("assigned")
    assert "router" in history and "<dt>team</dt><dd>Network Support</dd>" in history
    assert "<dt>rule_hits</dt><dd>[&#34;category:network&#34;, &#34;load&#34;]</dd>" in history
    comments = page.split("<h2>Comments</h2>")[1]
    assert "Still down" in comments and "Checking the concentrator" in comments
    assert comments.count(">internal</span>") == 1


def test_unknown_ticket_is_404(client):
    response = client.get("/tickets/TKT-20990101-NOPE00")
    assert response.status_code == 404
    assert "No ticket TKT-20990101-NOPE00." in text(response)


# --- quarantine, outbox --------------------------------------------------------------------


def test_quarantine_list(client):
    page = text(client.get("/quarantine"))
    assert "ValueError: cannot decode part 2" in page
    assert "&lt;script&gt;window.__xss=3&lt;/script&gt;" in page  # sender, escaped
    assert "2026-01-05 11:30" in page
    assert 'href="/quarantine/1"' in page


def test_quarantine_entry_shows_headers_and_raw_text_escaped(client):
    page = text(client.get("/quarantine/1"))
    assert "Message-ID: &lt;q1@evil.example&gt;" in page  # raw header block
    assert "Broken ümlaut" in page  # decoded summary
    assert "&lt;html&gt;&lt;body&gt;&lt;script&gt;window.__xss=1&lt;/script&gt;" in page
    assert "<p>hello</p>" not in page
    assert client.get("/quarantine/999").status_code == 404
    assert client.get("/quarantine/abc").status_code == 404


def test_outbox_lists_failed_and_pending(client):
    page = text(client.get("/outbox"))
    rows = page.split("<tbody>")[1]
    assert rows.index("outbox failed") < rows.index("outbox pending")
    assert "SMTP 550 mailbox unavailable" in rows
    assert "outbox sent" not in rows
    assert "1 sent" in page
    failed = text(client.get("/outbox?status=failed")).split("<tbody>")[1]
    assert "outbox failed" in failed and "outbox pending" not in failed
    assert client.get("/outbox?status=bogus").status_code == 400


# --- escaping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/", "/tickets", f"/tickets/{XSS_TICKET}", "/quarantine", "/quarantine/1", "/outbox"],
)
def test_mail_text_is_escaped(client, path):
    page = text(client.get(path))
    assert "<script>window.__xss" not in page
    assert "<img src=x" not in page
    if path != "/outbox":
        assert "&lt;script&gt;window.__xss" in page


def test_xss_ticket_detail_escapes_every_field(client):
    page = text(client.get(f"/tickets/{XSS_TICKET}"))
    assert "<script" not in page.lower()
    assert "&lt;img src=x onerror=&#34;window.__xss=2&#34;&gt;" in page  # body and comment
    assert "<dt>x</dt><dd>&lt;script&gt;" in page  # event details


# --- probes -----------------------------------------------------------------------------------


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {
        "ok": True,
        "db": True,
        "heartbeat_age_seconds": 30.0,
        "heartbeat_stale": False,
        "workers": {"runner-1": 30.0, "scheduler": 300.0},
        "degraded": {},
    }


def test_healthz_reports_a_worker_riding_out_an_outage_and_forgets_stopped_ones(
    db_url, writer, make_app
):
    with Session(writer) as session, session.begin():
        for worker, state, condition in (
            ("w1", "degraded", "database unavailable: OperationalError: database is locked"),
            ("w2", "stopped", ""),
        ):
            session.add(
                Heartbeat(
                    worker=worker,
                    pid=1,
                    started_at=NOW - timedelta(hours=1),
                    last_beat=NOW - timedelta(hours=1 if state == "stopped" else 0),
                    state=state,
                    condition=condition,
                    condition_since=NOW,
                )
            )
    app = make_app(db_url)
    body = app.test_client().get("/healthz").json
    assert body["ok"] is False and list(body["workers"]) == ["w1"]
    assert "database is locked" in body["degraded"]["w1"]
    page = text(app.test_client().get("/"))
    assert "is backing off since" in page and "may be stopped" not in page


def test_healthz_without_heartbeat_is_stale(db_url, make_app):
    body = make_app(db_url).test_client().get("/healthz").json
    assert body["ok"] is True and body["heartbeat_age_seconds"] is None
    assert body["heartbeat_stale"] is True


def test_unreachable_database_is_503(tmp_path, make_app):
    app = make_app(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    client = app.test_client()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["ok"] is False and response.json["db"] is False
    assert client.get("/metrics").status_code == 503
    page = client.get("/")
    assert page.status_code == 503 and "Database unavailable" in text(page)


def test_metrics(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type == "text/plain; version=0.0.4; charset=utf-8"
    lines = set(text(response).splitlines())
    for expected in (
        "# TYPE mailtriage_tickets gauge",
        'mailtriage_tickets{status="new"} 2',
        'mailtriage_tickets{status="assigned"} 1',
        'mailtriage_tickets{status="resolved"} 1',
        'mailtriage_tickets{status="closed"} 0',
        "mailtriage_quarantine_messages 1",
        'mailtriage_outbox_messages{status="pending"} 1',
        'mailtriage_outbox_messages{status="failed"} 1',
        'mailtriage_inbound_messages{outcome="ticket"} 3',
        'mailtriage_heartbeat_age_seconds{worker="runner-1"} 30.000',
        'mailtriage_heartbeat_age_seconds{worker="scheduler"} 300.000',
        "mailtriage_db_up 1",
    ):
        assert expected in lines, expected
    for line in lines:  # every sample line is `name{labels} number`
        assert line.startswith("# ") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? -?[\d.]+", line), line


# --- app factory and server ------------------------------------------------------------------


def test_default_session_factory_comes_from_settings(db_url, writer, clock):
    with transaction(session_factory(writer)) as s:
        s.add(make_ticket(VPN, NOW))
    app = create_app(Settings(database={"url": db_url}), clock=clock)
    try:
        assert VPN in text(app.test_client().get("/tickets"))
    finally:
        app.extensions["mailtriage_status"]["session_factory"].kw["bind"].dispose()


def test_start_in_thread_serves_and_shuts_down(app, db_url, clock):
    factory = open_readonly(db_url)
    server, thread = start_in_thread(
        Settings(database={"url": db_url}), "127.0.0.1", 0, session_factory=factory, clock=clock
    )
    try:
        url = f"http://127.0.0.1:{server.server_port}/healthz"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert json.load(response)["db"] is True
            assert response.headers["X-Frame-Options"] == "DENY"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        factory.kw["bind"].dispose()
    assert not thread.is_alive()


# --- mail (the ledger) ------------------------------------------------------------------


def test_mail_page_lists_outcomes_and_rejects_an_unknown_one(client):
    page = text(client.get("/mail"))
    assert page.count('<tr id="mail-') == 5  # the seeded ledger
    assert text(client.get("/mail?outcome=comment")).count('<tr id="mail-') == 1
    bad = client.get("/mail?outcome=bogus")
    assert bad.status_code == 400 and "Unknown outcome" in text(bad)
