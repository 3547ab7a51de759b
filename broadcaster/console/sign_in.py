"""Signing in and out of the console: password, then the second factor (or enrolling one), then
a session; and the person's own account page, where they can set up a new authenticator and
see their API tokens (created and revoked in console/tokens.py).

Every failure - wrong or unknown username, wrong password, wrong or reused code - is answered
the same way and counted for throttling (broadcaster/auth/throttle.py). The password is checked
with argon2 in a worker thread, so a sign-in never stalls the event loop, and an unknown
username is checked against a dummy hash, so timing does not tell which usernames exist.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import secrets
from typing import Any, Final

from aiohttp import web
from sqlalchemy import select

from broadcaster import audit
from broadcaster.auth import throttle, totp
from broadcaster.auth.passwords import hash_password, verify_password
from broadcaster.auth.sessions import (
    SECOND_FACTOR_ROLES,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    Session,
    SessionStore,
    Stage,
)
from broadcaster.auth.tokens import list_tokens
from broadcaster.auth.web_sessions import SESSIONS, from_this_site, lookup
from broadcaster.console import enrolment
from broadcaster.console.pages import (
    HOME_PATH,
    SIGN_IN_PATH,
    STAGE_PATHS,
    Access,
    Pages,
    Viewer,
    safe_next,
    see_other,
)
from broadcaster.console.render import render_page
from broadcaster.storage.schema import users
from broadcaster.users import User, row_to_user
from broadcaster.web_errors import ApiError
from broadcaster.web_keys import ENGINE, SETTINGS

log = logging.getLogger(__name__)
pages = Pages()

WHY: Final = {
    "idle": "You were signed out because the console was not used for a while. Sign in again.",
    "too_old": "Your session reached its maximum length. Sign in again.",
    "signed_out": "You have signed out.",
    "disabled": "This account has been disabled. Ask an administrator.",
    "changed": "An administrator changed your account. Sign in again.",
    "unknown": "Please sign in.",
}
REFUSED: Final = "That username and password do not match. Check both and try again."


@functools.cache
def _dummy_hash() -> str:
    """What an unknown username's password is checked against, so it takes as long."""
    return hash_password(secrets.token_urlsafe(24))


def _password_matches(stored_hash: str | None, password: str) -> bool:
    """Run in a worker thread: argon2 is slow on purpose. Without a hash (unknown, disabled or
    password-less account) the dummy is checked anyway, so the answer takes as long."""
    matches = verify_password(stored_hash or _dummy_hash(), password)
    return matches and stored_hash is not None


def _cookie(response: web.StreamResponse, name: str, value: str) -> None:
    # __Host-: Secure, Path=/, no Domain. No Max-Age: the browser forgets it when closed, and
    # the server ends it after the idle or absolute timeout whatever the browser keeps.
    response.set_cookie(name, value, path="/", secure=True, httponly=True, samesite="Lax")


def _forget_cookie(response: web.StreamResponse, name: str) -> None:
    response.set_cookie(name, "", path="/", secure=True, httponly=True, samesite="Lax", max_age=0)


def _store(request: web.Request) -> SessionStore:
    return request.app[SESSIONS]


def _cap(request: web.Request) -> float:
    return request.app[SETTINGS].settings.console.throttle_cap_seconds


def _too_soon(seconds: float) -> str:
    wait = max(1, math.ceil(seconds))
    return (
        f"Too many failed tries. Wait {wait} second{'s' if wait != 1 else ''}, then try again. "
        "(Failed tries slow sign-in down; they never lock you out.)"
    )


async def _audit(request: web.Request, user: User, action: str, **details: object) -> None:
    async with request.app[ENGINE].begin() as connection:
        await audit.append(
            connection,
            audit.AuditEntry(
                actor=user.username,
                action=action,
                subject=f"user:{user.username}",
                source_address=request.remote,
                details=dict(details) or None,
            ),
            at=_store(request).clock(),
        )


async def _finished(request: web.Request, session: Session, next_path: str) -> web.Response:
    """The sign-in is complete: count the success (it clears the account's failures)."""
    store = _store(request)
    async with request.app[ENGINE].begin() as connection:
        await throttle.record(
            connection, session.user.username, request.remote, succeeded=True, now=store.clock()
        )
    await _audit(request, session.user, "console.sign_in", role=session.user.role.value)
    return see_other(safe_next(next_path))


# --- password ----------------------------------------------------------------------------------


def _sign_in_form(
    request: web.Request,
    *,
    username: str = "",
    message: str | None = None,
    status: int = 200,
    retry_after: float | None = None,
    next_path: str | None = None,
) -> web.Response:
    cookie = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(24)
    why = request.query.get("why")
    response = render_page(
        request,
        "sign_in.html",
        None,
        title="Sign in",
        status=status,
        username=username,
        message=message,
        why=WHY.get(why or ""),
        next_path=safe_next(next_path or request.query.get("next")),
        form_token=_store(request).sign_in_token(cookie),
    )
    if SIGN_IN_COOKIE not in request.cookies:
        _cookie(response, SIGN_IN_COOKIE, cookie)
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


