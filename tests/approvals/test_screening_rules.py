"""Screening: exercise wording is enforced, sensitive content is flagged, channels plug in."""

from pathlib import Path

import pytest

from approvals.alert import EXERCISE_MARKING, AlertContent, Status
from approvals.errors import ScreeningConfigError
from approvals.screening import (
    Finding,
    Level,
    ScreeningConfig,
    contains_phrase,
    load_screening,
    screen,
)
from tests.approvals.factories import content, info

BUILT_IN = ScreeningConfig()


def rules(findings: list[Finding]) -> list[tuple[str, str, str]]:
    return [(f.level.value, f.rule, f.field) for f in findings]


def described(description: str, status: Status = Status.actual) -> AlertContent:
    headline = "Flood" if status is Status.actual else f"{EXERCISE_MARKING}: Flood"
    return content(status=status, infos=[info(headline=headline, description=description)])


@pytest.mark.parametrize("status", [Status.exercise, Status.test])
def test_an_exercise_without_the_marking_is_blocked_in_each_headline(status: Status) -> None:
    alert = content(
        status=status,
        infos=[
            info(headline=f"{EXERCISE_MARKING}: Flood"),
            info(language="es-US", headline="Inundación"),
        ],
    )
    assert rules(screen(alert, BUILT_IN)) == [
        ("block", "exercise-marking-missing", "infos[1].headline")
    ]


def test_the_marking_must_be_written_exactly() -> None:
    alert = content(status=Status.exercise, headline="Exercise exercise exercise: Flood")
    assert rules(screen(alert, BUILT_IN))[0][1] == "exercise-marking-missing"


@pytest.mark.parametrize(
    "text",
    [
        "This is not a drill.",
        "THIS IS NOT A DRILL",
        "this is NOT-A-DRILL!",
        "not\n a   drill",
        "N O T  A  D R I L L",
        "notadrill",
        "This is not an exercise",
        "Esto no es un simulacro",
        "Ceci n\u2019est pas un exercice",  # typographic apostrophe
        "Ce n'est pas une simulation",
    ],
)
def test_an_exercise_may_never_claim_to_be_real(text: str) -> None:
    findings = screen(described(text, Status.exercise), BUILT_IN)
    assert rules(findings) == [("block", "exercise-claims-real", "infos[0].description")]


@pytest.mark.parametrize("text", ["I cannot adrill that", "Knot a drill bit", "This is a drill."])
def test_whole_words_only(text: str) -> None:
    assert screen(described(text, Status.exercise), BUILT_IN) == []


def test_an_actual_alert_never_carries_the_marking() -> None:
    alert = content(headline="Exercise, exercise, exercise - flood")
    assert rules(screen(alert, BUILT_IN)) == [
        ("block", "actual-has-exercise-marking", "infos[0].headline")
    ]
    # "exercise" alone is an ordinary word in a heat warning.
    assert screen(described("Avoid strenuous exercise outdoors."), BUILT_IN) == []


def test_an_actual_alert_saying_it_is_a_drill_is_flagged_not_blocked() -> None:
    assert rules(screen(described("This is only a test."), BUILT_IN)) == [
        ("warn", "actual-claims-drill", "infos[0].description")
    ]
    assert screen(described("THIS IS NOT A DRILL. Take shelter."), BUILT_IN) == []


@pytest.mark.parametrize(
    ("text", "rule", "level"),
    [
        ("SECRET//NOFORN briefing", "classification-marking", "block"),
        ("(U//FOUO) shelter list", "classification-marking", "block"),
        ("Marked OFFICIAL-SENSITIVE", "classification-marking", "block"),
        ("For Official Use Only", "classification-marking", "block"),
        ("CALL THE CONFIDENTIAL HOTLINE", "classification-word", "warn"),
        ("Status at https://eoc.county.internal/board", "internal-host", "block"),
        ("see wiki.corp for the roster", "internal-host", "block"),
        ("Server 10.20.30.40 is down", "private-address", "block"),
        ("Call Jane on (808) 555-0199", "phone-number", "warn"),
        ("Call +44 20 7946 0958", "phone-number", "warn"),
    ],
)
def test_sensitive_content_is_flagged(
    screening: ScreeningConfig, text: str, rule: str, level: str
) -> None:
    findings = screen(described(text), screening)
    assert (level, rule, "infos[0].description") in rules(findings)
    flagged = next(f for f in findings if f.rule == rule)
    assert "found" in flagged.message


@pytest.mark.parametrize(
    "text",
    [
        "Call 911 now, or 112 from a mobile.",
        "Leave by 2024-05-01 at 14:30.",
        "Shelter at 21.3069, -157.8583.",
        "Confidential counselling is available.",
        "Contact your local office.",
        "Go to www.county.gov/alerts",
    ],
)
def test_ordinary_alert_text_is_not_flagged(screening: ScreeningConfig, text: str) -> None:
    assert screen(described(text), screening) == []


def test_public_numbers_listed_in_config_are_allowed(tmp_path: Path) -> None:
    path = tmp_path / "screening.toml"
    path.write_text(
        '[phone_numbers]\nlevel = "block"\nmessage = "personal number"\n'
        'allowed = ["+1 808 555 0100"]\n',
        encoding="utf-8",
    )
    config = load_screening(path)
    assert screen(described("County line: (808) 555-0100"), config) == []
    assert rules(screen(described("Jane: (808) 555-0101"), config)) == [
        ("block", "phone-number", "infos[0].description")
    ]


def test_channel_checks_run_for_targeted_channels_only() -> None:
    def sms(alert: AlertContent) -> list[Finding]:
        return [Finding(Level.block, "sms-length", "infos[0].headline", "over 160")]

    on_sms = content(channels=["sms"])
    assert rules(screen(on_sms, BUILT_IN, {"sms": sms})) == [
        ("block", "sms-length", "infos[0].headline")
    ]
    assert screen(content(channels=["x"]), BUILT_IN, {"sms": sms}) == []


def test_every_text_field_is_screened(screening: ScreeningConfig) -> None:
    alert = content(
        note="ops at 10.0.0.5",
        infos=[info(contact="ops.lan desk", areas=[{"description": "Zone near 192.168.1.1"}])],
    )
    fields = {f.field for f in screen(alert, screening)}
    assert fields == {"note", "infos[0].contact", "infos[0].areas[0].description"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[patterns]]\nid = "x"\nlevel = "block"\npattern = "("\nmessage = "m"\n',
            "not a valid regular expression",
        ),
        (
            '[[patterns]]\nid = "x"\nlevel = "stop"\npattern = "a"\nmessage = "m"\n',
            "level 'stop' must be",
        ),
        (
            '[[patterns]]\nid = "x"\nlevel = "warn"\npattern = "a*"\nmessage = "m"\n',
            "matches empty text",
        ),
        (
            '[[patterns]]\nid = "x"\nlevel = "warn"\npattern = "a"\nmessage = "m"\nflags = 1\n',
            "unknown key 'flags'",
        ),
        (
            '[phone_numbers]\nlevel = "warn"\nmessage = "m"\nallowed = ["none"]\n',
            "allowed number 'none' has no digits",
        ),
        ("colour = 1\n", "file: unknown key 'colour'"),
    ],
)
def test_bad_screening_config_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "screening.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScreeningConfigError, match=message) as excinfo:
        load_screening(path)
    assert str(path) in str(excinfo.value)


def test_phrase_matching_ignores_case_accents_and_spacing() -> None:
    assert contains_phrase("NO ES UN SIMULACRO", "no es un simulacro")
    assert contains_phrase("évacuation", "evacuation")
    assert not contains_phrase("simulacros", "simulacro")
