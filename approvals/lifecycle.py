"""The alert version aggregate: every action the service takes on a version, as pure functions.

Each function takes the current `VersionRecord` and returns a `Step`: the new record (records are
immutable) and the audit events describing what happened. Nothing here reads a clock or a
database: the caller passes `now`, the policy and the screening config, and stores the result in
one transaction. When `approve` or `submit` returns an `approved` record the service releases it
in that same transaction, calling `release`, which checks the quorum again at that moment.

Invariants this module keeps (and tests/approvals/test_lifecycle_properties.py tries to break):
- a version is released only if its approvals meet its rule at the moment of release;
- nobody who wrote, edited or submitted a version counts toward its quorum;
- any edit voids every approval (approvals are bound to the content hash as well);
- the status is fixed when a version is created: an exercise never becomes Actual nor the reverse,
  and an Update or Cancel has the status of the version it replaces;
- a Cancel only goes to channels the version it cancels went to.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeAlias

from approvals.alert import AlertContent, Mode, MsgType, Status, check_reference
from approvals.canonical import content_hash
from approvals.errors import (
    InvalidContent,
    InvalidTransition,
    NotAllowed,
    NotDue,
    QuorumNotMet,
    ScreeningBlocked,
    StaleContent,
)
from approvals.policy import (
    Approval,
    Approver,
    Policy,
    PolicyContext,
    QuorumResult,
    Rule,
    UserId,
)
from approvals.screening import (
    NO_CHANNEL_CHECKS,
    ChannelCheck,
    Finding,
    ScreeningConfig,
    blocking,
    screen,
)
from approvals.workflow import REPLACEABLE_STATES, Action, VersionState, next_state

__all__ = [
    "Event",
    "Step",
    "VersionId",
    "VersionRecord",
    "approve",
    "complete",
    "edit",
    "expire",
    "expiry_due",
    "make_cancel",
    "make_update",
    "new_draft",
    "partially_fail",
    "quorum",
    "recall",
    "references_for",
    "reject",
    "release",
    "submit",
    "withdraw",
]

VersionId: TypeAlias = int  # the service's alert_versions.id


@dataclass(frozen=True)
class VersionRecord:
    """One version of an alert, as the workflow sees it."""

    state: VersionState
    content: AlertContent
    content_hash: str  # always content_hash(content); checked on construction
    author_id: UserId  # who created the version
    authors: frozenset[UserId]  # everyone who created, edited or submitted it: none may approve
    created_at: datetime
    updated_at: datetime
    approvals: tuple[Approval, ...] = ()
    rule: str | None = None  # the policy rule it was last checked against
    reject_reason: str | None = None
    replaces: VersionId | None = None  # the version this Update or Cancel replaces
    replaces_went_out: bool = False  # that version reached the public on at least one target
    replaced_channels: frozenset[str] | None = None  # a Cancel may only go to these
    prewritten_hash: str | None = None  # hash of the unedited pre-written cancel text, if any
    submitted_at: datetime | None = None
    approved_at: datetime | None = None
    released_at: datetime | None = None
    cap_reference: str | None = None  # "sender,identifier,sent", assigned at release

    def __post_init__(self) -> None:
        if content_hash(self.content) != self.content_hash:
            raise ValueError(
                f"version record content_hash {self.content_hash[:12]}... does not match its "
                "content; the stored content or hash was altered: do not use this record"
            )

    @property
    def mode(self) -> Mode:
        return self.content.mode

    @property
    def prewritten(self) -> bool:
        """A Cancel still carrying its template's pre-written text, unedited."""
        return self.prewritten_hash is not None and self.prewritten_hash == self.content_hash

    @property
    def context(self) -> PolicyContext:
        return PolicyContext.of(
            self.content, went_out=self.replaces_went_out, prewritten=self.prewritten
        )


@dataclass(frozen=True)
class Event:
    """One audit log entry."""

    action: Action
    actor_id: UserId | None  # None when the service acts on its own (release, expire, delivery)
    at: datetime
    from_state: VersionState | None  # None for a new version
    to_state: VersionState
    content_hash: str
    detail: str


@dataclass(frozen=True)
class Step:
    """The result of an action: the new record and what to write to the audit log."""

    record: VersionRecord
    events: tuple[Event, ...]
    quorum: QuorumResult | None = None  # after submit, approve and release
    findings: tuple[Finding, ...] = ()  # screening warnings to show the author and approvers


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, not naive {now!r}")
    return now


