"""The version aggregate, action by action, as the service will drive it."""

from datetime import timedelta

import pytest

from approvals import lifecycle as lc
from approvals.alert import EXERCISE_MARKING, AlertContent, MsgType, Severity, Status
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
from approvals.policy import Approver, Policy
from approvals.roles import Role
from approvals.screening import Finding, Level, ScreeningConfig
from approvals.templates import TemplateSet
from approvals.workflow import Action, VersionState
from tests.approvals.factories import REFERENCE, T0, content, info

AUTHOR, ALICE, BOB, CAROL = 1, 2, 3, 4
NO_SCREENING = ScreeningConfig()
MINUTE = timedelta(minutes=1)


def approver(user: int, role: Role = Role.approver, factor_minutes_ago: int = 1) -> Approver:
    return Approver(user, role, 0, T0 - factor_minutes_ago * MINUTE)


def draft(alert: AlertContent | None = None) -> lc.VersionRecord:
    return lc.new_draft(alert or content(), AUTHOR, T0).record


def submitted(policy: Policy, alert: AlertContent | None = None) -> lc.VersionRecord:
    return lc.submit(draft(alert), AUTHOR, T0, policy, NO_SCREENING).record


def released(policy: Policy, alert: AlertContent | None = None) -> lc.VersionRecord:
    record = submitted(policy, alert)
    record = lc.approve(record, approver(ALICE), record.content_hash, T0, policy).record
    if record.state is VersionState.submitted:
        record = lc.approve(record, approver(BOB), record.content_hash, T0, policy).record
    return lc.release(record, T0, policy, REFERENCE).record


def test_a_new_draft_records_its_hash_and_author() -> None:
    step = lc.new_draft(content(), AUTHOR, T0)
    assert step.record.state is VersionState.draft
    assert step.record.content_hash == content_hash(content())
    assert step.record.authors == {AUTHOR}
    assert step.events[0].action is Action.create and step.events[0].actor_id == AUTHOR


def test_updates_and_cancels_cannot_start_as_new_drafts() -> None:
    with pytest.raises(InvalidContent, match="a new draft must be an Alert") as excinfo:
        lc.new_draft(content(msg_type=MsgType.cancel), AUTHOR, T0)
    assert excinfo.value.field == "msg_type"


def test_two_approvers_release_an_extreme_alert(policy: Policy) -> None:
    record = submitted(policy, content(severity=Severity.extreme))
    first = lc.approve(record, approver(ALICE), record.content_hash, T0, policy)
    assert first.record.state is VersionState.submitted
    assert first.quorum is not None and first.quorum.missing == 1
    second = lc.approve(first.record, approver(BOB), record.content_hash, T0, policy)
    assert second.record.state is VersionState.approved
    assert [event.action for event in second.events] == [Action.approve, Action.reach_quorum]
    out = lc.release(second.record, T0 + MINUTE, policy, REFERENCE)
    assert out.record.state is VersionState.released
    assert out.record.cap_reference == REFERENCE
    assert out.quorum is not None and out.quorum.counted == (ALICE, BOB)


def test_the_author_cannot_approve_and_nothing_changes(policy: Policy) -> None:
    record = submitted(policy)
    with pytest.raises(NotAllowed, match="the author may not approve their own alert") as excinfo:
        lc.approve(record, approver(AUTHOR), record.content_hash, T0, policy)
    assert excinfo.value.rule == "actual"


def test_whoever_submits_becomes_an_author(policy: Policy) -> None:
    record = lc.submit(draft(), ALICE, T0, policy, NO_SCREENING).record
    with pytest.raises(NotAllowed, match="author"):
        lc.approve(record, approver(ALICE), record.content_hash, T0, policy)


def test_an_approver_must_have_seen_the_current_content(policy: Policy) -> None:
    record = submitted(policy)
    with pytest.raises(StaleContent, match="changed since you opened it"):
        lc.approve(record, approver(ALICE), "0" * 64, T0, policy)


def test_approving_twice_is_refused(policy: Policy) -> None:
    record = submitted(policy, content(severity=Severity.severe))
    record = lc.approve(record, approver(ALICE), record.content_hash, T0, policy).record
    with pytest.raises(NotAllowed, match="one person counts once"):
        lc.approve(record, approver(ALICE), record.content_hash, T0, policy)


