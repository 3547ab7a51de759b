"""Quorum and eligibility: the author never counts, one person counts once, approvals are bound
to the content hash and lapse after valid_for, and approving may need a fresh second factor."""

from datetime import timedelta

from approvals.alert import Status
from approvals.policy import Approval, Approver, Match, Policy, Rule
from approvals.roles import Role
from tests.approvals.factories import T0

HASH = "a" * 64
OTHER_HASH = "b" * 64
AUTHOR = 1


def approval(user: int, minutes_ago: int = 0, digest: str = HASH, rule: str = "actual") -> Approval:
    return Approval(user, digest, T0 - timedelta(minutes=minutes_ago), rule)


def test_one_approval_by_someone_else_meets_a_one_approver_rule(policy: Policy) -> None:
    rule = policy.rule_named("actual")
    result = policy.evaluate(rule, AUTHOR, HASH, [approval(2)], T0)
    assert result.met and result.counted == (2,) and result.missing == 0


def test_the_author_never_counts(policy: Policy) -> None:
    rule = policy.rule_named("actual")
    result = policy.evaluate(rule, AUTHOR, HASH, [approval(AUTHOR)], T0)
    assert not result.met and result.counted == () and result.missing == 1
    assert "the author never counts" in result.reasons[0]
    # Everyone who edited or submitted is an author too.
    result = policy.evaluate(rule, frozenset({AUTHOR, 7}), HASH, [approval(7)], T0)
    assert not result.met


def test_one_person_counts_once(policy: Policy) -> None:
    rule = policy.rule_named("actual-extreme-or-severe")
    twice = [approval(2, rule=rule.name), approval(2, minutes_ago=1, rule=rule.name)]
    result = policy.evaluate(rule, AUTHOR, HASH, twice, T0)
    assert not result.met and result.counted == (2,) and result.missing == 1
    assert "one person counts once" in result.reasons[0]
    two = [approval(2, rule=rule.name), approval(3, rule=rule.name)]
    assert policy.evaluate(rule, AUTHOR, HASH, two, T0).met


def test_an_approval_under_another_rule_does_not_count(policy: Policy) -> None:
    # e.g. the policy was reloaded and the alert now needs the two-approver rule
    rule = policy.rule_named("actual-extreme-or-severe")
    result = policy.evaluate(rule, AUTHOR, HASH, [approval(2, rule="actual")], T0)
    assert result.counted == ()
    assert "given under rule 'actual'" in result.reasons[0]


def test_an_approval_of_other_content_does_not_count(policy: Policy) -> None:
    rule = policy.rule_named("actual")
    result = policy.evaluate(rule, AUTHOR, HASH, [approval(2, digest=OTHER_HASH)], T0)
    assert not result.met
    assert "edited since" in result.reasons[0]


def test_approvals_lapse_after_valid_for(policy: Policy) -> None:
    rule = policy.rule_named("actual-extreme-or-severe")  # valid_for = 30m
    fresh = approval(2, minutes_ago=30, rule=rule.name)
    stale = approval(3, minutes_ago=31, rule=rule.name)
    result = policy.evaluate(rule, AUTHOR, HASH, [fresh, stale], T0)
    assert result.counted == (2,) and not result.met
    assert "lapsed" in result.reasons[0] and "30m" in result.reasons[0]


def test_a_refusing_rule_is_never_met(policy: Policy) -> None:
    rule = policy.rule_named("never-public")
    result = policy.evaluate(rule, AUTHOR, HASH, [approval(2), approval(3)], T0)
    assert not result.met
    decision = policy.eligibility(rule, Approver(2, Role.approver), AUTHOR, T0)
    assert not decision.allowed and "never reach the public" in decision.reason


def test_the_fast_path_is_met_with_no_approvals(policy: Policy) -> None:
    result = policy.evaluate(policy.rule_named("cancel-prewritten"), AUTHOR, HASH, [], T0)
    assert result.met and result.needed == 0


def test_the_author_may_not_approve_their_own_alert(policy: Policy) -> None:
    decision = policy.eligibility(
        policy.rule_named("actual"), Approver(AUTHOR, Role.approver), AUTHOR, T0
    )
    assert not decision.allowed
    assert "the author may not approve their own alert" in decision.reason


def test_a_role_the_rule_does_not_list_is_refused_naming_the_rule(policy: Policy) -> None:
    rule = policy.rule_named("actual")
    decision = policy.eligibility(rule, Approver(2, Role.duty_officer), AUTHOR, T0)
    assert not decision.allowed
    assert decision.reason == (
        "rule 'actual' needs an approver with role approver; yours is duty_officer"
    )
    cancel = policy.rule_named("cancel-went-out")
    assert policy.eligibility(cancel, Approver(2, Role.duty_officer), AUTHOR, T0).allowed


def test_responders_and_administrators_never_approve(policy: Policy) -> None:
    rule = policy.rule_named("cancel-went-out")
    for role in (Role.responder, Role.administrator):
        decision = policy.eligibility(rule, Approver(2, role), AUTHOR, T0)
        assert not decision.allowed and f"your role {role} may not approve" in decision.reason


def test_a_fresh_second_factor_is_needed_for_extreme_and_severe(policy: Policy) -> None:
    rule = policy.rule_named("actual-extreme-or-severe")  # fresh_second_factor = 10m

    def check(minutes_ago: int | None) -> tuple[bool, str]:
        at = None if minutes_ago is None else T0 - timedelta(minutes=minutes_ago)
        decision = policy.eligibility(rule, Approver(2, Role.approver, 0, at), AUTHOR, T0)
        return decision.allowed, decision.reason

    assert check(10)[0]
    allowed, reason = check(11)
    assert not allowed
    assert "needs a second factor verified within the last 10m" in reason
    assert "yours was verified 11m ago" in reason
    allowed, reason = check(None)
    assert not allowed and "you have not verified one" in reason
    # Rules without the requirement do not ask for it.
    assert policy.eligibility(
        policy.rule_named("actual"), Approver(2, Role.approver), AUTHOR, T0
    ).allowed


def test_min_rank_and_roles_both_apply() -> None:
    # A policy built in code is checked like a file: it must cover every alert exactly once.
    refuse = Rule(
        "never-public", Match(statuses=frozenset({Status.system, Status.draft})), refuse="no"
    )
    chiefs = Rule(
        "chiefs",
        Match(statuses=frozenset({Status.actual, Status.exercise, Status.test})),
        approvals=1,
        roles=frozenset({Role.approver}),
        min_rank=3,
        valid_for=timedelta(hours=1),
        submission_window=timedelta(hours=1),
    )
    policy = Policy(rules=(refuse, chiefs), ranks={"watch": 1, "chief": 3})
    low = policy.eligibility(chiefs, Approver(2, Role.approver, rank=2), AUTHOR, T0)
    assert not low.allowed
    assert low.reason == "rule 'chiefs' needs rank 3 or higher; yours is 2"
    assert policy.eligibility(chiefs, Approver(2, Role.approver, rank=3), AUTHOR, T0).allowed
    officer = policy.eligibility(chiefs, Approver(2, Role.duty_officer, rank=5), AUTHOR, T0)
    assert not officer.allowed and "needs an approver with role approver" in officer.reason
