"""What the Facebook and Instagram emulators share: Graph API routing under /v{N}/, the access
token and appsecret_proof checks, Graph's error bodies, usage headers and throttling, cursor
paging, and signed webhook delivery.

Routes: every GET/POST/DELETE under /v{major}.{minor}/{node}[/{edge}] goes to the subclass's
`graph(call)`; anything it does not know answers Graph's own "Unsupported ... request" error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Final
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from channels.emulators.base import Emulator

__all__ = [
    "GraphCall",
    "MetaGraphEmulator",
    "graph_error_response",
    "graph_timestamp",
]

REAL_GRAPH: Final = "https://graph.facebook.com"


def graph_timestamp(at: datetime) -> str:
    """Graph's time format: 2026-11-21T03:00:00+0000."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def now_seconds() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def graph_error_response(
    status: int,
    message: str,
    code: int,
    *,
    subcode: int | None = None,
    kind: str = "OAuthException",
    is_transient: bool | None = None,
    user_title: str | None = None,
    user_msg: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """Graph's error body: {"error": {"message", "type", "code", "error_subcode", ...}}."""
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if is_transient is not None:
        error["is_transient"] = is_transient
    if user_title is not None:
        error["error_user_title"] = user_title
    if user_msg is not None:
        error["error_user_msg"] = user_msg
    error["fbtrace_id"] = secrets.token_urlsafe(8)
    return web.json_response({"error": error}, status=status, headers=dict(headers or {}))


@dataclass
class GraphCall:
    """One Graph request, parsed: what the subclass's `graph` answers."""

    request: web.Request
    method: str
    version: str
    node: str
    edge: str | None
    params: dict[str, str]  # query string and form body together, access_token removed

    def fields(self, default: Sequence[str]) -> list[str]:
        given = self.params.get("fields")
        return [f.strip() for f in given.split(",") if f.strip()] if given else list(default)


