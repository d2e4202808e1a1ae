"""Shared fixtures: a fresh embedded-default site, the app built on it, servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.loader import load_settings
from config.schema import Settings
from daemon.app import App, build_app
from daemon.backends.maildir import deliver
from daemon.clock import ManualClock
from mailtriage.commands import init_project
from tests.support.postgres import postgres_server  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
# Fixture data lives in the repository (see tests/data/README.md): a clone stands on its own.
DATA = REPO / "tests" / "data"
EMAILS = DATA / "emails"
ENDAVA_SAMPLE = DATA / "tickets" / "endava_topics"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One classifier cache for the session: the default model is trained once."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture
def site(tmp_path: Path, model_cache: Path) -> Path:
    """A folder set up by ``mailtriage init`` (SQLite + Maildir)."""
    config = init_project(tmp_path)
    text = config.read_text().replace(
        "[classifier]\n", f'[classifier]\ncache_dir = "{model_cache}"\n', 1
    )
    config.write_text(text)
    return tmp_path


@pytest.fixture
def settings(site: Path) -> Settings:
    """The settings of :func:`site`."""
    return load_settings(site / "mailtriage.toml")


@pytest.fixture
def clock() -> ManualClock:
    """A clock tests move by hand."""
    return ManualClock()


@pytest.fixture
def make_app(settings: Settings, clock: ManualClock) -> Iterator[Callable[..., App]]:
    """Build apps on the site; every app is closed at teardown."""
    apps: list[App] = []

    def make(s: Settings | None = None, **kw) -> App:
        app = build_app(s or settings, clock=kw.pop("clock", clock), **kw)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def inbox(site: Path) -> Callable[[bytes, str | None], Path]:
    """Deliver raw mail into the site's inbox."""

    def put(raw: bytes, name: str | None = None) -> Path:
        return deliver(site / "var/mail/inbox", raw, name)

    return put
