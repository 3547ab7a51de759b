"""Signing in: password then second factor, the session cookie, sign-out, idle and absolute
timeouts, login CSRF, and a TOTP code that works only once."""

from __future__ import annotations

from sqlalchemy import select, update

from broadcaster.auth.sessions import SESSION_COOKIE, SIGN_IN_COOKIE, digest
from broadcaster.storage.schema import sessions, sign_in_attempts
from broadcaster.storage.schema import users as user_table
from broadcaster.web_keys import ENGINE
from tests.console.conftest import PASSWORD, Console


async def _password(
    console: Console, username: str = "officer", password: str = PASSWORD, next_path: str = ""
) -> tuple[int, str, str | None]:
    """Post the sign-in form; (status, Location, new session cookie value or None)."""
    cookie, token = await console.sign_in_form_token()
    response = await console.client.post(
        "/sign-in",
        data={"username": username, "password": password, "csrf_token": token, "next": next_path},
        headers={"Cookie": f"{SIGN_IN_COOKIE}={cookie}"},
        allow_redirects=False,
    )
    made = response.cookies.get(SESSION_COOKIE)
    return response.status, response.headers.get("Location", ""), made.value if made else None


async def _code(console: Console, cookie: str, code: str, next_path: str = "") -> tuple[int, str]:
    console.cookies["officer"] = cookie
    response = await console.post("/sign-in/code", "officer", {"code": code, "next": next_path})
    return response.status, response.headers.get("Location", "")


async def test_password_then_code_signs_in_with_a_host_only_secure_cookie(
    console: Console,
) -> None:
    status, location, cookie = await _password(console, next_path="/console/alerts")
    assert status == 303 and location.startswith("/sign-in/code")
    assert cookie is not None
    # Not signed in yet: every page sends the officer back to the code.
    console.cookies["officer"] = cookie
    waiting = await console.get("/console/alerts", "officer")
    assert waiting.status == 303 and waiting.headers["Location"] == "/sign-in/code"

    status, location = await _code(console, cookie, console.code("officer"), "/console/alerts")
    assert (status, location) == (303, "/console/alerts")
    page = await console.get("/console/alerts", "officer")
    assert page.status == 200
    assert "Signed in as" in await page.text()


async def test_the_session_cookie_is_secure_httponly_samesite_and_host_only(
    console: Console,
) -> None:
    cookie, token = await console.sign_in_form_token()
    response = await console.client.post(
        "/sign-in",
        data={"username": "officer", "password": PASSWORD, "csrf_token": token},
        headers={"Cookie": f"{SIGN_IN_COOKIE}={cookie}"},
        allow_redirects=False,
    )
    header = next(
        value for value in response.headers.getall("Set-Cookie") if value.startswith(SESSION_COOKIE)
    )
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"secure", "httponly", "samesite", "path"} <= attributes
    assert "domain" not in attributes and "max-age" not in attributes
    assert "SameSite=Lax" in header and "Path=/" in header


async def test_wrong_and_unknown_are_refused_alike_and_counted(console: Console) -> None:
    wrong = await _password(console, password="not the password at all")
    unknown = await _password(console, username="nobody-here", password="whatever it is")
    assert wrong[0] == unknown[0] == 401
    assert wrong[2] is None and unknown[2] is None
    async with console.app[ENGINE].connect() as connection:
        rows = (await connection.execute(select(sign_in_attempts))).all()
    assert sorted((r.username, r.succeeded) for r in rows) == [
        ("nobody-here", False),
        ("officer", False),
    ]


async def test_a_sign_in_form_from_another_site_is_refused(console: Console) -> None:
    # No token at all (a cross-site form cannot read ours).
    response = await console.client.post(
        "/sign-in", data={"username": "officer", "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 403
    assert SESSION_COOKIE not in response.cookies
    # A valid token, but the browser says the form was posted from another site.
    cookie, token = await console.sign_in_form_token()
    response = await console.client.post(
        "/sign-in",
        data={"username": "officer", "password": PASSWORD, "csrf_token": token},
        headers={"Cookie": f"{SIGN_IN_COOKIE}={cookie}", "Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert response.status == 403
    assert SESSION_COOKIE not in response.cookies


async def test_a_totp_code_is_accepted_once(console: Console) -> None:
    code = console.code("officer")
    _, _, first = await _password(console)
    assert first is not None
    assert (await _code(console, first, code))[0] == 303
    await console.post("/sign-out", "officer")
    # The same code again, even within its 30 seconds, in a new sign-in: refused.
    _, _, second = await _password(console)
    assert second is not None
    status, _ = await _code(console, second, code)
    assert status == 422
    console.cookies["officer"] = second
    still_waiting = await console.get("/console", "officer")
    assert still_waiting.headers["Location"] == "/sign-in/code"
    # The next code works.
    assert (await _code(console, second, console.code("officer", steps_ahead=1)))[0] == 303


async def test_sign_out_ends_the_session_on_the_server(console: Console) -> None:
    cookie = await console.sign_in_directly("officer")
    response = await console.post("/sign-out", "officer")
    assert response.status == 303
    assert response.headers["Location"] == "/sign-in?why=signed_out"
    cleared = response.cookies[SESSION_COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0"
    # The old cookie, replayed (a copy an attacker kept), opens nothing.
    again = await console.get("/console", "officer")
    assert again.status == 303 and again.headers["Location"].startswith("/sign-in")
    api = await console.client.get(
        "/api/v1/alerts", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}
    )
    assert api.status == 401
    async with console.app[ENGINE].connect() as connection:
        ended = await connection.scalar(
            select(sessions.c.ended_at).where(sessions.c.id == digest(cookie))
        )
    assert ended is not None


async def test_an_idle_session_ends_and_says_why(console: Console) -> None:
    await console.sign_in_directly("officer")
    console.clock.advance(minutes=29)
    assert (await console.get("/console", "officer")).status == 200  # activity: clock restarts
    console.clock.advance(minutes=29)
    assert (await console.get("/console", "officer")).status == 200
    console.clock.advance(minutes=31)
    response = await console.get("/console/alerts", "officer")
    assert response.status == 303
    assert response.headers["Location"] == "/sign-in?next=/console/alerts&why=idle"
    sign_in = await console.client.get(response.headers["Location"])
    assert "not used for a while" in await sign_in.text()


async def test_a_busy_session_still_ends_after_its_maximum_length(console: Console) -> None:
    await console.sign_in_directly("officer")
    served = 0
    while (response := await console.get("/console", "officer")).status == 200:
        served += 1
        console.clock.advance(minutes=20)  # never idle
    assert served == 14 * 3 + 1  # signed in at 0:00, still in at 14:00, out at 14:20
    assert "why=too_old" in response.headers["Location"]
    # Asked again later, it still says why it ended.
    again = await console.get("/console", "officer")
    assert "why=too_old" in again.headers["Location"]


async def test_a_disabled_account_loses_its_session_at_once(console: Console) -> None:
    await console.sign_in_directly("officer")
    async with console.app[ENGINE].begin() as connection:
        await connection.execute(
            update(user_table).where(user_table.c.username == "officer").values(active=False)
        )
    response = await console.get("/console", "officer")
    assert response.status == 303 and "why=disabled" in response.headers["Location"]


async def test_next_never_leads_off_site(console: Console) -> None:
    await console.sign_in_directly("officer")
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = await console.get(f"/sign-in?next={target}", "officer")
        assert response.status == 303
        assert response.headers["Location"] == "/console"
