"""What routing decides from, and what it decides."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class TicketFacts:
    """Everything routing may look at for a new ticket."""

    requester: str
    subject: str
    text: str
    category: str
    priority: str
    confidence: float
    received_at: datetime
    classification_source: str = "model"


@dataclass(frozen=True, slots=True)
class ApprovalStep:
    """One step of an approval policy: who, and how their answers combine."""

    index: int
    approvers: tuple[str, ...]
    mode: str  # "all" | "any" (first approval wins); sequential policies have one approver a step


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Where a new ticket goes, and why."""

    team: str | None
    assignee: str | None
    priority: str
    sla_due_at: datetime | None
    approval_steps: tuple[ApprovalStep, ...] = ()
    first_response_due: datetime | None = None
    next_update_due: datetime | None = None
    rule_hits: tuple[str, ...] = field(default_factory=tuple)
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def needs_approval(self) -> bool:
        """True when the ticket must be approved before it is assigned."""
        return bool(self.approval_steps)
