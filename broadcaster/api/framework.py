"""How an API route is declared: its permission, its body and answer models, its summary.

One declaration drives everything a route needs: authentication (401), the role check (403,
naming the permission), the JSON body (415 for another type, 400 for broken JSON, 422 with field
errors), the answer's serialisation, and its entry in the OpenAPI document. A route must name a
permission or say `public=True`; there is no third way, so nothing is open by accident.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from broadcaster.auth.permissions import Permission, allows, roles_with
from broadcaster.auth.sessions import SESSION_COOKIE
from broadcaster.auth.tokens import user_for_token
from broadcaster.auth.web_sessions import api_session
from broadcaster.users import User
from broadcaster.web_errors import ApiError, FieldError
from broadcaster.web_keys import ENGINE

API_PREFIX = "/api/v1"
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="crisis-broadcaster"'}

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class Caller:
    """Who is asking, and from where (for the audit log)."""

    user: User
    source_address: str | None

    @property
    def actor(self) -> str:
        return self.user.username


Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # below API_PREFIX, e.g. "/alerts/{alert_id}"
    handler: Handler
    summary: str
    permission: Permission | None
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    errors: tuple[int, ...]
    tag: str

    @property
    def public(self) -> bool:
        return self.permission is None


class Api:
    """A collection of routes, added to an aiohttp application in one go."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        permission: Permission | None = None,
        public: bool = False,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        tag: str = "alerts",
    ) -> Callable[[Handler], Handler]:
        if (permission is None) != public:
            raise TypeError(f"{method} {path}: name a permission, or say public=True — not both")

        def register(handler: Handler) -> Handler:
            self.routes.append(
                Route(
                    method,
                    path,
                    handler,
                    summary,
                    permission,
                    body,
                    query,
                    response,
                    status,
                    errors,
                    tag,
                )
            )
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for route in self.routes:
            app.router.add_route(route.method, API_PREFIX + route.path, _bind(route))


def _bind(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        arguments: list[Any] = [request]
        if not route.public:
            assert route.permission is not None
            caller = await authenticate(request)
            authorise(caller, route.permission)
            arguments.append(caller)
        if route.query is not None:
            arguments.append(parse_query(request, route.query))
        if route.body is not None:
            arguments.append(await parse_body(request, route.body))
        result = await route.handler(*arguments)
        return _respond(result, route.status)

    handle.__name__ = route.handler.__name__
    return handle


async def authenticate(request: web.Request) -> Caller:
    header = request.headers.get("Authorization", "")
    if not header and SESSION_COOKIE in request.cookies:
        # The console's session cookie; unsafe methods must also carry its CSRF header.
        session = await api_session(request)
        return Caller(user=session.user, source_address=request.remote)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "Unauthorized",
            "Sign in: send 'Authorization: Bearer <token>' (create one with "
            "`broadcaster token create USERNAME`).",
            headers=BEARER_CHALLENGE,
        )
    async with request.app[ENGINE].begin() as connection:
        user = await user_for_token(connection, token.strip())
    if user is None:
        raise ApiError(
            401,
            "Unauthorized",
            "This token is unknown, expired or revoked, or its user is disabled.",
            headers=BEARER_CHALLENGE,
        )
    return Caller(user=user, source_address=request.remote)


def authorise(caller: Caller, permission: Permission) -> None:
    if allows(caller.user.role, permission):
        return
    allowed = ", ".join(role.value for role in roles_with(permission))
    raise ApiError(
        403,
        "Forbidden",
        f"Your role ({caller.user.role.value}) does not allow {permission.value}; "
        f"it needs one of: {allowed}.",
        extra={"permission": permission.value},
    )


async def parse_body(request: web.Request, model: type[ModelT]) -> ModelT:
    if request.content_type != "application/json":
        raise ApiError(
            415,
            "Unsupported Media Type",
            f"Send the body as application/json, not {request.content_type or 'nothing'}.",
        )
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, "Bad Request", f"The body is not valid JSON: {error}.") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise invalid(error) from None


def parse_query(request: web.Request, model: type[ModelT]) -> ModelT:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as error:
        raise invalid(error, prefix="query") from None


def invalid(error: ValidationError, prefix: str = "") -> ApiError:
    """A 422 naming every field that is wrong."""
    fields = [
        FieldError(
            field=".".join(str(part) for part in (prefix, *detail["loc"]) if part != "") or "body",
            message=detail["msg"],
        )
        for detail in error.errors(include_url=False)
    ]
    return ApiError(
        422,
        "Unprocessable Content",
        "Some fields are missing or wrong; see errors.",
        fields=fields,
    )


def path_id(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    if not text.isdigit() or len(text) > 18:
        raise ApiError(404, "Not Found", f"There is no {name.removesuffix('_id')} {text!r}.")
    return int(text)


def _respond(result: Any, status: int) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if isinstance(result, BaseModel):
        body = result.model_dump_json()
    else:
        body = json.dumps(result, ensure_ascii=False, default=str)
    return web.Response(status=status, text=body, content_type="application/json")
