"""Errors as RFC 9457 problem documents: what went wrong, where, and what to do.

The API never answers bad input with a 500: handlers raise `ApiError` (or aiohttp's own HTTP
errors for 404/405/413), and the middleware turns each into a problem document. A real 500 carries
only the request id, so a person can quote it and an operator can find the log line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass
class FieldError:
    field: str  # dotted path into the request, e.g. "infos.0.headline"
    message: str


@dataclass
class ApiError(Exception):
    status: int
    title: str
    detail: str = ""
    fields: list[FieldError] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"


def problem_response(
    status: int,
    title: str,
    detail: str = "",
    *,
    fields: list[FieldError] | None = None,
    request_id: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if fields:
        body["errors"] = [{"field": f.field, "message": f.message} for f in fields]
    if request_id:
        body["request_id"] = request_id
    body.update(extra or {})
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        headers={"Content-Type": PROBLEM_CONTENT_TYPE, **(headers or {})},
    )
