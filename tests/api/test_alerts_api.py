"""The alert lifecycle over the API: drafting, approval by the chain of command, release,
correction; bad requests answered with 409/422 naming the state or field, never 500."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster import audit
from broadcaster.storage.schema import audit_log
from tests.api.conftest import ApiClient

EVACUATION_VALUES = {
    "area": "Riverside district",
    "hazard": "a levee failure",
    "time": "3:30 PM",
    "route": "Highway 9 north",
    "shelter": "Central High School gym",
}
EVACUATION: dict[str, Any] = {"template": "evacuation", "values": EVACUATION_VALUES}
BOIL_WATER_VALUES = {"area": "Riverside district"}


async def _draft(
    api: ApiClient, body: dict[str, Any] = EVACUATION, who: str = "officer"
) -> dict[str, Any]:
    status, alert = await api.call("POST", "/alerts", who, body)
    assert status == 201, alert
    assert isinstance(alert, dict)
    return alert


async def _submit(api: ApiClient, alert_id: int, who: str = "officer") -> dict[str, Any]:
    status, alert = await api.call("POST", f"/alerts/{alert_id}/submit", who)
    assert status == 200, alert
    assert isinstance(alert, dict)
    return alert


async def _approve(
    api: ApiClient, alert: dict[str, Any], who: str, *, totp: bool = True
) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"content_hash": alert["current"]["content_hash"]}
    if totp:
        body["totp_code"] = api.totp(who)
    status, answer = await api.call("POST", f"/alerts/{alert['id']}/approve", who, body)
    assert isinstance(answer, dict)
    return status, answer


async def _template_values(api: ApiClient, name: str) -> dict[str, str]:
    status, template = await api.call("GET", f"/templates/{name}", "officer")
    assert status == 200 and isinstance(template, dict)
    return {p["name"]: f"value for {p['name']}" for p in template["placeholders"]}


async def test_extreme_alert_needs_two_approvers_then_is_released(
    api: ApiClient, engine: AsyncEngine
) -> None:
    alert = await _draft(api)
    assert alert["mode"] == "live"
    assert alert["current"]["state"] == "draft"
    assert alert["current"]["status"] == "Actual"
    alert = await _submit(api, alert["id"])
    assert alert["current"]["quorum"]["needed"] == 2
    assert alert["current"]["rule"] == "actual-extreme-or-severe"

    status, alert = await _approve(api, alert, "approver1")
    assert status == 200, alert
    assert alert["current"]["state"] == "submitted"
    assert alert["current"]["quorum"]["counted"] == ["approver1"]

    status, alert = await _approve(api, alert, "approver2")
    assert status == 200, alert
    current = alert["current"]
    assert current["state"] == "released"
    assert current["identifier"] == f"CB-{alert['id']}-1"
    assert current["sender"] == "alerts@crisis-broadcaster.invalid"
    assert [a["approver"] for a in current["approvals"]] == ["approver1", "approver2"]

    async with engine.connect() as connection:
        actions = (await connection.execute(select(audit_log.c.action, audit_log.c.actor))).all()
        verification = await audit.verify(connection)
    assert [a for a, _ in actions] == [
        "alert.create",
        "alert.submit",
        "alert.approve",
        "alert.approve",
        "alert.reach_quorum",
        "alert.release",
    ]
    assert verification.intact


async def test_severe_approval_without_a_fresh_second_factor_is_refused(api: ApiClient) -> None:
    alert = await _submit(api, (await _draft(api))["id"])
    status, answer = await _approve(api, alert, "approver1", totp=False)
    assert status == 403
    assert answer["rule"] == "actual-extreme-or-severe"
    assert "second factor" in answer["detail"]


async def test_a_replayed_second_factor_code_is_refused(api: ApiClient) -> None:
    first = await _submit(api, (await _draft(api))["id"])
    second = await _submit(api, (await _draft(api))["id"])
    code = api.totp("approver1")
    body = {"content_hash": first["current"]["content_hash"], "totp_code": code}
    status, _ = await api.call("POST", f"/alerts/{first['id']}/approve", "approver1", body)
    assert status == 200
    body = {"content_hash": second["current"]["content_hash"], "totp_code": code}
    status, answer = await api.call("POST", f"/alerts/{second['id']}/approve", "approver1", body)
    assert status == 422
    assert isinstance(answer, dict)
    assert answer["errors"][0]["field"] == "totp_code"
    assert "already used" in answer["detail"]


async def test_one_approver_rule_releases_on_first_approval(api: ApiClient) -> None:
    body = {"template": "boil-water", "values": await _template_values(api, "boil-water")}
    alert = await _submit(api, (await _draft(api, body))["id"])
    assert alert["current"]["quorum"]["needed"] == 1
    status, alert = await _approve(api, alert, "approver1", totp=False)
    assert status == 200, alert
    assert alert["current"]["state"] == "released"


async def test_the_author_never_approves_their_own_alert(api: ApiClient) -> None:
    body = {"template": "boil-water", "values": await _template_values(api, "boil-water")}
    alert = await _submit(api, (await _draft(api, body))["id"])
    status, answer = await _approve(api, alert, "officer", totp=False)
    assert status == 403
    assert "author" in answer["detail"] or "wrote" in answer["detail"]


async def test_approvers_do_not_draft(api: ApiClient) -> None:
    status, _ = await api.call("POST", "/alerts", "approver1", EVACUATION)
    assert status == 403  # approvers do not draft


async def test_approving_content_that_changed_is_refused(api: ApiClient) -> None:
    alert = await _submit(api, (await _draft(api))["id"])
    body = {"content_hash": "0" * 64, "totp_code": api.totp("approver1")}
    status, answer = await api.call("POST", f"/alerts/{alert['id']}/approve", "approver1", body)
    assert status == 409
    assert isinstance(answer, dict) and "changed since you opened it" in answer["detail"]


async def test_editing_after_an_approval_voids_it(api: ApiClient) -> None:
    alert = await _submit(api, (await _draft(api))["id"])
    status, alert = await _approve(api, alert, "approver1")
    assert alert["current"]["quorum"]["counted"] == ["approver1"]
    status, _alert_any = await api.call("POST", f"/alerts/{alert['id']}/recall", "officer")
    assert status == 200
    content = alert["current"]["content"]
    content["infos"][0]["instruction"] = "Leave now by Highway 9 north. Take your medicines."
    status, edited = await api.call(
        "PATCH", f"/alerts/{alert['id']}", "officer", {"content": content}
    )
    assert status == 200, edited
    assert isinstance(edited, dict)
    assert edited["current"]["content_hash"] != alert["current"]["content_hash"]
    resubmitted = await _submit(api, alert["id"])
    assert resubmitted["current"]["approvals"] == []
    assert resubmitted["current"]["quorum"]["counted"] == []


async def test_rejection_needs_a_reason_and_reaches_the_author(api: ApiClient) -> None:
    alert = await _submit(api, (await _draft(api))["id"])
    status, answer = await api.call(
        "POST", f"/alerts/{alert['id']}/reject", "approver1", {"reason": ""}
    )
    assert status == 422
    status, answer = await api.call(
        "POST", f"/alerts/{alert['id']}/reject", "approver1", {"reason": "Wrong shelter address"}
    )
    assert status == 200 and isinstance(answer, dict)
    assert answer["current"]["state"] == "rejected"
    assert answer["current"]["reject_reason"] == "Wrong shelter address"


async def test_cancel_with_the_prewritten_text_goes_out_at_once(api: ApiClient) -> None:
    body = {"template": "boil-water", "values": await _template_values(api, "boil-water")}
    alert = await _submit(api, (await _draft(api, body))["id"])
    _, alert = await _approve(api, alert, "approver1", totp=False)
    status, cancelled = await api.call("POST", f"/alerts/{alert['id']}/cancel", "officer", {})
    assert status == 201, cancelled
    assert isinstance(cancelled, dict)
    current = cancelled["current"]
    assert current["msg_type"] == "Cancel"
    assert current["state"] == "released"
    assert current["rule"] == "cancel-prewritten"
    assert current["content"]["references"] == [
        alert["current"]["sender"]
        + ","
        + alert["current"]["identifier"]
        + ","
        + alert["current"]["sent"].replace("Z", "+00:00")
    ]
    assert [v["msg_type"] for v in cancelled["versions"]] == ["Alert", "Cancel"]


async def test_a_written_cancel_needs_one_other_person(api: ApiClient) -> None:
    body = {"template": "boil-water", "values": await _template_values(api, "boil-water")}
    alert = await _submit(api, (await _draft(api, body))["id"])
    _, alert = await _approve(api, alert, "approver1", totp=False)
    released = alert["current"]
    content = dict(released["content"])
    content["msg_type"] = "Cancel"
    content["references"] = [_reference(released)]
    content["infos"] = [
        {**info, "headline": "Boil water notice withdrawn: the water is safe to drink"}
        for info in content["infos"]
    ]
    status, cancel = await api.call(
        "POST", f"/alerts/{alert['id']}/cancel", "officer", {"content": content}
    )
    assert status == 201, cancel
    assert isinstance(cancel, dict)
    assert cancel["current"]["state"] == "submitted"
    # The outbox answers "did it go out?": this fixture configures no targets, so it reached
    # nobody (tests/dispatch cover the alert that did).
    assert cancel["current"]["rule"] == "cancel-before-public"
    assert cancel["current"]["quorum"]["needed"] == 1
    # A second duty officer may read it: speed matters for corrections.
    status, done = await _approve(api, cancel, "officer2", totp=False)
    assert status == 200, done
    assert done["current"]["state"] == "released"


def _reference(version: dict[str, Any]) -> str:
    sent = version["sent"].replace("Z", "+00:00")
    return f"{version['sender']},{version['identifier']},{sent}"


async def test_update_prefills_the_templates_correction(api: ApiClient) -> None:
    body = {"template": "boil-water", "values": await _template_values(api, "boil-water")}
    alert = await _submit(api, (await _draft(api, body))["id"])
    _, alert = await _approve(api, alert, "approver1", totp=False)
    status, update = await api.call("POST", f"/alerts/{alert['id']}/update", "officer", {})
    assert status == 201 and isinstance(update, dict)
    assert update["current"]["msg_type"] == "Update"
    assert update["current"]["state"] == "draft"
    assert "CORRECTION" in update["current"]["content"]["infos"][0]["headline"].upper()


async def test_an_exercise_can_never_become_actual(api: ApiClient) -> None:
    values = await _template_values(api, "exercise-evacuation")
    alert = await _draft(api, {"template": "exercise-evacuation", "values": values})
    assert alert["mode"] == "exercise"
    content = alert["current"]["content"]
    content["status"] = "Actual"
    content["infos"] = [
        {**info, "headline": info["headline"].replace("EXERCISE EXERCISE EXERCISE ", "")}
        for info in content["infos"]
    ]
    status, answer = await api.call(
        "PATCH", f"/alerts/{alert['id']}", "officer", {"content": content}
    )
    assert status == 422
    assert isinstance(answer, dict) and answer["errors"][0]["field"] == "status"


async def test_fifty_concurrent_approvals_release_once(api: ApiClient, engine: AsyncEngine) -> None:
    alert = await _submit(api, (await _draft(api))["id"])
    codes = {who: api.totp(who) for who in ("approver1", "approver2")}

    async def approve(who: str) -> int:
        body = {"content_hash": alert["current"]["content_hash"], "totp_code": codes[who]}
        status, _ = await api.call("POST", f"/alerts/{alert['id']}/approve", who, body)
        return status

    statuses = await asyncio.gather(
        *(approve(("approver1", "approver2")[i % 2]) for i in range(50))
    )
    assert statuses.count(200) == 2  # each person's code works once; the rest are refused
    assert set(statuses) <= {200, 409, 422}
    _, final = await api.call("GET", f"/alerts/{alert['id']}", "officer")
    assert isinstance(final, dict)
    assert final["current"]["state"] == "released", (
        final["current"]["quorum"],
        final["current"]["approvals"],
        statuses,
    )
    async with engine.connect() as connection:
        releases = (
            await connection.execute(select(audit_log).where(audit_log.c.action == "alert.release"))
        ).all()
    assert len(releases) == 1


# --- bad requests: clear 4xx, never 500 ---------------------------------------------------------


async def test_unknown_template_names_the_field(api: ApiClient) -> None:
    status, answer = await api.call(
        "POST", "/alerts", "officer", {"template": "evacuatoin", "values": {}}
    )
    assert status == 422 and isinstance(answer, dict)
    assert answer["errors"][0]["field"] == "template"
    assert "did you mean 'evacuation'" in answer["detail"]


async def test_missing_placeholder_names_it(api: ApiClient) -> None:
    values = dict(EVACUATION_VALUES)
    del values["shelter"]
    status, answer = await api.call(
        "POST", "/alerts", "officer", {"template": "evacuation", "values": values}
    )
    assert status == 422 and isinstance(answer, dict)
    assert answer["errors"][0]["field"] == "values.shelter"


def _content(**changes: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "categories": ["Safety"],
        "event": "Flood",
        "urgency": "Immediate",
        "severity": "Moderate",
        "certainty": "Observed",
        "headline": "Flood warning for Riverside",
        "areas": [{"description": "Riverside"}],
    }
    info.update(changes.pop("info", {}))
    return {"status": "Actual", "msg_type": "Alert", "infos": [info], "channels": ["x"], **changes}


async def test_missing_headline_names_the_field(api: ApiClient) -> None:
    content = _content()
    del content["infos"][0]["headline"]
    status, answer = await api.call("POST", "/alerts", "officer", {"content": content})
    assert status == 422 and isinstance(answer, dict)
    assert "content.infos.0.headline" in [e["field"] for e in answer["errors"]]


async def test_unclosed_polygon_names_the_field(api: ApiClient) -> None:
    polygon = [[38.0, -122.0], [38.1, -122.0], [38.1, -121.9], [38.2, -121.8]]
    content = _content(info={"areas": [{"description": "Riverside", "polygons": [polygon]}]})
    status, answer = await api.call("POST", "/alerts", "officer", {"content": content})
    assert status == 422 and isinstance(answer, dict)
    assert any("polygons" in e["field"] or "areas" in e["field"] for e in answer["errors"])
    assert "not closed" in str(answer["errors"])


async def test_expiry_in_the_past_is_refused_at_submit(api: ApiClient) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    alert = await _draft(api, {"content": _content(info={"expires": past})})
    status, answer = await api.call("POST", f"/alerts/{alert['id']}/submit", "officer")
    assert status == 422 and isinstance(answer, dict)
    assert "expires" in answer["errors"][0]["field"]


async def test_wrong_state_transition_is_409_naming_the_state(api: ApiClient) -> None:
    alert = await _draft(api)
    body = {"content_hash": alert["current"]["content_hash"], "totp_code": api.totp("approver1")}
    status, answer = await api.call("POST", f"/alerts/{alert['id']}/approve", "approver1", body)
    assert status == 409 and isinstance(answer, dict)
    assert answer["state"] == "draft"
    status, answer = await api.call("POST", f"/alerts/{alert['id']}/cancel", "officer", {})
    assert status == 409 and isinstance(answer, dict)
    assert answer["state"] == "draft"


async def test_not_json_and_broken_json(api: ApiClient) -> None:
    headers = api.auth("officer")
    response = await api.client.post("/api/v1/alerts", data="template=x", headers=headers)
    assert response.status == 415
    response = await api.client.post(
        "/api/v1/alerts", data="{broken", headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status == 400


async def test_unknown_alert_is_404(api: ApiClient) -> None:
    for path in ("/alerts/999999", "/alerts/abc"):
        status, _ = await api.call("GET", path, "officer")
        assert status == 404


async def test_responders_read_but_never_draft(api: ApiClient) -> None:
    status, _ = await api.call("POST", "/alerts", "responder", EVACUATION)
    assert status == 403
    status, _listing = await api.call("GET", "/alerts", "responder")
    assert status == 200


async def test_templates_are_listed_live_and_exercise_apart(api: ApiClient) -> None:
    status, live = await api.call("GET", "/templates?mode=live", "officer")
    assert status == 200 and isinstance(live, dict)
    names = [t["name"] for t in live["templates"]]
    assert "evacuation" in names and not any(n.startswith("exercise-") for n in names)
    status, drills = await api.call("GET", "/templates?mode=exercise", "officer")
    assert isinstance(drills, dict)
    assert all(t["name"].startswith("exercise-") for t in drills["templates"])


async def test_submit_warns_of_channels_with_no_target(api: ApiClient) -> None:
    # This app has no channel targets configured: nothing would be sent anywhere.
    alert = await _submit(api, (await _draft(api))["id"])
    warned = {f["field"] for f in alert["findings"] if f["rule"] == "channel-no-target"}
    assert warned == {f"channels.{name}" for name in alert["current"]["content"]["channels"]}
    assert all(f["level"] == "warn" for f in alert["findings"])


async def test_cancel_withdraws_a_correction_still_in_the_works(api: ApiClient) -> None:
    body = {"template": "boil-water", "values": await _template_values(api, "boil-water")}
    alert = await _submit(api, (await _draft(api, body))["id"])
    _, alert = await _approve(api, alert, "approver1", totp=False)
    status, _ = await api.call("POST", f"/alerts/{alert['id']}/update", "officer", {})
    assert status == 201
    status, again = await api.call("POST", f"/alerts/{alert['id']}/update", "officer", {})
    assert status == 409 and isinstance(again, dict)
    assert "already replacing" in again["detail"]
    status, cancelled = await api.call("POST", f"/alerts/{alert['id']}/cancel", "officer", {})
    assert status == 201, cancelled
    assert isinstance(cancelled, dict)
    assert cancelled["current"]["msg_type"] == "Cancel"
    assert cancelled["current"]["state"] == "released"
    assert [(v["msg_type"], v["state"]) for v in cancelled["versions"]] == [
        ("Alert", "released"),
        ("Update", "withdrawn"),
        ("Cancel", "released"),
    ]


async def test_a_withdrawn_correction_leaves_the_alert_correctable(api: ApiClient) -> None:
    body = {"template": "boil-water", "values": await _template_values(api, "boil-water")}
    alert = await _submit(api, (await _draft(api, body))["id"])
    _, alert = await _approve(api, alert, "approver1", totp=False)
    await api.call("POST", f"/alerts/{alert['id']}/update", "officer", {})
    status, _ = await api.call("POST", f"/alerts/{alert['id']}/withdraw", "officer", {})
    assert status == 200
    status, update = await api.call("POST", f"/alerts/{alert['id']}/update", "officer", {})
    assert status == 201, update
    assert isinstance(update, dict) and update["current"]["msg_type"] == "Update"
