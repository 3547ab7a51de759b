"""Second-factor enrolment: approvers and administrators must set one up at their first sign-in,
from a QR code the service draws; a new authenticator replaces the old one only with a code
from the old one."""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote

import pyotp
from sqlalchemy import select, update

from broadcaster.storage.schema import users as user_table
from broadcaster.web_keys import ENGINE
from tests.console.conftest import Console

SECRET = re.compile(r'name="secret" value="([A-Z2-7]+)"')
SEAL = re.compile(r'name="seal" value="([^"]+)"')
QR = re.compile(r'<img class="qr" src="data:image/svg\+xml([^"]+)"')


async def _forget_second_factor(console: Console, who: str) -> None:
    async with console.app[ENGINE].begin() as connection:
        await connection.execute(
            update(user_table)
            .where(user_table.c.username == who)
            .values(totp_secret=None, totp_last_step=None)
        )


async def _stored_secret(console: Console, who: str) -> str | None:
    async with console.app[ENGINE].connect() as connection:
        value = await connection.scalar(
            select(user_table.c.totp_secret).where(user_table.c.username == who)
        )
    return str(value) if value is not None else None


async def _offer(console: Console, path: str, who: str) -> tuple[str, str, str]:
    page = await console.get(path, who)
    assert page.status == 200
    html = await page.text()
    secret, seal, qr = SECRET.search(html), SEAL.search(html), QR.search(html)
    assert secret and seal and qr
    return secret.group(1), seal.group(1), qr.group(1)


async def test_an_approver_without_a_second_factor_must_enrol_first(console: Console) -> None:
    await _forget_second_factor(console, "approver1")
    await console.sign_in_directly("approver1", second_factor=False)
    blocked = await console.get("/console/approvals", "approver1")
    assert (blocked.status, blocked.headers["Location"]) == (303, "/sign-in/enrol")

    secret, seal, qr = await _offer(console, "/sign-in/enrol", "approver1")
    svg = qr.partition(",")[2]
    drawn = unquote(svg) if not qr.startswith(";base64") else base64.b64decode(svg).decode()
    assert drawn.lstrip().startswith("<svg") or "<svg" in drawn  # drawn here, not fetched
    assert await _stored_secret(console, "approver1") is None  # nothing kept until confirmed

    wrong = await console.post(
        "/sign-in/enrol", "approver1", {"secret": secret, "seal": seal, "code": "000000"}
    )
    assert wrong.status == 422
    code = pyotp.TOTP(secret).at(console.clock())
    done = await console.post(
        "/sign-in/enrol", "approver1", {"secret": secret, "seal": seal, "code": code}
    )
    assert done.status == 303
    assert await _stored_secret(console, "approver1") == secret
    assert (await console.get("/console/approvals", "approver1")).status == 200


async def test_a_secret_the_page_never_offered_is_refused(console: Console) -> None:
    await _forget_second_factor(console, "admin")
    await console.sign_in_directly("admin", second_factor=False)
    _, seal, _ = await _offer(console, "/sign-in/enrol", "admin")
    planted = pyotp.random_base32()  # the attacker's own authenticator
    response = await console.post(
        "/sign-in/enrol",
        "admin",
        {"secret": planted, "seal": seal, "code": pyotp.TOTP(planted).at(console.clock())},
    )
    assert response.status == 422
    assert await _stored_secret(console, "admin") is None


async def test_an_officer_without_a_second_factor_is_not_asked_for_one(console: Console) -> None:
    await _forget_second_factor(console, "officer")
    await console.sign_in_directly("officer", second_factor=False)
    assert (await console.get("/console", "officer")).status == 200


async def test_moving_to_a_new_phone_needs_a_code_from_the_old_one(console: Console) -> None:
    await console.sign_in_directly("approver1")
    secret, seal, _ = await _offer(console, "/console/account", "approver1")
    new_code = pyotp.TOTP(secret).at(console.clock())
    refused = await console.post(
        "/console/account/second-factor",
        "approver1",
        {"secret": secret, "seal": seal, "code": new_code, "current_code": "123456"},
    )
    assert refused.status == 422
    old = console.totp_secrets["approver1"]
    assert await _stored_secret(console, "approver1") == old
    moved = await console.post(
        "/console/account/second-factor",
        "approver1",
        {
            "secret": secret,
            "seal": seal,
            "code": new_code,
            "current_code": console.code("approver1"),
        },
    )
    assert moved.status == 303
    assert await _stored_secret(console, "approver1") == secret
