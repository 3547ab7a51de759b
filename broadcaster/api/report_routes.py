"""The triage API: the queue of public reports, most urgent first, what responders do to them,
the live queue (server-sent events), incidents, the redacted CSV export and rumour control."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.alert import Area, Circle
from broadcaster import audit
from broadcaster.api.framework import Api, Caller, path_id
from broadcaster.api.report_models import (
    AssignRequest,
    CloseRequest,
    DuplicateRequest,
    IncidentList,
    IncidentQuery,
    ReplyRequest,
    ReportList,
    ReportQuery,
    RumourRequest,
    RumourStarted,
    ViewerList,
)
from broadcaster.auth.permissions import Permission
from broadcaster.triage import export, rumour, store
from broadcaster.triage.filters import AreaFilter, ReportFilter
from broadcaster.triage.runtime import TRIAGE
from broadcaster.triage.service import (
    InvalidRequest,
    NotFound,
    PolicyRefused,
    ReplyFailed,
    Responder,
    StateConflict,
)
from broadcaster.triage.states import OPEN, Action, ReportState
from broadcaster.triage.views import IncidentOut, ReplyOut, ReportOut
from broadcaster.web_errors import ApiError, FieldError
from broadcaster.web_keys import ALERTS, ENGINE

api = Api()
T = TypeVar("T")
KEEP_ALIVE_SECONDS = 15.0
_EVENTS_PER_WRITE = 200
_EXPORT_MAX = 200_000


@asynccontextmanager
async def _as_api_errors() -> AsyncIterator[None]:
    try:
        yield
    except NotFound as error:
        raise ApiError(404, "Not Found", str(error)) from None
    except StateConflict as error:
        raise ApiError(409, "Conflict", str(error), extra={"state": error.state}) from None
    except InvalidRequest as error:
        raise ApiError(
            422,
            "Unprocessable Content",
            str(error),
            fields=[FieldError(error.field, str(error))],
        ) from None
    except PolicyRefused as error:
        raise ApiError(403, "Forbidden", str(error), extra={"rule": error.rule}) from None
    except ReplyFailed as error:
        raise ApiError(
            502, "Bad Gateway", str(error), extra={"reply": error.reply.model_dump(mode="json")}
        ) from None


# The console's pages answer the same refusals the same way.
as_api_errors = _as_api_errors


async def _run(action: Awaitable[T]) -> T:
    async with _as_api_errors():
        return await action


def _responder(caller: Caller) -> Responder:
    return Responder(caller.user, caller.source_address)


async def report_filter(
    connection: AsyncConnection, query: ReportQuery, *, default_open: bool = True
) -> ReportFilter:
    """The query's filter; an unknown alert in `area` is a 422 naming the field."""
    states: frozenset[ReportState] | None
    parts = {part.strip() for part in (query.state or "").split(",") if part.strip()}
    if not parts:
        states = OPEN if default_open else None
    elif "all" in parts:
        states = None
    else:
        states = frozenset(
            state for part in parts for state in (OPEN if part == "open" else {ReportState(part)})
        )
    area: AreaFilter | None = None
    if query.area is not None:
        if query.area.startswith("alert:"):
            alert_id = int(query.area[len("alert:") :])
            areas = await store.alert_areas(connection, alert_id)
            if areas is None:
                message = f"there is no alert {alert_id}"
                raise ApiError(
                    422,
                    "Unprocessable Content",
                    message,
                    fields=[FieldError("query.area", message)],
                )
            area = AreaFilter(areas, query.area)
        else:
            lat, lon, km = (float(part) for part in query.area.split(","))
            circle = Circle(lat=lat, lon=lon, radius_km=km)
            area = AreaFilter((Area(description="filter", circles=(circle,)),), query.area)
    sources = (
        frozenset(part.strip() for part in query.source.split(",") if part.strip())
        if query.source
        else None
    )
    return ReportFilter(
        states=states,
        min_priority=query.min_priority,
        max_priority=query.max_priority,
        sources=sources,
        incident_id=query.incident,
        area=area,
    )


# --- the queue -----------------------------------------------------------------------------------


@api.route(
    "GET",
    "/reports",
    summary="The queue: reports most urgent first, with the reasons for their priority.",
    permission=Permission.work_reports,
    query=ReportQuery,
    response=ReportList,
    tag="reports",
)
async def list_reports(request: web.Request, _caller: Caller, query: ReportQuery) -> ReportList:
    async with request.app[ENGINE].connect() as connection:
        wanted = await report_filter(connection, query)
        found = await store.list_reports(connection, wanted, limit=query.limit, offset=query.offset)
    return ReportList(reports=found, limit=query.limit, offset=query.offset)


