"""What each channel will show before release, and what the public reads after: the preview,
the CAP document and the Atom feeds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import feedparser
import pytest
from lxml import etree

from approvals.alert import EXERCISE_MARKING
from broadcaster.emulated import EmulatedPlatforms, start_emulated_platforms
from broadcaster.targets import Directory
from tests.api.conftest import ApiClient
from tests.api.test_alerts_api import _approve, _draft, _submit, _template_values

XSD = etree.XMLSchema(etree.parse(str(Path(__file__).parents[1] / "data" / "cap" / "CAP-v1.2.xsd")))


@pytest.fixture
async def platforms() -> AsyncIterator[EmulatedPlatforms]:
    started = await start_emulated_platforms()
    yield started
    await started.stop()


@pytest.fixture
def directory(platforms: EmulatedPlatforms) -> Directory:
    return platforms.directory


async def test_preview_shows_every_channels_parts_within_limits(api: ApiClient) -> None:
    alert = await _draft(api)
    status, preview = await api.call("GET", f"/alerts/{alert['id']}/preview", "approver1")
    assert status == 200 and isinstance(preview, dict)
    assert preview["content_hash"] == alert["current"]["content_hash"]
    by_channel = {c["channel"]: c for c in preview["channels"]}
    assert set(by_channel) == set(alert["current"]["content"]["channels"])
    for name, channel in by_channel.items():
        assert channel["target"] == f"{name}-live"
        assert channel["within_limits"], channel["problem"]
        assert channel["parts"], name
        for part in channel["parts"]:
            if part["limit"] is not None:
                assert part["length"] <= part["limit"]
    assert "Evacuation order for Riverside district" in by_channel["x"]["parts"][0]["text"]


async def test_exercise_preview_uses_exercise_targets_and_is_marked(api: ApiClient) -> None:
    values = await _template_values(api, "exercise-evacuation")
    alert = await _draft(api, {"template": "exercise-evacuation", "values": values})
    _, preview = await api.call("GET", f"/alerts/{alert['id']}/preview", "officer")
    assert isinstance(preview, dict)
    for channel in preview["channels"]:
        assert channel["target_mode"] == "exercise"
        for part in channel["parts"]:
            assert EXERCISE_MARKING in part["text"], (channel["channel"], part["part"])


async def test_preview_says_when_a_channel_has_no_target(api: ApiClient) -> None:
    content = (await _draft(api))["current"]["content"]
    content["channels"] = ["x", "nowhere"]
    status, alert = await api.call("POST", "/alerts", "officer", {"content": content})
    assert status == 201 and isinstance(alert, dict)
    _, preview = await api.call("GET", f"/alerts/{alert['id']}/preview", "officer")
    assert isinstance(preview, dict)
    nowhere = next(c for c in preview["channels"] if c["channel"] == "nowhere")
    assert not nowhere["within_limits"]
    assert "no live target is configured" in nowhere["problem"]


async def _released(api: ApiClient, template: str = "boil-water") -> dict[str, Any]:
    body = {"template": template, "values": await _template_values(api, template)}
    alert = await _submit(api, (await _draft(api, body))["id"])
    _status, alert = await _approve(api, alert, "approver1", totp=False)
    assert alert["current"]["state"] == "released", alert
    return alert


async def test_cap_document_of_a_released_alert_is_valid(api: ApiClient) -> None:
    draft = await _draft(api)
    status, _ = await api.call("GET", f"/alerts/{draft['id']}/cap.xml", "officer")
    assert status == 409  # no CAP identity before release
    alert = await _released(api)
    response = await api.client.get(
        f"/api/v1/alerts/{alert['id']}/cap.xml", headers=api.auth("responder")
    )
    assert response.status == 200
    assert response.content_type == "application/cap+xml"
    document = etree.fromstring(await response.read())
    XSD.assertValid(document)
    identifier = document.find("{urn:oasis:names:tc:emergency:cap:1.2}identifier")
    assert identifier is not None and identifier.text == alert["current"]["identifier"]
    public = await api.client.get(f"/cap/{alert['current']['identifier']}.xml")
    assert public.status == 200 and await public.read() == await response.read()


async def test_public_feed_lists_current_actual_alerts_only(api: ApiClient) -> None:
    live = await _released(api)
    drill = await _released(api, "exercise-boil-water")
    cancelled = await _released(api, "all-clear")
    status, _ = await api.call("POST", f"/alerts/{cancelled['id']}/cancel", "officer", {})
    assert status == 201
    response = await api.client.get("/feeds/alerts.atom")
    assert response.status == 200
    parsed = feedparser.parse(await response.read())
    assert not parsed.bozo, parsed.bozo_exception
    ids = [entry.id for entry in parsed.entries]
    assert live["current"]["identifier"] in ids
    assert drill["current"]["identifier"] not in ids
    assert cancelled["current"]["identifier"] not in ids
    exercise = feedparser.parse(await (await api.client.get("/feeds/exercise.atom")).read())
    assert [e.id for e in exercise.entries] == [drill["current"]["identifier"]]
    assert (await api.client.get("/feeds/other.atom")).status == 404


async def test_unknown_cap_identifier_is_404(api: ApiClient) -> None:
    assert (await api.client.get("/cap/CB-404-1.xml")).status == 404


async def test_card_images_are_served_for_released_alerts(api: ApiClient) -> None:
    alert = await _released(api)
    identifier = alert["current"]["identifier"]
    language = alert["current"]["content"]["infos"][0]["language"]
    jpeg = await api.client.get(f"/media/cards/{identifier}/{language}.jpg")
    assert jpeg.status == 200 and jpeg.content_type == "image/jpeg"
    assert (await jpeg.read())[:3] == b"\xff\xd8\xff"
    png = await api.client.get(f"/media/cards/{identifier}/{language}.png")
    assert (await png.read())[:8] == b"\x89PNG\r\n\x1a\n"
    assert (await api.client.get(f"/media/cards/{identifier}/xx-XX.png")).status == 404
    assert (await api.client.get(f"/media/cards/{identifier}/{language}.gif")).status == 404


async def test_submit_checks_each_channels_rendering(api: ApiClient) -> None:
    alert = await _submit(api, (await _draft(api))["id"])
    assert alert["findings"] == []  # every channel has a live target and the text fits