def _event(
    record: VersionRecord,
    action: Action,
    actor: UserId | None,
    now: datetime,
    to_state: VersionState,
    detail: str,
) -> Event:
    return Event(action, actor, now, record.state, to_state, record.content_hash, detail)


def _refuse_status_change(old: Status, new: Status) -> None:
    if old is new:
        return
    if old is Status.actual:
        advice = "an Actual alert can never become an exercise; start one from an exercise template"
    elif new is Status.actual:
        advice = "an exercise can never become Actual; start a new alert from a live template"
    else:
        advice = f"start a new {new.value} alert instead"
    raise InvalidContent(
        "status",
        f"status is fixed when an alert is created: this version is {old.value} and cannot "
        f"become {new.value}; {advice}",
        new.value,
    )


def _refuse_cancel_widening(content: AlertContent, allowed: frozenset[str] | None) -> None:
    if content.msg_type is not MsgType.cancel or allowed is None:
        return
    extra = sorted(set(content.channels) - allowed)
    if extra:
        raise InvalidContent(
            "channels",
            f"a Cancel only goes where the alert it cancels went ({', '.join(sorted(allowed))}); "
            f"{', '.join(extra)} never carried it: remove {', '.join(extra)}",
            extra,
        )


def _refuse_expired(content: AlertContent, now: datetime) -> None:
    for index, info in enumerate(content.infos):
        if info.expires is not None and info.expires <= now:
            raise InvalidContent(
                f"infos[{index}].expires",
                f"expires {info.expires.isoformat()} is already past (now {now.isoformat()}); "
                "set a later expiry time, or none",
                info.expires.isoformat(),
            )


def new_draft(content: AlertContent, author_id: UserId, now: datetime) -> Step:
    """A new Alert, as a draft. Updates and Cancels come from make_update and make_cancel."""
    _aware(now)
    if content.msg_type is not MsgType.alert:
        raise InvalidContent(
            "msg_type",
            f"a new draft must be an Alert; an {content.msg_type.value} is made from the version "
            "it replaces (update or cancel that version)",
            content.msg_type.value,
        )
    digest = content_hash(content)
    record = VersionRecord(
        state=VersionState.draft,
        content=content,
        content_hash=digest,
        author_id=author_id,
        authors=frozenset({author_id}),
        created_at=now,
        updated_at=now,
    )
    event = Event(
        Action.create,
        author_id,
        now,
        None,
        VersionState.draft,
        digest,
        f"new {content.status.value} draft",
    )
    return Step(record, (event,))


def edit(record: VersionRecord, content: AlertContent, editor_id: UserId, now: datetime) -> Step:
    """Change a draft or rejected version's content. Every approval is voided."""
    _aware(now)
    target = next_state(record.state, Action.edit)
    _refuse_status_change(record.content.status, content.status)
    if content.msg_type is not record.content.msg_type:
        raise InvalidContent(
            "msg_type",
            f"msg_type is fixed: this version is an {record.content.msg_type.value}; to update or "
            "cancel an alert that went out, use update or cancel on that version",
            content.msg_type.value,
        )
    if content.references != record.content.references:
        raise InvalidContent(
            "references",
            "references are set when an Update or Cancel is made and cannot be edited",
            list(content.references),
        )
    _refuse_cancel_widening(content, record.replaced_channels)
    new = replace(
        record,
        state=target,
        content=content,
        content_hash=content_hash(content),
        authors=record.authors | {editor_id},
        approvals=(),
        updated_at=now,
    )
    voided = f"; {len(record.approvals)} approval(s) voided" if record.approvals else ""
    detail = f"content edited ({record.content_hash[:12]} -> {new.content_hash[:12]}){voided}"
    return Step(new, (_event(record, Action.edit, editor_id, now, target, detail),))


def recall(record: VersionRecord, actor_id: UserId, now: datetime) -> Step:
    """The author takes a submitted version back to draft to change it; approvals are voided."""
    _aware(now)
    target = next_state(record.state, Action.recall)
    if actor_id not in record.authors:
        raise NotAllowed(
            record.rule,
            "only someone who wrote or submitted this version can recall it; an approver who "
            "disagrees rejects it with a reason",
        )
    new = replace(record, state=target, approvals=(), submitted_at=None, updated_at=now)
    detail = f"recalled to draft; {len(record.approvals)} approval(s) voided"
    return Step(new, (_event(record, Action.recall, actor_id, now, target, detail),))


