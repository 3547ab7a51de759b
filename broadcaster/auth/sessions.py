"""Console sessions: a random cookie, stored only as its SHA-256, ended by idle time, age or
sign-out, and a CSRF token bound to each session.

The cookie is `__Host-cb_session`: Secure, HttpOnly, SameSite=Lax, Path=/ and no Domain, so only
this exact origin ever receives it, scripts cannot read it and other sites cannot make a browser
send it with a POST. (Lax rather than Strict so that a link from a message - "alert 12 waits for
your approval" - opens signed in; GET never changes anything, and every unsafe request also
needs the CSRF token.) Browsers treat http://127.0.0.1 and http://localhost as secure contexts,
so the Secure flag holds on a workstation demo too.

A session passes through stages: the password is checked first, then - when the person has a
second factor, or their role needs one and they have none yet - the session waits for a code
or for enrolment before it can do anything else. The stage is derived from the stored facts
(second_factor_at on the session, totp_secret on the user), never kept as a separate flag.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.roles import Role
from broadcaster.settings import ConsoleSettings
from broadcaster.storage.schema import sessions, users
from broadcaster.users import User, row_to_user

SESSION_COOKIE: Final = "__Host-cb_session"
# Before sign-in: binds the sign-in form's CSRF token to this browser (login CSRF).
SIGN_IN_COOKIE: Final = "__Host-cb_signin"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "X-CSRF-Token"
# Roles that may never act without a second factor: they release alerts or run the service.
SECOND_FACTOR_ROLES: Final = frozenset({Role.approver, Role.administrator})
# last_seen_at is written at most this often: idle time is measured to within it.
TOUCH_EVERY: Final = timedelta(seconds=30)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Stage(StrEnum):
    second_factor = "second_factor"  # password accepted; a code from the authenticator is due
    enrol = "enrol"  # password accepted; the role needs a second factor and none is set up
    complete = "complete"  # signed in


class Ended(StrEnum):
    """Why a cookie no longer opens a session (shown on the sign-in page)."""

    unknown = "unknown"  # never issued, or purged
    signed_out = "signed_out"
    idle = "idle"
    too_old = "too_old"
    disabled = "disabled"  # the account was deactivated
    changed = "changed"  # an administrator changed the account (role, second factor)


def _ended(reason: str | None) -> Ended:
    try:
        return Ended(reason or Ended.signed_out.value)
    except ValueError:
        return Ended.unknown


@dataclass(frozen=True)
class Session:
    id: str  # the SHA-256 of the cookie value; the value itself is never stored
    user: User
    has_second_factor: bool
    stage: Stage
    created_at: datetime
    last_seen_at: datetime
    second_factor_at: datetime | None
    csrf_token: str


@dataclass(frozen=True)
class Lookup:
    session: Session | None
    ended: Ended | None = None


def digest(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode()).hexdigest()


def _stage(role: Role, has_second_factor: bool, second_factor_at: datetime | None) -> Stage:
    if has_second_factor and second_factor_at is None:
        return Stage.second_factor
    if not has_second_factor and role in SECOND_FACTOR_ROLES:
        return Stage.enrol
    return Stage.complete


class SessionStore:
    def __init__(
        self,
        engine: AsyncEngine,
        key: SecretStr,
        settings: ConsoleSettings,
        clock: Clock = utc_now,
    ) -> None:
        self.engine = engine
        self._key = key.get_secret_value().encode()
        self.idle = timedelta(minutes=settings.idle_timeout_minutes)
        self.max_age = timedelta(hours=settings.absolute_timeout_hours)
        self.clock = clock

    # --- tokens bound to the signing key ---------------------------------------------------------

    def _mac(self, purpose: str, value: str) -> str:
        mac = hmac.new(self._key, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def csrf_token(self, session_id: str) -> str:
        return self._mac("csrf", session_id)

    def sign_in_token(self, sign_in_cookie: str) -> str:
        return self._mac("sign-in", sign_in_cookie)

    def seal(self, purpose: str, value: str) -> str:
        """A MAC over `value` for one purpose, to check a value that made a round trip."""
        return self._mac(purpose, value)

    @staticmethod
    def same(expected: str, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(expected.encode(), given.encode())

    # --- the life of a session -------------------------------------------------------------------

    async def start(self, user: User, source_address: str | None) -> tuple[str, Session]:
        """A new session after a correct password; returns the cookie value and the session."""
        value = secrets.token_urlsafe(32)
        now = self.clock()
        async with self.engine.begin() as connection:
            await connection.execute(
                sessions.insert().values(
                    id=digest(value),
                    user_id=user.id,
                    created_at=now,
                    last_seen_at=now,
                    source_address=(source_address or "")[:64] or None,
                )
            )
        lookup = await self.load(value)
        assert lookup.session is not None
        return value, lookup.session

    async def load(self, cookie_value: str | None, *, touch: bool = True) -> Lookup:
        """The live session this cookie opens, or why there is none. An idle or too old
        session is ended here, so it can never be revived. `touch=False` for reads that are
        not a person acting (a live stream's keep-alive)."""
        if not cookie_value or len(cookie_value) > 200:
            return Lookup(None, None if not cookie_value else Ended.unknown)
        session_id = digest(cookie_value)
        now = self.clock()
        async with self.engine.begin() as connection:
            row = (
                await connection.execute(
                    select(
                        sessions.c.created_at,
                        sessions.c.last_seen_at,
                        sessions.c.second_factor_at,
                        sessions.c.ended_at,
                        sessions.c.ended_reason,
                        users,
                    )
                    .join(users, users.c.id == sessions.c.user_id)
                    .where(sessions.c.id == session_id)
                )
            ).first()
            if row is None:
                return Lookup(None, Ended.unknown)
            if row.ended_at is not None:
                return Lookup(None, _ended(row.ended_reason))
            ended: Ended | None = None
            if not row.active:
                ended = Ended.disabled
            elif now - row.last_seen_at > self.idle:
                ended = Ended.idle
            elif now - row.created_at > self.max_age:
                ended = Ended.too_old
            if ended is not None:
                await connection.execute(
                    update(sessions)
                    .where(sessions.c.id == session_id)
                    .values(ended_at=now, ended_reason=ended.value)
                )
                return Lookup(None, ended)
            last_seen = row.last_seen_at
            if touch and now - last_seen >= TOUCH_EVERY:
                last_seen = now
                await connection.execute(
                    update(sessions).where(sessions.c.id == session_id).values(last_seen_at=now)
                )
        has_factor = row.totp_secret is not None
        user = row_to_user(row)
        return Lookup(
            Session(
                id=session_id,
                user=user,
                has_second_factor=has_factor,
                stage=_stage(user.role, has_factor, row.second_factor_at),
                created_at=row.created_at,
                last_seen_at=last_seen,
                second_factor_at=row.second_factor_at,
                csrf_token=self.csrf_token(session_id),
            )
        )

    async def second_factor_verified(self, session_id: str, at: datetime) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                update(sessions)
                .where(sessions.c.id == session_id)
                .values(second_factor_at=at, last_seen_at=at)
            )

    async def end(self, session_id: str) -> None:
        """Sign out: the session is over on the server, whatever the browser keeps."""
        async with self.engine.begin() as connection:
            await connection.execute(
                update(sessions)
                .where(sessions.c.id == session_id, sessions.c.ended_at.is_(None))
                .values(ended_at=self.clock(), ended_reason=Ended.signed_out.value)
            )

    async def end_all(
        self, user_id: int, *, keep: str | None = None, reason: Ended = Ended.changed
    ) -> int:
        """End every session of a person (role change, reset second factor, deactivation)."""
        statement = update(sessions).where(
            sessions.c.user_id == user_id, sessions.c.ended_at.is_(None)
        )
        if keep is not None:
            statement = statement.where(sessions.c.id != keep)
        async with self.engine.begin() as connection:
            result = await connection.execute(
                statement.values(ended_at=self.clock(), ended_reason=reason.value)
            )
        return int(result.rowcount)
