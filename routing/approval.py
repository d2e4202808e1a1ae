"""The approval state machine: who must approve a ticket, and what each answer does.

Pure: the daemon rebuilds an :class:`ApprovalProgress` from its rows, asks
:func:`decide` or :func:`expire` what an event does, and stores the result with a
conditional update (the first valid decision wins; a lost race is simply asked
again and gets "already decided").

States (of a ticket's approval, :class:`ApprovalState`)::

    pending --all steps approved--> approved
    pending --a rejection at any step--> rejected
    pending --expire()--> expired        (on_expiry: the ticket is rejected or escalated)

and of one approver in one step (:class:`Vote`): pending -> approved | rejected.
Policies (:func:`steps_for`): ``any`` is one step where the first answer decides
(an approval completes the step, the other approvers' requests become moot; a
rejection rejects the ticket, as "a rejection at any step rejects the ticket");
``all`` is one step that needs everyone's approval; ``sequential`` is one step
per approver, in the configured order. Steps are numbered from 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from config.schema import ApprovalSettings, CategorySettings
from routing.facts import ApprovalStep

__all__ = [
    "TRANSITIONS",
    "ApprovalProgress",
    "ApprovalState",
    "Refusal",
    "Transition",
    "Vote",
    "VoteState",
    "decide",
    "expire",
    "expires_at",
    "remind_at",
    "steps_for",
    "steps_from_rows",
]


class ApprovalState(StrEnum):
    """Where a ticket's approval stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class VoteState(StrEnum):
    """One approver's answer in one step (the values of the ticket JSON's ``decision``)."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Refusal(StrEnum):
    """Why a decision was not counted (goes into the ticket history as is)."""

    NOT_APPROVER = "not an approver of this step"
    STEP_NOT_CURRENT = "step not current"
    ALREADY_DECIDED = "already decided"
    TICKET_DECIDED = "ticket already decided"


# The transition table: every state change decide() and expire() make must be listed.
TRANSITIONS: Mapping[ApprovalState, frozenset[ApprovalState]] = {
    ApprovalState.PENDING: frozenset(ApprovalState),
    ApprovalState.APPROVED: frozenset(),
    ApprovalState.REJECTED: frozenset(),
    ApprovalState.EXPIRED: frozenset(),
}

_DECISIONS = {
    "approve": VoteState.APPROVED,
    "approved": VoteState.APPROVED,
    "reject": VoteState.REJECTED,
    "rejected": VoteState.REJECTED,
}


@dataclass(frozen=True, slots=True)
class Vote:
    """A decided answer: ``approver`` (lower-case bare address) decided ``decision`` at ``at``."""

    step: int
    approver: str
    decision: VoteState
    at: datetime


@dataclass(frozen=True, slots=True)
class ApprovalProgress:
    """The steps of a ticket's approval and the answers so far; immutable."""

    steps: tuple[ApprovalStep, ...]
    votes: tuple[Vote, ...] = ()
    expired_at: datetime | None = None
    on_expiry: Literal["reject", "escalate"] | None = None

    @classmethod
    def from_rows(
        cls,
        steps: Iterable[ApprovalStep],
        rows: Iterable[tuple[int, str, str, datetime | None]],
        *,
        expired_at: datetime | None = None,
        on_expiry: Literal["reject", "escalate"] | None = None,
    ) -> ApprovalProgress:
        """Rebuild from ``(step, approver, decision, decided_at)`` rows; pending rows are skipped.

        Raises ValueError for a row that names no approver of its step, or a second
        answer from the same approver in the same step.
        """
        progress = cls(tuple(steps), expired_at=expired_at, on_expiry=on_expiry)
        votes: dict[tuple[int, str], Vote] = {}
        for step, approver, decision, decided_at in rows:
            state = VoteState(decision)
            key = (step, _bare(approver))
            if not progress._is_approver(step, key[1]):
                raise ValueError(f"row names {approver!r}, not an approver of step {step}")
            if state is VoteState.PENDING:
                continue
            if key in votes or decided_at is None:
                raise ValueError(f"row for {approver!r} in step {step} is a duplicate or undated")
            votes[key] = Vote(step, key[1], state, decided_at)
        return replace(progress, votes=tuple(sorted(votes.values(), key=lambda v: v.at)))

    @property
    def state(self) -> ApprovalState:
        """The ticket's approval state, derived from the steps and the votes."""
        if self.expired_at is not None:
            return ApprovalState.EXPIRED
        for step in self.steps:
            outcome = self.step_outcome(step.index)
            if outcome is VoteState.REJECTED:
                return ApprovalState.REJECTED
            if outcome is VoteState.PENDING:
                return ApprovalState.PENDING
        return ApprovalState.APPROVED

    @property
    def current_step(self) -> ApprovalStep | None:
        """The step whose approvers are being asked now, or None once the approval is over."""
        if self.expired_at is not None:
            return None
        for step in self.steps:
            outcome = self.step_outcome(step.index)
            if outcome is not VoteState.APPROVED:
                return step if outcome is VoteState.PENDING else None
        return None

    def step_outcome(self, index: int) -> VoteState:
        """Whether step ``index`` is approved, rejected or still pending; answers in time order."""
        step = self._step(index)
        if step is None:
            raise ValueError(f"no step {index}")
        approvals: set[str] = set()
        for vote in self.votes:
            if vote.step != index:
                continue
            if vote.decision is VoteState.REJECTED:
                return VoteState.REJECTED
            approvals.add(vote.approver)
            if step.mode == "any" or approvals >= {_bare(a) for a in step.approvers}:
                return VoteState.APPROVED
        return VoteState.PENDING

    def vote_of(self, index: int, approver: str) -> VoteState:
        """What ``approver`` answered in step ``index`` (PENDING if nothing)."""
        bare = _bare(approver)
        found = (v.decision for v in self.votes if v.step == index and v.approver == bare)
        return next(found, VoteState.PENDING)

    def waiting_on(self) -> tuple[str, ...]:
        """Approvers of the current step who have not answered (to remind)."""
        step = self.current_step
        if step is None:
            return ()
        return tuple(a for a in step.approvers if self.vote_of(step.index, a) is VoteState.PENDING)

    def _step(self, index: int) -> ApprovalStep | None:
        return next((s for s in self.steps if s.index == index), None)

    def _is_approver(self, index: int, bare: str) -> bool:
        step = self._step(index)
        return step is not None and bare in {_bare(a) for a in step.approvers}


