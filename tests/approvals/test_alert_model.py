"""The alert content model refuses malformed alerts with messages that say what to fix."""

from datetime import datetime

import pytest
from pydantic import ValidationError

from approvals.alert import (
    EXERCISE_MARKING,
    HEADLINE_MAX,
    AlertContent,
    Area,
    Circle,
    Info,
    Mode,
    MsgType,
    Severity,
    Status,
    is_exercise,
    mode_of,
    most_severe,
)
from tests.approvals.factories import REFERENCE, content, info


def error_text(excinfo: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(excinfo.value)


def test_a_valid_alert_builds_and_is_frozen() -> None:
    alert = content()
    assert alert.scope.value == "Public"
    with pytest.raises(ValidationError):
        alert.status = Status.exercise  # type: ignore[misc]


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="identifier"):
        content(identifier="abc")


def test_unclosed_polygon_names_the_polygon_and_both_points() -> None:
    square = [(21.0, -157.0), (21.0, -156.0), (22.0, -156.0), (22.0, -157.5)]
    with pytest.raises(ValidationError) as excinfo:
        Area(description="Valley", polygons=[square])
    text = error_text(excinfo)
    assert "polygon 0 is not closed" in text
    assert "(21.0, -157.0)" in text and "(22.0, -157.5)" in text
    assert "repeat the first point" in text


def test_polygon_with_too_few_points_is_refused() -> None:
    with pytest.raises(ValidationError, match="polygon 1 has 3 points"):
        Area(
            description="Valley",
            polygons=[
                [(1.0, 1.0), (1.0, 2.0), (2.0, 2.0), (1.0, 1.0)],
                [(1.0, 1.0), (1.0, 2.0), (1.0, 1.0)],
            ],
        )


def test_closed_polygon_is_accepted() -> None:
    ring = [(21.0, -157.0), (21.0, -156.0), (22.0, -156.0), (21.0, -157.0)]
    assert Area(description="Valley", polygons=[ring]).polygons[0][0] == (21.0, -157.0)


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ((91.0, 0.0), "latitude 91.0 is outside -90..90"),
        ((0.0, -181.0), "longitude -181.0 is outside -180..180"),
    ],
)
def test_coordinates_out_of_range_are_refused(point: tuple[float, float], message: str) -> None:
    ring = [point, (1.0, 1.0), (1.0, 2.0), point]
    with pytest.raises(ValidationError, match=message):
        Area(description="Somewhere", polygons=[ring])


def test_circle_needs_positive_radius_and_finite_numbers() -> None:
    with pytest.raises(ValidationError, match=r"radius_km 0\.0 must be greater than 0"):
        Circle(lat=21.0, lon=-157.0, radius_km=0)
    with pytest.raises(ValidationError):
        Circle(lat=float("nan"), lon=-157.0, radius_km=1)


@pytest.mark.parametrize("headline", ["", "   ", "\n\t"])
def test_blank_headline_is_refused(headline: str) -> None:
    with pytest.raises(ValidationError, match="headline must not be blank"):
        Info.model_validate(info(headline=headline))


def test_headline_over_the_limit_says_how_long_it_is() -> None:
    with pytest.raises(
        ValidationError, match=f"headline is 161 characters; the limit is {HEADLINE_MAX}"
    ):
        Info.model_validate(info(headline="x" * 161))
    assert len(Info.model_validate(info(headline="x" * 160)).headline) == 160


def test_expires_must_carry_a_time_zone() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        Info.model_validate(info(expires=datetime(2024, 5, 1, 12, 0)))


def test_infos_need_one_block_per_language() -> None:
    with pytest.raises(ValidationError, match="at least one info"):
        AlertContent.model_validate(
            {"status": "Actual", "msg_type": "Alert", "infos": [], "channels": ["x"]}
        )
    with pytest.raises(ValidationError, match="language en-US appears in more than one"):
        content(infos=[info(), info(headline="Second")])


def test_channels_are_required_unique_and_kept_sorted() -> None:
    with pytest.raises(ValidationError, match="at least one channel"):
        content(channels=[])
    with pytest.raises(ValidationError, match="lists a channel twice"):
        content(channels=["x", "x"])
    with pytest.raises(ValidationError, match="is not a channel name"):
        content(channels=["X Twitter"])
    assert content(channels=["x", "email", "sms"]).channels == ("email", "sms", "x")


def test_references_follow_the_message_type() -> None:
    with pytest.raises(ValidationError, match="a new Alert replaces nothing"):
        content(references=[REFERENCE])
    with pytest.raises(ValidationError, match="an Cancel must name the alert it replaces"):
        AlertContent.model_validate(
            {"status": "Actual", "msg_type": "Cancel", "infos": [info()], "channels": ["x"]}
        )
    with pytest.raises(ValidationError, match="not a CAP 'sender,identifier,sent' triple"):
        content(msg_type=MsgType.update, references=["sender,identifier"])
    with pytest.raises(ValidationError, match="is not a date-time with a time zone"):
        content(msg_type=MsgType.update, references=["sender,id,2024-05-01T08:00:00"])
    assert content(msg_type=MsgType.cancel).references == (REFERENCE,)


def test_exercise_mode_is_one_fact() -> None:
    assert [s for s in Status if is_exercise(s)] == [Status.exercise, Status.test]
    assert mode_of(Status.actual) is Mode.live
    assert mode_of(Status.system) is Mode.internal and mode_of(Status.draft) is Mode.internal
    assert EXERCISE_MARKING == "EXERCISE EXERCISE EXERCISE"


def test_severity_is_the_most_severe_across_languages() -> None:
    alert = content(
        infos=[info(severity="Minor"), info(language="es-US", severity="Severe", headline="Aviso")]
    )
    assert alert.severity is Severity.severe
    assert most_severe([Severity.unknown, Severity.minor]) is Severity.minor
