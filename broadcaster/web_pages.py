"""Server-rendered pages (Jinja2, autoescaped)."""

from __future__ import annotations

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

import broadcaster

environment = Environment(
    loader=PackageLoader("broadcaster", "web_templates"),
    autoescape=select_autoescape(["html"]),
    enable_async=False,
)
routes = web.RouteTableDef()


def render(template: str, **context: object) -> web.Response:
    html = environment.get_template(template).render(version=broadcaster.__version__, **context)
    return web.Response(text=html, content_type="text/html")


@routes.get("/")
async def index(_request: web.Request) -> web.Response:
    return render("index.html")