@dataclass(frozen=True, slots=True)
class Transition:
    """What an event did: the new progress, and what the daemon must do about it."""

    progress: ApprovalProgress  # unchanged when refused
    accepted: bool
    refusal: Refusal | None = None
    step_completed: bool = False
    ask: ApprovalStep | None = None  # send requests to this step's approvers now
    moot: tuple[str, ...] = ()  # approvers whose pending requests/tokens to withdraw

    @property
    def state(self) -> ApprovalState:
        """The approval state after the event."""
        return self.progress.state

    @property
    def completed(self) -> bool:
        """True when this event ended the whole approval (approved, rejected or expired)."""
        return self.accepted and self.state is not ApprovalState.PENDING

    @property
    def outcome(self) -> Literal["approved", "rejected", "escalated"] | None:
        """For a completed approval: what happens to the ticket."""
        if not self.completed:
            return None
        if self.state is ApprovalState.EXPIRED:
            return "escalated" if self.progress.on_expiry == "escalate" else "rejected"
        return "approved" if self.state is ApprovalState.APPROVED else "rejected"


def steps_for(category: CategorySettings) -> tuple[ApprovalStep, ...]:
    """The approval steps of ``category``'s policy (empty when it has no approvers)."""
    if category.approval_steps:
        return tuple(
            ApprovalStep(n, _unique(s.approvers), s.approval)
            for n, s in enumerate(category.approval_steps, start=1)
        )
    approvers = _unique(category.approvers)
    if not approvers:
        return ()
    if category.approval == "sequential":
        return tuple(ApprovalStep(n, (a,), "all") for n, a in enumerate(approvers, start=1))
    return (ApprovalStep(1, approvers, category.approval),)