def submit(
    record: VersionRecord,
    actor_id: UserId,
    now: datetime,
    policy: Policy,
    screening: ScreeningConfig,
    channel_length_checks: Mapping[str, ChannelCheck] = NO_CHANNEL_CHECKS,
) -> Step:
    """Ask for approval. A fast-path rule (no approvals needed) makes it approved at once."""
    _aware(now)
    target = next_state(record.state, Action.submit)
    rule = policy.rule_for(record.context)
    if rule.refuse is not None or record.mode is Mode.internal:
        raise InvalidContent(
            "status",
            f"a {record.content.status.value} alert cannot be submitted (rule '{rule.name}'): "
            f"{rule.refuse or 'it never reaches the public'}",
            record.content.status.value,
        )
    _refuse_expired(record.content, now)
    findings = tuple(screen(record.content, screening, channel_length_checks))
    if blocking(findings):
        raise ScreeningBlocked(findings)
    submitted = replace(
        record,
        state=target,
        authors=record.authors | {actor_id},
        approvals=(),
        rule=rule.name,
        reject_reason=None,
        submitted_at=now,
        updated_at=now,
    )
    result = policy.evaluate(rule, submitted.authors, submitted.content_hash, (), now)
    needs = f"rule '{rule.name}' needs {rule.approvals} approval(s)"
    events = [_event(record, Action.submit, actor_id, now, target, f"submitted; {needs}")]
    if result.met:
        approved = replace(
            submitted,
            state=next_state(target, Action.reach_quorum),
            approved_at=now,
        )
        events.append(
            _event(
                submitted,
                Action.reach_quorum,
                None,
                now,
                approved.state,
                f"fast path: rule '{rule.name}' needs no approvals",
            )
        )
        submitted = approved
    return Step(submitted, tuple(events), quorum=result, findings=findings)


def quorum(record: VersionRecord, now: datetime, policy: Policy) -> QuorumResult:
    """Whether the version's approvals meet its rule at `now`."""
    rule = policy.rule_for(record.context)
    return policy.evaluate(rule, record.authors, record.content_hash, record.approvals, now)


def approve(
    record: VersionRecord,
    approver: Approver,
    seen_hash: str,
    now: datetime,
    policy: Policy,
) -> Step:
    """Record that `approver` approved exactly the content whose hash they saw."""
    _aware(now)
    next_state(record.state, Action.approve)
    if seen_hash != record.content_hash:
        raise StaleContent(
            record.state,
            f"the alert changed since you opened it (you saw {seen_hash[:12]}, it is now "
            f"{record.content_hash[:12]}); read the current text and approve again",
        )
    rule = policy.rule_for(record.context)
    decision = policy.eligibility(rule, approver, record.authors, now)
    if not decision.allowed:
        raise NotAllowed(rule.name, decision.reason)
    before = policy.evaluate(rule, record.authors, record.content_hash, record.approvals, now)
    if approver.user_id in before.counted:
        raise NotAllowed(
            rule.name, "you have already approved this version; one person counts once"
        )
    approval = Approval(
        approver_id=approver.user_id,
        content_hash=seen_hash,
        at=now,
        rule=rule.name,
        second_factor_at=approver.second_factor_at,
    )
    recorded = replace(
        record, approvals=(*record.approvals, approval), rule=rule.name, updated_at=now
    )
    result = policy.evaluate(rule, recorded.authors, recorded.content_hash, recorded.approvals, now)
    progress = f"{len(result.counted)} of {result.needed} under rule '{rule.name}'"
    events = [
        _event(
            record, Action.approve, approver.user_id, now, recorded.state, f"approved: {progress}"
        )
    ]
    if result.met:
        approved = replace(
            recorded, state=next_state(recorded.state, Action.reach_quorum), approved_at=now
        )
        approvers = ", ".join(str(user) for user in result.counted)
        events.append(
            _event(
                recorded,
                Action.reach_quorum,
                None,
                now,
                approved.state,
                f"quorum met ({progress}; approvers {approvers})",
            )
        )
        recorded = approved
    return Step(recorded, tuple(events), quorum=result)