def test_a_stale_second_factor_is_refused_for_a_severe_alert(policy: Policy) -> None:
    record = submitted(policy, content(severity=Severity.severe))
    with pytest.raises(NotAllowed, match="second factor verified within the last 10m"):
        lc.approve(record, approver(ALICE, factor_minutes_ago=45), record.content_hash, T0, policy)


def test_editing_after_rejection_voids_every_approval(policy: Policy) -> None:
    record = submitted(policy, content(severity=Severity.severe))
    record = lc.approve(record, approver(ALICE), record.content_hash, T0, policy).record
    record = lc.reject(record, BOB, "Wrong valley named", T0).record
    assert record.state is VersionState.rejected and record.reject_reason == "Wrong valley named"
    step = lc.edit(
        record, content(severity=Severity.severe, headline="Flood: east valley"), AUTHOR, T0
    )
    assert step.record.state is VersionState.draft
    assert step.record.approvals == ()
    assert "1 approval(s) voided" in step.events[0].detail


def test_recall_voids_approvals_and_returns_to_draft(policy: Policy) -> None:
    record = submitted(policy, content(severity=Severity.severe))
    record = lc.approve(record, approver(ALICE), record.content_hash, T0, policy).record
    with pytest.raises(NotAllowed, match="only someone who wrote or submitted"):
        lc.recall(record, BOB, T0)
    back = lc.recall(record, AUTHOR, T0).record
    assert back.state is VersionState.draft and back.approvals == ()


def test_reject_needs_a_reason_and_someone_other_than_the_author(policy: Policy) -> None:
    record = submitted(policy)
    with pytest.raises(InvalidContent, match="give a reason") as excinfo:
        lc.reject(record, ALICE, "   ", T0)
    assert excinfo.value.field == "reason"
    with pytest.raises(NotAllowed, match="recall or withdraw"):
        lc.reject(record, AUTHOR, "changed my mind", T0)


@pytest.mark.parametrize(
    ("start", "target", "message"),
    [
        (Status.exercise, Status.actual, "an exercise can never become Actual"),
        (Status.test, Status.actual, "an exercise can never become Actual"),
        (Status.actual, Status.exercise, "an Actual alert can never become an exercise"),
    ],
)
def test_the_mode_is_fixed_at_creation(start: Status, target: Status, message: str) -> None:
    record = draft(content(status=start))
    with pytest.raises(InvalidContent, match=message) as excinfo:
        lc.edit(record, content(status=target), AUTHOR, T0)
    assert excinfo.value.field == "status"


def test_content_cannot_change_once_submitted(policy: Policy) -> None:
    with pytest.raises(InvalidTransition, match="recall it to draft first"):
        lc.edit(submitted(policy), content(headline="Changed"), AUTHOR, T0)


def test_submit_refuses_an_alert_that_has_already_expired(policy: Policy) -> None:
    record = draft(content(infos=[info(expires=T0 - MINUTE)]))
    with pytest.raises(InvalidContent, match="is already past") as excinfo:
        lc.submit(record, AUTHOR, T0, policy, NO_SCREENING)
    assert excinfo.value.field == "infos[0].expires"


def test_submit_refuses_system_and_draft_status(policy: Policy) -> None:
    with pytest.raises(InvalidContent, match="never reach the public") as excinfo:
        lc.submit(draft(content(status=Status.system)), AUTHOR, T0, policy, NO_SCREENING)
    assert excinfo.value.field == "status"


def test_submit_runs_screening_and_reports_warnings(
    policy: Policy, screening: ScreeningConfig
) -> None:
    unmarked = draft(content(status=Status.exercise, headline="Flood drill"))
    with pytest.raises(ScreeningBlocked, match="exercise-marking-missing") as excinfo:
        lc.submit(unmarked, AUTHOR, T0, policy, screening)
    assert excinfo.value.field == "infos[0].headline"
    phone = draft(content(infos=[info(description="Call Bob on (808) 555-0199.")]))
    step = lc.submit(phone, AUTHOR, T0, policy, screening)
    assert step.record.state is VersionState.submitted
    assert [finding.rule for finding in step.findings] == ["phone-number"]


