"""The shipped config/approval-policy.toml, rule by rule: which rule each alert falls under."""

from datetime import timedelta
from itertools import product

import pytest

from approvals.alert import MsgType, Severity, Status
from approvals.policy import Policy, PolicyContext
from approvals.roles import Role
from tests.approvals.factories import content, info

M = MsgType
V = Severity
ST = Status
MIN10 = timedelta(minutes=10)

# status, msgType, severity, channels, went out, pre-written -> rule, approvals, fresh 2nd factor
ROWS = [
    (
        ST.actual,
        M.alert,
        V.extreme,
        {"sms", "x"},
        False,
        False,
        "actual-extreme-or-severe",
        2,
        MIN10,
    ),
    (ST.actual, M.alert, V.severe, {"email"}, False, False, "actual-extreme-or-severe", 2, MIN10),
    (ST.actual, M.update, V.extreme, {"x"}, True, False, "actual-extreme-or-severe", 2, MIN10),
    (ST.actual, M.update, V.severe, {"x"}, False, False, "actual-extreme-or-severe", 2, MIN10),
    (ST.actual, M.alert, V.moderate, {"sms"}, False, False, "actual", 1, None),
    (ST.actual, M.alert, V.minor, {"x", "cap"}, False, False, "actual", 1, None),
    (ST.actual, M.alert, V.unknown, {"webhook"}, False, False, "actual", 1, None),
    (ST.actual, M.update, V.minor, {"x"}, True, False, "actual", 1, None),
    (ST.exercise, M.alert, V.extreme, {"sms"}, False, False, "exercise-or-test", 1, None),
    (ST.exercise, M.update, V.severe, {"x"}, True, False, "exercise-or-test", 1, None),
    (ST.test, M.alert, V.minor, {"email"}, False, False, "exercise-or-test", 1, None),
    (ST.actual, M.cancel, V.extreme, {"sms"}, True, True, "cancel-prewritten", 0, None),
    (ST.actual, M.cancel, V.minor, {"sms"}, False, True, "cancel-prewritten", 0, None),
    (ST.exercise, M.cancel, V.severe, {"x"}, True, True, "cancel-prewritten", 0, None),
    (ST.test, M.cancel, V.unknown, {"x"}, False, True, "cancel-prewritten", 0, None),
    (ST.actual, M.cancel, V.extreme, {"sms", "x"}, True, False, "cancel-went-out", 1, None),
    (ST.exercise, M.cancel, V.minor, {"x"}, True, False, "cancel-went-out", 1, None),
    (ST.actual, M.cancel, V.extreme, {"x"}, False, False, "cancel-before-public", 1, None),
    (ST.test, M.cancel, V.minor, {"x"}, False, False, "cancel-before-public", 1, None),
    (ST.system, M.alert, V.minor, {"x"}, False, False, "never-public", 0, None),
    (ST.draft, M.alert, V.extreme, {"sms"}, False, False, "never-public", 0, None),
    (ST.draft, M.cancel, V.minor, {"x"}, True, True, "never-public", 0, None),
]


@pytest.mark.parametrize(
    (
        "status",
        "msg_type",
        "severity",
        "channels",
        "went_out",
        "prewritten",
        "name",
        "needed",
        "fresh",
    ),
    ROWS,
)
def test_each_alert_falls_under_the_expected_rule(
    policy: Policy,
    status: Status,
    msg_type: MsgType,
    severity: Severity,
    channels: set[str],
    went_out: bool,
    prewritten: bool,
    name: str,
    needed: int,
    fresh: timedelta | None,
) -> None:
    context = PolicyContext(status, msg_type, severity, frozenset(channels), went_out, prewritten)
    rule = policy.rule_for(context)
    assert (rule.name, rule.approvals, rule.fresh_second_factor) == (name, needed, fresh)


def test_system_and_draft_can_never_be_submitted(policy: Policy) -> None:
    rule = policy.rule_named("never-public")
    assert not rule.submittable
    assert "never reach the public" in (rule.refuse or "")


def test_only_cancels_use_the_fast_path(policy: Policy) -> None:
    fast = [rule for rule in policy.rules if rule.approvals == 0 and rule.submittable]
    assert [rule.name for rule in fast] == ["cancel-prewritten"]
    assert fast[0].fast_path and fast[0].match.msg_types == {MsgType.cancel}


def test_live_alerts_are_approved_by_approvers_and_cancels_also_by_duty_officers(
    policy: Policy,
) -> None:
    for name in ("actual-extreme-or-severe", "actual", "exercise-or-test"):
        assert policy.rule_named(name).roles == {Role.approver}
    for name in ("cancel-went-out", "cancel-before-public"):
        assert policy.rule_named(name).roles == {Role.approver, Role.duty_officer}


def test_every_alert_has_exactly_one_rule(policy: Policy) -> None:
    for status, msg_type, severity, went_out, prewritten in product(
        Status, MsgType, Severity, (False, True), (False, True)
    ):
        context = PolicyContext(status, msg_type, severity, frozenset({"x"}), went_out, prewritten)
        assert policy.rule_for(context).name  # raises PolicyError on none or several


def test_the_most_severe_language_decides(policy: Policy) -> None:
    alert = content(
        infos=[info(severity="Minor"), info(language="es-US", severity="Extreme", headline="Aviso")]
    )
    assert policy.rule_for(PolicyContext.of(alert)).name == "actual-extreme-or-severe"
