"""ARCHITECTURE.md's arrows, enforced by walking every import in the packages.

mailtriage  -> everyone   (the command line wires it all; nothing imports it)
config      <- everyone   (stdlib + pydantic only)
classifier  <- daemon     (never imports daemon, routing, web_status)
routing     <- daemon     (pure: config + stdlib only)
templates   <- daemon
daemon      -> config, classifier, routing, templates (never web_status, mailtriage)
daemon.store.queries <- web_status (nothing else from daemon)

And no circle among the project's modules, counting imports inside functions
and under ``TYPE_CHECKING`` too: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = ("config", "classifier", "routing", "templates", "web_status", "daemon", "mailtriage")

# package -> project modules it may import (prefix match)
ALLOWED = {
    "config": ("config",),
    "classifier": ("classifier", "config"),
    "routing": ("routing", "config"),
    "templates": ("templates",),
    "web_status": ("web_status", "config", "daemon.store.queries"),
    "daemon": ("daemon", "config", "classifier", "routing", "templates"),
    "mailtriage": PROJECT,
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


def _modules() -> Iterator[tuple[str, Path]]:
    for pkg in PROJECT:
        for path in sorted((REPO / pkg).rglob("*.py")):
            if "migrations" not in path.parts:
                yield pkg, path


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


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


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (``from m import name`` -> m)."""
    modules = {_module_name(p): p for _pkg, p in _modules()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_imports_the_command_line() -> None:
    graph = import_graph()
    users = {m for m, targets in graph.items() for t in targets if t.startswith("mailtriage")}
    assert {u for u in users if not u.startswith("mailtriage")} == set()


def test_no_import_circles() -> None:
    assert cycles(import_graph()) == []
