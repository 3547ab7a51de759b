"""Delivery states, kinds and attempt outcomes: the one place each value is spelled."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class DeliveryState(StrEnum):
    """Where one delivery (version x target [x recipient]) stands. Stored in deliveries.state."""

    queued = "queued"  # waiting for a worker (also: due again after a deferral)
    in_flight = "in_flight"  # claimed by a worker under a lease
    delivered = "delivered"  # every part confirmed by the platform
    retry_wait = "retry_wait"  # failed for now; due again at next_attempt_at
    dead = "dead"  # gave up: the reason is in last_error; an operator may requeue it
    held = "held"  # its target is paused (breach response, rejected credentials)
    superseded = "superseded"  # a Cancel/Update replaced it before it went out: never sent


class DeliveryKind(StrEnum):
    publish = "publish"  # put the version's posts on the target
    retract = "retract"  # cancel or correct what an earlier version put there


class Outcome(StrEnum):
    """What one attempt came to; stored in delivery_attempts.outcome."""

    delivered = "delivered"  # the platform confirmed every part
    transient = "transient"  # failed, nothing posted; retried after a backoff
    permanent = "permanent"  # will never succeed as it is; dead-lettered
    auth = "auth"  # credentials rejected: the target is paused and an operator alarmed
    ambiguous = "ambiguous"  # may have posted (timeout, reset, 5xx after sending)
    reconciled = "reconciled"  # find_published found what an earlier attempt posted
    not_found = "not_found"  # find_published found nothing: safe to send again
    abandoned = "abandoned"  # the worker holding it stopped answering (its lease lapsed)
    refused = "refused"  # the dispatcher refused to send it (e.g. an exercise to a live target)
    superseded = "superseded"  # a Cancel/Update replaced it; nothing more is sent


# States a worker may still act on, and states that are final until an operator acts.
OPEN_STATES: Final = frozenset(
    {DeliveryState.queued, DeliveryState.in_flight, DeliveryState.retry_wait, DeliveryState.held}
)
FINAL_STATES: Final = frozenset(
    {DeliveryState.delivered, DeliveryState.dead, DeliveryState.superseded}
)
