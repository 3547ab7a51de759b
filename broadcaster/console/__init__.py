"""The web console: server-rendered pages for duty officers, approvers, responders and
administrators, over the same services as the JSON API.

Each module declares its pages on its own `Pages` with the access each needs (see `pages`);
`install` adds them all, the session store, and the hourly housekeeping.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.auth.sessions import SessionStore
from broadcaster.auth.web_sessions import SESSIONS
from broadcaster.console import (
    admin,
    alert_view,
    approver,
    correct,
    deliveries,
    home,
    officer,
    responder,
    sign_in,
    static,
    tokens,
)
from broadcaster.console.housekeeping import housekeeping
from broadcaster.console.live import CLOSING
from broadcaster.console.pages import Page, Pages
from broadcaster.settings import LoadedSettings

__all__ = ["all_pages", "install"]

PAGE_MODULES: Final[tuple[Pages, ...]] = (
    sign_in.pages,
    tokens.pages,
    home.pages,
    alert_view.pages,
    officer.pages,
    correct.pages,
    deliveries.pages,
    approver.pages,
    responder.pages,
    admin.pages,
    static.pages,
)


def all_pages() -> list[Page]:
    return [page for module in PAGE_MODULES for page in module.pages]


def install(app: web.Application, loaded: LoadedSettings, engine: AsyncEngine) -> None:
    app[SESSIONS] = SessionStore(engine, loaded.secret("session_key"), loaded.settings.console)
    app[CLOSING] = asyncio.Event()
    for module in PAGE_MODULES:
        module.install(app)
    app.on_shutdown.append(_closing)
    app.cleanup_ctx.append(housekeeping)


async def _closing(app: web.Application) -> None:
    app[CLOSING].set()  # live streams end, so shutdown does not wait for them
