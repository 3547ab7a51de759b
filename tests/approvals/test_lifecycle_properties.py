"""Random sequences of actions against one alert version, trying to break the safety invariants:

- no version is released without its quorum, checked here independently of policy.evaluate;
- nobody who wrote, edited or submitted a version ever counts toward its quorum;
- editing (or recalling) voids every approval given before;
- the status never changes: an exercise never becomes Actual, nor Actual an exercise.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from approvals import lifecycle as lc
from approvals.alert import AlertContent, Severity, Status
from approvals.errors import NotAllowed, WorkflowError
from approvals.policy import Approver, Policy, PolicyContext, load_policy
from approvals.roles import Role
from approvals.screening import ScreeningConfig
from approvals.workflow import VersionState
from tests.approvals.factories import POLICY_FILE, REFERENCE, T0, content

POLICY: Policy = load_policy(POLICY_FILE)
NO_SCREENING = ScreeningConfig()
AUTHOR = 1
# Writers are the author and one colleague; approvers include that colleague, so people who
# edited or submitted keep trying to approve.
WRITERS = st.sampled_from([AUTHOR, 2])
USERS = st.integers(min_value=1, max_value=6)
# Weighted towards live Extreme/Severe alerts: two approvers, so partial quorum, rejection after
# an approval and lapsing approvals all happen often.
STATUSES = st.sampled_from([Status.actual, Status.actual, Status.exercise, Status.test])
SEVERITIES = st.sampled_from([Severity.extreme, Severity.severe, *Severity])
HEADLINES = st.sampled_from(["River flood", "River flood, east bank", "Dam release"])


@dataclass(frozen=True)
class Oracle:
    """The quorum rule restated from the design, not from approvals.policy."""

    needed: int
    valid_for: timedelta | None

    @classmethod
    def for_content(cls, alert: AlertContent) -> "Oracle":
        rule = POLICY.rule_for(PolicyContext.of(alert))  # which rule: tested table-wise elsewhere
        return cls(rule.approvals, rule.valid_for)

    def counted(self, record: lc.VersionRecord, now: datetime) -> set[int]:
        return {
            a.approver_id
            for a in record.approvals
            if a.approver_id not in record.authors
            and a.content_hash == record.content_hash
            and a.at <= now
            and (self.valid_for is None or now - a.at <= self.valid_for)
        }


class VersionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.status = Status.actual
        self.record: lc.VersionRecord | None = None
        self.changed_at = T0  # when the content last changed or approvals were last voided

    def _content(
        self, severity: Severity, headline: str, status: Status | None = None
    ) -> AlertContent:
        return content(status=status or self.status, severity=severity, headline=headline)

    def in_state(self, *states: VersionState) -> bool:
        return self.record is not None and self.record.state in states

    @property
    def current(self) -> lc.VersionRecord:
        assert self.record is not None
        return self.record

    @initialize(status=STATUSES, severity=SEVERITIES, headline=HEADLINES)
    def create(self, status: Status, severity: Severity, headline: str) -> None:
        self.status = status
        marked = headline if status is Status.actual else f"EXERCISE EXERCISE EXERCISE: {headline}"
        self.record = lc.new_draft(self._content(severity, marked), AUTHOR, self.now).record

    @rule(minutes=st.integers(min_value=0, max_value=150))
    def time_passes(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @precondition(lambda self: self.in_state(VersionState.draft, VersionState.rejected))
    @rule(editor=WRITERS, other=st.none() | STATUSES, severity=SEVERITIES, headline=HEADLINES)
    def edit(self, editor: int, other: Status | None, severity: Severity, headline: str) -> None:
        # Mostly an ordinary edit; sometimes (other is set) an attempt to switch the status.
        status = other or self.status
        marked = headline if status is Status.actual else f"EXERCISE EXERCISE EXERCISE: {headline}"
        try:
            step = lc.edit(self.current, self._content(severity, marked, status), editor, self.now)
        except WorkflowError:
            return
        assert status is self.status, "an edit changed the status"
        assert step.record.approvals == (), "an edit kept approvals"
        self.record = step.record
        self.changed_at = self.now

    @precondition(lambda self: self.in_state(VersionState.draft))
    @rule(actor=WRITERS)
    def submit(self, actor: int) -> None:
        try:
            self.record = lc.submit(self.current, actor, self.now, POLICY, NO_SCREENING).record
        except WorkflowError:
            return

    @precondition(lambda self: self.in_state(VersionState.submitted))
    @rule(
        user=USERS,
        role=st.sampled_from(list(Role)),
        factor_minutes=st.none() | st.integers(min_value=0, max_value=30),
        stale=st.booleans(),
    )
    def approve(self, user: int, role: Role, factor_minutes: int | None, stale: bool) -> None:
        factor = None if factor_minutes is None else self.now - timedelta(minutes=factor_minutes)
        who = Approver(user, role, 0, factor)
        seen = "f" * 64 if stale else self.current.content_hash
        before = self.current
        try:
            step = lc.approve(before, who, seen, self.now, POLICY)
        except NotAllowed:
            return
        except WorkflowError:
            return
        assert user not in before.authors, "an author's approval was accepted"
        assert not stale, "an approval of content the approver did not see was accepted"
        assert role in (Role.approver, Role.duty_officer)
        self.record = step.record

    @precondition(lambda self: self.in_state(VersionState.submitted))
    @rule(user=st.integers(min_value=2, max_value=6))
    def approver_approves_what_they_see(self, user: int) -> None:
        # The ordinary path, so that random runs reach approved and released often.
        self.approve(user, Role.approver, 0, stale=False)

    @precondition(lambda self: self.in_state(VersionState.submitted))
    @rule(user=USERS)
    def author_tries_to_approve(self, user: int) -> None:
        record = self.current
        if user not in record.authors:
            return
        who = Approver(user, Role.approver, 0, self.now)
        try:
            lc.approve(record, who, record.content_hash, self.now, POLICY)
        except WorkflowError:
            return
        raise AssertionError("the author approved their own alert")

    @precondition(lambda self: self.in_state(VersionState.submitted))
    @rule(actor=USERS, reason=st.sampled_from(["", "Wrong area", "Check the time"]))
    def reject(self, actor: int, reason: str) -> None:
        try:
            self.record = lc.reject(self.current, actor, reason, self.now).record
        except WorkflowError:
            return

    @precondition(lambda self: self.in_state(VersionState.submitted))
    @rule(actor=USERS)
    def recall(self, actor: int) -> None:
        try:
            self.record = lc.recall(self.current, actor, self.now).record
        except WorkflowError:
            return
        assert self.current.approvals == ()
        self.changed_at = self.now

    @rule(dice=st.integers(min_value=0, max_value=9))
    def withdraw(self, dice: int) -> None:
        if dice:  # withdrawing ends the run, so do it rarely
            return
        try:
            self.record = lc.withdraw(self.current, AUTHOR, self.now).record
        except WorkflowError:
            return

    @precondition(lambda self: self.in_state(VersionState.submitted, VersionState.approved))
    @rule()
    def expire(self) -> None:
        try:
            self.record = lc.expire(self.current, self.now, POLICY).record
        except WorkflowError:
            return

    @precondition(lambda self: self.in_state(VersionState.approved, VersionState.submitted))
    @rule()
    def release(self) -> None:
        before = self.current
        try:
            step = lc.release(before, self.now, POLICY, REFERENCE)
        except WorkflowError:
            return
        oracle = Oracle.for_content(before.content)
        counted = self.approvers_counting(before)
        assert len(counted) >= oracle.needed, "released without its quorum"
        assert len(counted) >= 1, "an Alert was released with nobody else's approval"
        assert not counted & before.authors
        self.record = step.record

    def approvers_counting(self, record: lc.VersionRecord) -> set[int]:
        return Oracle.for_content(record.content).counted(record, self.now)

    @invariant()
    def status_never_changes(self) -> None:
        if self.record is not None:
            assert self.record.content.status is self.status

    @invariant()
    def no_author_among_approvers(self) -> None:
        if self.record is not None:
            assert not {a.approver_id for a in self.record.approvals} & self.record.authors

    @invariant()
    def no_approval_survives_a_change(self) -> None:
        if self.record is not None:
            assert all(a.at >= self.changed_at for a in self.record.approvals)

    @invariant()
    def approved_means_quorum_was_met(self) -> None:
        record = self.record
        if record is not None and record.state is VersionState.approved and record.approved_at:
            oracle = Oracle.for_content(record.content)
            counted = oracle.counted(record, record.approved_at)
            assert len(counted) >= oracle.needed


VersionMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    database=None,  # no example files written into the repository
    suppress_health_check=[HealthCheck.too_slow],
)
TestVersionLifecycle = VersionMachine.TestCase