@pages.page("GET", SIGN_IN_PATH, title="Sign in", access=Access.public)
async def sign_in_form(request: web.Request) -> web.StreamResponse:
    found = await lookup(request, touch=False)
    if found.session is not None and found.session.stage is Stage.complete:
        return see_other(safe_next(request.query.get("next")))
    return _sign_in_form(request)


@pages.page("POST", SIGN_IN_PATH, title="Sign in", access=Access.public)
async def sign_in(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    username = str(posted.get("username") or "").strip()
    password = str(posted.get("password") or "")
    next_path = safe_next(str(posted.get("next") or ""))
    cookie = request.cookies.get(SIGN_IN_COOKIE)
    store = _store(request)
    if not (
        cookie
        and from_this_site(request)
        and SessionStore.same(store.sign_in_token(cookie), str(posted.get("csrf_token") or ""))
    ):
        raise ApiError(
            403,
            "Refused: this form did not come from your console",
            "The sign-in form is out of date or was sent from another site. Open the sign-in "
            "page again and sign in there.",
            extra={"csrf": "refused"},
        )
    if not username or not password:
        return _sign_in_form(
            request,
            username=username,
            message="Type your username and password.",
            status=422,
            next_path=next_path,
        )
    engine = request.app[ENGINE]
    now = store.clock()
    async with engine.begin() as connection:
        wait = await throttle.wait_needed(connection, username, request.remote, now, _cap(request))
    if wait.needed:
        return _sign_in_form(
            request,
            username=username,
            message=_too_soon(wait.seconds),
            status=429,
            retry_after=wait.seconds,
            next_path=next_path,
        )
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(users).where(users.c.username == throttle.normalise(username))
            )
        ).first()
    user = row_to_user(row) if row is not None else None
    stored = user.password_hash if user is not None and user.active else None
    if not await asyncio.to_thread(_password_matches, stored, password):
        async with engine.begin() as connection:
            await throttle.record(connection, username, request.remote, succeeded=False, now=now)
        log.info("console sign-in refused", extra={"remote": request.remote})
        return _sign_in_form(
            request, username=username, message=REFUSED, status=401, next_path=next_path
        )
    assert user is not None
    old = await lookup(request, touch=False)
    if old.session is not None:
        await store.end(old.session.id)  # a new sign-in never inherits an old session
    value, session = await store.start(user, request.remote)
    if session.stage is Stage.complete:
        response = await _finished(request, session, next_path)
    else:
        response = see_other(f"{STAGE_PATHS[session.stage]}?next={next_path}")
    _cookie(response, SESSION_COOKIE, value)
    _forget_cookie(response, SIGN_IN_COOKIE)
    return response


# --- second factor -----------------------------------------------------------------------------