class MetaGraphEmulator(Emulator):
    """Graph API plumbing; subclasses answer calls in `graph` and push webhooks."""

    # Whose Business Use Case usage the account's calls count against, and how its rate limit
    # is spelled: Pages answer 80001, Instagram 80002.
    account_id: ClassVar[str]
    usage_type: ClassVar[str]
    rate_limit_code: ClassVar[int]
    rate_limit_message: ClassVar[str]
    # Graph webhooks name the object they are about: "page" or "instagram".
    webhook_object: ClassVar[str]

    def __init__(self) -> None:
        # Fresh credentials per emulator; `target()` hands them (or wrong ones) to adapters.
        self.access_token = f"EAAG{self.name}{secrets.token_hex(16)}"
        self.app_secret = secrets.token_hex(16)
        self.verify_token = secrets.token_urlsafe(12)
        # The app's "Require App Secret" setting: calls without appsecret_proof are refused.
        self.require_appsecret_proof = True
        self.token_expired = False  # answer 190/463 as if the token's session ended
        # App-level budget per rolling hour; past it Graph answers code 4 with X-App-Usage 100.
        self.hourly_call_budget = 10_000
        self._calls: deque[float] = deque()
        self._ids = itertools.count(int(time.time()) * 1000)
        super().__init__()

    def new_id(self) -> str:
        return str(next(self._ids))

    # --- routing -------------------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        pattern = r"/{version:v\d+\.\d+}/{node:[^/]+}"
        for method in ("GET", "POST", "DELETE"):
            router.add_route(method, pattern, self._route)
            router.add_route(method, pattern + "/{edge:[^/]+}", self._route)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        params: dict[str, str] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            params.update({k: str(v) for k, v in (await request.post()).items()})
        token = params.pop("access_token", None) or _bearer(request.headers.get("Authorization"))
        refused = self._refuse_credentials(token, params.pop("appsecret_proof", None))
        if refused is not None:
            return self._with_usage(refused)
        throttled = self._count_call()
        if throttled is not None:
            return self._with_usage(throttled)
        call = GraphCall(
            request=request,
            method=request.method,
            version=request.match_info["version"],
            node=request.match_info["node"],
            edge=request.match_info.get("edge"),
            params=params,
        )
        answer = await self.graph(call)
        if answer is None:
            answer = self.unsupported(call)
        return self._with_usage(answer)

    async def graph(self, call: GraphCall) -> web.StreamResponse | None:
        """Answer one Graph call, or None for Graph's "Unsupported request" error."""
        return None

    def unsupported(self, call: GraphCall) -> web.Response:
        what = {"GET": "get", "POST": "post", "DELETE": "delete"}[call.method]
        return graph_error_response(
            400,
            f"Unsupported {what} request. Object with ID '{call.node}' does not exist, cannot "
            "be loaded due to missing permissions, or does not support this operation. Please "
            "read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
            100,
            subcode=33,
            kind="GraphMethodException",
        )

    # --- credentials and limits ----------------------------------------------------------------

    def _refuse_credentials(self, token: str | None, proof: str | None) -> web.Response | None:
        if not token:
            return graph_error_response(
                400,
                "An active access token must be used to query information about the current user.",
                2500,
            )
        auth_header = {"WWW-Authenticate": 'OAuth "Facebook Platform" "invalid_token"'}
        if not hmac.compare_digest(token.encode(), self.access_token.encode()):
            return graph_error_response(
                400,
                "Invalid OAuth access token - Cannot parse access token",
                190,
                headers=auth_header,
            )
        if self.token_expired:
            return graph_error_response(
                400,
                "Error validating access token: Session has expired on Friday, 20-Nov-26 "
                "19:00:00 PST. The current time is Saturday, 21-Nov-26 03:00:00 PST.",
                190,
                subcode=463,
                headers=auth_header,
            )
        expected = hmac.new(self.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
        if proof is None and self.require_appsecret_proof:
            return graph_error_response(
                400,
                "API calls from the server require an appsecret_proof argument",
                100,
                kind="GraphMethodException",
            )
        if proof is not None and not hmac.compare_digest(proof.encode(), expected.encode()):
            return graph_error_response(
                400,
                "Invalid appsecret_proof provided in the API argument",
                100,
                kind="GraphMethodException",
            )
        return None

    def _count_call(self) -> web.Response | None:
        now = time.monotonic()
        while self._calls and now - self._calls[0] > 3600:
            self._calls.popleft()
        if len(self._calls) >= self.hourly_call_budget:
            return graph_error_response(
                400, "(#4) Application request limit reached", 4, is_transient=True
            )
        self._calls.append(now)
        return None

    def _usage_percent(self) -> int:
        return min(100, len(self._calls) * 100 // max(1, self.hourly_call_budget))

    def _with_usage(
        self, response: web.StreamResponse, regain_minutes: int = 0
    ) -> web.StreamResponse:
        """Graph's usage headers, on every answer."""
        used = self._usage_percent()
        response.headers["X-App-Usage"] = json.dumps(
            {"call_count": used, "total_cputime": used // 2, "total_time": used // 2}
        )
        response.headers["X-Business-Use-Case-Usage"] = json.dumps(
            {
                self.account_id: [
                    {
                        "type": self.usage_type,
                        "call_count": 100 if regain_minutes else used,
                        "total_cputime": used // 2,
                        "total_time": used // 2,
                        "estimated_time_to_regain_access": regain_minutes,
                    }
                ]
            }
        )
        response.headers["facebook-api-version"] = "v21.0"
        response.headers["x-fb-trace-id"] = secrets.token_urlsafe(8)
        return response

    # --- the base class's hooks ----------------------------------------------------------------

    def rate_limited(self, request: web.Request, retry_after: float) -> web.StreamResponse:
        # Graph's wait is estimated_time_to_regain_access, in whole minutes. Retry-After carries
        # the exact seconds a fault script asked for, so sub-minute waits can be tested; the
        # adapter prefers it when present.
        response = graph_error_response(
            400,
            self.rate_limit_message,
            self.rate_limit_code,
            is_transient=True,
            headers={"Retry-After": str(int(retry_after))},
        )
        return self._with_usage(response, regain_minutes=max(1, math.ceil(retry_after / 60)))

    def server_error(self, request: web.Request, status: int) -> web.StreamResponse:
        message = (
            "Service temporarily unavailable"
            if status == 503
            else "An unexpected error has occurred. Please retry your request later."
        )
        return self._with_usage(graph_error_response(status, message, 2, is_transient=True))

    # --- paging --------------------------------------------------------------------------------

    def timed(
        self, call: GraphCall, items: Sequence[tuple[datetime, dict[str, Any]]]
    ) -> list[dict[str, Any]] | web.Response:
        """Graph's time-based filters on an edge of dated objects: `since` and `until`, each a
        unix timestamp or a date Graph can parse, both inclusive. `items` newest first; an
        unreadable value is Graph's invalid-parameter error."""
        bounds: dict[str, datetime] = {}
        for name in ("since", "until"):
            value = call.params.get(name)
            if value is None:
                continue
            moment = _graph_moment(value)
            if moment is None:
                return graph_error_response(
                    400,
                    f"(#100) The value of the parameter {name} ({value}) is not a valid unix "
                    "timestamp or strtotime parsable date",
                    100,
                    kind="OAuthException",
                )
            bounds[name] = moment
        since, until = bounds.get("since"), bounds.get("until")
        return [
            item
            for at, item in items
            if (since is None or at >= since) and (until is None or at <= until)
        ]

    def page(self, call: GraphCall, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """One page of `items` with Graph's cursors; `next` carries the access token, as
        Graph's does (facebook-sdk's get_all_connections deletes it from the next call)."""
        try:
            limit = max(1, min(100, int(call.params.get("limit", "25"))))
        except ValueError:
            limit = 25
        start = _decode_cursor(call.params.get("after"))
        chunk = list(items[start : start + limit])
        body: dict[str, Any] = {"data": chunk}
        if not items:
            return body
        body["paging"] = {
            "cursors": {
                "before": _encode_cursor(start),
                "after": _encode_cursor(start + len(chunk)),
            }
        }
        if start + limit < len(items):
            query = {
                k: v for k, v in call.params.items() if k not in ("after", "before", "access_token")
            }
            query.update(access_token=self.access_token, limit=str(limit))
            query["after"] = _encode_cursor(start + limit)
            path = f"{call.version}/{call.node}" + (f"/{call.edge}" if call.edge else "")
            body["paging"]["next"] = f"{REAL_GRAPH}/{path}?{urlencode(query)}"
        return body

    # --- webhooks ------------------------------------------------------------------------------

    async def deliver_webhook(self, changes: Sequence[dict[str, Any]]) -> int | None:
        """POST a signed Graph webhook about our account to `webhook_url`; its HTTP status."""
        if self.webhook_url is None:
            return None
        payload = {
            "object": self.webhook_object,
            "entry": [{"id": self.account_id, "time": int(time.time()), "changes": list(changes)}],
        }
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": "sha256="
            + hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest(),
            # Meta still sends the SHA-1 signature beside it.
            "X-Hub-Signature": "sha1="
            + hmac.new(self.app_secret.encode(), body, hashlib.sha1).hexdigest(),
        }
        timeout = aiohttp.ClientTimeout(total=10)
        status: int | None = None
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.webhook_url, data=body, headers=headers) as response,
            ):
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            # Meta retries failed deliveries later and the comment stays readable by polling;
            # the emulator records the failure and carries on.
            self.record("webhook", url=self.webhook_url, status=None, error=type(error).__name__)
            return None
        self.record("webhook", url=self.webhook_url, status=status, object=self.webhook_object)
        return status

    def reset_state(self) -> None:
        self._calls.clear()
        self.token_expired = False


def only(item: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """The requested fields of an object (Graph always includes id)."""
    return {key: item[key] for key in ("id", *fields) if key in item}


def _graph_moment(value: str) -> datetime | None:
    """A `since`/`until` value: unix seconds, or an ISO 8601 date or date-time (UTC if bare)."""
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _bearer(header: str | None) -> str | None:
    if header and header.split(" ", 1)[0].lower() in ("oauth", "bearer") and " " in header:
        return header.split(" ", 1)[1].strip()
    return None


def _encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(str(index).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()))
    except ValueError:
        return 0
