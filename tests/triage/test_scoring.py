"""Scoring with the shipped config/triage.toml: what is urgent, and why, in English, Spanish and
French, with and without accents, with emoji; and the context around a report."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from broadcaster.settings import TriageSettings
from broadcaster.triage.rules import TriageRules, load_triage_rules
from broadcaster.triage.scoring import ReporterHistory, ScoreContext, score


@pytest.fixture(scope="module")
def rules() -> TriageRules:
    return load_triage_rules(TriageSettings())


def _score(
    rules: TriageRules, text: str, context: ScoreContext | None = None
) -> tuple[float, list[str], str | None]:
    analysis = rules.lexicon.analyse(text)
    priority, reasons = score(
        analysis.matches, context or ScoreContext(), rules.scoring, rules.categories
    )
    return priority, [reason.text for reason in reasons], analysis.language


@dataclass(frozen=True)
class Case:
    text: str
    language: str | None
    high: bool  # at or above scoring.high_priority
    reasons: tuple[str, ...]  # each must be among the reasons shown, word for word


CASES = [
    # English
    Case(
        "We are trapped on the roof at 12 Elm St",
        "en",
        True,
        ("life-safety words: trapped, on the roof",),
    ),
    Case(
        "my father is INJURED and bleeding", "en", True, ("life-safety words: injured, bleeding",)
    ),
    Case("can't breathe, smoke everywhere", "en", True, ("life-safety words: cant breathe",)),
    Case("is the bridge open?", "en", False, ("hazards reported: bridge", "a question: ?")),
    Case("this alert is fake", "en", False, ("says an alert or claim is false: fake",)),
    Case("Thanks for the update, stay safe everyone", "en", False, ()),
    # Spanish, with and without accents
    Case(
        "Estamos atrapados en el techo, calle Elm",
        "es",
        True,
        ("life-safety words: atrapados, en el techo",),
    ),
    Case(
        "mi abuela necesita oxigeno y no podemos salir",
        "es",
        False,
        ("urgent needs: oxígeno, no podemos salir",),
    ),
    Case(
        "¿Es real esta alerta? dicen que es falsa",
        "es",
        False,
        ("says an alert or claim is false: es real, dicen que, falsa",),
    ),
    # French, with and without accents
    Case(
        "Nous sommes coincés sur le toit, mon père est blessé",
        "fr",
        True,
        ("life-safety words: coincés, sur le toit, blessé",),
    ),
    Case(
        "nous sommes coinces, mon pere est blesse",
        "fr",
        True,
        ("life-safety words: coincés, blessé",),
    ),
    Case("Est-ce que le pont est fermé ?", "fr", False, ("a question: est-ce que, ?",)),
    # Emoji, alone and in text
    Case("🆘🆘🆘", None, True, ("life-safety words: 🆘",)),
    Case("🔥🔥 house on fire, kids inside!!", "en", True, ("life-safety words: on fire, 🔥",)),
    Case("😂😂 lol this alert is fake", "en", False, ("says an alert or claim is false: fake",)),
    Case(
        "🙏 please help, elderly neighbour alone",
        "en",
        False,
        ("urgent needs: help, elderly, alone, 🙏",),
    ),
    # Negation: the word right after a negation does not count...
    Case("we are not trapped, all good", "en", False, ()),
    Case("sin heridos, todos bien", "es", False, ()),
    Case("nous ne sommes pas blessés", "fr", False, ()),
    # ... but one further away still does: a missed rescue is worse than a false alarm.
    Case("no power and trapped upstairs", "en", True, ("life-safety words: trapped",)),
]


@pytest.mark.parametrize("case", CASES, ids=[case.text for case in CASES])
def test_words_people_write_give_the_priority_and_reasons_a_responder_sees(
    rules: TriageRules, case: Case
) -> None:
    priority, reasons, language = _score(rules, case.text)
    assert language == case.language
    assert (priority >= rules.scoring.high_priority) is case.high, (priority, reasons)
    for expected in case.reasons:
        assert expected in reasons, reasons
    if not case.reasons:
        assert reasons == []
        assert priority == 0


def test_more_life_safety_words_score_higher_but_within_the_cap(rules: TriageRules) -> None:
    one, _, _ = _score(rules, "trapped")
    three, _, _ = _score(rules, "trapped injured drowning unconscious bleeding")
    assert one < three <= one + rules.categories["life_safety"].extra_max


CONTEXTS = [
    # context, the reason shown, how many points it adds
    (ScoreContext(answers_alert=12), "answers alert #12, in force", 10),
    (ScoreContext(inside_alert=12), "inside the area of alert #12", 15),
    (ScoreContext(incident_size=2), "1 similar report", 6),
    (ScoreContext(incident_size=15), "14 similar reports", 18),
    (ScoreContext(incident_size=5000), "4999 similar reports", 24),  # capped
    (
        ScoreContext(reporter=ReporterHistory(misinformation=2)),
        "reporter sent misinformation before (2)",
        -20,
    ),
    (
        ScoreContext(reporter=ReporterHistory(resolved=3)),
        "reporter's earlier reports were acted on (3)",
        5,
    ),
    (
        ScoreContext(reporter=ReporterHistory(last_hour=25)),
        "reporter sent 25 reports in the last hour",
        -10,
    ),
]


@pytest.mark.parametrize(("context", "reason", "points"), CONTEXTS, ids=[c[1] for c in CONTEXTS])
def test_context_adds_its_reason_and_points(
    rules: TriageRules, context: ScoreContext, reason: str, points: float
) -> None:
    base, _, _ = _score(rules, "The water is rising on Elm Street, we are trapped")
    priority, reasons, _ = _score(
        rules, "The water is rising on Elm Street, we are trapped", context
    )
    assert reason in reasons
    assert priority == min(100, max(0, base + points))


def test_priority_stays_between_0_and_100(rules: TriageRules) -> None:
    everything = ScoreContext(answers_alert=1, inside_alert=1, incident_size=1024)
    worst = "trapped injured bleeding drowning 🆘 help elderly oxygen flood bridge"
    assert _score(rules, worst, everything)[0] == 100
    liar = ScoreContext(reporter=ReporterHistory(misinformation=5, last_hour=99))
    assert _score(rules, "is this fake?", liar)[0] == 0


def test_reasons_are_listed_most_important_first(rules: TriageRules) -> None:
    _, reasons, _ = _score(
        rules, "is the bridge open? we are trapped", ScoreContext(inside_alert=3)
    )
    assert reasons[0].startswith("life-safety words")
    assert reasons[-1].startswith("a question")
