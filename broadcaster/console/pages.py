"""How a console page is declared: who may open it, checked on the server before it runs.

Every page names exactly one kind of access, so nothing is open by accident (deny by default):

    public      anyone (the sign-in page, the style sheet)
    pending     a session between the password and the second factor (code or enrolment)
    session     any session, finished or not (signing out)
    signed_in   any person who finished signing in, whatever their role (home, own account)
    permission  a person whose role holds the page's Permission (the same permissions as the API)

For a page that needs a session, the checks run in this order: a session (else GET is sent to
the sign-in page and anything else gets 401), the stage of signing in, then for unsafe methods
the CSRF token and the request's own site (else 403), then the role (else 403 naming the
permission and the roles that hold it). tests/console/test_page_access.py walks every page for
every role from `all_pages()`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final
from urllib.parse import quote, urlencode

from aiohttp import web

from broadcaster.auth.permissions import Permission, allows, roles_with
from broadcaster.auth.sessions import CSRF_FIELD, CSRF_HEADER, Session, Stage
from broadcaster.auth.web_sessions import SAFE_METHODS, csrf_ok, lookup
from broadcaster.console.render import render_page
from broadcaster.users import User
from broadcaster.web_errors import ApiError

SIGN_IN_PATH: Final = "/sign-in"
HOME_PATH: Final = "/console"
STAGE_PATHS: Final = {Stage.second_factor: "/sign-in/code", Stage.enrol: "/sign-in/enrol"}

# What every console answer carries: never cached, never framed, scripts and styles only from
# this site (no inline script, so injected markup cannot run), forms post only here.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Access(StrEnum):
    public = "public"
    pending = "pending"
    session = "session"
    signed_in = "signed_in"
    permission = "permission"


@dataclass(frozen=True)
class Viewer:
    """The person looking at a page, through their session."""

    session: Session
    source_address: str | None

    @property
    def user(self) -> User:
        return self.session.user

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token

    def can(self, permission: Permission) -> bool:
        return self.session.stage is Stage.complete and allows(self.session.user.role, permission)


PageHandler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Page:
    method: str
    path: str
    handler: PageHandler
    title: str
    access: Access
    permission: Permission | None = None
    stage: Stage | None = None  # for pending pages: which stage they complete

    def allows(self, role: Any) -> bool:
        """Whether a fully signed-in person with `role` may use this page."""
        if self.access is Access.permission:
            assert self.permission is not None
            return allows(role, self.permission)
        return self.access in (Access.public, Access.session, Access.signed_in)


@dataclass
class Pages:
    """The pages of one console module; `install` adds them to an application."""

    pages: list[Page] = field(default_factory=list)

    def page(
        self,
        method: str,
        path: str,
        *,
        title: str,
        permission: Permission | None = None,
        access: Access | None = None,
        stage: Stage | None = None,
    ) -> Callable[[PageHandler], PageHandler]:
        chosen = Access.permission if permission is not None else access
        if chosen is None or (permission is not None and access is not None):
            raise TypeError(f"{method} {path}: name a permission, or one access — not both")
        if (chosen is Access.pending) != (stage is not None):
            raise TypeError(f"{method} {path}: a pending page names the stage it completes")

        def register(handler: PageHandler) -> PageHandler:
            self.pages.append(Page(method, path, handler, title, chosen, permission, stage))
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for page in self.pages:
            app.router.add_route(page.method, page.path, _bind(page))


def see_other(location: str) -> web.Response:
    """Redirect after a form: the browser GETs `location` (back and reload never re-post)."""
    return web.Response(status=303, headers={"Location": location})


def safe_next(value: str | None) -> str:
    """A same-site path to go back to after signing in; anything else goes home."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return HOME_PATH
    return value


def _sign_in_redirect(request: web.Request, why: str | None) -> web.Response:
    query = {"next": request.path_qs}
    if why:
        query["why"] = why
    encoded = urlencode(query, safe="/", quote_via=quote)
    return see_other(f"{SIGN_IN_PATH}?{encoded}")


async def _form_csrf(request: web.Request) -> str | None:
    given = request.headers.get(CSRF_HEADER)
    if given is not None:
        return given
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        posted = await request.post()  # cached by aiohttp: the page reads it again
        value = posted.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def _guarded(page: Page, request: web.Request) -> web.StreamResponse:
    if page.access is Access.public:
        return await page.handler(request)
    found = await lookup(request)
    session = found.session
    unsafe = request.method not in SAFE_METHODS
    if session is None:
        why = found.ended.value if found.ended else None
        if not unsafe:
            return _sign_in_redirect(request, why)
        raise ApiError(
            401,
            "Not signed in",
            "Your session has ended or you are not signed in. Sign in again, then repeat "
            "what you were doing.",
        )
    viewer = Viewer(session, request.remote)
    if page.access is Access.pending:
        if session.stage is not page.stage:
            return see_other(STAGE_PATHS.get(session.stage, HOME_PATH))
    elif page.access is not Access.session and session.stage is not Stage.complete:
        if not unsafe:
            return see_other(STAGE_PATHS[session.stage])
        raise ApiError(401, "Not signed in", "Finish signing in (your second factor) first.")
    if unsafe and not csrf_ok(request, session, await _form_csrf(request)):
        raise ApiError(
            403,
            "Refused: this form did not come from your console",
            "The form is out of date or was sent from another site. Go back, reload the page "
            "and try again.",
            extra={"csrf": "refused"},
        )
    if page.access is Access.permission:
        assert page.permission is not None
        if not allows(session.user.role, page.permission):
            holders = ", ".join(
                role.value.replace("_", " ") for role in roles_with(page.permission)
            )
            raise ApiError(
                403,
                "Not allowed",
                f"Your role ({session.user.role.value.replace('_', ' ')}) cannot use "
                f"“{page.title}”: it needs permission {page.permission.value}, which "
                f"{holders} hold.",
                extra={"permission": page.permission.value},
            )
    return await page.handler(request, viewer)


def _bind(page: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            response = await _guarded(page, request)
        except ApiError as error:
            response = await error_page(request, error)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    handle.__name__ = page.handler.__name__
    return handle


async def error_page(request: web.Request, error: ApiError) -> web.Response:
    found = await lookup(request, touch=False)
    viewer = Viewer(found.session, request.remote) if found.session else None
    return render_page(
        request,
        "error.html",
        viewer,
        title=error.title,
        status=error.status,
        error=error,
    )
