"""The live delivery board: for every version of an alert that went out, each channel and
target with how its deliveries stand (counts per state for lists of people), a link to what was
posted, and the last error; refreshed over server-sent events as workers record results.

Counts are made in the database (a list of 100,000 phones is one row per state here, never
100,000 rows in the page). The board reads the shared database, so it shows what workers in
other processes did too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from aiohttp import web
from sqlalchemy import func, select

from broadcaster.api.framework import path_id
from broadcaster.auth.permissions import Permission
from broadcaster.console.alert_view import load_alert
from broadcaster.console.live import stream
from broadcaster.console.pages import Pages, Viewer
from broadcaster.console.render import mode_look, render_page
from broadcaster.storage.schema import alert_versions, deliveries
from broadcaster.web_keys import ENGINE

pages = Pages()
VIEW = Permission.view_alerts
# How the board words each delivery state, in the order a person reads them.
STATE_WORDS: Final = {
    "delivered": "delivered",
    "in_flight": "sending",
    "queued": "queued",
    "retry_wait": "waiting to retry",
    "held": "held (channel paused)",
    "dead": "failed",
    "superseded": "not sent (replaced)",
}
FAILED: Final = {"dead"}
WAITING: Final = {"queued", "in_flight", "retry_wait", "held"}


@dataclass
class BoardRow:
    version_number: int
    msg_type: str
    channel: str
    target: str
    target_mode: str
    kind: str
    counts: dict[str, int] = field(default_factory=dict)
    url: str | None = None
    error: str | None = None
    attempts: int = 0
    updated_at: datetime | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def state(self) -> str:
        """The one word for the row: failed if any failed, else waiting, else delivered."""
        if self.counts.keys() & FAILED:
            return "dead"
        if self.counts.keys() & WAITING:
            return next(
                s for s in ("in_flight", "retry_wait", "held", "queued") if s in self.counts
            )
        if "delivered" in self.counts:
            return "delivered"
        return next(iter(self.counts), "queued")

    def described(self) -> list[str]:
        return [f"{n} {STATE_WORDS.get(s, s)}" for s, n in sorted(self.counts.items()) if n]


async def board_rows(engine: Any, alert_id: int) -> list[BoardRow]:
    d = deliveries.c
    key = (d.version_id, alert_versions.c.number, alert_versions.c.msg_type, d.channel, d.target)
    query = (
        select(
            *key,
            d.target_mode,
            d.kind,
            d.state,
            func.count().label("n"),
            func.max(d.external_url).label("url"),
            func.max(d.last_error).label("error"),
            func.max(d.attempts).label("attempts"),
            func.max(d.updated_at).label("updated_at"),
        )
        .join(alert_versions, alert_versions.c.id == d.version_id)
        .where(alert_versions.c.alert_id == alert_id)
        .group_by(*key, d.target_mode, d.kind, d.state)
    )
    async with engine.connect() as connection:
        found = (await connection.execute(query)).all()
    rows: dict[tuple[Any, ...], BoardRow] = {}
    for r in found:
        row = rows.setdefault(
            (r.number, r.channel, r.target, r.kind),
            BoardRow(r.number, r.msg_type, r.channel, r.target, r.target_mode, r.kind),
        )
        row.counts[r.state] = row.counts.get(r.state, 0) + int(r.n)
        row.url = row.url or r.url
        if r.state in FAILED or (r.error and row.error is None):
            row.error = r.error or row.error
        row.attempts = max(row.attempts, int(r.attempts or 0))
        if r.updated_at is not None and (row.updated_at is None or r.updated_at > row.updated_at):
            row.updated_at = r.updated_at
    return sorted(rows.values(), key=lambda x: (-x.version_number, x.channel, x.target, x.kind))


def summary(rows: list[BoardRow]) -> dict[str, int]:
    totals = {"total": 0, "delivered": 0, "waiting": 0, "failed": 0}
    for row in rows:
        totals["total"] += row.total
        totals["delivered"] += row.counts.get("delivered", 0)
        totals["failed"] += sum(row.counts.get(s, 0) for s in FAILED)
        totals["waiting"] += sum(row.counts.get(s, 0) for s in WAITING)
    return totals


@pages.page(
    "GET", r"/console/alerts/{alert_id:\d+}/deliveries", title="Delivery board", permission=VIEW
)
async def board(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    alert_id = path_id(request, "alert_id")
    view = await load_alert(request, alert_id)
    rows = await board_rows(request.app[ENGINE], alert_id)
    return render_page(
        request,
        "board.html",
        viewer,
        title=f"Delivery board: alert {alert_id}",
        view=view,
        alert=view.alert,
        look=mode_look(view.alert.mode),
        rows=rows,
        totals=summary(rows),
        words=STATE_WORDS,
        may_draft=viewer.can(Permission.draft_alerts),
    )


@pages.page(
    "GET",
    r"/console/alerts/{alert_id:\d+}/deliveries/rows",
    title="Delivery board",
    permission=VIEW,
)
async def board_fragment(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    alert_id = path_id(request, "alert_id")
    view = await load_alert(request, alert_id)
    rows = await board_rows(request.app[ENGINE], alert_id)
    return render_page(
        request,
        "_board_rows.html",
        viewer,
        title="Delivery board",
        alert=view.alert,
        rows=rows,
        totals=summary(rows),
        words=STATE_WORDS,
    )


@pages.page(
    "GET",
    r"/console/alerts/{alert_id:\d+}/deliveries/events",
    title="Delivery board updates",
    permission=VIEW,
)
async def board_events(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    alert_id = path_id(request, "alert_id")
    await load_alert(request, alert_id)  # 404 for an alert that does not exist
    engine = request.app[ENGINE]
    query = (
        select(func.count(), func.max(deliveries.c.updated_at), func.max(deliveries.c.id))
        .join(alert_versions, alert_versions.c.id == deliveries.c.version_id)
        .where(alert_versions.c.alert_id == alert_id)
    )

    async def fingerprint() -> object:
        async with engine.connect() as connection:
            return tuple((await connection.execute(query)).one())

    return await stream(request, fingerprint)
