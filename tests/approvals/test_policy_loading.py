"""load_policy refuses an inconsistent file, naming the file, the rule and what to change."""

from pathlib import Path

import pytest

from approvals.alert import MsgType, Severity, Status
from approvals.errors import PolicyError
from approvals.policy import Policy, PolicyContext, load_policy

NEVER_PUBLIC = """
[[rules]]
name = "never-public"
refuse = "System and Draft never reach the public"
match.status = ["System", "Draft"]
"""

REST = """
[[rules]]
name = "the-rest"
match.status = ["Actual", "Exercise", "Test"]
approvals = 1
roles = ["approver"]
valid_for = "1h"
submission_window = "2h"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "approval-policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(tmp_path: Path, text: str) -> PolicyError:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as excinfo:
        load_policy(path)
    error = excinfo.value
    assert str(path) in str(error), "the message must name the file"
    return error


def test_a_minimal_consistent_policy_loads(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, NEVER_PUBLIC + REST))
    assert [rule.name for rule in policy.rules] == ["never-public", "the-rest"]


def test_overlap_names_both_rules_and_an_alert_they_share(tmp_path: Path) -> None:
    error = refusal(
        tmp_path,
        NEVER_PUBLIC
        + REST
        + """
[[rules]]
name = "extreme"
match.status = ["Actual"]
match.severity = ["Extreme"]
approvals = 2
roles = ["approver"]
valid_for = "1h"
submission_window = "1h"
""",
    )
    text = str(error)
    assert "rules 'the-rest' and 'extreme' overlap" in text
    assert "status=Actual" in text and "severity=Extreme" in text
    assert error.rule == "the-rest"


def test_gap_names_an_alert_no_rule_covers(tmp_path: Path) -> None:
    error = refusal(tmp_path, NEVER_PUBLIC + REST.replace('"Exercise", "Test"', '"Exercise"'))
    text = str(error)
    assert "no rule covers status=Test" in text
    assert "add a rule or widen one" in text


def test_channel_gap_and_overlap_are_found_exactly(tmp_path: Path) -> None:
    rules = (
        NEVER_PUBLIC
        + """
[[rules]]
name = "sms"
match.status = ["Actual", "Exercise", "Test"]
match.channels_any = ["sms"]
approvals = 2
roles = ["approver"]
valid_for = "1h"
submission_window = "1h"

