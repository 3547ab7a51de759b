"""Liveness, readiness and metrics for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from broadcaster.metrics import CONTENT_TYPE_LATEST
from broadcaster.storage.engine import ping
from broadcaster.web_keys import ENGINE, METRICS

log = logging.getLogger(__name__)
READINESS_TIMEOUT_SECONDS = 2.0
routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    """The process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: the database answers within the timeout."""
    metrics = request.app[METRICS]
    try:
        await asyncio.wait_for(ping(request.app[ENGINE]), READINESS_TIMEOUT_SECONDS)
    except Exception as error:  # any failure means "not ready"; the reason goes to the log
        log.warning("readiness check failed: database unreachable (%s)", type(error).__name__)
        metrics.database_up.set(0)
        return web.json_response(
            {"status": "not ready", "checks": {"database": "unreachable"}}, status=503
        )
    metrics.database_up.set(1)
    return web.json_response({"status": "ready", "checks": {"database": "ok"}})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
