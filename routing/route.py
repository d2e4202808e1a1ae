"""Route a new ticket: team, priority adjustments, assignee, SLA due time.

Rules are small named units applied in the order of :data:`RULES`; every rule
that changed something is recorded in ``rule_hits`` with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from config.schema import PRIORITIES, Settings
from routing.facts import ApprovalStep, RoutingDecision, TicketFacts
from routing.sla import SlaPolicy

PRIORITY_WEIGHT = {"critical": 4, "high": 3, "medium": 2, "low": 1}


def _rank(priority: str) -> int:
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)


def at_least(priority: str, floor: str) -> str:
    """Return the higher of ``priority`` and ``floor``."""
    return priority if _rank(priority) <= _rank(floor) else floor


@dataclass
class Draft:
    """The routing decision while rules shape it."""

    team: str | None
    priority: str
    hits: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def note(self, rule: str, reason: str) -> None:
        """Record that ``rule`` fired, and why."""
        self.hits.append(rule)
        self.reasons.append(reason)


class CategoryTeam:
    """Send the ticket to the team configured for its category."""

    name = "category-team"

    def apply(self, facts: TicketFacts, settings: Settings, draft: Draft) -> None:
        """Set the team from ``[[categories]]``."""
        cat = settings.category(facts.category)
        if cat is not None:
            draft.team = cat.team
            draft.note(self.name, f"category {facts.category} -> team {cat.team}")


class LowConfidence:
    """Below the confidence threshold a person triages: never a silent guess."""

    name = "low-confidence"

    def apply(self, facts: TicketFacts, settings: Settings, draft: Draft) -> None:
        """Send unsure classifications to the triage team."""
        cfg = settings.classifier
        if cfg.triage_team and facts.confidence < cfg.confidence_threshold:
            draft.team = cfg.triage_team
            draft.note(
                self.name,
                f"confidence {facts.confidence:.2f} < {cfg.confidence_threshold:.2f} "
                f"-> triage team {cfg.triage_team}",
            )


class CategoryMinPriority:
    """Business rule: some categories are at least a given priority (e.g. security)."""

    name = "category-min-priority"

    def apply(self, facts: TicketFacts, settings: Settings, draft: Draft) -> None:
        """Raise the priority to the category's ``min_priority``."""
        cat = settings.category(facts.category)
        if (
            cat
            and cat.min_priority
            and at_least(draft.priority, cat.min_priority) != draft.priority
        ):
            draft.priority = cat.min_priority
            draft.note(self.name, f"category {facts.category} is at least {cat.min_priority}")


RULES = (CategoryTeam(), LowConfidence(), CategoryMinPriority())


def choose_assignee(
    members: list[str], unavailable: list[str], load: Mapping[str, int]
) -> tuple[str | None, str]:
    """Return the least-loaded available member (ties: config order) and why."""
    away = {u.lower() for u in unavailable}
    available = [m for m in members if m.lower() not in away]
    if not available:
        return None, "no available member"
    best = min(available, key=lambda m: (load.get(m.lower(), 0), available.index(m)))
    return (
        best,
        f"least loaded of {len(available)} available (weighted open load {load.get(best.lower(), 0)})",
    )


def route(
    facts: TicketFacts,
    settings: Settings,
    load: Mapping[str, int],
    approval_steps: tuple[ApprovalStep, ...] = (),
) -> RoutingDecision:
    """Apply the rules, pick an assignee and the SLA due times (business time).

    A ticket that needs approval gets its team now but no assignee: it is
    assigned only after the last approval step (call :func:`assign`).
    """
    draft = Draft(team=None, priority=facts.priority)
    for rule in RULES:
        rule.apply(facts, settings, draft)
    assignee = None
    if approval_steps:
        draft.note("approval-required", f"{len(approval_steps)} approval step(s) before assignment")
    else:
        assignee = assign(draft.team, settings, load, draft)
    dues = SlaPolicy(settings).dues(draft.priority, facts.category, facts.received_at)
    return RoutingDecision(
        team=draft.team,
        assignee=assignee,
        priority=draft.priority,
        sla_due_at=dues.resolution,
        first_response_due=dues.first_response,
        next_update_due=dues.next_update,
        approval_steps=approval_steps,
        rule_hits=tuple(draft.hits),
        reasons=tuple(draft.reasons),
    )


def assign(
    team_name: str | None, settings: Settings, load: Mapping[str, int], draft: Draft | None = None
) -> str | None:
    """Return the least-loaded available member of ``team_name``, recording why in ``draft``."""
    team = settings.team(team_name) if team_name else None
    if team is None:
        if draft is not None:
            draft.note("no-team", f"team {team_name!r} is not configured: left unassigned")
        return None
    assignee, why = choose_assignee(team.members, team.unavailable, load)
    if draft is not None:
        draft.note("least-loaded", f"{assignee or 'nobody'}: {why}")
    return assignee
