"""The states of reports, incidents and replies, and which report actions are allowed when.

    new ──acknowledge──▶ acknowledged ──assign──▶ assigned (reassign: assign again)
     │                        │                      │
     └──────────── resolve | dismiss | duplicate | misinformation ────────▶ closed for good

Closing straight from `new` is allowed: a responder must be able to dismiss spam or mark a
duplicate without first acknowledging it. Assigning a new report acknowledges it too.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = [
    "CLOSED",
    "OPEN",
    "Action",
    "IncidentState",
    "ReplyState",
    "ReportState",
    "TransitionRefused",
    "next_state",
]


class ReportState(StrEnum):
    new = "new"  # nobody has looked at it yet
    acknowledged = "acknowledged"  # a responder has seen it
    assigned = "assigned"  # a named responder owns it
    resolved = "resolved"  # dealt with
    dismissed = "dismissed"  # nothing to do (spam, chatter, not ours)
    duplicate = "duplicate"  # another report says the same; that one is worked
    misinformation = "misinformation"  # false; may start rumour control


OPEN: Final = frozenset({ReportState.new, ReportState.acknowledged, ReportState.assigned})
CLOSED: Final = frozenset(set(ReportState) - OPEN)


class Action(StrEnum):
    acknowledge = "acknowledge"
    assign = "assign"
    resolve = "resolve"
    dismiss = "dismiss"
    duplicate = "duplicate"
    misinformation = "misinformation"


_CLOSING: Final = {
    Action.resolve: ReportState.resolved,
    Action.dismiss: ReportState.dismissed,
    Action.duplicate: ReportState.duplicate,
    Action.misinformation: ReportState.misinformation,
}


class TransitionRefused(Exception):
    def __init__(self, action: Action, state: ReportState) -> None:
        if state in CLOSED:
            detail = f"the report is already {state.value}; it is closed"
        else:
            detail = f"the report is {state.value}"
        super().__init__(f"cannot {action.value}: {detail}")
        self.action = action
        self.state = state


def next_state(state: ReportState, action: Action) -> ReportState:
    if state in CLOSED:
        raise TransitionRefused(action, state)
    if action is Action.acknowledge:
        if state is not ReportState.new:
            raise TransitionRefused(action, state)
        return ReportState.acknowledged
    if action is Action.assign:
        return ReportState.assigned
    return _CLOSING[action]


class IncidentState(StrEnum):
    open = "open"  # reports keep joining it
    closed = "closed"  # all its reports were closed together


class ReplyState(StrEnum):
    pending_approval = "pending_approval"  # free text waiting for a second responder
    sending = "sending"  # handed to the platform; stays so if the service stopped meanwhile
    sent = "sent"  # the platform accepted it
    failed = "failed"  # the platform refused it; the error says why
    rejected = "rejected"  # the second responder said no
