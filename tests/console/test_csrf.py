"""Cross-site requests: every unsafe console request needs the session's CSRF token and must
come from this site; the JSON API accepts the console's cookie only with the token in its
header. Refused requests change nothing."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from approvals.roles import Role
from broadcaster.api import all_routes
from broadcaster.api.framework import API_PREFIX
from broadcaster.auth.permissions import allows
from broadcaster.auth.sessions import CSRF_HEADER, SESSION_COOKIE
from broadcaster.auth.web_sessions import SAFE_METHODS
from broadcaster.console import all_pages
from broadcaster.console.pages import Access
from broadcaster.storage.schema import alerts
from broadcaster.web_keys import ENGINE
from tests.console.conftest import PERSON_FOR, Console

UNSAFE_PAGES = [
    page
    for page in all_pages()
    if page.method not in SAFE_METHODS and page.access not in (Access.public, Access.pending)
]
TEMPLATE_VALUES = {
    "value-area": "Riverside",
    "value-reason": "a main break that let in untreated water",
}


def _path(path: str) -> str:
    return re.sub(r"{\w+(:[^}]*)?}", "1", path)


async def _alert_count(console: Console) -> int:
    async with console.app[ENGINE].connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(alerts)) or 0)


async def test_every_unsafe_page_refuses_a_post_without_the_token(console: Console) -> None:
    await console.sign_in_directly("officer")
    await console.sign_in_directly("admin")
    wrong = []
    for page in UNSAFE_PAGES:
        who = "admin" if page.permission and not page.allows(Role.duty_officer) else "officer"
        response = await console.post(_path(page.path), who, csrf=False)
        if response.status != 403 or "did not come from your console" not in await response.text():
            wrong.append(f"{page.method} {page.path}: {response.status}")
    assert wrong == []


async def test_a_cross_site_form_changes_nothing(console: Console) -> None:
    await console.sign_in_directly("officer")
    form = {**TEMPLATE_VALUES, "channels": "sms"}
    page = "/console/alerts/new/live/template/boil-water"
    # What a hostile page can make a browser send: the cookie (were it not SameSite) but no token.
    assert (await console.post(page, "officer", form, csrf=False)).status == 403
    # A stolen token, sent from another site, is refused on the Origin / Sec-Fetch-Site.
    for header in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        assert (await console.post(page, "officer", form, headers=header)).status == 403
    assert await _alert_count(console) == 0
    # The same form from the console itself works.
    own_site = {
        "Origin": str(console.client.make_url("")).rstrip("/"),
        "Sec-Fetch-Site": "same-origin",
    }
    made = await console.post(page, "officer", form, headers=own_site)
    assert made.status == 303
    assert await _alert_count(console) == 1


async def test_another_sessions_token_does_not_fit(console: Console) -> None:
    await console.sign_in_directly("officer")
    other = await console.sign_in_directly("admin")
    assert other
    stolen = console.csrf_for("admin")
    response = await console.client.post(
        "/console/alerts/new/live/template/boil-water",
        data={**TEMPLATE_VALUES, "csrf_token": stolen},
        headers=console.headers("officer"),
        allow_redirects=False,
    )
    assert response.status == 403


async def test_the_api_takes_the_console_cookie_only_with_the_csrf_header(
    console: Console,
) -> None:
    await console.sign_in_directly("officer")
    cookie = {"Cookie": f"{SESSION_COOKIE}={console.cookies['officer']}"}
    body = {"template": "boil-water", "values": {"area": "Riverside", "reason": "a main break"}}
    read = await console.client.get(f"{API_PREFIX}/alerts", headers=cookie)
    assert read.status == 200
    refused = await console.client.post(f"{API_PREFIX}/alerts", json=body, headers=cookie)
    assert refused.status == 403
    assert (await refused.json())["csrf"] == "refused"
    wrong = await console.client.post(
        f"{API_PREFIX}/alerts", json=body, headers={**cookie, CSRF_HEADER: "not-the-token"}
    )
    assert wrong.status == 403
    assert await _alert_count(console) == 0
    made = await console.client.post(
        f"{API_PREFIX}/alerts",
        json=body,
        headers={**cookie, CSRF_HEADER: console.csrf_for("officer")},
    )
    assert made.status == 201
    # A bearer token still needs no CSRF header (scripts are not browsers).
    no_session = await console.client.post(f"{API_PREFIX}/alerts", json=body)
    assert no_session.status == 401


async def test_the_api_with_a_console_session_allows_and_refuses_as_with_a_token(
    console: Console,
) -> None:
    """Every API route, for every role, signed in with the console's cookie and CSRF header."""
    wrong = []
    for role, person in PERSON_FOR.items():
        await console.sign_in_directly(person)
        headers = {**console.headers(person), CSRF_HEADER: console.csrf_for(person)}
        for route in all_routes():
            if route.public:
                continue
            assert route.permission is not None
            response = await console.client.request(
                route.method, API_PREFIX + _path(route.path), json={}, headers=headers
            )
            status = response.status
            response.close()
            if allows(role, route.permission):
                ok = status not in (401, 403) and status < 500
            else:
                ok = status == 403
            if not ok:
                wrong.append(f"{role} {route.method} {route.path}: {status}")
    assert wrong == []


async def test_a_session_still_at_the_second_factor_cannot_use_the_api(console: Console) -> None:
    await console.sign_in_directly("officer", second_factor=False)
    response = await console.client.get(f"{API_PREFIX}/alerts", headers=console.headers("officer"))
    assert response.status == 401
