"""CAP 1.2: the XML validates against the official XSD for every sample and every template, maps
every field as CAP says, and the CAP channel publishes it to a hub that refuses invalid CAP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from lxml import etree  # lxml ships no type information
from pydantic import SecretStr, ValidationError

from approvals.alert import EXERCISE_MARKING, AlertContent, MsgType, Status
from channels.base import (
    AlertVersion,
    AuthError,
    PermanentError,
    Post,
    Receipt,
    Target,
    TargetMode,
)
from channels.cap import CAP_NAMESPACE, cap_datetime, cap_document, cap_url
from channels.cap_channel import CapChannel, CapSettings
from channels.emulators.cap import CapHubEmulator
from channels.netguard import DestinationRefused
from tests.channels import samples

REPO = Path(__file__).resolve().parents[2]
XSD = REPO / "tests" / "data" / "cap" / "CAP-v1.2.xsd"
NS = {"cap": CAP_NAMESPACE}


@pytest.fixture(scope="module")
def schema() -> Any:
    return etree.XMLSchema(etree.parse(str(XSD)))


def _valid(schema: Any, document: bytes) -> Any:
    root = etree.fromstring(document)
    assert schema.validate(root), f"not valid CAP 1.2: {schema.error_log}"
    return root


def _version(content: AlertContent, number: int = 1, **changes: Any) -> AlertVersion:
    version = samples.version(number)
    return replace(version, content=content, **changes)


SAMPLES = {
    "short": samples.version(),
    "long": samples.version(long=True),
    "exercise": samples.version(status=Status.exercise),
    "test": samples.version(status=Status.test),
    "four languages": samples.version(languages=("en-US", "es-US", "fr-CA", "zh-CN")),
    "update": samples.version(2, msg_type=MsgType.update),
    "cancel": samples.version(2, msg_type=MsgType.cancel),
    "exercise cancel": samples.version(2, status=Status.exercise, msg_type=MsgType.cancel),
}


# --- the XSD -------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", SAMPLES)
def test_every_sample_validates_against_the_official_xsd(schema: Any, label: str) -> None:
    _valid(schema, cap_document(SAMPLES[label]))


def test_the_packaged_schema_is_the_official_one() -> None:
    packaged = REPO / "channels" / "schemas" / "CAP-v1.2.xsd"
    assert packaged.read_bytes() == XSD.read_bytes()


def _template_versions() -> Iterator[tuple[str, AlertVersion]]:
    try:
        from approvals.templates import load_templates
    except ImportError:  # pragma: no cover - approvals/templates.py is built separately
        pytest.skip("approvals.templates.load_templates does not exist yet")
    templates = load_templates(REPO / "config" / "templates")
    assert templates.names(), "config/templates holds no templates"
    for name in templates.names():
        template = templates.get(name)
        values = {key: f"Sample {key} & <{key}>" for key in template.placeholders}
        original = templates.render(name, values)
        yield f"{name}", _version(original)
        reference = f"{samples.SENDER},CB-1-1,{samples.SENT.isoformat()}"
        yield f"{name} correction", _version(templates.correction_for(original, [reference]), 2)
        yield f"{name} cancel", _version(templates.cancel_for(original, [reference]), 2)


def test_every_template_its_correction_and_cancel_validate(schema: Any) -> None:
    checked = []
    for label, version in _template_versions():
        root = _valid(schema, cap_document(version))
        status = root.findtext("cap:status", namespaces=NS)
        assert status == version.content.status.value, label
        headlines = root.findall("cap:info/cap:headline", namespaces=NS)
        marked = [EXERCISE_MARKING in headline.text for headline in headlines]
        if status == "Exercise":
            assert all(marked), f"{label}: an exercise headline lacks the marking"
        else:
            assert not any(marked), f"{label}: an actual headline carries the marking"
        checked.append(label)
    assert any(label.endswith(" cancel") for label in checked)


# --- what CAP says about each field ------------------------------------------------------------


def test_header_fields_are_mapped(schema: Any) -> None:
    root = _valid(schema, cap_document(SAMPLES["update"]))
    text = {name: root.findtext(f"cap:{name}", namespaces=NS) for name in (
        "identifier", "sender", "sent", "status", "msgType", "scope", "references", "note"
    )}  # fmt: skip
    assert text == {
        "identifier": "CB-1-2",
        "sender": samples.SENDER,
        "sent": "2026-11-21T03:01:00-00:00",
        "status": "Actual",
        "msgType": "Update",
        "scope": "Public",
        # The referenced sent is written exactly as the original's <sent> was.
        "references": f"{samples.SENDER},CB-1-1,2026-11-21T03:00:00-00:00",
        "note": None,
    }


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 21, 3, 0, tzinfo=UTC), "2026-11-21T03:00:00-00:00"),
        (
            datetime(2026, 7, 4, 9, 5, 7, 123456, tzinfo=timezone(timedelta(hours=-7))),
            "2026-07-04T09:05:07-07:00",
        ),
        (
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "2026-01-02T03:04:05+05:30",
        ),
    ],
)
def test_date_times_have_an_offset_and_no_fractional_seconds(
    moment: datetime, expected: str
) -> None:
    assert cap_datetime(moment) == expected


def test_a_naive_date_time_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        cap_datetime(datetime(2026, 1, 1))


def test_local_sent_time_keeps_its_offset_in_the_document(schema: Any) -> None:
    pacific = timezone(timedelta(hours=-8))
    version = replace(SAMPLES["short"], sent=datetime(2026, 11, 20, 19, 0, 0, 500, tzinfo=pacific))
    root = _valid(schema, cap_document(version))
    assert root.findtext("cap:sent", namespaces=NS) == "2026-11-20T19:00:00-08:00"


def test_every_info_area_polygon_circle_and_geocode_is_mapped(schema: Any) -> None:
    root = _valid(schema, cap_document(SAMPLES["four languages"]))
    infos = root.findall("cap:info", namespaces=NS)
    assert [i.findtext("cap:language", namespaces=NS) for i in infos] == [
        "en-US", "es-US", "fr-CA", "zh-CN"
    ]  # fmt: skip
    chinese = infos[3]
    assert chinese.findtext("cap:headline", namespaces=NS) == "立即撤离河滨区：堤坝决口"  # noqa: RUF001
    assert [c.text for c in chinese.findall("cap:category", namespaces=NS)] == ["Met", "Safety"]
    assert chinese.findtext("cap:expires", namespaces=NS) == "2026-11-21T09:00:00-00:00"
    [area] = chinese.findall("cap:area", namespaces=NS)
    assert area.findtext("cap:areaDesc", namespaces=NS) == "Riverside district"
    assert (
        area.findtext("cap:polygon", namespaces=NS)
        == "38.0,-122.0 38.1,-122.0 38.1,-121.9 38.0,-122.0"
    )
    assert area.findtext("cap:circle", namespaces=NS) == "38.05,-121.95 2.5"
    assert area.findtext("cap:geocode/cap:valueName", namespaces=NS) == "SAME"
    assert area.findtext("cap:geocode/cap:value", namespaces=NS) == "006113"


def test_tiny_coordinates_are_never_in_exponent_notation(schema: Any) -> None:
    area = {
        "description": "Null Island",
        "polygons": [[(0.00001, 0.0), (0.0, 0.00002), (-0.00001, 0.0), (0.00001, 0.0)]],
        "circles": [{"lat": 0.00001, "lon": -0.00001, "radius_km": 0.0005}],
    }
    data = samples.content().model_dump()
    data["infos"][0]["areas"] = [area]
    root = _valid(schema, cap_document(_version(AlertContent.model_validate(data))))
    polygon = root.findtext("cap:info/cap:area/cap:polygon", namespaces=NS)
    circle = root.findtext("cap:info/cap:area/cap:circle", namespaces=NS)
    assert polygon == "0.00001,0.0 0.0,0.00002 -0.00001,0.0 0.00001,0.0"
    assert circle == "0.00001,-0.00001 0.0005"


@pytest.mark.parametrize("status", [Status.exercise, Status.test])
def test_exercise_and_test_keep_their_status_and_carry_the_marking(
    schema: Any, status: Status
) -> None:
    root = _valid(schema, cap_document(samples.version(status=status)))
    assert root.findtext("cap:status", namespaces=NS) == status.value
    assert EXERCISE_MARKING in root.findtext("cap:note", namespaces=NS)


def test_an_exercise_note_keeps_the_authors_words_after_the_marking(schema: Any) -> None:
    data = samples.content(status=Status.exercise).model_dump()
    data["note"] = "County-wide flood drill"
    version = _version(AlertContent.model_validate(data))
    root = _valid(schema, cap_document(version))
    assert root.findtext("cap:note", namespaces=NS) == f"{EXERCISE_MARKING} County-wide flood drill"


def test_an_actual_alert_never_carries_the_marking() -> None:
    assert EXERCISE_MARKING.encode() not in cap_document(SAMPLES["long"])


def test_text_that_xml_cannot_carry_is_dropped_not_fatal(schema: Any) -> None:
    data = samples.content().model_dump()
    data["infos"][0]["description"] = "Water\x00 rising\x0b fast & <deep>"
    root = _valid(schema, cap_document(_version(AlertContent.model_validate(data))))
    assert root.findtext("cap:info/cap:description", namespaces=NS) == "Water rising fast & <deep>"


def test_the_document_is_deterministic_utf8_with_a_declaration() -> None:
    document = cap_document(SAMPLES["four languages"])
    assert document == cap_document(SAMPLES["four languages"])
    assert document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")


def test_cap_url_escapes_the_identifier() -> None:
    assert cap_url("https://a.example/cap/", "CB/1 2") == "https://a.example/cap/CB%2F1%202.xml"


# --- the CAP channel against the hub emulator --------------------------------------------------


@pytest.fixture
async def hub() -> AsyncIterator[CapHubEmulator]:
    emulator = CapHubEmulator()
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def channel(hub: CapHubEmulator) -> AsyncIterator[CapChannel]:
    adapter = CapChannel(hub.target("hub", timeout_seconds=2.0))
    try:
        yield adapter
    finally:
        await adapter.aclose()


async def test_the_hub_receives_the_xml_text_exactly(
    hub: CapHubEmulator, channel: CapChannel
) -> None:
    [post] = channel.render(SAMPLES["four languages"])
    assert post.text == cap_document(SAMPLES["four languages"]).decode()
    assert post.limit is None and post.length == len(post.text)
    receipt = await channel.publish(post, "k:1")
    [effect] = hub.effects_of("post")
    assert effect.data["text"] == post.text
    assert receipt.external_id == effect.data["id"] == "CB-1-1"
    assert receipt.url == f"{hub.url}/alerts/CB-1-1"


@pytest.mark.parametrize("valid", [True, False])
async def test_basic_auth(hub: CapHubEmulator, valid: bool) -> None:
    adapter = CapChannel(hub.target("basic", valid_credentials=valid, basic=True))
    try:
        [post] = adapter.render(SAMPLES["short"])
        if valid:
            assert (await adapter.publish(post, "b:1")).external_id == "CB-1-1"
        else:
            with pytest.raises(AuthError):
                await adapter.publish(post, "b:1")
    finally:
        await adapter.aclose()


async def test_invalid_cap_is_refused_with_the_hubs_validation_error(
    hub: CapHubEmulator, channel: CapChannel
) -> None:
    [post] = channel.render(SAMPLES["short"])
    broken = replace(
        post, text=post.text.replace("<status>Actual</status>", "<status>Real</status>")
    )
    with pytest.raises(PermanentError) as caught:
        await channel.publish(broken, "bad:1")
    assert caught.value.status == 400
    assert "status" in caught.value.message and "Real" in caught.value.message
    assert hub.effects_of("post") == []


async def test_the_hub_refuses_a_doctype(hub: CapHubEmulator, channel: CapChannel) -> None:
    [post] = channel.render(SAMPLES["short"])
    evil = post.text.replace(
        "<alert ", '<!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<alert ', 1
    )
    with pytest.raises(PermanentError, match="DOCTYPE"):
        await channel.publish(replace(post, text=evil), "xxe:1")


async def test_a_different_message_under_a_used_identifier_is_refused(
    hub: CapHubEmulator, channel: CapChannel
) -> None:
    [post] = channel.render(SAMPLES["short"])
    await channel.publish(post, "dup:1")
    [other] = channel.render(SAMPLES["long"])  # also CB-1-1
    with pytest.raises(PermanentError) as caught:
        await channel.publish(other, "dup:2")
    assert caught.value.status == 409
    assert len(hub.effects_of("post")) == 1


async def test_find_published_asks_the_hub_by_identifier(channel: CapChannel) -> None:
    [post] = channel.render(SAMPLES["short"])
    assert await channel.find_published(post, "f:1") is None
    await channel.publish(post, "f:1")
    found = await channel.find_published(post, "another-key")
    assert found is not None and found.external_id == "CB-1-1"


async def test_retract_posts_a_cancel_that_references_the_original(
    hub: CapHubEmulator, channel: CapChannel
) -> None:
    [post] = channel.render(SAMPLES["short"])
    original = await channel.publish(post, "r:1")
    done = await channel.retract(original, SAMPLES["cancel"])
    cancel = hub.effects_of("post")[-1].data
    assert done.external_id == cancel["id"] == "CB-1-2"
    assert cancel["msg_type"] == "Cancel"
    assert cancel["references"] == f"{samples.SENDER},CB-1-1,2026-11-21T03:00:00-00:00"


async def test_retract_refuses_a_message_that_does_not_reference_the_original(
    hub: CapHubEmulator, channel: CapChannel
) -> None:
    stranger = Receipt(channel="cap", target="hub", external_id="CB-9-9")
    with pytest.raises(PermanentError, match="does not reference CB-9-9"):
        await channel.retract(stranger, SAMPLES["cancel"])
    with pytest.raises(PermanentError, match="new Alert"):
        await channel.retract(stranger, SAMPLES["short"])
    assert hub.effects_of("post") == []


async def test_a_loopback_hub_is_refused_unless_allowed(hub: CapHubEmulator) -> None:
    target = hub.target("strict")
    settings = target.settings.model_copy(update={"allow_private_destinations": False})
    adapter = CapChannel(Target(settings, target.credentials))
    try:
        [post] = adapter.render(SAMPLES["short"])
        with pytest.raises(DestinationRefused, match="loopback"):
            await adapter.publish(post, "n:1")
    finally:
        await adapter.aclose()
    assert hub.effects == []


async def test_a_hub_that_echoes_our_token_does_not_leak_it_into_errors() -> None:
    token = "tok_super_secret_123456"

    async def echo(request: web.Request) -> web.Response:
        return web.Response(status=400, text=f"bad request from {request.headers['Authorization']}")

    app = web.Application()
    app.router.add_post("/alerts", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    settings = CapSettings(
        name="echo",
        mode=TargetMode.live,
        base_url=f"http://127.0.0.1:{runner.addresses[0][1]}",
        allow_private_destinations=True,
    )
    adapter = CapChannel(Target(settings, {"secret": SecretStr(token)}))
    try:
        [post] = adapter.render(SAMPLES["short"])
        with pytest.raises(PermanentError) as caught:
            await adapter.publish(post, "e:1")
        assert token not in str(caught.value)
        assert "[redacted]" in str(caught.value)
    finally:
        await adapter.aclose()
        await runner.cleanup()


def test_settings_say_what_is_wrong() -> None:
    with pytest.raises(ValidationError, match="needs a username"):
        CapSettings(name="h", mode=TargetMode.live, base_url="https://hub.example", auth="basic")
    with pytest.raises(ValidationError, match="http"):
        CapSettings(name="h", mode=TargetMode.live, base_url="hub.example")


async def test_posts_not_made_by_this_channel_are_refused() -> None:
    settings = CapSettings(name="h", mode=TargetMode.live, base_url="https://hub.example")
    adapter = CapChannel(Target(settings, {"secret": SecretStr("x")}))
    with pytest.raises(PermanentError, match="no identifier"):
        await adapter.publish(Post(text="<alert/>"), "k:1")