def steps_from_rows(
    rows: Iterable[tuple[int, str, str, datetime | None]], approval: str | Mapping[int, str]
) -> tuple[ApprovalStep, ...]:
    """Steps as stored with a ticket (its rows list every approver), so config edits don't move
    a running approval; ``approval`` is the policy the ticket started with, one for all steps
    or one per step number."""
    by_step: dict[int, list[str]] = {}
    for step, approver, _decision, _at in rows:
        by_step.setdefault(step, [])
        if approver not in by_step[step]:
            by_step[step].append(approver)
    policy = approval if isinstance(approval, Mapping) else dict.fromkeys(by_step, approval)
    return tuple(
        ApprovalStep(n, tuple(by_step[n]), "any" if policy.get(n) == "any" else "all")
        for n in sorted(by_step)
    )


def _unique(approvers: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a.strip() for a in approvers if a.strip()))


def decide(
    progress: ApprovalProgress, step: int, approver: str, decision: str, at: datetime
) -> Transition:
    """Apply ``approver``'s ``decision`` ("approve"/"reject") for ``step``, made at ``at``."""
    vote = _DECISIONS.get(decision.strip().lower())
    if vote is None:
        raise ValueError(f"decision must be approve or reject, not {decision!r}")
    bare = _bare(approver)
    refusal = _refusal(progress, step, bare)
    if refusal is not None:
        return Transition(progress, accepted=False, refusal=refusal)
    after = replace(progress, votes=(*progress.votes, Vote(step, bare, vote, at)))
    _check(progress.state, after.state)
    done = after.step_outcome(step) is not VoteState.PENDING
    if not done:
        return Transition(after, accepted=True)
    ask = after.current_step if after.state is ApprovalState.PENDING else None
    return Transition(after, True, step_completed=True, ask=ask, moot=_unanswered(after, step))


def expire(
    progress: ApprovalProgress, at: datetime, on_expiry: Literal["reject", "escalate"]
) -> Transition:
    """End a pending approval that ran out of time: the ticket is rejected or escalated."""
    if progress.state is not ApprovalState.PENDING:
        return Transition(progress, accepted=False, refusal=Refusal.TICKET_DECIDED)
    after = replace(progress, expired_at=at, on_expiry=on_expiry)
    _check(progress.state, after.state)
    return Transition(after, accepted=True, moot=progress.waiting_on())


def expires_at(requested_at: datetime, settings: ApprovalSettings) -> datetime:
    """When a request (and its token) sent at ``requested_at`` expires."""
    return requested_at + timedelta(hours=settings.token_ttl_hours)


def remind_at(requested_at: datetime, settings: ApprovalSettings) -> datetime:
    """When to remind an approver who has not answered a request sent at ``requested_at``."""
    return requested_at + timedelta(hours=settings.remind_after_hours)


def _refusal(progress: ApprovalProgress, index: int, bare: str) -> Refusal | None:
    if progress.state is not ApprovalState.PENDING:
        return Refusal.TICKET_DECIDED
    if not progress._is_approver(index, bare):
        return Refusal.NOT_APPROVER
    if progress.vote_of(index, bare) is not VoteState.PENDING:
        return Refusal.ALREADY_DECIDED
    current = progress.current_step
    if current is None or current.index != index:
        return Refusal.STEP_NOT_CURRENT
    return None


def _unanswered(progress: ApprovalProgress, index: int) -> tuple[str, ...]:
    step = progress._step(index)
    assert step is not None
    return tuple(a for a in step.approvers if progress.vote_of(index, a) is VoteState.PENDING)


def _check(before: ApprovalState, after: ApprovalState) -> None:
    if after is not before and after not in TRANSITIONS[before]:
        raise RuntimeError(f"approval cannot go from {before} to {after}")


def _bare(address: str) -> str:
    return address.strip().lower()