def test_submit_runs_channel_length_checks(policy: Policy) -> None:
    def sms_limit(alert: AlertContent) -> list[Finding]:
        return [Finding(Level.block, "sms-length", "infos[0].headline", "too long for one SMS")]

    with pytest.raises(ScreeningBlocked, match="too long for one SMS"):
        lc.submit(draft(), AUTHOR, T0, policy, NO_SCREENING, {"sms": sms_limit})
    only_x = draft(content(channels=["x"]))
    assert lc.submit(only_x, AUTHOR, T0, policy, NO_SCREENING, {"sms": sms_limit}).record


def test_release_recomputes_the_quorum_at_that_moment(policy: Policy) -> None:
    record = submitted(policy)  # rule 'actual': one approval, valid for 2h
    record = lc.approve(record, approver(ALICE), record.content_hash, T0, policy).record
    assert record.state is VersionState.approved
    with pytest.raises(QuorumNotMet, match="release refused: rule 'actual' needs 1") as excinfo:
        lc.release(record, T0 + timedelta(hours=2, minutes=1), policy, REFERENCE)
    assert "lapsed" in str(excinfo.value)
    assert lc.release(record, T0 + timedelta(hours=2), policy, REFERENCE).record.released_at


def test_release_refuses_a_malformed_reference(policy: Policy) -> None:
    record = submitted(policy)
    record = lc.approve(record, approver(ALICE), record.content_hash, T0, policy).record
    with pytest.raises(InvalidContent, match="sender,identifier,sent") as excinfo:
        lc.release(record, T0, policy, "not-a-reference")
    assert excinfo.value.field == "reference"


def test_expire_only_when_something_lapsed(policy: Policy) -> None:
    record = submitted(policy)  # submission_window 4h
    with pytest.raises(NotDue, match="nothing has lapsed"):
        lc.expire(record, T0 + timedelta(hours=4), policy)
    assert lc.expiry_due(record, T0 + timedelta(hours=4), policy) is None
    step = lc.expire(record, T0 + timedelta(hours=4, seconds=1), policy)
    assert step.record.state is VersionState.expired
    assert "submission_window" in step.events[0].detail


def test_an_approved_version_whose_approval_lapsed_expires(policy: Policy) -> None:
    record = submitted(policy)
    record = lc.approve(record, approver(ALICE), record.content_hash, T0, policy).record
    reason = lc.expiry_due(record, T0 + timedelta(hours=3), policy)
    assert reason is not None and "lapsed" in reason


def test_delivery_outcomes_complete_a_released_version(policy: Policy) -> None:
    record = released(policy)
    failed = lc.partially_fail(record, T0, "sms: 3 dead deliveries").record
    assert failed.state is VersionState.partially_failed
    assert lc.complete(failed, T0).record.state is VersionState.completed
    with pytest.raises(InvalidTransition):
        lc.withdraw(record, AUTHOR, T0)


def test_an_update_keeps_the_status_and_references_the_version_it_replaces(
    policy: Policy,
) -> None:
    original = released(policy, content(status=Status.exercise))
    references = lc.references_for(original)
    assert references == (REFERENCE,)
    update = content(status=Status.exercise, msg_type=MsgType.update, references=references)
    step = lc.make_update(original, 41, update, BOB, T0, went_out=True)
    assert step.record.replaces == 41 and step.record.state is VersionState.draft
    live = content(status=Status.actual, msg_type=MsgType.update, references=references)
    with pytest.raises(InvalidContent, match="an exercise can never become Actual"):
        lc.make_update(original, 41, live, BOB, T0, went_out=True)
    other = "county.example,alert-0,2024-04-30T08:00:00+00:00"
    wrong = content(status=Status.exercise, msg_type=MsgType.update, references=[other])
    with pytest.raises(InvalidContent, match="references must be exactly") as excinfo:
        lc.make_update(original, 41, wrong, BOB, T0, went_out=True)
    assert excinfo.value.field == "references"


def test_only_released_versions_can_be_replaced(policy: Policy) -> None:
    cancel = content(msg_type=MsgType.cancel)
    with pytest.raises(InvalidTransition, match="only a released version can be updated"):
        lc.make_cancel(submitted(policy), 5, cancel, BOB, T0, went_out=False)


