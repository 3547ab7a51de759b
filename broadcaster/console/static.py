"""The console's style sheet and script, served from the package (no build step)."""

from __future__ import annotations

from importlib import resources
from typing import Final

from aiohttp import web

from broadcaster.console.pages import Access, Pages

pages = Pages()
FILES: Final = {"console.css": "text/css", "console.js": "text/javascript"}


@pages.page("GET", "/console/static/{name}", title="Console files", access=Access.public)
async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in FILES:
        raise web.HTTPNotFound()
    body = resources.files("broadcaster.console").joinpath("static", name).read_bytes()
    return web.Response(
        body=body,
        content_type=FILES[name],
        charset="utf-8",
        headers={"Cache-Control": "max-age=300"},
    )
