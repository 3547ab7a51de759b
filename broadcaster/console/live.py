"""Live regions over server-sent events: a stream that says "changed" whenever a fingerprint
read from the database changes, so the page fetches its fresh server-rendered rows.

Reading the database (not an in-process hub) means changes made by workers in other processes,
or on other machines, are seen too. Each stream ends when the session ends (sign-out, idle
timeout: checked at every keep-alive, without counting as activity) or the service stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from broadcaster.auth.web_sessions import lookup

log = logging.getLogger(__name__)
CLOSING = web.AppKey("console_closing", asyncio.Event)
POLL_SECONDS: Final = 1.0
KEEP_ALIVE_SECONDS: Final = 15.0

Fingerprint = Callable[[], Awaitable[object]]


async def stream(
    request: web.Request,
    fingerprint: Fingerprint,
    *,
    poll_seconds: float = POLL_SECONDS,
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: do not hold events back
        }
    )
    await response.prepare(request)
    closing = request.app[CLOSING]
    last = await fingerprint()
    quiet = 0.0
    try:
        await response.write(b"retry: 3000\n: connected\n\n")
        while not closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), poll_seconds)
            if closing.is_set():
                break
            try:
                now = await fingerprint()
            except Exception as error:  # a database hiccup: keep the stream, look again soon
                log.warning("live region read failed: %s", type(error).__name__)
                continue
            if now != last:
                last = now
                quiet = 0.0
                data = json.dumps({"fingerprint": str(now)})
                await response.write(f"event: changed\ndata: {data}\n\n".encode())
                continue
            quiet += poll_seconds
            if quiet >= KEEP_ALIVE_SECONDS:
                quiet = 0.0
                if (await lookup(request, touch=False)).session is None:
                    break  # signed out or timed out: stop sending this screen anything
                await response.write(b": keep-alive\n\n")
    except (ConnectionResetError, ConnectionError):
        pass  # the page was closed
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response
