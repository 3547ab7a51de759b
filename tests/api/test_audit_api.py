"""The audit log over the API: who may read it, paging, and verification."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster import audit
from broadcaster.storage.schema import audit_log
from tests.api.conftest import ApiClient


async def _entries(engine: AsyncEngine, count: int) -> None:
    async with engine.begin() as connection:
        for number in range(count):
            await audit.append(
                connection,
                audit.AuditEntry(actor="admin", action="test.action", details={"n": number}),
            )


async def test_audit_needs_a_token(api: ApiClient) -> None:
    status, body = await api.call("GET", "/audit")
    assert status == 401
    assert isinstance(body, dict) and "Bearer" in body["detail"]
    response = await api.client.get("/api/v1/audit", headers={"Authorization": "Bearer cbt_nope"})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_responders_may_not_read_the_audit_log(api: ApiClient) -> None:
    status, body = await api.call("GET", "/audit", "responder")
    assert status == 403
    assert isinstance(body, dict)
    assert body["permission"] == "view_audit"
    assert "responder" in body["detail"]


async def test_audit_pages(api: ApiClient, engine: AsyncEngine) -> None:
    await _entries(engine, 5)
    status, body = await api.call("GET", "/audit?limit=2", "admin")
    assert status == 200 and isinstance(body, dict)
    assert [e["details"]["n"] for e in body["entries"]] == [0, 1]
    status, body = await api.call("GET", f"/audit?limit=10&after={body['next_after']}", "admin")
    assert isinstance(body, dict)
    assert [e["details"]["n"] for e in body["entries"]] == [2, 3, 4]
    assert body["next_after"] is None


async def test_bad_query_is_422_naming_the_field(api: ApiClient) -> None:
    status, body = await api.call("GET", "/audit?limit=zero", "admin")
    assert status == 422 and isinstance(body, dict)
    assert body["errors"][0]["field"] == "query.limit"


async def test_verify_reports_tampering_with_the_entry(api: ApiClient, engine: AsyncEngine) -> None:
    await _entries(engine, 3)
    status, body = await api.call("GET", "/audit/verify", "approver1")
    assert (status, body["intact"], body["entries"]) == (200, True, 3)  # type: ignore[index]
    async with engine.begin() as connection:
        await connection.execute(update(audit_log).where(audit_log.c.seq == 2).values(actor="x"))
    status, body = await api.call("GET", "/audit/verify", "admin")
    assert status == 200 and isinstance(body, dict)
    assert body["intact"] is False
    assert body["problems"] == [
        {"seq": 2, "kind": "edited", "message": "entry 2 was changed after it was written"}
    ]


async def test_openapi_document_lists_the_routes(api: ApiClient) -> None:
    status, body = await api.call("GET", "/openapi.json")
    assert status == 200 and isinstance(body, dict)
    assert body["openapi"].startswith("3.1")
    assert "/api/v1/audit/verify" in body["paths"]
    assert body["paths"]["/api/v1/audit"]["get"]["security"] == [{"bearer": []}]