def test_a_cancel_only_goes_where_the_original_went(policy: Policy) -> None:
    original = released(policy, content(channels=["x"]))
    cancel = content(msg_type=MsgType.cancel, channels=["x", "sms"])
    with pytest.raises(InvalidContent, match="sms never carried it") as excinfo:
        lc.make_cancel(original, 5, cancel, BOB, T0, went_out=True)
    assert excinfo.value.field == "channels"
    ok = lc.make_cancel(
        original, 5, content(msg_type=MsgType.cancel, channels=["x"]), BOB, T0, went_out=True
    )
    with pytest.raises(InvalidContent, match="sms never carried it"):
        lc.edit(ok.record, cancel, BOB, T0)


def test_a_prewritten_cancel_goes_out_at_once_and_an_edited_one_waits(
    policy: Policy, screening: ScreeningConfig, templates: TemplateSet
) -> None:
    values = {
        "area": "Kailua",
        "hazard": "a wildfire",
        "time": "3 PM",
        "route": "H3",
        "shelter": "Gym",
    }
    original = released(policy, templates.render("evacuation", values))
    cancel = templates.cancel_for(original.content, lc.references_for(original))
    fast = lc.make_cancel(original, 9, cancel, BOB, T0, went_out=True, prewritten=True).record
    step = lc.submit(fast, BOB, T0, policy, screening)
    assert step.record.state is VersionState.approved
    assert step.quorum is not None and step.quorum.rule == "cancel-prewritten"
    assert lc.release(step.record, T0, policy, REFERENCE.replace("alert-1", "alert-2")).record
    # Edited text is no longer what was reviewed in advance: it needs a second person.
    rewritten = {**cancel.infos[0].model_dump(), "description": "Go home."}
    edited_content = AlertContent.model_validate({**cancel.model_dump(), "infos": [rewritten]})
    edited = lc.edit(fast, edited_content, BOB, T0).record
    waiting = lc.submit(edited, BOB, T0, policy, screening)
    assert waiting.record.state is VersionState.submitted
    assert waiting.quorum is not None and waiting.quorum.rule == "cancel-went-out"
    done = lc.approve(
        waiting.record, approver(CAROL, Role.duty_officer), edited.content_hash, T0, policy
    )
    assert done.record.state is VersionState.approved


def test_a_cancel_cannot_itself_be_replaced(policy: Policy) -> None:
    original = released(policy)
    cancel = content(msg_type=MsgType.cancel, references=lc.references_for(original))
    record = lc.make_cancel(original, 1, cancel, BOB, T0, went_out=True).record
    record = lc.submit(record, BOB, T0, policy, NO_SCREENING).record
    record = lc.approve(record, approver(ALICE), record.content_hash, T0, policy).record
    record = lc.release(record, T0, policy, REFERENCE.replace("alert-1", "alert-2")).record
    with pytest.raises(InvalidTransition, match="cannot cancel a Cancel"):
        lc.make_cancel(record, 2, cancel, BOB, T0, went_out=True)


def test_a_record_whose_hash_does_not_match_its_content_is_refused() -> None:
    record = draft()
    with pytest.raises(ValueError, match="does not match its content"):
        lc.VersionRecord(
            state=record.state,
            content=content(headline="Tampered"),
            content_hash=record.content_hash,
            author_id=AUTHOR,
            authors=record.authors,
            created_at=T0,
            updated_at=T0,
        )


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        lc.new_draft(content(), AUTHOR, T0.replace(tzinfo=None))


def test_marking_in_exercise_content_survives_the_whole_flow(policy: Policy) -> None:
    record = released(policy, content(status=Status.exercise))
    assert all(EXERCISE_MARKING in i.headline for i in record.content.infos)
    assert record.content.status is Status.exercise


def test_prewritten_text_must_come_from_the_original_template(policy: Policy) -> None:
    original = released(policy)  # not made from a template
    cancel = content(msg_type=MsgType.cancel, references=lc.references_for(original))
    with pytest.raises(InvalidContent, match="pre-written cancel text must come from") as excinfo:
        lc.make_cancel(original, 3, cancel, BOB, T0, went_out=True, prewritten=True)
    assert excinfo.value.field == "template"
