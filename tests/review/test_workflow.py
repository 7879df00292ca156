"""The pure workflow: the permission matrix (each role × each action), transitions, self-approval, clear errors."""

from __future__ import annotations

import pytest

from pipeline.review import workflow
from pipeline.review.workflow import (
    Action,
    Actor,
    Decision,
    InvalidTransition,
    ItemState,
    PermissionDenied,
    Role,
    SelfApprovalError,
    State,
    allowed,
)

EXPECTED = {  # the issue note's matrix, written out independently of workflow.MATRIX
    Action.VIEW: {"viewer", "reviewer", "approver", "admin"},
    Action.START_REVIEW: {"reviewer", "approver", "admin"},
    Action.DECIDE: {"reviewer", "approver", "admin"},
    Action.REOPEN: {"reviewer", "approver", "admin"},
    Action.APPROVE: {"approver", "admin"},
    Action.EXPORT: {"reviewer", "approver", "admin"},
    Action.VIEW_AUDIT: {"approver", "admin"},
    Action.MANAGE_USERS: {"admin"},
    Action.RECORD_TIME: {"reviewer", "approver", "admin"},
    Action.SET_LEVELS: {"admin"},
    Action.DEFINE_STUDY: {"admin"},  # review studies (issue 16)
    Action.CLOSE_STUDY: {"admin"},
    Action.VIEW_STUDIES: {"reviewer", "approver", "admin"},  # a reviewer: only the studies it reviews
    Action.VIEW_ALLOCATION: {"approver", "admin"},
    Action.OPEN_STUDY_CASE: {"reviewer", "approver", "admin"},  # and only the actor's own assignments
}
ALICE = Actor(1, "alice", Role.REVIEWER)
BOB = Actor(2, "bob", Role.APPROVER)


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("role", list(Role))
def test_permission_matrix(role: Role, action: Action) -> None:
    assert allowed(role, action) is (role.value in EXPECTED[action])
    assert allowed(role.value, action.value) is allowed(role, action)


def test_unknown_roles_and_actions_are_never_allowed() -> None:
    assert not allowed("superuser", Action.VIEW)
    assert not allowed(Role.ADMIN, "drop_tables")


def test_a_full_cycle_by_two_users() -> None:
    item = workflow.start_review(ItemState(), ALICE)
    assert item == ItemState(State.IN_REVIEW, reviewer_id=1)
    item = workflow.decide(item, ALICE, "edited", "  moved the caudal edge  ")
    assert (item.state, item.decision, item.comment) == (State.REVIEWED, Decision.EDITED, "moved the caudal edge")
    item = workflow.approve(item, BOB)
    assert (item.state, item.reviewer_id, item.approver_id) == (State.APPROVED, 1, 2)


def test_editing_a_reviewed_item_sends_it_back_to_review() -> None:
    reviewed = workflow.decide(workflow.start_review(ItemState(), ALICE), ALICE, Decision.ACCEPTED, None)
    carol = Actor(3, "carol", Role.REVIEWER)
    again = workflow.reopen(reviewed, carol)
    assert again == ItemState(State.IN_REVIEW, reviewer_id=3)
    decided = workflow.decide(again, carol, "accepted", "")
    assert workflow.approve(decided, Actor(1, "alice", Role.ADMIN)).approver_id == 1  # alice's earlier review is void


def test_self_approval_is_refused_even_for_an_admin() -> None:
    boss = Actor(7, "boss", Role.ADMIN)
    reviewed = workflow.decide(workflow.start_review(ItemState(), boss), boss, "accepted", None)
    with pytest.raises(SelfApprovalError, match="boss reviewed this item and may not approve it"):
        workflow.approve(reviewed, boss)


def test_refusals_say_why() -> None:
    needs = r"alice \(reviewer\) may not approve: it needs the role admin or approver"
    with pytest.raises(PermissionDenied, match=needs):
        workflow.approve(ItemState(State.REVIEWED, reviewer_id=9), ALICE)
    with pytest.raises(InvalidTransition, match="cannot decide an item that is pending"):
        workflow.decide(ItemState(), ALICE, "accepted", None)
    with pytest.raises(InvalidTransition, match="cannot approve an item that is in_review"):
        workflow.approve(ItemState(State.IN_REVIEW, reviewer_id=1), BOB)
    with pytest.raises(InvalidTransition, match="needs a comment"):
        workflow.decide(ItemState(State.IN_REVIEW, reviewer_id=1), ALICE, "rejected", "  ")
    with pytest.raises(InvalidTransition, match="unknown decision 'maybe'"):
        workflow.decide(ItemState(State.IN_REVIEW, reviewer_id=1), ALICE, "maybe", None)
    with pytest.raises(InvalidTransition, match="another user has in review"):
        workflow.decide(ItemState(State.IN_REVIEW, reviewer_id=1), BOB, "accepted", None)
    with pytest.raises(InvalidTransition, match="cannot reopen an item that is approved"):
        workflow.reopen(ItemState(State.APPROVED, Decision.ACCEPTED, None, 1, 2), BOB)
    with pytest.raises(PermissionDenied, match="needs a signed-in user"):
        workflow.start_review(ItemState(), Actor(None, "cli:root", Role.ADMIN))


def test_review_time_on_another_users_item_only_for_a_reader_of_its_case_in_a_study() -> None:
    theirs = ItemState(State.REVIEWED, Decision.ACCEPTED, reviewer_id=BOB.user_id)
    workflow.may_record_time(ItemState(), ALICE)
    workflow.may_record_time(ItemState(State.IN_REVIEW, reviewer_id=ALICE.user_id), ALICE)
    with pytest.raises(PermissionDenied, match="another user reviews"):
        workflow.may_record_time(theirs, ALICE)
    workflow.may_record_time(theirs, ALICE, reads_case=True)  # a crossover's second reader
    with pytest.raises(PermissionDenied):
        workflow.may_record_time(theirs, Actor(3, "vic", Role.VIEWER), reads_case=True)