@api.route(
    "GET",
    "/reports/events",
    summary="The live queue as server-sent events (report, report_left, viewing, resync), "
    "with the same filters as GET /reports.",
    permission=Permission.work_reports,
    query=ReportQuery,
    tag="reports",
)
async def report_events(
    request: web.Request, _caller: Caller, query: ReportQuery
) -> web.StreamResponse:
    async with request.app[ENGINE].connect() as connection:
        wanted = await report_filter(connection, query)
    hub = request.app[TRIAGE].hub
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not hold events back
        }
    )
    subscription = hub.subscribe(wanted)
    try:
        await response.prepare(request)
        await response.write(b"retry: 3000\n: connected\n\n")
        while True:
            try:
                event = await asyncio.wait_for(subscription.queue.get(), KEEP_ALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if event is None:
                break
            chunk = [event.encode()]
            # In a flood, send what is waiting in one write.
            while len(chunk) < _EVENTS_PER_WRITE and not subscription.queue.empty():
                following = subscription.queue.get_nowait()
                if following is None:
                    await response.write(b"".join(chunk))
                    return response
                chunk.append(following.encode())
            await response.write(b"".join(chunk))
    except (ConnectionResetError, ConnectionError):
        pass  # the responder closed the page
    finally:
        hub.unsubscribe(subscription)
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


@api.route(
    "GET",
    "/reports/export.csv",
    summary="Reports as CSV with personal data redacted (names, contacts, numbers, addresses).",
    permission=Permission.work_reports,
    query=ReportQuery,
    tag="reports",
)
async def export_reports(
    request: web.Request, caller: Caller, query: ReportQuery
) -> web.StreamResponse:
    engine = request.app[ENGINE]
    async with engine.connect() as connection:
        wanted = await report_filter(connection, query, default_open=False)
    async with engine.begin() as connection:
        await audit.append(
            connection,
            audit.AuditEntry(
                actor=caller.actor,
                action="report.export",
                subject="reports",
                source_address=caller.source_address,
                details={"query": query.model_dump(exclude_none=True)},
            ),
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="reports.csv"',
        }
    )
    await response.prepare(request)
    async with engine.connect() as connection:
        found = store.export_reports(connection, wanted, limit=_EXPORT_MAX)
        async for line in export.csv_lines_async(found):
            await response.write(line.encode())
    await response.write_eof()
    return response


@api.route(
    "GET",
    "/reports/{report_id}",
    summary="One report with its replies and who is viewing it.",
    permission=Permission.work_reports,
    response=ReportOut,
    errors=(404,),
    tag="reports",
)
async def get_report(request: web.Request, _caller: Caller) -> ReportOut:
    report_id = path_id(request, "report_id")
    return await _run(request.app[TRIAGE].service.get(report_id))


def _action_route(
    action: Action, summary: str
) -> Callable[[Callable[..., Awaitable[ReportOut]]], Callable[..., Awaitable[ReportOut]]]:
    return api.route(
        "POST",
        f"/reports/{{report_id}}/{action.value}",
        summary=summary,
        permission=Permission.work_reports,
        body={
            Action.acknowledge: None,
            Action.assign: AssignRequest,
            Action.duplicate: DuplicateRequest,
        }.get(action, CloseRequest),
        response=ReportOut,
        errors=(404, 409, 422) if action is not Action.acknowledge else (404, 409),
        tag="reports",
    )


@_action_route(Action.acknowledge, "Say you have seen it (new → acknowledged).")
async def acknowledge_report(request: web.Request, caller: Caller) -> ReportOut:
    return await _act(request, caller, Action.acknowledge)


@_action_route(Action.assign, "Give it to a responder (yourself by default).")
async def assign_report(request: web.Request, caller: Caller, body: AssignRequest) -> ReportOut:
    return await _act(request, caller, Action.assign, assignee=body.to, note=body.note)


@_action_route(Action.resolve, "Dealt with.")
async def resolve_report(request: web.Request, caller: Caller, body: CloseRequest) -> ReportOut:
    return await _close(request, caller, Action.resolve, body)


@_action_route(Action.dismiss, "Nothing to do (spam, chatter, not ours).")
async def dismiss_report(request: web.Request, caller: Caller, body: CloseRequest) -> ReportOut:
    return await _close(request, caller, Action.dismiss, body)


@_action_route(Action.duplicate, "Repeats another report (`of`), which is worked instead.")
async def duplicate_report(
    request: web.Request, caller: Caller, body: DuplicateRequest
) -> ReportOut:
    return await _close(request, caller, Action.duplicate, body, duplicate_of=body.of)


@_action_route(
    Action.misinformation, "False; marks its incident as misinformation (rumour control)."
)
async def misinformation_report(
    request: web.Request, caller: Caller, body: CloseRequest
) -> ReportOut:
    return await _close(request, caller, Action.misinformation, body)


async def _act(
    request: web.Request,
    caller: Caller,
    action: Action,
    *,
    assignee: str | None = None,
    note: str | None = None,
) -> ReportOut:
    report_id = path_id(request, "report_id")
    service = request.app[TRIAGE].service
    return await _run(
        service.act(_responder(caller), report_id, action, assignee=assignee, note=note)
    )


