"""Templates: the shipped set loads and renders; anything that could confuse a drill with a
live alert is refused at load, naming the file and what to change."""

import re
import shutil
from pathlib import Path

import pytest

from approvals.alert import EXERCISE_MARKING, Mode, MsgType, Status
from approvals.errors import MissingValue, TemplateError, TemplateFileError, UnknownTemplate
from approvals.templates import TemplateSet, load_templates
from tests.approvals.factories import REFERENCE, TEMPLATES_DIR

KINDS = [
    "evacuation",
    "shelter-in-place",
    "boil-water",
    "severe-weather",
    "missing-person",
    "all-clear",
]
EVACUATION = {
    "area": "Kalihi Valley",
    "hazard": "a wildfire moving south",
    "time": "3:30 PM",
    "route": "Likelike Highway",
    "shelter": "Farrington High School gym",
}


def test_every_kind_ships_in_live_and_exercise_form(templates: TemplateSet) -> None:
    assert templates.names(Mode.live) == sorted(KINDS)
    assert templates.names(Mode.exercise) == sorted(f"exercise-{kind}" for kind in KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_twins_take_the_same_values_and_differ_only_as_they_must(
    templates: TemplateSet, kind: str
) -> None:
    live, drill = templates.get(kind), templates.get(f"exercise-{kind}")
    assert live.placeholders == drill.placeholders
    values = {name: f"<{name}>" for name in live.placeholders}
    real = templates.render(kind, values)
    exercise = templates.render(f"exercise-{kind}", values)
    assert real.status is Status.actual and exercise.status is Status.exercise
    assert all(EXERCISE_MARKING not in i.headline for i in real.infos)
    assert all(i.headline.startswith(EXERCISE_MARKING) for i in exercise.infos)
    assert [i.severity for i in real.infos] == [i.severity for i in exercise.infos]
    for alert in (real, exercise):
        for paired in (
            templates.cancel_for(alert, [REFERENCE]),
            templates.correction_for(alert, [REFERENCE]),
        ):
            assert paired.status is alert.status
            marked = [EXERCISE_MARKING in i.headline for i in paired.infos]
            assert marked == [alert.status is Status.exercise] * len(paired.infos)


def test_render_fills_every_placeholder(templates: TemplateSet) -> None:
    alert = templates.render("evacuation", EVACUATION)
    first = alert.infos[0]
    assert first.headline == "Evacuation order for Kalihi Valley: leave now"
    assert "Likelike Highway" in (first.instruction or "")
    assert first.areas[0].description == "Kalihi Valley"
    assert alert.template == "evacuation" and alert.msg_type is MsgType.alert
    assert not re.search(r"\{[a-z_]+\}", alert.model_dump_json()), "a placeholder was left"
    assert templates.render("evacuation", EVACUATION, channels=["sms"]).channels == ("sms",)


def test_a_missing_value_names_the_template_and_field(templates: TemplateSet) -> None:
    values = {**EVACUATION, "route": "  "}
    with pytest.raises(MissingValue) as excinfo:
        templates.render("evacuation", values)
    assert (excinfo.value.template, excinfo.value.field) == ("evacuation", "route")
    assert "needs a value for 'route' (Route out" in str(excinfo.value)


def test_an_unexpected_value_is_refused(templates: TemplateSet) -> None:
    with pytest.raises(TemplateError, match="has no placeholder 'areas'"):
        templates.render("evacuation", {**EVACUATION, "areas": "x"})


def test_an_unknown_template_suggests_the_closest_name(templates: TemplateSet) -> None:
    with pytest.raises(UnknownTemplate, match="did you mean 'evacuation'") as excinfo:
        templates.render("evacuaton", EVACUATION)
    assert excinfo.value.template == "evacuaton"


def test_a_value_that_makes_the_headline_too_long_says_so(templates: TemplateSet) -> None:
    with pytest.raises(TemplateError, match=r"headline is 1[0-9]{2} characters") as excinfo:
        templates.render("evacuation", {**EVACUATION, "area": "A" * 150})
    assert excinfo.value.field == "infos[0].headline"


def test_the_prewritten_cancel_is_ready_to_send(templates: TemplateSet) -> None:
    original = templates.render(
        "missing-person",
        {
            "name": "Kai",
            "looks": "8-year-old boy, red jacket",
            "last_seen": "Ala Moana Park, 2 PM",
            "area": "Ala Moana",
            "contact": "Police: 911",
        },
    )
    cancel = templates.cancel_for(original, [REFERENCE])
    assert cancel.msg_type is MsgType.cancel and cancel.references == (REFERENCE,)
    assert cancel.infos[0].headline == "Missing person FOUND"
    assert "Kai" not in cancel.model_dump_json(), "a found person's name is not repeated"
    assert cancel.channels == original.channels and cancel.infos[0].expires is None
    assert templates.cancel_for(original, [REFERENCE], channels=["sms"]).channels == ("sms",)


def test_a_correction_keeps_the_original_text_to_fix(templates: TemplateSet) -> None:
    original = templates.render("evacuation", EVACUATION)
    update = templates.correction_for(original, [REFERENCE])
    assert update.msg_type is MsgType.update
    assert update.infos[0].headline == "CORRECTION to evacuation order"
    assert (original.infos[0].description or "") in (update.infos[0].description or "")


def test_paired_texts_need_a_template(templates: TemplateSet) -> None:
    original = templates.render("evacuation", EVACUATION).model_copy(update={"template": None})
    with pytest.raises(TemplateError, match="write the cancel by hand"):
        templates.cancel_for(original, [REFERENCE])


# --- refusals, on a copy of the shipped set --------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, root)
    return root


def edit_file(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def refused(root: Path, path: Path) -> str:
    with pytest.raises(TemplateFileError) as excinfo:
        load_templates(root)
    assert str(path) in str(excinfo.value), "the error must name the file"
    return excinfo.value.message


def test_a_copy_of_the_shipped_set_loads(tree: Path) -> None:
    assert len(load_templates(tree).templates) == 12


def test_mode_must_match_the_directory(tree: Path) -> None:
    path = tree / "exercise" / "exercise-evacuation.toml"
    edit_file(path, 'mode = "exercise"', 'mode = "live"')
    assert "mode = 'live' but the file is in exercise/" in refused(tree, path)


def test_a_live_template_in_the_exercise_directory_is_refused(tree: Path) -> None:
    source = tree / "live" / "boil-water.toml"
    moved = tree / "exercise" / "boil-water.toml"
    source.rename(moved)
    assert "mode = 'live' but the file is in exercise/" in refused(tree, moved)


def test_exercise_names_carry_the_prefix(tree: Path) -> None:
    path = tree / "exercise" / "exercise-evacuation.toml"
    renamed = path.with_name("evacuation-drill.toml")
    path.rename(renamed)
    edit_file(renamed, 'name = "exercise-evacuation"', 'name = "evacuation-drill"')
    assert "must start with 'exercise-'" in refused(tree, renamed)


def test_live_names_never_look_like_exercises(tree: Path) -> None:
    path = tree / "live" / "boil-water.toml"
    renamed = path.with_name("exercise-boil-water-live.toml")
    path.rename(renamed)
    edit_file(renamed, 'name = "boil-water"', 'name = "exercise-boil-water-live"')
    assert "live names never do" in refused(tree, renamed)


def test_name_must_match_the_file(tree: Path) -> None:
    path = tree / "live" / "boil-water.toml"
    edit_file(path, 'name = "boil-water"', 'name = "boil"')
    assert "must equal the file name 'boil-water'" in refused(tree, path)


def test_an_exercise_must_have_status_exercise(tree: Path) -> None:
    path = tree / "exercise" / "exercise-severe-weather.toml"
    edit_file(path, 'status = "Exercise"', 'status = "Actual"')
    assert "must have status 'Exercise'" in refused(tree, path)


def test_a_live_template_must_have_status_actual(tree: Path) -> None:
    path = tree / "live" / "severe-weather.toml"
    edit_file(path, 'status = "Actual"', 'status = "Test"')
    assert "must have status 'Actual'" in refused(tree, path)


def test_an_exercise_headline_without_the_marking_is_refused(tree: Path) -> None:
    path = tree / "exercise" / "exercise-all-clear.toml"
    edit_file(path, 'headline = "EXERCISE EXERCISE EXERCISE: All clear', 'headline = "All clear')
    message = refused(tree, path)
    assert message.startswith("content.infos[0].headline:")
    assert "must carry 'EXERCISE EXERCISE EXERCISE'" in message


def test_an_exercise_cancel_without_the_marking_is_refused(tree: Path) -> None:
    path = tree / "exercise" / "exercise-all-clear.toml"
    edit_file(
        path,
        'headline = "EXERCISE EXERCISE EXERCISE: All clear CANCELLED',
        'headline = "All clear CANCELLED',
    )
    assert "cancel[0].headline" in refused(tree, path)


def test_a_live_headline_with_the_marking_is_refused(tree: Path) -> None:
    path = tree / "live" / "all-clear.toml"
    edit_file(
        path, 'headline = "All clear for', 'headline = "EXERCISE EXERCISE EXERCISE All clear for'
    )
    assert "carries the exercise marking" in refused(tree, path)


def test_an_exercise_that_says_it_is_real_is_refused(tree: Path) -> None:
    path = tree / "exercise" / "exercise-evacuation.toml"
    edit_file(path, "must leave now.", "must leave now. This is not a drill.")
    assert "must never claim to be real" in refused(tree, path)


def test_placeholders_must_be_declared_and_used(tree: Path) -> None:
    path = tree / "live" / "boil-water.toml"
    edit_file(path, "because of {reason}.", "because of {cause}.")
    assert "placeholder {cause} is not declared" in refused(tree, path)
    edit_file(path, "because of {cause}.", "for a reason.")
    assert "placeholders.reason is declared but never used" in refused(tree, path)


def test_paired_headlines_are_fixed_text(tree: Path) -> None:
    path = tree / "live" / "boil-water.toml"
    edit_file(
        path,
        'headline = "Boil water notice CANCELLED"',
        'headline = "Boil water notice for {area} CANCELLED"',
    )
    assert "cancel[0].headline must be fixed text" in refused(tree, path)


def test_paired_texts_use_only_values_from_the_original(tree: Path) -> None:
    path = tree / "live" / "boil-water.toml"
    edit_file(path, "Tap water is safe to drink.", "Because {reason} was fixed.")
    assert "placeholder {reason} cannot be used here" in refused(tree, path)


def test_unknown_keys_and_stray_files_are_refused(tree: Path) -> None:
    path = tree / "live" / "boil-water.toml"
    edit_file(path, 'mode = "live"', 'mode = "live"\npriority = 1')
    assert "unknown key 'priority'" in refused(tree, path)
    edit_file(path, "\npriority = 1", "")
    stray = tree / "live" / "notes.txt"
    stray.write_text("draft ideas", encoding="utf-8")
    assert "unexpected file" in refused(tree, stray)
