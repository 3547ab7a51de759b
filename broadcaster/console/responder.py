"""The responder's pages: the live queue of what the public sends back, most urgent first with
the reasons for each priority, and the free-text replies waiting for a second responder; one
report with who else has it open; acknowledge, assign, resolve, dismiss, mark as duplicate or
misinformation; reply, and approve or refuse another responder's held reply; and the incidents
(reports grouped because they say the same), from which a misinformation incident's
rumour-control alert draft is started.

Every action goes through the same service calls as the triage API (TriageService.act, .reply,
.decide_reply; rumour.start_rumour_control), so the rules, the audit log and the send path live
in one place; their refusals come back as a message on the page, with the API's status.

The queue refreshes itself from the triage API's live stream (GET /api/v1/reports/events,
opened with the console's session cookie); the page only fetches its rows again.
"""

from __future__ import annotations

import re
from typing import Any, Final

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
from broadcaster.triage import rumour, store
from broadcaster.triage.filters import ReportFilter
from broadcaster.triage.runtime import TRIAGE
from broadcaster.triage.service import Responder
from broadcaster.triage.states import OPEN, Action, ReplyState
from broadcaster.web_errors import ApiError
from broadcaster.web_keys import ALERTS, ENGINE

pages = Pages()
WORK = Permission.work_reports
QUEUE_LIMIT: Final = 100
HELD_LIMIT: Final = 20  # held replies listed on the queue page (all are counted)
# What the report page offers; duplicate also takes the number of the report it repeats.
ACTIONS: Final = {
    Action.acknowledge: "Acknowledge",
    Action.assign: "Assign",
    Action.resolve: "Resolve",
    Action.dismiss: "Dismiss",
    Action.duplicate: "Mark as duplicate",
    Action.misinformation: "Mark as misinformation",
}
# A report number as typed ("1234" or "#1234"); 18 digits at most, so it fits either database.
REPORT_NUMBER: Final = re.compile(r"#?\s*([0-9]{1,18})")


async def _queue(request: web.Request) -> dict[str, Any]:
    async with request.app[ENGINE].connect() as connection:
        found = await store.list_reports(connection, ReportFilter(states=OPEN), limit=QUEUE_LIMIT)
        held_total, held = await store.held_replies(connection, limit=HELD_LIMIT)
    return {"reports": list(found), "held_total": held_total, "held": held}


@pages.page("GET", "/console/reports", title="Public reports", permission=WORK)
async def queue(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return render_page(
        request, "reports.html", viewer, title="Public reports", **await _queue(request)
    )


@pages.page("GET", "/console/reports/rows", title="Public reports", permission=WORK)
async def queue_rows(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return render_page(
        request, "_report_rows.html", viewer, title="Public reports", **await _queue(request)
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
    held = [r for r in report.replies if r.state is ReplyState.pending_approval]
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
        held=held,
        replies=[r for r in report.replies if r.state is not ReplyState.pending_approval],
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
    duplicate_of: int | None = None
    if action is Action.duplicate:
        number = REPORT_NUMBER.fullmatch(text(form, "duplicate_of"))
        if number is None:
            return await _report_page(
                request,
                viewer,
                report_id,
                status=422,
                message="To mark it as a duplicate, give the number of the report it repeats "
                "(for example 1234).",
            )
        duplicate_of = int(number.group(1))
    who = Responder(viewer.user, viewer.source_address)
    try:
        async with as_api_errors():
            await request.app[TRIAGE].service.act(
                who,
                report_id,
                action,
                assignee=text(form, "assignee") or None,
                duplicate_of=duplicate_of,
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


async def _decide(request: web.Request, viewer: Viewer, *, approve: bool) -> web.StreamResponse:
    """Approve (and so send) or refuse a held free-text reply, as the API's approve/reject do:
    the service refuses its writer, a reply no longer waiting, and a reporter who opted out."""
    report_id = path_id(request, "report_id")
    reply_id = path_id(request, "reply_id")
    who = Responder(viewer.user, viewer.source_address)
    try:
        async with as_api_errors():
            await request.app[TRIAGE].service.decide_reply(
                who, report_id, reply_id, approve=approve
            )
    except ApiError as error:
        return await _report_page(
            request, viewer, report_id, status=error.status, message=error.detail
        )
    done = "reply_approved" if approve else "reply_refused"
    return see_other(f"/console/reports/{report_id}?done={done}")


@pages.page(
    "POST",
    r"/console/reports/{report_id:\d+}/replies/{reply_id:\d+}/approve",
    title="Approve a reply",
    permission=WORK,
)
async def approve_reply(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return await _decide(request, viewer, approve=True)


@pages.page(
    "POST",
    r"/console/reports/{report_id:\d+}/replies/{reply_id:\d+}/reject",
    title="Refuse a reply",
    permission=WORK,
)
async def reject_reply(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return await _decide(request, viewer, approve=False)


async def _incidents_page(
    request: web.Request, viewer: Viewer, *, status: int = 200, message: str | None = None
) -> web.Response:
    async with request.app[ENGINE].connect() as connection:
        found = await store.list_incidents(
            connection, misinformation=None, min_reports=1, state=None, limit=100, offset=0
        )
    return render_page(
        request,
        "incidents.html",
        viewer,
        title="Incidents",
        status=status,
        message=message,
        incidents=found,
    )


@pages.page("GET", "/console/incidents", title="Incidents", permission=WORK)
async def incidents(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return await _incidents_page(request, viewer)


@pages.page(
    "POST",
    r"/console/incidents/{incident_id:\d+}/rumour-control",
    title="Rumour control",
    permission=WORK,
)
async def rumour_control(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    """Start a misinformation incident's rumour-control alert DRAFT (as the API's
    POST /incidents/{id}/rumour-control), then show it: a duty officer completes and submits it."""
    incident_id = path_id(request, "incident_id")
    form = await request.post()
    triage = request.app[TRIAGE]
    who = Responder(viewer.user, viewer.source_address)
    try:
        async with as_api_errors():
            alert_id = await rumour.start_rumour_control(
                request.app[ENGINE],
                request.app[ALERTS],
                triage.rules,
                who,
                incident_id,
                claim=text(form, "claim") or None,
                channels=None,
            )
    except ApiError as error:
        return await _incidents_page(request, viewer, status=error.status, message=error.detail)
    except ValueError as error:  # the draft content is invalid
        return await _incidents_page(
            request, viewer, status=422, message=f"The draft could not be made: {error}"
        )
    return see_other(f"/console/alerts/{alert_id}?done=rumour_started")
