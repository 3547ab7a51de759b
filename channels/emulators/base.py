"""What every platform emulator shares: a real aiohttp server, a record of every effect, fault
scripts, and a control API for tests, drills and benchmarks in other processes.

A subclass adds the platform's routes (answering with the platform's own bodies and headers),
its credential checks and limits, and says how the platform spells a rate limit and a server
error. Faults are applied here, before the platform's handler runs (or, for `commit_then_error`,
after it ran and its effect was recorded), so every emulator gets every fault the same way.

Control API (JSON), under /_emulator/:
    GET    effects?kind=K        what the emulator did, oldest first
    POST   faults                add a fault: {"kind": ..., "path": regex, "method": "POST",
                                 "times": 1, "retry_after": 30, "status": 503, "delay": 5,
                                 "duration": 10}
    DELETE faults                clear all faults
    POST   replies               ask for public replies: {"count": 1, "text": ..., "to": post id}
    POST   reset                 forget effects, faults and platform state
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from aiohttp import web

from channels.base import Channel, Target, TargetMode

__all__ = ["Effect", "Emulator", "Fault", "FaultKind"]

CONTROL_PREFIX = "/_emulator"


class FaultKind(StrEnum):
    rate_limit = "rate_limit"  # answer 429 (or the platform's equivalent) with its reset/wait
    server_error = "server_error"  # answer 5xx without doing anything
    commit_then_error = "commit_then_error"  # do it (the post exists), then answer 5xx
    timeout = "timeout"  # hold the request for `delay` seconds, then drop the connection
    reset = "reset"  # drop the connection at once, without an answer
    outage = "outage"  # answer 503 to everything for `duration` seconds


@dataclass
class Fault:
    kind: FaultKind
    path: str = ".*"  # regex matched against the request path (search)
    method: str | None = None  # None matches any method
    times: int = 1  # how many requests it hits; 0 = until cleared
    retry_after: float = 30.0  # for rate_limit: seconds until the platform's reset
    status: int = 500  # for server_error / commit_then_error
    delay: float = 5.0  # for timeout
    duration: float = 10.0  # for outage
    started: float | None = None  # outage: monotonic time it began

    def matches(self, request: web.Request) -> bool:
        if self.method is not None and request.method != self.method.upper():
            return False
        return re.search(self.path, request.path) is not None


@dataclass(frozen=True)
class Effect:
    """Something the platform did: a post created, deleted, a message sent, a reply generated."""

    seq: int
    kind: str  # "post", "delete", "edit", "reply_generated", "sms", "email", ...
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "at": self.at.isoformat(), **self.data}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Emulator:
    """Base class: subclasses register routes in `add_routes` and override the hooks below."""

    name: ClassVar[str]  # the channel name it emulates: "x", "mastodon", ...
    # For list channels: a recipient the emulator delivers to (a phone number, an address).
    sample_recipient: ClassVar[str | None] = None

    def __init__(self) -> None:
        self.effects: list[Effect] = []
        self.faults: list[Fault] = []
        self._seq = itertools.count(1)
        self._runner: web.AppRunner | None = None
        # Where generated public replies are delivered, for platforms that push them (webhooks).
        self.webhook_url: str | None = None
        self.url = ""
        self.app = web.Application(middlewares=[self._fault_middleware])
        self.app.router.add_get(f"{CONTROL_PREFIX}/effects", self._control_effects)
        self.app.router.add_post(f"{CONTROL_PREFIX}/faults", self._control_add_fault)
        self.app.router.add_delete(f"{CONTROL_PREFIX}/faults", self._control_clear_faults)
        self.app.router.add_post(f"{CONTROL_PREFIX}/replies", self._control_replies)
        self.app.router.add_post(f"{CONTROL_PREFIX}/reset", self._control_reset)
        self.add_routes(self.app.router)

    # --- for subclasses ----------------------------------------------------------------------

    def target(
        self,
        name: str = "test",
        mode: TargetMode = TargetMode.live,
        *,
        valid_credentials: bool = True,
        timeout_seconds: float = 10.0,
    ) -> Target:
        """A target for this emulator's channel adapter: settings pointing at this emulator (call
        after `start`) and credentials it accepts (or, with valid_credentials=False, rejects)."""
        raise NotImplementedError

    def channel(self, target: Target) -> Channel:
        """An adapter instance for `target`, wired to this emulator (e.g. a URL-rewriting
        session for libraries whose host is fixed)."""
        raise NotImplementedError

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register the platform's API routes."""

    def rate_limited(self, request: web.Request, retry_after: float) -> web.StreamResponse:
        """The platform's own 429: body and headers saying when to come back."""
        return web.json_response(
            {"error": "rate limited"},
            status=429,
            headers={"Retry-After": str(int(retry_after))},
        )

    def server_error(self, request: web.Request, status: int) -> web.StreamResponse:
        """The platform's own 5xx body."""
        return web.json_response({"error": "internal error"}, status=status)

    async def generate_replies(
        self, count: int, text: str | None, to: str | None
    ) -> list[dict[str, Any]]:
        """Make `count` public replies (to post `to`, or the latest post); return what was made."""
        raise web.HTTPNotImplemented(text=f"{self.name} emulator does not generate replies")

    def reset_state(self) -> None:
        """Forget platform state (posts, messages); effects and faults are cleared by the base."""

    # --- recording -----------------------------------------------------------------------------

    def record(self, kind: str, **data: Any) -> Effect:
        effect = Effect(next(self._seq), kind, datetime.now(UTC), data)
        self.effects.append(effect)
        return effect

    def effects_of(self, kind: str) -> list[Effect]:
        return [effect for effect in self.effects if effect.kind == kind]

    def add_fault(self, fault: Fault) -> None:
        self.faults.append(fault)

    # --- running -------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # --- faults --------------------------------------------------------------------------------

    def _take_fault(self, request: web.Request) -> Fault | None:
        now = time.monotonic()
        for fault in list(self.faults):
            over = fault.started is not None and now - fault.started > fault.duration
            if fault.kind is FaultKind.outage and over:
                self.faults.remove(fault)
                continue
            if not fault.matches(request):
                continue
            if fault.kind is FaultKind.outage:
                fault.started = fault.started or now
            elif fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)
            return fault
        return None

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        fault = self._take_fault(request)
        if fault is None:
            return await handler(request)
        self.record("fault", fault=fault.kind.value, method=request.method, path=request.path)
        if fault.kind is FaultKind.rate_limit:
            return self.rate_limited(request, fault.retry_after)
        if fault.kind is FaultKind.server_error:
            return self.server_error(request, fault.status)
        if fault.kind is FaultKind.outage:
            return self.server_error(request, 503)
        if fault.kind is FaultKind.commit_then_error:
            await handler(request)  # the effect happens and is recorded; the answer is lost
            return self.server_error(request, fault.status)
        if fault.kind is FaultKind.timeout:
            await asyncio.sleep(fault.delay)
        _drop_connection(request)
        return web.Response(status=499)  # never reaches the client: the connection is gone

    # --- control API ---------------------------------------------------------------------------

    async def _control_effects(self, request: web.Request) -> web.Response:
        kind = request.query.get("kind")
        chosen = self.effects if kind is None else self.effects_of(kind)
        return web.json_response([effect.as_dict() for effect in chosen])

    async def _control_add_fault(self, request: web.Request) -> web.Response:
        data = await request.json()
        try:
            fault = Fault(kind=FaultKind(data.pop("kind")), **data)
        except (KeyError, TypeError, ValueError) as error:
            return web.json_response({"error": f"bad fault: {error}"}, status=400)
        self.add_fault(fault)
        return web.json_response({"faults": len(self.faults)}, status=201)

    async def _control_clear_faults(self, _request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"faults": 0})

    async def _control_replies(self, request: web.Request) -> web.Response:
        data = await request.json() if request.can_read_body else {}
        made = await self.generate_replies(
            int(data.get("count", 1)), data.get("text"), data.get("to")
        )
        return web.json_response({"replies": made}, status=201)

    async def _control_reset(self, _request: web.Request) -> web.Response:
        self.effects.clear()
        self.faults.clear()
        self.reset_state()
        return web.json_response({"reset": True})


def _drop_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
