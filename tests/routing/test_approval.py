"""The approval state machine: policies, transitions, refusals and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from config.schema import ApprovalSettings, CategorySettings
from routing.approval import (
    TRANSITIONS,
    ApprovalProgress,
    ApprovalState,
    Refusal,
    VoteState,
    decide,
    expire,
    expires_at,
    remind_at,
    steps_for,
    steps_from_rows,
)
from routing.facts import ApprovalStep

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
A, B, C = "alice@example.com", "bob@example.com", "carol@example.com"


def _progress(mode: str, *approvers: str) -> ApprovalProgress:
    category = CategorySettings(name="access", team="Ops", approvers=list(approvers), approval=mode)
    return ApprovalProgress(steps_for(category))


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --- policies --------------------------------------------------------------------------------


def test_steps_for_each_policy() -> None:
    assert _progress("any", A, B).steps == (ApprovalStep(1, (A, B), "any"),)
    assert _progress("all", A, B).steps == (ApprovalStep(1, (A, B), "all"),)
    assert _progress("sequential", A, B).steps == (
        ApprovalStep(1, (A,), "all"),
        ApprovalStep(2, (B,), "all"),
    )


def test_no_approvers_means_no_steps_and_nothing_to_wait_for() -> None:
    progress = _progress("all")
    assert progress.steps == ()
    assert progress.state is ApprovalState.APPROVED
    assert progress.current_step is None


def test_duplicate_and_blank_approvers_are_dropped() -> None:
    assert _progress("all", A, " ", A, B).steps[0].approvers == (A, B)


# --- any / all / sequential ------------------------------------------------------------------


def test_any_first_approval_wins_and_others_become_moot() -> None:
    progress = _progress("any", A, B, C)
    result = decide(progress, 1, B, "approve", _at(1))
    assert result.accepted and result.step_completed and result.completed
    assert result.state is ApprovalState.APPROVED
    assert result.outcome == "approved"
    assert result.moot == (A, C)
    assert result.ask is None
    late = decide(result.progress, 1, A, "reject", _at(2))
    assert (late.accepted, late.refusal) == (False, Refusal.TICKET_DECIDED)


def test_any_one_rejection_rejects() -> None:
    result = decide(_progress("any", A, B), 1, A, "reject", _at(1))
    assert result.state is ApprovalState.REJECTED
    assert result.outcome == "rejected"
    assert result.moot == (B,)


def test_all_needs_everyone() -> None:
    progress = _progress("all", A, B)
    first = decide(progress, 1, A, "approve", _at(1))
    assert first.accepted and not first.step_completed and not first.completed
    assert first.state is ApprovalState.PENDING
    assert first.progress.waiting_on() == (B,)
    second = decide(first.progress, 1, B, "approved", _at(2))
    assert second.step_completed and second.outcome == "approved"
    assert second.moot == ()


def test_all_one_rejection_rejects() -> None:
    first = decide(_progress("all", A, B), 1, A, "approve", _at(1))
    second = decide(first.progress, 1, B, "reject", _at(2))
    assert second.state is ApprovalState.REJECTED
    assert second.progress.step_outcome(1) is VoteState.REJECTED


def test_sequential_asks_the_next_approver_only_when_it_is_their_turn() -> None:
    progress = _progress("sequential", A, B)
    assert progress.current_step == ApprovalStep(1, (A,), "all")
    early = decide(progress, 2, B, "approve", _at(1))
    assert (early.accepted, early.refusal) == (False, Refusal.STEP_NOT_CURRENT)
    first = decide(progress, 1, A, "approve", _at(2))
    assert first.step_completed and not first.completed
    assert first.ask == ApprovalStep(2, (B,), "all")
    second = decide(first.progress, 2, B, "approve", _at(3))
    assert second.completed and second.outcome == "approved" and second.ask is None


def test_sequential_rejection_at_a_later_step_rejects() -> None:
    first = decide(_progress("sequential", A, B, C), 1, A, "approve", _at(1))
    second = decide(first.progress, 2, B, "reject", _at(2))
    assert second.state is ApprovalState.REJECTED
    assert second.ask is None
    assert decide(second.progress, 3, C, "approve", _at(3)).refusal is Refusal.TICKET_DECIDED


# --- refusals --------------------------------------------------------------------------------


def test_non_approver_is_refused() -> None:
    result = decide(_progress("all", A, B), 1, "mallory@example.com", "approve", _at(1))
    assert (result.accepted, result.refusal) == (False, Refusal.NOT_APPROVER)
    assert result.progress == _progress("all", A, B)
    assert str(result.refusal) == "not an approver of this step"


def test_unknown_step_is_refused_as_not_an_approver() -> None:
    assert decide(_progress("all", A), 7, A, "approve", _at(1)).refusal is Refusal.NOT_APPROVER


def test_approver_of_another_step_is_refused() -> None:
    result = decide(_progress("sequential", A, B), 1, B, "approve", _at(1))
    assert result.refusal is Refusal.NOT_APPROVER


def test_second_answer_is_already_decided() -> None:
    first = decide(_progress("all", A, B), 1, A, "approve", _at(1))
    again = decide(first.progress, 1, A.upper(), "reject", _at(2))
    assert (again.accepted, again.refusal) == (False, Refusal.ALREADY_DECIDED)


def test_past_step_answer_is_already_decided() -> None:
    first = decide(_progress("sequential", A, B), 1, A, "approve", _at(1))
    assert decide(first.progress, 1, A, "approve", _at(2)).refusal is Refusal.ALREADY_DECIDED


def test_address_case_and_spaces_do_not_matter() -> None:
    result = decide(_progress("all", A), 1, "  Alice@Example.COM ", "approve", _at(1))
    assert result.accepted and result.outcome == "approved"


def test_bad_decision_word_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="approve or reject"):
        decide(_progress("all", A), 1, A, "maybe", _at(1))


# --- expiry ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_expiry", "outcome"), [("reject", "rejected"), ("escalate", "escalated")]
)
def test_expiry(on_expiry: str, outcome: str) -> None:
    first = decide(_progress("all", A, B), 1, A, "approve", _at(1))
    result = expire(first.progress, _at(60), on_expiry)  # type: ignore[arg-type]
    assert result.accepted and result.completed
    assert result.state is ApprovalState.EXPIRED
    assert result.outcome == outcome
    assert result.moot == (B,)
    assert result.progress.current_step is None
    assert decide(result.progress, 1, B, "approve", _at(61)).refusal is Refusal.TICKET_DECIDED


def test_expiring_a_decided_approval_is_refused() -> None:
    done = decide(_progress("any", A), 1, A, "approve", _at(1))
    result = expire(done.progress, _at(60), "reject")
    assert (result.accepted, result.refusal) == (False, Refusal.TICKET_DECIDED)
    assert result.outcome is None


def test_deadlines_come_from_settings() -> None:
    settings = ApprovalSettings(token_ttl_hours=72, remind_after_hours=24)
    assert expires_at(T0, settings) == T0 + timedelta(hours=72)
    assert remind_at(T0, settings) == T0 + timedelta(hours=24)


# --- rebuilding from database rows -----------------------------------------------------------


def test_rebuild_from_rows_matches_the_live_progress() -> None:
    live = decide(_progress("all", A, B, C), 1, A, "approve", _at(1)).progress
    live = decide(live, 1, C, "approve", _at(2)).progress
    rows = [(1, A, "approved", _at(1)), (1, B, "pending", None), (1, C, "approved", _at(2))]
    rebuilt = ApprovalProgress.from_rows(steps_from_rows(rows, "all"), rows)
    assert rebuilt == live
    assert rebuilt.waiting_on() == (B,)
    assert rebuilt.vote_of(1, "ALICE@example.com") is VoteState.APPROVED


def test_steps_from_rows_keep_the_policy_the_ticket_started_with() -> None:
    rows = [(1, A, "approved", _at(1)), (2, B, "pending", None)]
    assert steps_from_rows(rows, "sequential") == (
        ApprovalStep(1, (A,), "all"),
        ApprovalStep(2, (B,), "all"),
    )
    assert steps_from_rows([(1, A, "pending", None), (1, B, "pending", None)], "any") == (
        ApprovalStep(1, (A, B), "any"),
    )


def test_rebuild_orders_votes_by_time() -> None:
    steps = (ApprovalStep(1, (A, B), "any"),)
    rows = [(1, B, "rejected", _at(5)), (1, A, "approved", _at(1))]
    assert ApprovalProgress.from_rows(steps, rows).state is ApprovalState.APPROVED


def test_rebuild_with_expiry() -> None:
    steps = (ApprovalStep(1, (A,), "all"),)
    progress = ApprovalProgress.from_rows(
        steps, [(1, A, "pending", None)], expired_at=_at(9), on_expiry="escalate"
    )
    assert progress.state is ApprovalState.EXPIRED


@pytest.mark.parametrize(
    "rows",
    [
        [(1, "mallory@example.com", "approved", T0)],
        [(1, A, "approved", T0), (1, A, "rejected", T0)],
        [(1, A, "approved", None)],
        [(1, A, "maybe", T0)],
    ],
)
def test_rebuild_refuses_inconsistent_rows(rows: list) -> None:
    with pytest.raises(ValueError):
        ApprovalProgress.from_rows((ApprovalStep(1, (A, B), "all"),), rows)


def test_transition_table_only_leaves_pending() -> None:
    assert TRANSITIONS[ApprovalState.PENDING] == frozenset(ApprovalState)
    for state in (ApprovalState.APPROVED, ApprovalState.REJECTED, ApprovalState.EXPIRED):
        assert TRANSITIONS[state] == frozenset()


def test_approval_steps_each_with_its_own_rule() -> None:
    category = CategorySettings(
        name="access",
        team="Ops",
        approval_steps=[{"approvers": [A, B, A], "approval": "any"}, {"approvers": [C]}],
    )
    assert category.needs_approval
    steps = steps_for(category)
    assert steps == (ApprovalStep(1, (A, B), "any"), ApprovalStep(2, (C,), "all"))
    progress = ApprovalProgress(steps)
    first = decide(progress, 1, B, "approve", _at(1))
    assert first.accepted and first.ask == steps[1] and first.moot == (A,)
    rows = [(1, A, "pending", None), (1, B, "approved", _at(1)), (2, C, "pending", None)]
    assert steps_from_rows(rows, {1: "any", 2: "sequential"}) == steps


def test_approvers_and_approval_steps_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="either approvers or approval_steps"):
        CategorySettings(name="x", team="Ops", approvers=[A], approval_steps=[{"approvers": [B]}])