@pages.page(
    "GET",
    "/sign-in/code",
    title="Second factor",
    access=Access.pending,
    stage=Stage.second_factor,
)
async def code_form(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return render_page(
        request,
        "sign_in_code.html",
        viewer,
        title="Second factor",
        message=None,
        next_path=safe_next(request.query.get("next")),
    )


@pages.page(
    "POST",
    "/sign-in/code",
    title="Second factor",
    access=Access.pending,
    stage=Stage.second_factor,
)
async def check_code(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    posted = await request.post()
    code = str(posted.get("code") or "")
    next_path = safe_next(str(posted.get("next") or ""))
    store = _store(request)
    engine = request.app[ENGINE]
    now = store.clock()
    user = viewer.user
    async with engine.begin() as connection:
        wait = await throttle.wait_needed(
            connection, user.username, request.remote, now, _cap(request)
        )
    message: str | None = None
    status = 200
    if wait.needed:
        message, status = _too_soon(wait.seconds), 429
    else:
        try:
            async with engine.begin() as connection:
                await totp.verify(connection, user.id, code, now)
        except totp.SecondFactorError as error:
            async with engine.begin() as connection:
                await throttle.record(
                    connection, user.username, request.remote, succeeded=False, now=now
                )
            message, status = f"Code refused: {error}.", 422
    if message is not None:
        response = render_page(
            request,
            "sign_in_code.html",
            viewer,
            title="Second factor",
            status=status,
            message=message,
            next_path=next_path,
        )
        if wait.needed:
            response.headers["Retry-After"] = str(max(1, math.ceil(wait.seconds)))
        return response
    await store.second_factor_verified(viewer.session.id, now)
    return await _finished(request, viewer.session, next_path)


# --- enrolment (first sign-in of a role that needs a second factor) ----------------------------


def _enrol_page(
    request: web.Request,
    viewer: Viewer,
    *,
    message: str | None = None,
    status: int = 200,
    next_path: str | None = None,
) -> web.Response:
    made = enrolment.offer(_store(request), viewer.session.id, viewer.user.username)
    return render_page(
        request,
        "sign_in_enrol.html",
        viewer,
        title="Set up your second factor",
        status=status,
        offer=made,
        message=message,
        next_path=safe_next(next_path or request.query.get("next")),
        required=viewer.user.role in SECOND_FACTOR_ROLES,
    )


@pages.page(
    "GET",
    "/sign-in/enrol",
    title="Set up your second factor",
    access=Access.pending,
    stage=Stage.enrol,
)
async def enrol_form(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return _enrol_page(request, viewer)


async def _confirm_offer(
    request: web.Request, viewer: Viewer, *, replace: bool
) -> tuple[str | None, int]:
    """Check the posted secret, its seal and the first code; (message, status) when refused."""
    posted = await request.post()
    secret = str(posted.get("secret") or "")
    seal = str(posted.get("seal") or "")
    code = str(posted.get("code") or "")
    store = _store(request)
    if not enrolment.check_seal(store, viewer.session.id, secret, seal):
        return "This set-up form is out of date. A new QR code is shown below; scan it.", 422
    now = store.clock()
    engine = request.app[ENGINE]
    async with engine.begin() as connection:
        wait = await throttle.wait_needed(
            connection, viewer.user.username, request.remote, now, _cap(request)
        )
    if wait.needed:
        return _too_soon(wait.seconds), 429
    try:
        async with engine.begin() as connection:
            await enrolment.confirm(connection, viewer.user.id, secret, code, now, replace=replace)
    except enrolment.EnrolmentRefused as error:
        async with engine.begin() as connection:
            await throttle.record(
                connection, viewer.user.username, request.remote, succeeded=False, now=now
            )
        return f"Not set up: {error}.", 422
    await store.second_factor_verified(viewer.session.id, now)
    await _audit(request, viewer.user, "user.totp_enrolled")
    return None, 200


@pages.page(
    "POST",
    "/sign-in/enrol",
    title="Set up your second factor",
    access=Access.pending,
    stage=Stage.enrol,
)
async def enrol(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    next_path = safe_next(str((await request.post()).get("next") or ""))
    message, status = await _confirm_offer(request, viewer, replace=False)
    if message is not None:
        return _enrol_page(request, viewer, message=message, status=status, next_path=next_path)
    return await _finished(request, viewer.session, next_path)


# --- signing out -------------------------------------------------------------------------------


@pages.page("POST", "/sign-out", title="Sign out", access=Access.session)
async def sign_out(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    await _store(request).end(viewer.session.id)
    await _audit(request, viewer.user, "console.sign_out")
    response = see_other(f"{SIGN_IN_PATH}?why=signed_out")
    _forget_cookie(response, SESSION_COOKIE)
    return response


# --- the person's own account ------------------------------------------------------------------


async def account_page(
    request: web.Request,
    viewer: Viewer,
    *,
    message: str | None = None,
    status: int = 200,
    **tokens_form: Any,
) -> web.Response:
    """The account page: the second factor and the person's own API tokens. `tokens_form`
    carries the token form's `token_errors` and `token_values`, and `created_token` on the one
    answer that shows a new token's value (see console/tokens.py)."""
    async with request.app[ENGINE].connect() as connection:
        own_tokens = await list_tokens(connection, viewer.user.id)
    context: dict[str, Any] = {"token_errors": {}, "token_values": {}, "created_token": None}
    context.update(tokens_form)
    return render_page(
        request,
        "account.html",
        viewer,
        title="Your account",
        status=status,
        offer=enrolment.offer(_store(request), viewer.session.id, viewer.user.username),
        message=message,
        has_second_factor=viewer.session.has_second_factor,
        required=viewer.user.role in SECOND_FACTOR_ROLES,
        tokens=own_tokens,
        now=_store(request).clock(),
        **context,
    )


@pages.page("GET", "/console/account", title="Your account", access=Access.signed_in)
async def account(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return await account_page(request, viewer)


@pages.page("POST", "/console/account/second-factor", title="Your account", access=Access.signed_in)
async def replace_second_factor(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    if viewer.session.has_second_factor:
        # A new authenticator replaces the old one only with a code from the old one, so a
        # session left open on a shared screen cannot be used to take the account over.
        current = str((await request.post()).get("current_code") or "")
        try:
            async with request.app[ENGINE].begin() as connection:
                await totp.verify(connection, viewer.user.id, current, _store(request).clock())
        except totp.SecondFactorError as error:
            return await account_page(
                request, viewer, message=f"Current code refused: {error}.", status=422
            )
    message, status = await _confirm_offer(request, viewer, replace=True)
    if message is not None:
        return await account_page(request, viewer, message=message, status=status)
    return see_other(f"{HOME_PATH}/account?done=second_factor")
