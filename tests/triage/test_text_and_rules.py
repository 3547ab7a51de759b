"""Reading text (folding, places, pasted coordinates), clustering similar reports, and the triage
rules file: the shipped one loads, a wrong one stops start-up naming the key."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from broadcaster.settings import SHIPPED_CONFIG_DIR, ConfigError, TriageSettings, load_settings
from broadcaster.triage.clustering import ClusterIndex
from broadcaster.triage.normalise import Normaliser, pseudonym_key
from broadcaster.triage.rules import TriageRules, load_triage_rules, parse_triage_rules
from broadcaster.triage.text import Lexicon, Term, coordinates_in, fold, words

NOW = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rules() -> TriageRules:
    return load_triage_rules(TriageSettings())


@pytest.fixture(scope="module")
def normaliser(rules: TriageRules) -> Normaliser:
    return Normaliser(rules, pseudonym_key(SecretStr("k" * 32)))


def test_folding_ignores_case_accents_and_apostrophe_styles() -> None:
    assert words(fold("Nous sommes COINCÉS, l\u2019eau monte")) == [
        "nous", "sommes", "coinces", "l", "eau", "monte",
    ]  # fmt: skip
    assert words(fold("We can\u2019t get out, it's rising")) == [
        "we", "cant", "get", "out", "its", "rising",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("we are at 38.0521, -121.9487 on the roof", (38.0521, -121.9487)),
        ("call 555-0100 or 911", None),
        ("lat 95.12345, 10.12345", None),  # not a place on Earth
    ],
)
def test_coordinates_pasted_from_a_map_app(text: str, found: tuple[float, float] | None) -> None:
    assert coordinates_in(text) == found


def test_signs_are_found_in_plain_and_in_accented_or_emoji_text() -> None:
    # A plain ASCII message is only searched for the ASCII signs; every other text for all.
    lexicon = Lexicon(
        [Term.parse("urgent", "!!!", None), Term.parse("urgent", "🆘", None)],
        {"en": frozenset({"we", "the"}), "es": frozenset({"el", "la"})},
        frozenset({"not"}),
    )
    assert lexicon.analyse("help!!! we are on the roof").matches == {"urgent": ("!!!",)}
    accented = lexicon.analyse("¡¡ayuda!!! 🆘 el techo, la casa")
    assert accented.matches == {"urgent": ("!!!", "🆘")}
    assert accented.language == "es"
    assert lexicon.analyse("help 🆘 we are on the roof").matches == {"urgent": ("🆘",)}
    assert lexicon.analyse("we are fine").matches == {}


def test_the_gazetteer_finds_the_longest_place_named(rules: TriageRules) -> None:
    found = rules.gazetteer.find_in(words(fold("flooding near the Main St bridge by Riverside")))
    assert found is not None and found.name == "Main Street bridge"
    assert rules.gazetteer.lookup("calle elm") is not None
    assert rules.gazetteer.lookup("Atlantis") is None


def test_a_report_gets_a_location_from_its_place_or_coordinates(normaliser: Normaliser) -> None:
    named = normaliser.report(
        source="x", external_id="1", text="Water on Elm St", received_at=NOW, author_id="42"
    )
    assert (named.place, named.latitude, named.longitude) == ("Elm Street", 38.052, -121.948)
    pasted = normaliser.report(
        source="x", external_id="2", text="here: 38.105, -121.905 help", received_at=NOW
    )
    assert (pasted.latitude, pasted.longitude) == (38.105, -121.905)
    assert named.author_pseudonym == normaliser.pseudonym("x", "42")
    assert normaliser.pseudonym("x", "42") != normaliser.pseudonym("mastodon", "42")
    assert len(named.author_pseudonym or "") == 32  # a keyed hash: the id cannot be read back


# --- clustering ----------------------------------------------------------------------------------


def _index(rules: TriageRules) -> ClusterIndex:
    clustering = rules.clustering
    return ClusterIndex(
        clustering.similarity,
        timedelta(minutes=clustering.window_minutes),
        clustering.max_distance_km,
    )


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("We are trapped on the roof at 12 Elm St", "trapped on roof Elm Street please help", True),
        ("We are trapped on the roof at 12 Elm St", "stuck on our roof on elm st!!", True),
        # Same trouble and place across languages.
        ("We are trapped on the roof at 12 Elm St", "atrapados en el techo calle Elm", True),
        ("is the Main St bridge open?", "is main street bridge open", True),
        ("is the Main St bridge open?", "is the fairgrounds shelter open?", False),
        ("We are trapped on the roof at 12 Elm St", "tree down on Riverside road", False),
    ],
)
def test_similar_reports_join_one_incident(
    rules: TriageRules, normaliser: Normaliser, first: str, second: str, same: bool
) -> None:
    index = _index(rules)
    a = normaliser.report(source="x", external_id="a", text=first, received_at=NOW)
    b = normaliser.report(source="x", external_id="b", text=second, received_at=NOW)
    index.new_cluster(a.words, a.latitude, a.longitude, NOW)
    found = index.match(b.words, b.latitude, b.longitude, NOW)
    assert (found is not None) is same


def test_reports_far_apart_in_time_or_place_are_different_incidents(
    rules: TriageRules, normaliser: Normaliser
) -> None:
    index = _index(rules)
    text = "power line down sparking on the road"
    index.new_cluster(
        normaliser.report(source="x", external_id="a", text=text, received_at=NOW).words,
        38.05,
        -121.95,
        NOW,
    )
    words_b = normaliser.report(source="x", external_id="b", text=text, received_at=NOW).words
    assert index.match(words_b, 38.05, -121.95, NOW + timedelta(minutes=5)) is not None
    assert index.match(words_b, 38.05, -121.95, NOW + timedelta(hours=6)) is None
    assert index.match(words_b, 38.60, -121.95, NOW) is None  # about 60 km away
    assert index.prune(NOW + timedelta(days=1)) == 1
    assert index.match(words_b, 38.05, -121.95, NOW) is None


# --- the rules file ------------------------------------------------------------------------------


def _shipped() -> dict[str, Any]:
    with (SHIPPED_CONFIG_DIR / "triage.toml").open("rb") as handle:
        return tomllib.load(handle)


def test_the_shipped_rules_cover_english_spanish_and_french(rules: TriageRules) -> None:
    assert {"en", "es", "fr"} <= set(rules.languages)
    for category in rules.categories.values():
        assert {"en", "es", "fr"} <= set(category.words), category.code
    for name in rules.replies.canned:
        assert {"en", "es", "fr"} <= set(rules.replies.canned[name]), name


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["scoring"].pop("high_priority"), "scoring.high_priority"),
        (lambda d: d["categories"][0]["words"].update(de=["eingeschlossen"]), "words.de"),
        (lambda d: d["replies"].update(free_text="sometimes"), "replies.free_text"),
        (lambda d: d["categories"][1].update(code="life_safety"), "used twice"),
        (lambda d: d["places"][0].update(latitude=123), "places.0.latitude"),
        (lambda d: d["replies"]["canned"]["received"].update(en="x" * 400), "max_length"),
    ],
)
def test_a_mistake_in_the_rules_names_the_key(change: Any, named: str) -> None:
    data = _shipped()
    change(data)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        parse_triage_rules(data, Path("triage.toml"))


def test_the_rules_file_is_found_beside_the_settings_file(tmp_path: Path) -> None:
    (tmp_path / "broadcaster.toml").write_text("[triage]\nrules_file = 'mine.toml'\n")
    loaded = load_settings(tmp_path / "broadcaster.toml")
    assert loaded.settings.triage.rules_file == tmp_path / "mine.toml"
    with pytest.raises(ConfigError, match=r"mine\.toml does not exist"):
        load_triage_rules(loaded.settings.triage)