[[rules]]
name = "not-sms-or-x"
match.status = ["Actual", "Exercise", "Test"]
match.channels_none = ["sms", "x"]
approvals = 1
roles = ["approver"]
valid_for = "1h"
submission_window = "1h"
"""
    )
    gap = refusal(tmp_path, rules)
    assert "channels={x}" in str(gap), "an alert only on x matches neither rule"
    overlap = refusal(
        tmp_path, rules.replace('channels_none = ["sms", "x"]', 'channels_any = ["x"]')
    )
    assert "rules 'sms' and 'not-sms-or-x' overlap" in str(overlap)
    assert "channels={sms, x}" in str(overlap)
    fixed = rules.replace('channels_none = ["sms", "x"]', 'channels_none = ["sms"]')
    policy = load_policy(write(tmp_path, fixed))

    def rule_for(*channels: str) -> str:
        context = PolicyContext(Status.actual, MsgType.alert, Severity.minor, frozenset(channels))
        return policy.rule_for(context).name

    assert rule_for("email") == "not-sms-or-x"
    assert rule_for("x") == "not-sms-or-x"
    assert rule_for("email", "sms") == "sms"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ('roles = ["approver"]', "nobody is eligible"),
        ('roles = ["responder"]', "role 'responder' may not approve alerts"),
        ('roles = ["administrator"]', "role 'administrator' may not approve alerts"),
        ('min_rank = 9\nroles = ["approver"]', "min_rank 9 is above every declared rank"),
        ('min_rank = "director"\nroles = ["approver"]', "min_rank = 'director' is not a rank"),
    ],
)
def test_a_rule_nobody_can_satisfy_is_refused(tmp_path: Path, change: str, message: str) -> None:
    text = "[ranks]\nwatch = 1\nchief = 3\n" + NEVER_PUBLIC + REST
    if change == 'roles = ["approver"]':
        text = text.replace('roles = ["approver"]\n', "")
    else:
        text = text.replace('roles = ["approver"]', change)
    error = refusal(tmp_path, text)
    assert message in str(error)
    assert "rule 'the-rest'" in str(error)


def test_min_rank_by_name_is_accepted(tmp_path: Path) -> None:
    text = (
        "[ranks]\nwatch = 1\nchief = 3\n"
        + NEVER_PUBLIC
        + REST.replace('roles = ["approver"]', 'min_rank = "chief"')
    )
    assert load_policy(write(tmp_path, text)).rule_named("the-rest").min_rank == 3


def test_unknown_key_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    error = refusal(
        tmp_path, NEVER_PUBLIC + REST.replace("approvals = 1", "approvals = 1\napprover = 1")
    )
    assert "rule 'the-rest' (rules[1]): unknown key 'approver'" in str(error)
    assert "did you mean 'approvals'?" in str(error)


def test_unknown_match_key_and_value_are_refused(tmp_path: Path) -> None:
    error = refusal(
        tmp_path,
        NEVER_PUBLIC
        + REST.replace('"Actual", "Exercise", "Test"', '"Actul", "Exercise", "Test"')
        + 'match.msgType = ["Alert"]\n',
    )
    text = str(error)
    assert "'Actul' is not one of Actual, Exercise, System, Test, Draft" in text
    assert "unknown key 'msgType'" in text
    assert len(error.problems) == 2, "every problem is reported at once"


def test_unknown_top_level_key_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, "policy_version = 2\n" + NEVER_PUBLIC + REST)
    assert "file: unknown key 'policy_version'" in str(error)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (REST.replace("approvals = 1", "approvals = 0"), "approvals = 0 releases with nobody's"),
        (
            REST.replace("approvals = 1", "approvals = 0\nfast_path = true"),
            'fast_path is only for Cancels: set match.msg_type = ["Cancel"]',
        ),
        (
            REST.replace('"Actual", "Exercise", "Test"', '"Actual", "Exercise", "Test", "System"'),
            "",
        ),
        (REST.replace('valid_for = "1h"', 'valid_for = "2 hours"'), "is not a duration like"),
        (REST.replace('valid_for = "1h"\n', ""), "valid_for is required"),
        (REST.replace("approvals = 1", 'approvals = "one"'), "approvals must be a whole number"),
    ],
)
def test_rule_mistakes_are_refused(tmp_path: Path, text: str, message: str) -> None:
    if "System" in text:
        text = text.replace('"Test", "System"', '"Test", "System", "Draft"')
        error = refusal(tmp_path, text)
        assert "System and Draft messages never reach the public" in str(error)
        return
    error = refusal(tmp_path, NEVER_PUBLIC + text)
    assert message in str(error)


def test_refusing_rule_cannot_also_require_approvals(tmp_path: Path) -> None:
    error = refusal(tmp_path, NEVER_PUBLIC.replace("refuse =", "approvals = 1\nrefuse =") + REST)
    assert "a rule that refuses cannot also set approvals" in str(error)


def test_a_rule_that_can_never_match_is_refused(tmp_path: Path) -> None:
    dead = """
[[rules]]
name = "impossible"
match.msg_type = ["Alert"]
match.went_out = true
match.status = ["Actual"]
approvals = 1
roles = ["approver"]
valid_for = "1h"
submission_window = "1h"
"""
    error = refusal(tmp_path, NEVER_PUBLIC + REST + dead)
    assert "rule 'impossible' matches no alert at all" in str(error)


def test_duplicate_rule_names_are_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, NEVER_PUBLIC + REST + NEVER_PUBLIC)
    assert "rule name 'never-public' is used 2 times" in str(error)


def test_broken_toml_and_missing_file_are_reported_with_the_path(tmp_path: Path) -> None:
    assert "not valid TOML" in str(refusal(tmp_path, "[[rules]\nname = 1"))
    with pytest.raises(PolicyError, match="cannot read the file"):
        load_policy(tmp_path / "absent.toml")


def test_no_rules_at_all_is_refused(tmp_path: Path) -> None:
    assert "there are no rules" in str(refusal(tmp_path, "[ranks]\na = 1\n"))


def test_checking_many_channels_stays_fast(tmp_path: Path) -> None:
    # A decision list over 12 channels: rule i matches alerts on channel i and none before it.
    channels = [f"c{i}" for i in range(12)]
    parts = [NEVER_PUBLIC]
    for index, channel in enumerate(channels):
        before = ", ".join(f'"{c}"' for c in channels[:index])
        parts.append(
            REST.replace("the-rest", f"via-{channel}")
            + f'match.channels_any = ["{channel}"]\n'
            + (f"match.channels_none = [{before}]\n" if before else "")
        )
    none = ", ".join(f'"{c}"' for c in channels)
    parts.append(REST + f"match.channels_none = [{none}]\n")
    path = write(tmp_path, "".join(parts))
    policy = load_policy(path)  # exhaustive overlap/gap check over every channel subset
    assert len(policy.rules) == 14


def test_policies_built_in_code_are_checked_too() -> None:
    with pytest.raises(PolicyError, match=r"no rule covers"):
        Policy(rules=())


def test_rules_written_as_a_single_table_are_explained(tmp_path: Path) -> None:
    error = refusal(tmp_path, '[rules]\nname = "x"\n')
    assert "rules must be written as [[rules]] tables" in str(error)