def reject(record: VersionRecord, actor_id: UserId, reason: str, now: datetime) -> Step:
    """An approver refuses the version; the reason goes back to the author."""
    _aware(now)
    target = next_state(record.state, Action.reject)
    if not reason.strip():
        raise InvalidContent(
            "reason", "give a reason for rejecting: the author needs to know what to fix", reason
        )
    if actor_id in record.authors:
        raise NotAllowed(
            record.rule, "you wrote or submitted this version; recall or withdraw it instead"
        )
    new = replace(record, state=target, reject_reason=reason, updated_at=now)
    return Step(new, (_event(record, Action.reject, actor_id, now, target, f"rejected: {reason}"),))


def withdraw(
    record: VersionRecord, actor_id: UserId, now: datetime, reason: str | None = None
) -> Step:
    """Abandon a version that has not been released."""
    _aware(now)
    target = next_state(record.state, Action.withdraw)
    new = replace(record, state=target, updated_at=now)
    detail = f"withdrawn: {reason}" if reason else "withdrawn"
    return Step(new, (_event(record, Action.withdraw, actor_id, now, target, detail),))


def release(record: VersionRecord, now: datetime, policy: Policy, reference: str) -> Step:
    """Hand an approved version to the outbox. The quorum is recomputed now, not trusted.

    `reference` is the CAP "sender,identifier,sent" the service assigned to this version.
    """
    _aware(now)
    target = next_state(record.state, Action.release)
    try:
        check_reference(reference)
    except ValueError as error:
        raise InvalidContent("reference", str(error), reference) from None
    rule = policy.rule_for(record.context)
    if rule.refuse is not None:
        raise NotAllowed(rule.name, f"rule '{rule.name}' refuses release: {rule.refuse}")
    _refuse_expired(record.content, now)
    result = policy.evaluate(rule, record.authors, record.content_hash, record.approvals, now)
    if not result.met:
        why = "; ".join(result.reasons) or "not enough approvals were given"
        raise QuorumNotMet(
            record.state,
            result,
            f"release refused: rule '{rule.name}' needs {result.needed} approval(s) and "
            f"{len(result.counted)} count now ({why}); it needs approving again",
        )
    new = replace(
        record,
        state=target,
        rule=rule.name,
        released_at=now,
        cap_reference=reference,
        updated_at=now,
    )
    detail = f"released as {reference} under rule '{rule.name}'"
    return Step(new, (_event(record, Action.release, None, now, target, detail),), quorum=result)


def complete(record: VersionRecord, now: datetime) -> Step:
    """Every delivery of the version finished."""
    _aware(now)
    target = next_state(record.state, Action.complete)
    new = replace(record, state=target, updated_at=now)
    return Step(new, (_event(record, Action.complete, None, now, target, "all deliveries done"),))


def partially_fail(record: VersionRecord, now: datetime, detail: str) -> Step:
    """Deliveries finished and some of them gave up; `detail` says which."""
    _aware(now)
    target = next_state(record.state, Action.partially_fail)
    new = replace(record, state=target, updated_at=now)
    return Step(new, (_event(record, Action.partially_fail, None, now, target, detail),))


def expiry_due(record: VersionRecord, now: datetime, policy: Policy) -> str | None:
    """Why a submitted or approved version should expire now, or None if it should not."""
    if record.state not in (VersionState.submitted, VersionState.approved):
        return None
    for info in record.content.infos:
        if info.expires is not None and info.expires <= now:
            return f"the alert's own expiry time {info.expires.isoformat()} passed before release"
    rule = policy.rule_for(record.context)
    window = rule.submission_window
    if (
        window is not None
        and record.submitted_at is not None
        and now - record.submitted_at > window
    ):
        return f"it waited longer than rule '{rule.name}' allows (submission_window) for release"
    lapsed = _lapsed(record, rule, now)
    if lapsed:
        return f"approval by user {lapsed.approver_id} lapsed (rule '{rule.name}' valid_for)"
    if record.state is VersionState.approved and not quorum(record, now, policy).met:
        return f"its approvals no longer meet rule '{rule.name}'"
    return None


def _lapsed(record: VersionRecord, rule: Rule, now: datetime) -> Approval | None:
    if rule.valid_for is None:
        return None
    for approval in record.approvals:
        if approval.content_hash == record.content_hash and now - approval.at > rule.valid_for:
            return approval
    return None


