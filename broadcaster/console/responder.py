"""The responder's pages: the live queue of what the public sends back, most urgent first with
the reasons for each priority; one report with who else has it open; acknowledge, assign,
reply, resolve or dismiss; and the incidents (reports grouped because they say the same).

The queue refreshes itself from the triage API's live stream (GET /api/v1/reports/events,
opened with the console's session cookie); the page only fetches its rows again.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from sqlalchemy import select

from approvals.roles import Role
from broadcaster.api.framework import path_id
from broadcaster.api.report_routes import as_api_errors
from broadcaster.auth.permissions import Permission, allows
from broadcaster.console.alert_forms import text
from broadcaster.console.pages import Pages, Viewer, see_other
from broadcaster.console.render import render_page
from broadcaster.storage.schema import users
from broadcaster.triage import store
from broadcaster.triage.filters import ReportFilter
from broadcaster.triage.runtime import TRIAGE
from broadcaster.triage.service import Responder
from broadcaster.triage.states import OPEN, Action
from broadcaster.web_errors import ApiError
from broadcaster.web_keys import ENGINE

pages = Pages()
WORK = Permission.work_reports
QUEUE_LIMIT: Final = 100
# What the report page offers; duplicate needs the report it repeats (the API takes it).
ACTIONS: Final = {
    Action.acknowledge: "Acknowledge",
    Action.assign: "Assign",
    Action.resolve: "Resolve",
    Action.dismiss: "Dismiss",
    Action.misinformation: "Mark as misinformation",
}


async def _queue(request: web.Request) -> list[object]:
    async with request.app[ENGINE].connect() as connection:
        found = await store.list_reports(connection, ReportFilter(states=OPEN), limit=QUEUE_LIMIT)
    return list(found)


@pages.page("GET", "/console/reports", title="Public reports", permission=WORK)
async def queue(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return render_page(
        request, "reports.html", viewer, title="Public reports", reports=await _queue(request)
    )


@pages.page("GET", "/console/reports/rows", title="Public reports", permission=WORK)
async def queue_rows(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return render_page(
        request, "_report_rows.html", viewer, title="Public reports", reports=await _queue(request)
    )


async def _responders(request: web.Request) -> list[str]:
    async with request.app[ENGINE].connect() as connection:
        rows = await connection.execute(
            select(users.c.username, users.c.role)
            .where(users.c.active.is_(True))
            .order_by(users.c.username)
        )
        return [row.username for row in rows if allows(Role(row.role), WORK)]


async def _report_page(
    request: web.Request,
    viewer: Viewer,
    report_id: int,
    *,
    status: int = 200,
    message: str | None = None,
) -> web.Response:
    triage = request.app[TRIAGE]
    async with as_api_errors():
        report = await triage.service.get(report_id)
    canned = {name: texts.get("title", name) for name, texts in triage.rules.replies.canned.items()}
    return render_page(
        request,
        "report.html",
        viewer,
        title=f"Report {report_id}",
        status=status,
        report=report,
        message=message,
        actions=ACTIONS,
        open=report.state in OPEN,
        responders=await _responders(request),
        canned=canned,
        free_text=triage.rules.replies.free_text.value,
    )


@pages.page("GET", r"/console/reports/{report_id:\d+}", title="Report", permission=WORK)
async def report_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return await _report_page(request, viewer, path_id(request, "report_id"))


@pages.page("POST", r"/console/reports/{report_id:\d+}/act", title="Report", permission=WORK)
async def act(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    report_id = path_id(request, "report_id")
    form = await request.post()
    chosen = text(form, "action")
    if chosen not in {action.value for action in ACTIONS}:
        return await _report_page(
            request, viewer, report_id, status=422, message=f"Unknown action {chosen!r}."
        )
    action = Action(chosen)
    who = Responder(viewer.user, viewer.source_address)
    try:
        async with as_api_errors():
            await request.app[TRIAGE].service.act(
                who,
                report_id,
                action,
                assignee=text(form, "assignee") or None,
                note=text(form, "note") or None,
            )
    except ApiError as error:
        return await _report_page(
            request, viewer, report_id, status=error.status, message=error.detail
        )
    return see_other(f"/console/reports/{report_id}?done=report_done")


@pages.page("POST", r"/console/reports/{report_id:\d+}/reply", title="Reply", permission=WORK)
async def reply(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    report_id = path_id(request, "report_id")
    form = await request.post()
    canned = text(form, "canned") or None
    written = text(form, "text") or None
    if (canned is None) == (written is None):
        return await _report_page(
            request,
            viewer,
            report_id,
            status=422,
            message="Choose a prepared reply or write one (not both).",
        )
    who = Responder(viewer.user, viewer.source_address)
    try:
        async with as_api_errors():
            await request.app[TRIAGE].service.reply(who, report_id, canned=canned, text=written)
    except ApiError as error:
        return await _report_page(
            request, viewer, report_id, status=error.status, message=error.detail
        )
    return see_other(f"/console/reports/{report_id}?done=replied")


@pages.page("GET", "/console/incidents", title="Incidents", permission=WORK)
async def incidents(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    async with request.app[ENGINE].connect() as connection:
        found = await store.list_incidents(
            connection, misinformation=None, min_reports=1, state=None, limit=100, offset=0
        )
    return render_page(request, "incidents.html", viewer, title="Incidents", incidents=found)
