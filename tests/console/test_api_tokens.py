"""API tokens from the console: a person creates one on their account page and sees its value
once (it works as a bearer token and appears nowhere afterwards: not on the page, not in the
audit log, not in a log line), revokes their own (never another person's), and an administrator
revokes all of a person's live tokens from the Users page. A revoked token gets 401 at once."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from sqlalchemy import select

from broadcaster.auth.tokens import create_token
from broadcaster.storage.schema import api_tokens, audit_log
from broadcaster.web_keys import ENGINE
from tests.console.conftest import Console

SHOWN = re.compile(r'<code class="secret">([^<]+)</code>')


async def _token(console: Console, who: str, name: str = "script") -> tuple[int, str]:
    async with console.app[ENGINE].begin() as connection:
        issued = await create_token(connection, console.people[who].id, name)
    return issued.id, issued.value


async def _api_status(console: Console, token: str) -> int:
    response = await console.client.get(
        "/api/v1/alerts", headers={"Authorization": f"Bearer {token}"}
    )
    response.close()
    return response.status


async def _audit(console: Console) -> list[Any]:
    async with console.app[ENGINE].connect() as connection:
        return list(await connection.execute(select(audit_log).order_by(audit_log.c.seq)))


async def test_a_new_token_is_shown_once_works_and_is_found_nowhere_after(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await console.sign_in_directly("officer")
    page = await (await console.get("/console/account", "officer")).text()
    assert "You have no API tokens." in page and 'action="/console/account/tokens"' in page
    assert '<label for="token_name">' in page and '<label for="token_days">' in page

    created = await console.post(
        "/console/account/tokens", "officer", {"token_name": "dashboard", "token_days": "30"}
    )
    html = await created.text()
    assert created.status == 200 and "Location" not in created.headers  # rendered, not redirected
    shown = SHOWN.search(html)
    assert shown is not None and shown.group(1).startswith("cbt_")
    value = shown.group(1)
    assert "Copy it now: it is shown only this once." in html
    assert created.headers["Cache-Control"] == "no-store"
    assert await _api_status(console, value) == 200

    again = await (await console.get("/console/account", "officer")).text()
    assert value not in again
    assert "dashboard" in again and f"{value[:10]}…" in again and "live" in again
    entries = await _audit(console)
    assert [(e.action, e.actor, e.subject) for e in entries if e.action.startswith("token.")] == [
        ("token.create", "officer", "user:officer")
    ]
    assert value not in repr([tuple(e) for e in entries])
    assert value[:10] not in repr([tuple(e) for e in entries])
    async with console.app[ENGINE].connect() as connection:
        stored = (await connection.execute(select(api_tokens))).one()
    assert value not in repr(tuple(stored)) and stored.expires_at is not None
    assert all(value not in record.getMessage() for record in caplog.records)


async def test_the_create_form_says_what_is_wrong_and_creates_nothing(console: Console) -> None:
    await console.sign_in_directly("responder")
    for data, expected in (
        ({"token_name": "", "token_days": ""}, "Give the token a name"),
        ({"token_name": "x" * 101, "token_days": ""}, "at most 100 characters"),
        ({"token_name": "ok", "token_days": "0"}, "from 1 to 3650"),
        ({"token_name": "ok", "token_days": "ten"}, "from 1 to 3650"),
        ({"token_name": "ok", "token_days": "99999"}, "from 1 to 3650"),
    ):
        response = await console.post("/console/account/tokens", "responder", data)
        html = await response.text()
        assert response.status == 422, data
        assert expected in html and 'aria-invalid="true"' in html, data
        assert SHOWN.search(html) is None
    async with console.app[ENGINE].connect() as connection:
        assert (await connection.execute(select(api_tokens))).first() is None
    refused = await console.post(
        "/console/account/tokens", "responder", {"token_name": "x"}, csrf=False
    )
    assert refused.status == 403


async def test_a_person_revokes_their_own_token_and_it_is_refused_at_once(
    console: Console,
) -> None:
    await console.sign_in_directly("approver1")
    token_id, value = await _token(console, "approver1")
    kept_id, kept = await _token(console, "approver1", "other")
    assert await _api_status(console, value) == 200
    page = await (await console.get("/console/account", "approver1")).text()
    assert f'action="/console/account/tokens/{token_id}/revoke"' in page

    revoked = await console.post(f"/console/account/tokens/{token_id}/revoke", "approver1")
    assert revoked.headers["Location"] == "/console/account?done=token_revoked"
    assert await _api_status(console, value) == 401
    assert await _api_status(console, kept) == 200
    page = await (await console.get(revoked.headers["Location"], "approver1")).text()
    assert "Token revoked." in page and "revoked 20" in page
    assert f'action="/console/account/tokens/{token_id}/revoke"' not in page
    assert f'action="/console/account/tokens/{kept_id}/revoke"' in page

    twice = await console.post(f"/console/account/tokens/{token_id}/revoke", "approver1")
    assert twice.headers["Location"] == "/console/account?done=token_revoked_already"
    revokes = [e for e in await _audit(console) if e.action == "token.revoke"]
    assert [e.details["already_revoked"] for e in revokes] == [False, True]
    assert all(e.details["token_id"] == token_id for e in revokes)
    assert all(value not in repr(tuple(e)) for e in revokes)


async def test_nobody_revokes_another_persons_token_from_their_account_page(
    console: Console,
) -> None:
    await console.sign_in_directly("responder")
    await console.sign_in_directly("admin")
    officers_id, officers = await _token(console, "officer")
    for who in ("responder", "admin"):
        response = await console.post(f"/console/account/tokens/{officers_id}/revoke", who)
        assert response.status == 404
        assert "Nothing was revoked" in await response.text()
    unknown = await console.post("/console/account/tokens/99999/revoke", "responder")
    assert unknown.status == 404
    forged = await console.post(
        f"/console/account/tokens/{officers_id}/revoke", "responder", csrf=False
    )
    assert forged.status == 403
    assert await _api_status(console, officers) == 200
    assert not [e for e in await _audit(console) if e.action.startswith("token.")]


async def test_an_administrator_revokes_all_of_a_persons_tokens(console: Console) -> None:
    await console.sign_in_directly("admin")
    _, first = await _token(console, "officer", "one")
    _, second = await _token(console, "officer", "two")
    _, responders = await _token(console, "responder")
    page = await (await console.get("/console/admin/users", "admin")).text()
    assert 'action="/console/admin/users/officer/revoke-tokens"' in page
    assert "of officer (2 live)" in page
    assert await _api_status(console, first) == 200

    done = await console.post("/console/admin/users/officer/revoke-tokens", "admin")
    assert done.headers["Location"] == "/console/admin/users?done=tokens_revoked"
    assert await _api_status(console, first) == 401
    assert await _api_status(console, second) == 401
    assert await _api_status(console, responders) == 200
    page = await (await console.get(done.headers["Location"], "admin")).text()
    assert "Their live API tokens were revoked." in page
    assert 'action="/console/admin/users/officer/revoke-tokens"' not in page

    none = await console.post("/console/admin/users/officer/revoke-tokens", "admin")
    assert none.headers["Location"] == "/console/admin/users?done=tokens_none"
    audited = [e for e in await _audit(console) if e.action == "token.revoke_all"]
    assert [(e.actor, e.subject, e.details["count"]) for e in audited] == [
        ("admin", "user:officer", 2),
        ("admin", "user:officer", 0),
    ]
    for value in (first, second):
        assert value not in repr([tuple(e) for e in audited])
    missing = await console.post("/console/admin/users/nobody/revoke-tokens", "admin")
    assert missing.status == 404


async def test_only_an_administrator_may_revoke_a_persons_tokens(console: Console) -> None:
    _, value = await _token(console, "approver2")
    for who in ("officer", "approver1", "responder"):
        await console.sign_in_directly(who)
        refused = await console.post("/console/admin/users/approver2/revoke-tokens", who)
        assert refused.status == 403, who
        assert "needs permission manage_users" in await refused.text()
    await console.sign_in_directly("admin")
    forged = await console.post("/console/admin/users/approver2/revoke-tokens", "admin", csrf=False)
    assert forged.status == 403
    assert await _api_status(console, value) == 200
    assert not [e for e in await _audit(console) if e.action.startswith("token.")]
