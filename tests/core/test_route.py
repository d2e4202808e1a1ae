"""Routing rules and least-loaded assignment (pure functions)."""

from __future__ import annotations

from datetime import datetime, timedelta

from config.schema import ApprovalSettings, CategorySettings, Settings, TeamSettings
from routing.facts import ApprovalStep, TicketFacts
from routing.route import at_least, choose_assignee, route

NOW = datetime(2026, 1, 5, 9, 0)


def _settings(**kw) -> Settings:
    return Settings(
        teams=[
            TeamSettings(
                name="Net", members=["a@x.com", "b@x.com", "c@x.com"], unavailable=["c@x.com"]
            ),
            TeamSettings(name="Desk", members=["d@x.com"]),
        ],
        categories=[
            CategorySettings(name="network", team="Net"),
            CategorySettings(name="security", team="Desk", min_priority="high"),
        ],
        approval=ApprovalSettings(),
        **kw,
    )


def _facts(category="network", priority="medium", confidence=0.9) -> TicketFacts:
    return TicketFacts("r@x.com", "s", "t", category, priority, confidence, NOW)


def test_least_loaded_available_member_ties_in_config_order() -> None:
    assert choose_assignee(["a", "b", "c"], ["c"], {})[0] == "a"
    assert choose_assignee(["a", "b", "c"], ["c"], {"a": 3, "b": 2})[0] == "b"
    assert choose_assignee(["a", "b", "c"], ["c"], {"a": 2, "b": 2, "c": 0})[0] == "a"
    assert choose_assignee(["a"], ["A"], {})[0] is None


def test_route_records_every_rule_and_sets_sla() -> None:
    d = route(_facts(), _settings(), {"a@x.com": 4})
    assert d.team == "Net" and d.assignee == "b@x.com"
    assert d.rule_hits == ("category-team", "least-loaded")
    assert d.sla_due_at == NOW + timedelta(hours=24)


def test_low_confidence_goes_to_triage_team_and_says_so() -> None:
    s = _settings()
    s.classifier.triage_team = "Desk"
    d = route(_facts(confidence=0.1), s, {})
    assert d.team == "Desk" and "low-confidence" in d.rule_hits
    assert any("triage" in r for r in d.reasons)


def test_category_minimum_priority() -> None:
    d = route(_facts(category="security", priority="low"), _settings(), {})
    assert d.priority == "high" and "category-min-priority" in d.rule_hits
    assert d.sla_due_at == NOW + timedelta(hours=8)
    assert at_least("critical", "high") == "critical"


def test_approval_defers_assignment() -> None:
    steps = (ApprovalStep(0, ("boss@x.com",), "all"),)
    d = route(_facts(), _settings(), {}, steps)
    assert d.needs_approval and d.assignee is None and d.team == "Net"
