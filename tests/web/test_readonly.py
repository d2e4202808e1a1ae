"""The status page cannot change anything: GET-only routes, a read-only session, headers."""

from __future__ import annotations

import ast
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon.store.db import make_engine, migrate, session_factory, transaction
from daemon.store.models import QuarantineEntry, Ticket
from daemon.store.queries import StoreError, open_readonly, quarantine_entry
from daemon.store.raw import load_raw
from tests.web.conftest import NOW, VPN, make_ticket, seed
from web_status import SECURITY_HEADERS

WEB_STATUS = Path(__file__).resolve().parents[2] / "web_status"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def test_no_route_accepts_a_write_method(app):
    rules = list(app.url_map.iter_rules())
    assert {r.endpoint for r in rules} >= {"status.dashboard", "probes.metrics", "static"}
    for rule in rules:
        assert not (rule.methods or set()) & WRITE_METHODS, f"{rule} accepts {rule.methods}"


@pytest.mark.parametrize("method", sorted(WRITE_METHODS))
@pytest.mark.parametrize("path", ["/", "/tickets", f"/tickets/{VPN}", "/healthz", "/metrics"])
def test_write_requests_are_refused(client, method, path):
    assert client.open(path, method=method).status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/tickets",
        f"/tickets/{VPN}",
        "/tickets/TKT-20990101-NOPE00",
        "/quarantine",
        "/quarantine/1",
        "/outbox",
        "/healthz",
        "/metrics",
        "/static/style.css",
    ],
)
def test_security_headers_on_every_response(client, path):
    response = client.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, (path, name)
    assert response.headers["Content-Security-Policy"] == "default-src 'self'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.status_code == (404 if "NOPE" in path else 200)


def test_pages_load_nothing_from_elsewhere(client):
    for path in ("/", f"/tickets/{VPN}", "/quarantine/1"):
        page = client.get(path).get_data(as_text=True)
        assert "http://" not in page and "https://" not in page and "<script" not in page


def test_readonly_session_cannot_write(db_url, writer):
    seed(writer)
    factory = open_readonly(db_url)
    try:
        with factory() as session:
            session.add(make_ticket("TKT-20260105-WRITE1", NOW))
            with pytest.raises(StoreError, match="readonly"):
                session.commit()
        with factory() as session, pytest.raises(StoreError, match="readonly"):
            session.execute(text("DELETE FROM tickets"))
        with factory() as session:
            assert session.get(Ticket, "TKT-20260105-WRITE1") is None
            assert session.scalar(text("SELECT count(*) FROM tickets")) == 4
    finally:
        factory.kw["bind"].dispose()


def test_the_daemon_writes_while_the_page_reads(db_url, writer):
    seed(writer)
    factory = open_readonly(db_url)
    try:
        with factory() as reader:
            assert reader.scalar(text("SELECT count(*) FROM tickets")) == 4  # read txn open
            with transaction(session_factory(writer)) as s:  # WAL: the writer is not blocked
                s.add(make_ticket("TKT-20260105-LIVE01", NOW + timedelta(minutes=1)))
        with factory() as reader:
            assert reader.scalar(text("SELECT count(*) FROM tickets")) == 5
    finally:
        factory.kw["bind"].dispose()


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


@pytest.mark.parametrize("path", sorted(WEB_STATUS.rglob("*.py")), ids=lambda p: p.name)
def test_web_status_imports_only_what_it_may(path):
    allowed_roots = {"flask", "werkzeug", "jinja2", "config", "web_status"}
    for name in _imports(path):
        root = name.split(".")[0]
        if root == "daemon":
            assert name == "daemon.store.queries", f"{path.name} imports {name}"
        else:
            assert root in allowed_roots | sys.stdlib_module_names, f"{path.name} imports {name}"


@pytest.mark.realserver
def test_readonly_on_postgresql(postgres_server, make_app):
    url = postgres_server.new_database()
    engine = make_engine(url)
    try:
        migrate(engine)
        seed(engine)
        app = make_app(url)
        client = app.test_client()
        for path in ("/", "/tickets?status=new", f"/tickets/{VPN}", "/quarantine", "/outbox"):
            assert client.get(path).status_code == 200, path
        page = client.get("/quarantine/1").get_data(as_text=True)
        assert "Message-ID: &lt;q1@evil.example&gt;" in page
        factory = app.extensions["mailtriage_status"]["session_factory"]
        with factory() as session:
            entry = quarantine_entry(session, 1, head_bytes=10)
            assert entry is not None and entry.raw_head == b'From: "<sc'
            assert entry.size == len(load_raw(session, session.get(QuarantineEntry, 1).raw_sha256))
        with factory() as session:
            session.add(make_ticket("TKT-20260105-WRITE1", NOW))
            with pytest.raises(StoreError, match="read-only transaction"):
                session.commit()
    finally:
        engine.dispose()
