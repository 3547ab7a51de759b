"""The alert version state machine: its states, the actions on it, and the one table of moves.

    draft ──submit──▶ submitted ──approve (quorum met)──▶ approved ──release──▶ released
      ▲  ◀──recall──┘    │ approve (not yet)  ⟲                                  │
      │                  └─reject─▶ rejected                       complete / partially_fail
      └────────edit──────────────────┘                                            ▼
                                                              completed | partially_failed

withdraw ends a version that has not been released; expire ends one whose approvals or
submission window lapsed. Updates and Cancels are new versions (see lifecycle.make_update).
"""

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from approvals.errors import InvalidTransition

__all__ = [
    "INITIAL_STATE",
    "REPLACEABLE_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Action",
    "InvalidTransition",
    "VersionState",
    "allowed_actions",
    "next_state",
]


class VersionState(StrEnum):
    """Where one alert version stands. The values are stored in the database."""

    draft = "draft"  # being written; the only state in which content changes
    submitted = "submitted"  # waiting for approvals; content frozen
    approved = "approved"  # quorum met; the service releases it in the same transaction
    released = "released"  # outbox rows written; deliveries under way
    completed = "completed"  # every delivery finished
    partially_failed = "partially_failed"  # some deliveries gave up (dead); others went out
    rejected = "rejected"  # an approver said no, with a reason; editing makes it a draft again
    withdrawn = "withdrawn"  # pulled by its author or an operator before release; final
    expired = "expired"  # approvals or the submission window lapsed before release; final


class Action(StrEnum):
    """What can happen to a version; each one is an audit log entry."""

    create = "create"  # a new version begins as a draft (not a move between states)
    edit = "edit"  # change the content; voids every approval
    recall = "recall"  # the author takes a submitted version back to draft; voids approvals
    submit = "submit"  # ask for approval
    approve = "approve"  # one approval recorded; quorum not met yet
    reach_quorum = "reach_quorum"  # the approvals now meet the policy rule
    reject = "reject"  # an approver refuses, with a reason
    withdraw = "withdraw"  # abandon the version before release
    release = "release"  # hand it to the outbox for delivery
    complete = "complete"  # every delivery finished
    partially_fail = "partially_fail"  # deliveries finished, some dead
    expire = "expire"  # approvals or submission window lapsed


INITIAL_STATE: Final = VersionState.draft

_S = VersionState
_A = Action

# The only place legal moves are written down.
TRANSITIONS: Final[Mapping[tuple[VersionState, Action], VersionState]] = MappingProxyType(
    {
        (_S.draft, _A.edit): _S.draft,
        (_S.draft, _A.submit): _S.submitted,
        (_S.draft, _A.withdraw): _S.withdrawn,
        (_S.submitted, _A.approve): _S.submitted,
        (_S.submitted, _A.reach_quorum): _S.approved,
        (_S.submitted, _A.recall): _S.draft,
        (_S.submitted, _A.reject): _S.rejected,
        (_S.submitted, _A.withdraw): _S.withdrawn,
        (_S.submitted, _A.expire): _S.expired,
        (_S.approved, _A.release): _S.released,
        (_S.approved, _A.withdraw): _S.withdrawn,
        (_S.approved, _A.expire): _S.expired,
        (_S.rejected, _A.edit): _S.draft,
        (_S.rejected, _A.withdraw): _S.withdrawn,
        (_S.released, _A.complete): _S.completed,
        (_S.released, _A.partially_fail): _S.partially_failed,
        (_S.partially_failed, _A.complete): _S.completed,  # after dead deliveries are requeued
    }
)

TERMINAL_STATES: Final = frozenset(
    state for state in VersionState if not any(key[0] is state for key in TRANSITIONS)
)

# Versions that were handed to the outbox: only these can be updated or cancelled.
REPLACEABLE_STATES: Final = frozenset({_S.released, _S.completed, _S.partially_failed})

# What to do instead, for the refusals people run into most.
_HINTS: Final[Mapping[tuple[VersionState, Action], str]] = MappingProxyType(
    {
        (_S.submitted, _A.edit): "recall it to draft first (its approvals are voided)",
        (_S.approved, _A.edit): "it is being released; send an Update or a Cancel instead",
        (_S.released, _A.edit): "it went out; send an Update or a Cancel instead",
        (_S.completed, _A.edit): "it went out; send an Update or a Cancel instead",
        (_S.rejected, _A.submit): "edit it first to address the rejection reason",
        (_S.released, _A.withdraw): "it went out; send a Cancel instead",
        (_S.expired, _A.submit): "start a new draft from its content",
    }
)


def allowed_actions(state: VersionState) -> frozenset[Action]:
    """The actions legal from this state."""
    return frozenset(action for (source, action) in TRANSITIONS if source is state)


def next_state(state: VersionState, action: Action) -> VersionState:
    """The state after this action, or InvalidTransition naming the state and the action."""
    target = TRANSITIONS.get((state, action))
    if target is not None:
        return target
    allowed = sorted(allowed_actions(state))
    options = ", ".join(allowed) if allowed else f"nothing: {state} is final"
    hint = _HINTS.get((state, action))
    advice = f"; {hint}" if hint else ""
    raise InvalidTransition(
        state,
        action,
        f"cannot {action} a version that is {state}{advice} (allowed from {state}: {options})",
    )
