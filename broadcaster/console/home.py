"""The console's home page: what needs this person now, by role."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import func, select

from broadcaster.auth.permissions import Permission
from broadcaster.console.pages import Access, Pages, Viewer
from broadcaster.console.render import render_page
from broadcaster.storage.schema import alert_versions, alerts, channel_state, reports
from broadcaster.triage.states import OPEN
from broadcaster.web_keys import ENGINE

pages = Pages()


async def _count_current(request: web.Request, states: tuple[str, ...]) -> int:
    async with request.app[ENGINE].connect() as connection:
        found = await connection.scalar(
            select(func.count())
            .select_from(alerts)
            .join(alert_versions, alert_versions.c.id == alerts.c.current_version_id)
            .where(alert_versions.c.state.in_(states))
        )
    return int(found or 0)


@pages.page("GET", "/console", title="Console", access=Access.signed_in)
async def console_home(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    counts: dict[str, int] = {}
    engine = request.app[ENGINE]
    if viewer.can(Permission.draft_alerts):
        counts["drafts"] = await _count_current(request, ("draft", "rejected"))
    if viewer.can(Permission.approve_alerts):
        counts["pending"] = await _count_current(request, ("submitted",))
    if viewer.can(Permission.work_reports):
        async with engine.connect() as connection:
            counts["reports"] = int(
                await connection.scalar(
                    select(func.count())
                    .select_from(reports)
                    .where(reports.c.state.in_([state.value for state in OPEN]))
                )
                or 0
            )
    if viewer.can(Permission.manage_channels):
        async with engine.connect() as connection:
            counts["paused"] = int(
                await connection.scalar(
                    select(func.count())
                    .select_from(channel_state)
                    .where(channel_state.c.paused.is_(True))
                )
                or 0
            )
    return render_page(
        request,
        "home.html",
        viewer,
        title=f"Hello, {viewer.user.display_name}",
        counts=counts,
        can={permission.value: viewer.can(permission) for permission in Permission},
    )
