"""What anyone may read without signing in: the Atom feed of current alerts and their CAP
documents, as alert aggregators and the public's apps read them.

Only Actual alerts are listed in the public feed: exercises reach exercise targets only, so they
have their own feed (for drill participants) and never appear in the live one.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from approvals.alert import Status
from broadcaster.alerts import store
from broadcaster.alerts.publication import cap_base_url, channel_version
from broadcaster.web_keys import ALERTS, ENGINE, SETTINGS
from channels.atom import FeedEntry, atom_feed
from channels.cap import cap_document, cap_url
from channels.cards import CardFormat, render_card

routes = web.RouteTableDef()
_FEEDS = {
    "alerts": ((Status.actual.value,), "Current alerts"),
    "exercise": ((Status.exercise.value, Status.test.value), "Current EXERCISE and test alerts"),
}


def public_base(request: web.Request) -> str:
    """The address the public reaches us at: server.public_url, else this request's origin."""
    configured = request.app[SETTINGS].settings.server.public_url
    return (configured or f"{request.scheme}://{request.host}").rstrip("/")


@routes.get("/feeds/{feed}.atom")
async def feed(request: web.Request) -> web.Response:
    chosen = _FEEDS.get(request.match_info["feed"])
    if chosen is None:
        raise web.HTTPNotFound()
    statuses, title = chosen
    base = public_base(request)
    now = request.app[ALERTS].clock()
    async with request.app[ENGINE].connect() as connection:
        versions = await store.current_public_versions(connection, statuses, now)
    entries = [
        FeedEntry(
            channel_version(stored, base, now),
            cap_url(cap_base_url(base), stored.identifier or ""),
        )
        for stored in versions
    ]
    document = atom_feed(
        entries,
        feed_url=f"{base}/",
        self_url=f"{base}{request.path}",
        updated=max((entry.version.sent for entry in entries), default=now),
        title=title,
        author=request.app[ALERTS].rules.sender,
    )
    return web.Response(body=document, content_type="application/atom+xml")


@routes.get("/cap/{identifier}.xml")
async def cap(request: web.Request) -> web.Response:
    async with request.app[ENGINE].connect() as connection:
        stored = await store.by_identifier(connection, request.match_info["identifier"])
    if stored is None:
        raise web.HTTPNotFound()
    version = channel_version(stored, public_base(request), request.app[ALERTS].clock())
    return web.Response(body=cap_document(version), content_type="application/cap+xml")


@routes.get("/media/cards/{identifier}/{language}.{suffix}")
async def card(request: web.Request) -> web.Response:
    """The alert card image platforms fetch (Instagram), rendered from the released version."""
    try:
        card_format = CardFormat.from_suffix(request.match_info["suffix"])
    except ValueError:
        raise web.HTTPNotFound() from None
    async with request.app[ENGINE].connect() as connection:
        stored = await store.by_identifier(connection, request.match_info["identifier"])
    if stored is None:
        raise web.HTTPNotFound()
    version = channel_version(stored, public_base(request), request.app[ALERTS].clock())
    try:
        # Pillow's drawing is CPU work: keep it off the event loop.
        image = await asyncio.to_thread(
            render_card, version, request.match_info["language"], card_format
        )
    except ValueError:
        raise web.HTTPNotFound() from None
    return web.Response(
        body=image,
        content_type=card_format.media_type,
        headers={"Cache-Control": "public, max-age=300"},
    )
