"""A real headless Chromium drives the served status page (Playwright, no downloaded browser)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config.schema import Settings
from daemon.store.queries import open_readonly
from tests.support.ports import free_port, wait_for_port
from tests.support.requires import missing, require_executable
from tests.web.conftest import OVERDUE, VPN, XSS_TICKET, seed
from web_status.server import start_in_thread

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def live_url(db_url, writer, clock) -> Iterator[str]:
    """The seeded status page served by ``start_in_thread`` on a free loopback port."""
    seed(writer)
    factory = open_readonly(db_url)
    port = free_port()
    server, thread = start_in_thread(
        Settings(database={"url": db_url}), "127.0.0.1", port, session_factory=factory, clock=clock
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        factory.kw["bind"].dispose()


@pytest.fixture
def page():
    """A fresh page in Debian's headless Chromium."""
    executable = require_executable("chromium", "/usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the test extra installs it
        missing("the playwright python package is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            yield context.new_page()
        finally:
            browser.close()


def test_dashboard_to_ticket_history(page, live_url, tmp_path: Path):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    page.goto(f"{live_url}/")
    assert page.title() == "Dashboard · mailtriage status"
    assert page.locator(".topbar .brand").inner_text().startswith("mailtriage")
    assert page.locator(".alert.warn").first.inner_text().startswith("Worker scheduler")
    # the stylesheet loaded (the header bar is coloured, not the default transparent)
    bar = page.locator(".topbar").evaluate("e => getComputedStyle(e).backgroundColor")
    assert bar == "rgb(31, 58, 95)"
    assert page.locator("#overdue-h + .table-wrap").inner_text().count(OVERDUE) == 1
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    page.locator("#recent-h ~ .table-wrap").get_by_role("link", name=VPN).click()
    page.wait_for_url(f"{live_url}/tickets/{VPN}")
    assert page.locator("h1").inner_text() == "VPN keeps dropping"
    history = page.locator("#history table.history tbody tr")
    assert history.count() == 2
    assert history.nth(0).inner_text().split("\t")[1:3] == ["system", "created"]
    assert "Network Support" in history.nth(1).inner_text()
    assert page.locator(".diff del").first.inner_text() == "droping"
    page.screenshot(path=str(tmp_path / "ticket.png"), full_page=True)
    assert errors == []


def test_xss_payloads_do_not_execute(page, live_url, tmp_path: Path):
    for path in (
        "/",
        f"/tickets/{XSS_TICKET}",
        "/quarantine",
        "/quarantine/1",
        "/tickets",
        "/outbox",
    ):
        page.goto(f"{live_url}{path}")
        name = path.strip("/").replace("/", "-") or "dashboard"
        page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        assert page.evaluate("typeof window.__xss") == "undefined", path
        assert page.locator("script").count() == 0, path
        assert page.locator("img").count() == 0, path
    page.goto(f"{live_url}/tickets/{XSS_TICKET}")
    assert "<script>window.__xss=1</script>" in page.locator("h1").inner_text()
