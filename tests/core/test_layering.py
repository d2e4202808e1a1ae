"""ARCHITECTURE.md's arrows, enforced by walking every import in the packages.

config      <- everyone   (stdlib + pydantic only)
classifier  <- daemon     (never imports daemon, routing, web_status)
routing     <- daemon     (pure: config + stdlib only)
templates   <- daemon
daemon.store.queries <- web_status (nothing else from daemon)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = ("config", "classifier", "routing", "templates", "web_status", "daemon")

# package -> project modules it may import (prefix match)
ALLOWED = {
    "config": ("config",),
    "classifier": ("classifier", "config"),
    "routing": ("routing", "config"),
    "templates": ("templates",),
    "web_status": ("web_status", "config", "daemon.store.queries"),
    "daemon": PROJECT,
}
# routing is pure: no I/O libraries
ROUTING_FORBIDDEN_THIRD_PARTY = ("sqlalchemy", "requests", "imapclient", "smtplib", "flask")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [f"{node.module}.{a.name}" for a in node.names]
    return found


def _modules():
    for pkg in PROJECT:
        for path in sorted((REPO / pkg).rglob("*.py")):
            if "migrations" not in path.parts:
                yield pkg, path


@pytest.mark.parametrize(
    ("pkg", "path"), list(_modules()), ids=lambda v: str(v).split("/main/")[-1]
)
def test_imports_follow_the_architecture(pkg: str, path: Path) -> None:
    allowed = ALLOWED[pkg]
    for name in _imports(path):
        top = name.split(".")[0]
        if top not in PROJECT:
            if pkg == "routing":
                assert top not in ROUTING_FORBIDDEN_THIRD_PARTY, f"{path}: routing imports {name}"
            continue
        assert any(name == a or name.startswith(a + ".") for a in allowed), (
            f"{path.relative_to(REPO)} imports {name}; {pkg} may import only {allowed}"
        )


def test_web_status_never_reaches_daemon_internals() -> None:
    names = [n for p in (REPO / "web_status").rglob("*.py") for n in _imports(p)]
    daemon_imports = {n for n in names if n.split(".")[0] == "daemon"}
    assert daemon_imports <= {"daemon.store.queries"}
