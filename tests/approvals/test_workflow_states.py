"""The version state machine: one table, and refusals that name the state and the action."""

import pytest

from approvals.errors import InvalidTransition
from approvals.workflow import (
    REPLACEABLE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    Action,
    VersionState,
    allowed_actions,
    next_state,
)

S = VersionState
A = Action

# The whole machine as the design describes it; a change to TRANSITIONS must change this too.
EXPECTED = {
    (S.draft, A.edit): S.draft,
    (S.draft, A.submit): S.submitted,
    (S.draft, A.withdraw): S.withdrawn,
    (S.submitted, A.approve): S.submitted,
    (S.submitted, A.reach_quorum): S.approved,
    (S.submitted, A.recall): S.draft,
    (S.submitted, A.reject): S.rejected,
    (S.submitted, A.withdraw): S.withdrawn,
    (S.submitted, A.expire): S.expired,
    (S.approved, A.release): S.released,
    (S.approved, A.withdraw): S.withdrawn,
    (S.approved, A.expire): S.expired,
    (S.rejected, A.edit): S.draft,
    (S.rejected, A.withdraw): S.withdrawn,
    (S.released, A.complete): S.completed,
    (S.released, A.partially_fail): S.partially_failed,
    (S.partially_failed, A.complete): S.completed,
}


def test_the_table_is_exactly_the_designed_machine() -> None:
    assert dict(TRANSITIONS) == EXPECTED


@pytest.mark.parametrize("state", list(VersionState))
@pytest.mark.parametrize("action", list(Action))
def test_every_illegal_move_is_refused_naming_state_and_action(
    state: VersionState, action: Action
) -> None:
    if (state, action) in EXPECTED:
        assert next_state(state, action) is EXPECTED[(state, action)]
        return
    with pytest.raises(InvalidTransition) as excinfo:
        next_state(state, action)
    assert excinfo.value.state is state
    assert excinfo.value.action is action
    assert f"cannot {action} a version that is {state}" in str(excinfo.value)


def test_rejected_goes_back_to_draft_only_by_editing() -> None:
    assert next_state(S.rejected, A.edit) is S.draft
    with pytest.raises(InvalidTransition, match="edit it first"):
        next_state(S.rejected, A.submit)


def test_refusals_say_what_to_do_instead() -> None:
    with pytest.raises(InvalidTransition, match="send an Update or a Cancel instead"):
        next_state(S.released, A.edit)
    with pytest.raises(InvalidTransition, match="recall it to draft first"):
        next_state(S.submitted, A.edit)
    with pytest.raises(InvalidTransition, match="nothing: withdrawn is final"):
        next_state(S.withdrawn, A.submit)


def test_final_and_replaceable_states() -> None:
    assert {S.completed, S.withdrawn, S.expired} == TERMINAL_STATES
    assert {S.released, S.completed, S.partially_failed} == REPLACEABLE_STATES
    assert allowed_actions(S.approved) == {A.release, A.withdraw, A.expire}


def test_state_values_are_the_stored_strings() -> None:
    assert [state.value for state in VersionState] == [
        "draft",
        "submitted",
        "approved",
        "released",
        "completed",
        "partially_failed",
        "rejected",
        "withdrawn",
        "expired",
    ]
