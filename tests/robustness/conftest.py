"""Fixtures for the robustness suite: one trained text model for all, sites as usual."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from config.loader import load_settings
from daemon.app import App, build_text_understanding
from mailtriage.commands import init_project


@pytest.fixture(scope="session")
def text(tmp_path_factory, model_cache: Path):
    """The corrector and classifier, built once per session (building them is the slow part
    of an app; they keep no per-site state)."""
    config = init_project(tmp_path_factory.mktemp("text-site"))
    config.write_text(
        config.read_text().replace(
            "[classifier]\n", f'[classifier]\ncache_dir = "{model_cache}"\n', 1
        )
    )
    return build_text_understanding(load_settings(config))


@pytest.fixture
def daemon(make_app, text) -> Callable[[], App]:
    """Build the in-process daemon on the test's site, reusing the shared text model."""
    return lambda: make_app(text=text)
