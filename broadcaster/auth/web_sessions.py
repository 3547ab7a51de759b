"""Console sessions in aiohttp: where the store lives, reading the cookie, checking that an
unsafe request carries the session's CSRF token and comes from this site.

Used by the console's pages (broadcaster/console) and by the JSON API, which accepts the
console's session cookie as well as bearer tokens (the console's little JavaScript calls it).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from broadcaster.auth.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    Lookup,
    Session,
    SessionStore,
    Stage,
)
from broadcaster.web_errors import ApiError

SESSIONS = web.AppKey("sessions", SessionStore)
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="crisis-broadcaster"'}


async def lookup(request: web.Request, *, touch: bool = True) -> Lookup:
    store = request.app.get(SESSIONS)
    if store is None:
        return Lookup(None)
    return await store.load(request.cookies.get(SESSION_COOKIE), touch=touch)


def from_this_site(request: web.Request) -> bool:
    """False when the browser says the request came from another site.

    The CSRF token is the defence; this is a second one. Browsers send Sec-Fetch-Site and (on
    POST) Origin; a request without either (an old browser, a script) is judged by its token.
    The Host header is compared, not the scheme, so a TLS-terminating proxy does not matter.
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == request.host.lower()


def csrf_ok(request: web.Request, session: Session, given: str | None) -> bool:
    return from_this_site(request) and SessionStore.same(session.csrf_token, given)


async def api_session(request: web.Request) -> Session:
    """The signed-in console session behind an API call, or a 401/403 that says what to do."""
    found = await lookup(request)
    session = found.session
    if session is None:
        why = {
            "idle": "it ended after a time without activity",
            "too_old": "it reached its maximum length",
            "signed_out": "you signed out",
            "disabled": "the account is disabled",
            "changed": "an administrator changed the account",
        }.get(found.ended.value if found.ended else "", "it is not valid")
        raise ApiError(
            401,
            "Unauthorized",
            f"Your console session cannot be used: {why}. Sign in again at /sign-in.",
            headers=_BEARER_CHALLENGE,
        )
    if session.stage is not Stage.complete:
        raise ApiError(
            401,
            "Unauthorized",
            "Finish signing in (the second factor) at /sign-in before using the console.",
            headers=_BEARER_CHALLENGE,
        )
    if request.method not in SAFE_METHODS and not csrf_ok(
        request, session, request.headers.get(CSRF_HEADER)
    ):
        raise ApiError(
            403,
            "Forbidden",
            f"A request signed in with the console's cookie must come from the console and carry "
            f"its {CSRF_HEADER} header (the page's {CSRF_FIELD}); reload the page and try again.",
            extra={"csrf": "refused"},
        )
    return session
