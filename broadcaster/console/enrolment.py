"""Setting up a second factor in the console: a new TOTP secret shown as a QR code the service
draws itself (nothing leaves this server to make it), confirmed by a first code.

The secret is kept nowhere until it is confirmed: it travels in the enrolment form with a seal
(an HMAC bound to the session), so a half-finished enrolment never replaces a working factor
and a forged form cannot plant a secret the person never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from broadcaster.auth import totp
from broadcaster.auth.sessions import SessionStore
from broadcaster.storage.schema import users

_SEAL_PURPOSE = "totp-enrolment"


@dataclass(frozen=True)
class Offer:
    secret: str
    seal: str
    uri: str
    qr_data_uri: str  # an SVG image as a data: URI, for <img src>

    @property
    def grouped(self) -> str:
        """The secret in groups of four, for typing it in by hand."""
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))


def offer(store: SessionStore, session_id: str, username: str) -> Offer:
    secret = pyotp.random_base32()
    uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=totp.ISSUER)
    qr = segno.make(uri, error="m")
    return Offer(
        secret=secret,
        seal=store.seal(_SEAL_PURPOSE, f"{session_id}:{secret}"),
        uri=uri,
        qr_data_uri=qr.svg_data_uri(scale=5, border=4, dark="#000", light="#fff"),
    )


def check_seal(store: SessionStore, session_id: str, secret: str, seal: str) -> bool:
    return SessionStore.same(store.seal(_SEAL_PURPOSE, f"{session_id}:{secret}"), seal)


class EnrolmentRefused(ValueError):
    """The first code did not match, or the secret was not the one offered."""


async def confirm(
    connection: AsyncConnection,
    user_id: int,
    secret: str,
    code: str,
    now: datetime,
    *,
    replace: bool,
) -> None:
    """Keep `secret` as the person's second factor if `code` is from it. Without `replace` it
    is kept only if they still have none (two sign-ins enrolling at once: the first wins)."""
    step = totp.matching_step(secret, code, now)
    if step is None:
        raise EnrolmentRefused(
            "that code does not match the new secret; check that you scanned this page's QR "
            "code and that your phone's clock is right, then type the code it shows now"
        )
    statement = update(users).where(users.c.id == user_id)
    if not replace:
        statement = statement.where(users.c.totp_secret.is_(None))
    result = await connection.execute(
        statement.values(totp_secret=secret, totp_last_step=step, updated_at=now)
    )
    if result.rowcount != 1:
        raise EnrolmentRefused(
            "a second factor was set up for this account meanwhile (in another window?); "
            "sign in again with it"
        )
