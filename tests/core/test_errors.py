"""One error tree: every deliberate error belongs to the group of whoever must act."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from classifier.cli import ClassifierCommandError
from classifier.lexicon import DictionaryMissing
from classifier.model import ModelError
from config.errors import (
    ConfigError,
    DataError,
    MailError,
    MailtriageError,
    ServiceError,
    UserError,
)
from daemon.backends.base import BackendError, PermanentSendError
from daemon.ledger import AlreadyReleased, Hold
from daemon.parse import UnparseableMail
from daemon.store.db import StoreUnavailable

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "classifier", "routing", "templates", "web_status", "daemon", "mailtriage")


@pytest.mark.parametrize(
    ("error", "group"),
    [
        (ClassifierCommandError, UserError),
        (AlreadyReleased, UserError),
        (ModelError, DataError),
        (DictionaryMissing, DataError),
        (UnparseableMail, MailError),
        (Hold, MailError),
        (BackendError, ServiceError),
        (PermanentSendError, ServiceError),
        (StoreUnavailable, ServiceError),
    ],
)
def test_each_error_is_in_its_group(error: type, group: type) -> None:
    assert issubclass(error, group) and issubclass(group, MailtriageError)


def test_a_group_carries_its_hint_and_a_raise_may_override_it() -> None:
    assert "check-config" in ConfigError("x").hint
    assert ConfigError("x", "run init").hint == "run init"
    assert UserError("x").hint == ""


def _project_files():
    for pkg in PACKAGES:
        yield from (p for p in (REPO / pkg).rglob("*.py") if "migrations" not in p.parts)


def test_every_exception_class_joins_the_tree() -> None:
    roots = {"Exception", "RuntimeError", "ValueError"}
    stray = []
    for path in _project_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                if bases & roots and node.name != "MailtriageError":
                    stray.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert stray == []


def test_every_catch_all_says_why() -> None:
    silent = []
    for path in _project_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip().startswith("except Exception") and "#" not in line:
                silent.append(f"{path.relative_to(REPO)}:{number}")
    assert silent == []
