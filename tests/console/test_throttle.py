"""Sign-in throttling: failures slow the next try, doubling up to a cap, per account and per
address; nobody is ever locked out; all with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.auth import throttle
from broadcaster.auth.sessions import SESSION_COOKIE, SIGN_IN_COOKIE
from broadcaster.web_keys import ENGINE
from tests.console.conftest import PASSWORD, Console

CAP = 30.0


@pytest.mark.parametrize(
    ("failures", "wait"),
    [(0, 0), (3, 0), (4, 1), (5, 2), (6, 4), (7, 8), (8, 16), (9, 30), (50, 30)],
)
def test_the_wait_doubles_after_the_free_failures_and_stops_at_the_cap(
    failures: int, wait: float
) -> None:
    assert throttle.delay_after(failures, throttle.FREE_PER_ACCOUNT, CAP) == wait


async def _try(console: Console, password: str) -> tuple[int, str | None]:
    cookie, token = await console.sign_in_form_token()
    response = await console.client.post(
        "/sign-in",
        data={"username": "officer", "password": password, "csrf_token": token},
        headers={"Cookie": f"{SIGN_IN_COOKIE}={cookie}"},
        allow_redirects=False,
    )
    if response.status == 429:
        assert "never lock you out" in await response.text()
    return response.status, response.headers.get("Retry-After")


async def _fail_quietly(console: Console, times: int) -> None:
    """Failures as a long attack leaves them, written directly (argon2 is slow on purpose)."""
    async with console.app[ENGINE].begin() as connection:
        for _ in range(times):
            await throttle.record(
                connection, "officer", "127.0.0.1", succeeded=False, now=console.clock()
            )


async def test_a_guesser_is_slowed_and_the_officer_still_gets_in(console: Console) -> None:
    await _fail_quietly(console, 3)  # typos at 3 a.m. cost nothing
    assert await _try(console, "wrong password 1") == (401, None)  # the 4th: now 1 s
    assert await _try(console, PASSWORD) == (429, "1")  # even the right one waits, briefly
    console.clock.advance(seconds=1)
    assert await _try(console, "wrong password 2") == (401, None)  # 5th: 2 s
    assert await _try(console, "wrong password 3") == (429, "2")
    console.clock.advance(seconds=2)
    await _fail_quietly(console, 40)  # a long attack
    assert await _try(console, PASSWORD) == (429, str(int(CAP)))  # never longer than the cap
    console.clock.advance(seconds=CAP - 1)
    assert (await _try(console, PASSWORD))[0] == 429
    console.clock.advance(seconds=1)
    assert (await _try(console, PASSWORD))[0] == 303  # never locked out


async def test_a_throttled_try_never_checks_the_password(console: Console) -> None:
    await _fail_quietly(console, 4)
    cookie, token = await console.sign_in_form_token()
    response = await console.client.post(
        "/sign-in",
        data={"username": "officer", "password": PASSWORD, "csrf_token": token},
        headers={"Cookie": f"{SIGN_IN_COOKIE}={cookie}"},
        allow_redirects=False,
    )
    assert response.status == 429
    assert SESSION_COOKIE not in response.cookies


async def test_wrong_codes_count_too_and_a_right_password_does_not_clear_them(
    console: Console,
) -> None:
    """An attacker with the password cannot reset the count by signing in again."""
    cookie, token = await console.sign_in_form_token()
    response = await console.client.post(
        "/sign-in",
        data={"username": "officer", "password": PASSWORD, "csrf_token": token},
        headers={"Cookie": f"{SIGN_IN_COOKIE}={cookie}"},
        allow_redirects=False,
    )
    console.cookies["officer"] = response.cookies[SESSION_COOKIE].value
    statuses = []
    for guess in ("000000", "111111", "222222", "333333", "444444"):
        answer = await console.post("/sign-in/code", "officer", {"code": guess})
        statuses.append(answer.status)
    assert statuses[:4] == [422, 422, 422, 422]
    assert statuses[4] == 429
    assert (await _try(console, PASSWORD))[0] == 429  # the password step waits as well


async def test_account_and_address_are_counted_separately(engine: AsyncEngine) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    async with engine.begin() as connection:
        # A password spray: one address, many accounts, one try each.
        for number in range(12):
            await throttle.record(
                connection, f"user{number}", "203.0.113.9", succeeded=False, now=now
            )
        sprayed = await throttle.wait_needed(connection, "someone", "203.0.113.9", now, CAP)
        elsewhere = await throttle.wait_needed(connection, "someone", "198.51.100.1", now, CAP)
        assert (sprayed.reason, sprayed.seconds) == ("address", 2.0)
        assert elsewhere.seconds == 0
        # Many addresses against one account: the account waits wherever the try comes from.
        for number in range(5):
            await throttle.record(
                connection, "officer", f"198.51.100.{number + 10}", succeeded=False, now=now
            )
        targeted = await throttle.wait_needed(connection, "Officer ", "192.0.2.1", now, CAP)
        assert (targeted.reason, targeted.seconds) == ("account", 2.0)
        # A completed sign-in clears the account's count; old failures fall out of the window.
        await throttle.record(connection, "officer", "192.0.2.1", succeeded=True, now=now)
        cleared = await throttle.wait_needed(connection, "officer", "192.0.2.1", now, CAP)
        assert cleared.seconds == 0
        later = now + throttle.WINDOW + timedelta(seconds=1)
        assert (await throttle.wait_needed(connection, "x", "203.0.113.9", later, CAP)).seconds == 0
        # Housekeeping deletes what throttling no longer needs.
        assert await throttle.purge(connection, now + timedelta(days=2)) == 18