async def _close(
    request: web.Request,
    caller: Caller,
    action: Action,
    body: CloseRequest,
    *,
    duplicate_of: int | None = None,
) -> ReportOut:
    report_id = path_id(request, "report_id")
    service = request.app[TRIAGE].service
    return await _run(
        service.act(
            _responder(caller),
            report_id,
            action,
            duplicate_of=duplicate_of,
            note=body.note,
            whole_incident=body.whole_incident,
        )
    )


@api.route(
    "POST",
    "/reports/{report_id}/viewing",
    summary="Say you have this report open; call again every 30 s while you do.",
    permission=Permission.work_reports,
    response=ViewerList,
    errors=(404,),
    tag="reports",
)
async def viewing_report(request: web.Request, caller: Caller) -> ViewerList:
    report_id = path_id(request, "report_id")
    service = request.app[TRIAGE].service
    return ViewerList(viewers=await _run(service.viewing(_responder(caller), report_id)))


# --- replies -------------------------------------------------------------------------------------


@api.route(
    "POST",
    "/reports/{report_id}/reply",
    summary="Answer the reporter on their channel: a canned reply, or free text as the reply "
    "policy allows (it may wait for a second responder).",
    permission=Permission.work_reports,
    body=ReplyRequest,
    response=ReplyOut,
    status=201,
    errors=(403, 404, 409, 422, 502),
    tag="reports",
)
async def reply_to_report(request: web.Request, caller: Caller, body: ReplyRequest) -> ReplyOut:
    report_id = path_id(request, "report_id")
    service = request.app[TRIAGE].service
    return await _run(
        service.reply(_responder(caller), report_id, canned=body.canned, text=body.text)
    )


async def _decide(request: web.Request, caller: Caller, *, approve: bool) -> ReplyOut:
    report_id = path_id(request, "report_id")
    reply_id = path_id(request, "reply_id")
    service = request.app[TRIAGE].service
    return await _run(
        service.decide_reply(_responder(caller), report_id, reply_id, approve=approve)
    )


@api.route(
    "POST",
    "/reports/{report_id}/replies/{reply_id}/approve",
    summary="Approve (and so send) another responder's free-text reply.",
    permission=Permission.work_reports,
    response=ReplyOut,
    errors=(403, 404, 409, 502),
    tag="reports",
)
async def approve_reply(request: web.Request, caller: Caller) -> ReplyOut:
    return await _decide(request, caller, approve=True)


@api.route(
    "POST",
    "/reports/{report_id}/replies/{reply_id}/reject",
    summary="Refuse another responder's free-text reply; it is never sent.",
    permission=Permission.work_reports,
    response=ReplyOut,
    errors=(403, 404, 409),
    tag="reports",
)
async def reject_reply(request: web.Request, caller: Caller) -> ReplyOut:
    return await _decide(request, caller, approve=False)


# --- incidents -----------------------------------------------------------------------------------


@api.route(
    "GET",
    "/incidents",
    summary="Incidents (near-duplicate reports grouped), most urgent first, with their size.",
    permission=Permission.work_reports,
    query=IncidentQuery,
    response=IncidentList,
    tag="reports",
)
async def list_incidents(
    request: web.Request, _caller: Caller, query: IncidentQuery
) -> IncidentList:
    async with request.app[ENGINE].connect() as connection:
        found = await store.list_incidents(
            connection,
            misinformation=query.misinformation,
            min_reports=query.min_reports,
            state=query.state,
            limit=query.limit,
            offset=query.offset,
        )
    return IncidentList(incidents=found)


@api.route(
    "GET",
    "/incidents/{incident_id}",
    summary="One incident.",
    permission=Permission.work_reports,
    response=IncidentOut,
    errors=(404,),
    tag="reports",
)
async def get_incident(request: web.Request, _caller: Caller) -> IncidentOut:
    incident_id = path_id(request, "incident_id")
    async with request.app[ENGINE].connect() as connection:
        found = await store.get_incident(connection, incident_id)
    if found is None:
        raise ApiError(404, "Not Found", f"there is no incident {incident_id}")
    return found


@api.route(
    "POST",
    "/incidents/{incident_id}/rumour-control",
    summary="Start a rumour-control alert DRAFT for a misinformation incident; a duty officer "
    "completes and submits it, and it goes out only through approval.",
    permission=Permission.work_reports,
    body=RumourRequest,
    response=RumourStarted,
    status=201,
    errors=(404, 409, 422),
    tag="reports",
)
async def rumour_control(
    request: web.Request, caller: Caller, body: RumourRequest
) -> RumourStarted:
    incident_id = path_id(request, "incident_id")
    triage = request.app[TRIAGE]
    try:
        alert_id = await _run(
            rumour.start_rumour_control(
                request.app[ENGINE],
                request.app[ALERTS],
                triage.rules,
                _responder(caller),
                incident_id,
                claim=body.claim,
                channels=body.channels,
            )
        )
    except ValueError as error:  # the draft content is invalid (e.g. a bad channel name)
        message = str(error)
        raise ApiError(
            422, "Unprocessable Content", message, fields=[FieldError("channels", message)]
        ) from None
    return RumourStarted(incident_id=incident_id, alert_id=alert_id)
