"""Time-based one-time passwords (RFC 6238) as the second factor, each code usable once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyotp
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from broadcaster.storage.schema import users

ISSUER = "Crisis Broadcaster"
STEP_SECONDS = 30
# One step either side absorbs clock drift between the phone and the server.
VALID_WINDOW = 1


class SecondFactorError(ValueError):
    """The code was refused; the message says why without helping a guesser."""


@dataclass(frozen=True)
class Enrolment:
    secret: str  # base32; shown once (as a QR code in the console)
    uri: str  # otpauth:// URI for authenticator apps


def new_enrolment(username: str) -> Enrolment:
    secret = pyotp.random_base32()
    return Enrolment(secret, pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER))


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step `code` belongs to, within the drift window, or None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if pyotp.utils.strings_equal(totp.generate_otp(step), code):
            return step
    return None


async def enrol(connection: AsyncConnection, user_id: int, username: str) -> Enrolment:
    """Give the user a new TOTP secret, replacing any old one."""
    enrolment = new_enrolment(username)
    await connection.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(totp_secret=enrolment.secret, totp_last_step=None)
    )
    return enrolment


async def verify(connection: AsyncConnection, user_id: int, code: str, now: datetime) -> None:
    """Accept `code` once: raise SecondFactorError if it is wrong or was already used."""
    secret = await connection.scalar(select(users.c.totp_secret).where(users.c.id == user_id))
    if secret is None:
        raise SecondFactorError(
            "you have no second factor enrolled; an administrator can enrol one with "
            "`broadcaster user totp USERNAME`"
        )
    step = matching_step(secret, code, now)
    if step is None:
        raise SecondFactorError("that code is not valid now; check your authenticator's clock")
    # Compare-and-set on the last used step: a replayed or concurrent second use fails here.
    result = await connection.execute(
        update(users)
        .where(users.c.id == user_id)
        .where((users.c.totp_last_step.is_(None)) | (users.c.totp_last_step < step))
        .values(totp_last_step=step)
    )
    if result.rowcount != 1:
        raise SecondFactorError("that code was already used; wait for the next one")