def expire(record: VersionRecord, now: datetime, policy: Policy) -> Step:
    """End a version whose approvals or submission window lapsed before it was released."""
    _aware(now)
    target = next_state(record.state, Action.expire)
    reason = expiry_due(record, now, policy)
    if reason is None:
        raise NotDue(
            record.state,
            "nothing has lapsed: the submission window is open and every approval still counts",
        )
    new = replace(record, state=target, updated_at=now)
    return Step(new, (_event(record, Action.expire, None, now, target, f"expired: {reason}"),))


def references_for(replaced: VersionRecord) -> tuple[str, ...]:
    """CAP references for a version replacing `replaced`: its own plus those it carried."""
    if replaced.cap_reference is None:
        raise InvalidTransition(
            replaced.state,
            Action.create,
            f"a version that is {replaced.state} was never released, so nothing can update or "
            "cancel it: edit, recall or withdraw it instead",
        )
    earlier = [ref for ref in replaced.content.references if ref != replaced.cap_reference]
    return (*earlier, replaced.cap_reference)


def _replacement(
    kind: MsgType,
    replaced: VersionRecord,
    replaced_id: VersionId,
    content: AlertContent,
    author_id: UserId,
    now: datetime,
    went_out: bool,
    prewritten: bool,
) -> Step:
    _aware(now)
    verb = kind.value.lower()
    if replaced.state not in REPLACEABLE_STATES:
        raise InvalidTransition(
            replaced.state,
            Action.create,
            f"cannot {verb} a version that is {replaced.state}: only a released version can be "
            "updated or cancelled; edit, recall or withdraw this one instead",
        )
    if replaced.content.msg_type is MsgType.cancel:
        raise InvalidTransition(
            replaced.state,
            Action.create,
            f"cannot {verb} a Cancel: it has already withdrawn the alert; send a new Alert",
        )
    if content.msg_type is not kind:
        raise InvalidContent(
            "msg_type", f"msg_type must be {kind.value} for an {verb}", content.msg_type.value
        )
    _refuse_status_change(replaced.content.status, content.status)
    expected = references_for(replaced)
    if content.references != expected:
        raise InvalidContent(
            "references",
            f"references must be exactly {list(expected)} (the version replaced and those it "
            "replaced); build them with references_for",
            list(content.references),
        )
    if prewritten and (content.template is None or content.template != replaced.content.template):
        raise InvalidContent(
            "template",
            "pre-written cancel text must come from the template of the alert it cancels "
            f"({replaced.content.template or 'none'}); otherwise it is a hand-written cancel",
            content.template,
        )
    allowed = frozenset(replaced.content.channels) if kind is MsgType.cancel else None
    _refuse_cancel_widening(content, allowed)
    digest = content_hash(content)
    record = VersionRecord(
        state=VersionState.draft,
        content=content,
        content_hash=digest,
        author_id=author_id,
        authors=frozenset({author_id}),
        created_at=now,
        updated_at=now,
        replaces=replaced_id,
        replaces_went_out=went_out,
        replaced_channels=allowed,
        prewritten_hash=digest if prewritten else None,
    )
    reach = "it reached the public" if went_out else "it had reached nobody yet"
    written = ", pre-written text" if prewritten else ""
    event = Event(
        Action.create,
        author_id,
        now,
        None,
        VersionState.draft,
        digest,
        f"new {content.status.value} {kind.value} of version {replaced_id} ({reach}{written})",
    )
    return Step(record, (event,))


def make_update(
    replaced: VersionRecord,
    replaced_id: VersionId,
    content: AlertContent,
    author_id: UserId,
    now: datetime,
    *,
    went_out: bool,
) -> Step:
    """A draft Update of a released version, with the same status and CAP references to it.

    `went_out`: whether any delivery of `replaced` reached the public (or may have: count an
    ambiguous or in-flight delivery as gone out).
    """
    return _replacement(
        MsgType.update, replaced, replaced_id, content, author_id, now, went_out, False
    )


def make_cancel(
    replaced: VersionRecord,
    replaced_id: VersionId,
    content: AlertContent,
    author_id: UserId,
    now: datetime,
    *,
    went_out: bool,
    prewritten: bool = False,
) -> Step:
    """A draft Cancel of a released version, on no channel beyond the ones it went to.

    `prewritten`: `content` is exactly what `TemplateSet.cancel_for` produced from the original's
    template. The default policy lets such a Cancel go out with no approvals (see
    config/approval-policy.toml); any edit ends that, because the hash no longer matches.
    """
    return _replacement(
        MsgType.cancel, replaced, replaced_id, content, author_id, now, went_out, prewritten
    )
