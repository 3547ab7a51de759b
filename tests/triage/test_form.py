"""The public report form: works without JavaScript, every field labelled for screen readers,
clear errors that keep what was typed, a limit per address, and a trap for bots."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from tests.triage.conftest import TriageApp, make_app_fixture


class _Page(HTMLParser):
    """The parts of a page that matter here: labels, fields, scripts, the viewport."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: set[str] = set()
        self.fields: dict[str, dict[str, str | None]] = {}
        self.scripts = 0
        self.viewport: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "label" and found.get("for"):
            self.labels.add(str(found["for"]))
        if tag in ("input", "textarea") and found.get("type") != "hidden":
            self.fields[str(found.get("id"))] = found
        if tag == "script":
            self.scripts += 1
        if tag == "meta" and found.get("name") == "viewport":
            self.viewport = found.get("content")


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


async def test_the_form_is_plain_html_with_every_field_labelled(triage_app: TriageApp) -> None:
    response = await triage_app.client.get("/report")
    assert response.status == 200
    page = _parse(await response.text())
    assert page.scripts == 0
    assert page.viewport == "width=device-width, initial-scale=1"  # 360 px phones
    assert set(page.fields) == {
        "text",
        "place",
        "latitude",
        "longitude",
        "name",
        "contact",
        "website",
    }
    assert set(page.fields) <= page.labels
    assert "required" in page.fields["text"]


async def test_mistakes_are_explained_and_what_was_typed_is_kept(triage_app: TriageApp) -> None:
    response = await triage_app.client.post(
        "/report", data={"text": "hi", "latitude": "38.05", "contact": "ana@example.org"}
    )
    assert response.status == 422
    html = await response.text()
    page = _parse(html)
    assert page.fields["text"].get("aria-invalid") == "true"
    assert page.fields["longitude"].get("aria-invalid") == "true"
    assert "Please fix 2 problems" in html
    assert 'href="#text"' in html and 'href="#longitude"' in html
    assert 'value="ana@example.org"' in html
    assert await triage_app.report_count() == 0


async def test_a_bot_that_fills_the_hidden_field_is_thanked_but_not_stored(
    triage_app: TriageApp,
) -> None:
    response = await triage_app.client.post(
        "/report", data={"text": "cheap pills here", "website": "http://spam.example"}
    )
    assert response.status == 200
    assert "Thank you" in await response.text()
    assert await triage_app.report_count() == 0
    metrics = await (await triage_app.client.get("/metrics")).text()
    assert 'broadcaster_triage_form_refused_total{reason="honeypot"} 1.0' in metrics


limited_app = pytest.fixture(make_app_fixture(form_max_per_window=2, form_window_seconds=600))


async def test_one_address_may_send_only_so_many_reports(limited_app: TriageApp) -> None:
    for n in range(2):
        response = await limited_app.client.post("/report", data={"text": f"report {n} here"})
        assert response.status == 200
    response = await limited_app.client.post("/report", data={"text": "a third report"})
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0
    html = await response.text()
    assert re.search(r"try again in \d+ minutes", html)
    assert "a third report" in html  # kept, to send later
    assert await limited_app.report_count() == 2
