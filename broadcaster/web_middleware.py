"""Request middleware: a request id on every request, one log line and metrics per request, and
errors turned into problem documents instead of tracebacks."""

from __future__ import annotations

import logging
import re
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from broadcaster.logs import request_id_var
from broadcaster.web_errors import ApiError, problem_response
from broadcaster.web_keys import METRICS

log = logging.getLogger("broadcaster.http")
REQUEST_ID_HEADER = "X-Request-Id"
# Accept a caller's id (a load balancer's, say) only if it is short and plain.
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def _route_label(request: web.Request) -> str:
    # The route template, never the raw path: raw paths would make unbounded metric labels.
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = offered if _ACCEPTABLE_REQUEST_ID.fullmatch(offered) else secrets.token_hex(16)
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await _answer(request, handler, request_id)
        status = response.status
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        request.app[METRICS].observe_request(request.method, _route_label(request), status, elapsed)
        if log.isEnabledFor(logging.INFO):  # not even the line's fields when it is not written
            log.info(
                "%s %s %s",
                request.method,
                request.path,
                status,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "remote": request.remote,
                },
            )
        request_id_var.reset(token)


async def _answer(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return problem_response(
            error.status,
            error.title,
            error.detail,
            fields=error.fields,
            request_id=request_id,
            extra=error.extra,
            headers=error.headers,
        )
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return problem_response(
            error.status,
            error.reason,
            _friendly_detail(error),
            request_id=request_id,
            headers={
                k: v for k, v in error.headers.items() if k.lower() in {"allow", "retry-after"}
            },
        )
    except Exception as error:
        if _database_unavailable(error):
            # Not a bug: the database is down, restarting, failing over, or too busy to take
            # the write lock in time. The caller can simply send the request again.
            log.warning(
                "database unavailable while serving %s %s: %s",
                request.method,
                request.path,
                type(error).__name__,
            )
            return problem_response(
                503,
                "Service Unavailable",
                "The database could not be reached just now. Nothing was changed by this "
                "request; send it again in a moment.",
                request_id=request_id,
                headers={"Retry-After": "1"},
            )
        log.exception("unhandled error while serving %s %s", request.method, request.path)
        return problem_response(
            500,
            "Internal Server Error",
            "Something failed on our side. Quote the request id when you report it.",
            request_id=request_id,
        )


# What the databases say when they are unreachable or too busy, as opposed to a bug (SQLite
# also reports "no such table" as an OperationalError: that stays a 500, logged whole).
_UNAVAILABLE = (
    "database is locked",
    "unable to open database",
    "disk i/o error",
    "could not connect",
    "connection refused",
    "connection was closed",
    "connection is closed",
    "server closed the connection",
    "too many clients",
    "the database system is",
)


def _database_unavailable(error: Exception) -> bool:
    """A lost or refused database connection, SQLite's "database is locked" after its busy
    timeout, or no pooled connection free in time (rolled back, so nothing was changed)."""
    if isinstance(error, PoolTimeoutError):
        return True
    if isinstance(error, OSError):
        return _raised_connecting_to_database(error)
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    said = str(error.orig).lower()
    return isinstance(error, OperationalError) and any(words in said for words in _UNAVAILABLE)


def _raised_connecting_to_database(error: OSError) -> bool:
    """A refused or timed-out connection reaches us bare (asyncpg's OSError is not a DBAPI
    error, so SQLAlchemy does not wrap it); it is the database's only when it was raised while
    the pool was opening a connection, not by some other socket a handler used."""
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_globals.get("__name__", "").startswith("sqlalchemy.pool"):
            return True
        frame = frame.tb_next
    return False


def _friendly_detail(error: web.HTTPException) -> str:
    if error.status == 404:
        return "There is nothing at this address."
    if error.status == 405:
        return (
            f"This address does not accept that method. Allowed: {error.headers.get('Allow', '')}."
        )
    if error.status == 413:
        return "The request body is larger than this service accepts."
    return error.text or ""
