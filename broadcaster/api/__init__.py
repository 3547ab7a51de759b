"""The JSON API under /api/v1. Each module declares its routes on its own `Api`."""

from __future__ import annotations

from aiohttp import web

from broadcaster.api import (
    alert_routes,
    audit_routes,
    delivery_routes,
    hook_routes,
    report_routes,
    template_routes,
)
from broadcaster.api.framework import API_PREFIX, Api, Route
from broadcaster.api.openapi import build_openapi

API_MODULES: tuple[Api, ...] = (
    alert_routes.api,
    template_routes.api,
    audit_routes.api,
    report_routes.api,
    hook_routes.api,
    delivery_routes.api,
)


def all_routes() -> list[Route]:
    return [route for module in API_MODULES for route in module.routes]


def install(app: web.Application) -> None:
    for module in API_MODULES:
        module.install(app)
    document = build_openapi(all_routes())

    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get(f"{API_PREFIX}/openapi.json", openapi)
