"""The alert API: draft, edit, submit, approve, reject, withdraw, update, cancel, and read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals import errors as workflow_errors
from approvals.screening import Finding
from broadcaster.alerts import store, views
from broadcaster.alerts.preview import PreviewOut, preview_channels
from broadcaster.alerts.publication import channel_version
from broadcaster.alerts.service import Actor, AlertExpired, AlertNotFound, AlertService, Outcome
from broadcaster.api.alert_models import (
    AlertList,
    AlertListQuery,
    AlertOut,
    ApproveRequest,
    DraftRequest,
    EditRequest,
    FindingOut,
    RejectRequest,
    ReplaceRequest,
    WithdrawRequest,
)
from broadcaster.api.framework import Api, Caller, invalid, path_id
from broadcaster.auth import totp
from broadcaster.auth.permissions import Permission
from broadcaster.web_errors import ApiError, FieldError
from broadcaster.web_keys import ALERTS, ENGINE, SETTINGS
from broadcaster.web_public import public_base
from channels.cap import cap_document

api = Api()


@asynccontextmanager
async def as_api_errors() -> AsyncIterator[None]:
    """Turn the workflow's refusals into 403/404/409/422 answers that say what to do."""
    try:
        yield
    except AlertNotFound as error:
        raise ApiError(404, "Not Found", str(error)) from None
    except AlertExpired as error:
        raise ApiError(409, "Conflict", str(error), extra={"state": "expired"}) from None
    except workflow_errors.NotAllowed as error:
        raise ApiError(403, "Forbidden", error.message, extra={"rule": error.rule}) from None
    except workflow_errors.ScreeningBlocked as error:
        raise ApiError(
            422,
            "Unprocessable Content",
            error.message,
            fields=[FieldError(f.field, f"{f.message} [{f.rule}]") for f in error.findings],
            extra={"findings": [_finding(f).model_dump() for f in error.findings]},
        ) from None
    except workflow_errors.InvalidContent as error:
        raise ApiError(
            422,
            "Unprocessable Content",
            error.message,
            fields=[FieldError(error.field, error.message)],
        ) from None
    except (
        workflow_errors.InvalidTransition,
        workflow_errors.StaleContent,
        workflow_errors.QuorumNotMet,
        workflow_errors.NotDue,
    ) as error:
        state = getattr(error, "state", None)
        raise ApiError(
            409, "Conflict", error.message, extra={"state": state.value if state else None}
        ) from None
    except workflow_errors.TemplateError as error:
        field = "template" if error.field is None else f"values.{error.field}"
        raise ApiError(
            422, "Unprocessable Content", error.message, fields=[FieldError(field, error.message)]
        ) from None
    except ValidationError as error:
        raise invalid(error, prefix="content") from None


def _finding(finding: Finding) -> FindingOut:
    return FindingOut(
        level=finding.level.value, rule=finding.rule, field=finding.field, message=finding.message
    )


def _actor(request: web.Request, caller: Caller, second_factor_at: datetime | None = None) -> Actor:
    return Actor(caller.user, caller.source_address, second_factor_at)


async def _answer(request: web.Request, outcome: Outcome) -> AlertOut:
    service = request.app[ALERTS]
    async with request.app[ENGINE].connect() as connection:
        out = await views.alert_out(
            connection, outcome.alert_id, service.rules.policy, service.clock()
        )
    assert out is not None
    out.findings = [_finding(f) for f in outcome.findings]
    return out


async def _run(
    request: web.Request, action: Callable[[AlertService], Awaitable[Outcome]]
) -> AlertOut:
    async with as_api_errors():
        outcome = await action(request.app[ALERTS])
    return await _answer(request, outcome)


@api.route(
    "POST",
    "/alerts",
    summary="Draft a new alert, from a template or written out.",
    permission=Permission.draft_alerts,
    body=DraftRequest,
    response=AlertOut,
    status=201,
)
async def create_alert(request: web.Request, caller: Caller, body: DraftRequest) -> AlertOut:
    service = request.app[ALERTS]
    async with as_api_errors():
        if body.template is not None:
            content = service.from_template(body.template, body.values, body.channels)
        else:
            assert body.content is not None
            content = body.content
    return await _run(request, lambda s: s.draft(_actor(request, caller), content))


@api.route(
    "GET",
    "/alerts",
    summary="Alerts, newest first, with their current version's state.",
    permission=Permission.view_alerts,
    query=AlertListQuery,
    response=AlertList,
)
async def list_alerts(request: web.Request, _caller: Caller, query: AlertListQuery) -> AlertList:
    async with request.app[ENGINE].connect() as connection:
        return await views.alert_list(
            connection, state=query.state, limit=query.limit, before=query.before
        )


@api.route(
    "GET",
    "/alerts/{alert_id}",
    summary="An alert: its current version with approvals and quorum, and its history.",
    permission=Permission.view_alerts,
    response=AlertOut,
    errors=(404,),
)
async def get_alert(request: web.Request, _caller: Caller) -> AlertOut:
    service = request.app[ALERTS]
    alert_id = path_id(request, "alert_id")
    async with request.app[ENGINE].connect() as connection:
        out = await views.alert_out(connection, alert_id, service.rules.policy, service.clock())
    if out is None:
        raise ApiError(404, "Not Found", f"there is no alert {alert_id}")
    return out


@api.route(
    "PATCH",
    "/alerts/{alert_id}",
    summary="Edit the draft (or rejected) version. Voids every approval.",
    permission=Permission.draft_alerts,
    body=EditRequest,
    response=AlertOut,
    errors=(404, 409),
)
async def edit_alert(request: web.Request, caller: Caller, body: EditRequest) -> AlertOut:
    alert_id = path_id(request, "alert_id")
    return await _run(request, lambda s: s.edit(_actor(request, caller), alert_id, body.content))


@api.route(
    "POST",
    "/alerts/{alert_id}/submit",
    summary="Submit the draft for approval (screening runs first).",
    permission=Permission.draft_alerts,
    response=AlertOut,
    errors=(404, 409, 422),
)
async def submit_alert(request: web.Request, caller: Caller) -> AlertOut:
    alert_id = path_id(request, "alert_id")
    return await _run(request, lambda s: s.submit(_actor(request, caller), alert_id))


@api.route(
    "POST",
    "/alerts/{alert_id}/recall",
    summary="Take a submitted version back to draft to change it. Voids every approval.",
    permission=Permission.draft_alerts,
    response=AlertOut,
    errors=(403, 404, 409),
)
async def recall_alert(request: web.Request, caller: Caller) -> AlertOut:
    alert_id = path_id(request, "alert_id")
    return await _run(request, lambda s: s.recall(_actor(request, caller), alert_id))


@api.route(
    "POST",
    "/alerts/{alert_id}/approve",
    summary="Approve exactly the content you read (its content_hash). Releases at quorum.",
    permission=Permission.approve_alerts,
    body=ApproveRequest,
    response=AlertOut,
    errors=(403, 404, 409),
)
async def approve_alert(request: web.Request, caller: Caller, body: ApproveRequest) -> AlertOut:
    alert_id = path_id(request, "alert_id")
    second_factor_at = None
    if body.totp_code is not None:
        now = datetime.now(UTC)
        try:
            async with request.app[ENGINE].begin() as connection:
                await totp.verify(connection, caller.user.id, body.totp_code, now)
        except totp.SecondFactorError as error:
            raise ApiError(
                422,
                "Unprocessable Content",
                str(error),
                fields=[FieldError("totp_code", str(error))],
            ) from None
        second_factor_at = now
    actor = _actor(request, caller, second_factor_at)
    return await _run(request, lambda s: s.approve(actor, alert_id, body.content_hash))


@api.route(
    "POST",
    "/alerts/{alert_id}/reject",
    summary="Reject the submitted version, with a reason for its author.",
    permission=Permission.approve_alerts,
    body=RejectRequest,
    response=AlertOut,
    errors=(403, 404, 409),
)
async def reject_alert(request: web.Request, caller: Caller, body: RejectRequest) -> AlertOut:
    alert_id = path_id(request, "alert_id")
    return await _run(request, lambda s: s.reject(_actor(request, caller), alert_id, body.reason))


@api.route(
    "POST",
    "/alerts/{alert_id}/withdraw",
    summary="Abandon the version before it is released.",
    permission=Permission.draft_alerts,
    body=WithdrawRequest,
    response=AlertOut,
    errors=(404, 409),
)
async def withdraw_alert(request: web.Request, caller: Caller, body: WithdrawRequest) -> AlertOut:
    alert_id = path_id(request, "alert_id")
    return await _run(request, lambda s: s.withdraw(_actor(request, caller), alert_id, body.reason))


@api.route(
    "POST",
    "/alerts/{alert_id}/update",
    summary="Draft an Update of the released alert (default: its template's correction text).",
    permission=Permission.draft_alerts,
    body=ReplaceRequest,
    response=AlertOut,
    status=201,
    errors=(404, 409),
)
async def update_alert(request: web.Request, caller: Caller, body: ReplaceRequest) -> AlertOut:
    alert_id = path_id(request, "alert_id")
    return await _run(request, lambda s: s.update(_actor(request, caller), alert_id, body.content))


@api.route(
    "POST",
    "/alerts/{alert_id}/cancel",
    summary="Cancel the released alert now. The pre-written cancel text takes the fast path.",
    permission=Permission.draft_alerts,
    body=ReplaceRequest,
    response=AlertOut,
    status=201,
    errors=(404, 409),
)
async def cancel_alert(request: web.Request, caller: Caller, body: ReplaceRequest) -> AlertOut:
    alert_id = path_id(request, "alert_id")
    return await _run(request, lambda s: s.cancel(_actor(request, caller), alert_id, body.content))


@api.route(
    "GET",
    "/alerts/{alert_id}/preview",
    summary="Every channel's exact parts for the current version, with counts against limits.",
    permission=Permission.view_alerts,
    response=PreviewOut,
    errors=(404,),
)
async def preview_alert(request: web.Request, _caller: Caller) -> PreviewOut:
    alert_id = path_id(request, "alert_id")
    service = request.app[ALERTS]
    async with request.app[ENGINE].connect() as connection:
        current = await _current_version(connection, alert_id)
    version = channel_version(current, public_base(request), service.clock())
    return PreviewOut(
        alert_id=alert_id,
        version_id=current.id,
        content_hash=current.record.content_hash,
        channels=preview_channels(version, request.app[SETTINGS].directory),
    )


@api.route(
    "GET",
    "/alerts/{alert_id}/cap.xml",
    summary="The CAP 1.2 document of the alert's newest released version.",
    permission=Permission.view_alerts,
    errors=(404, 409),
)
async def alert_cap(request: web.Request, _caller: Caller) -> web.Response:
    alert_id = path_id(request, "alert_id")
    async with request.app[ENGINE].connect() as connection:
        released = await store.newest_released(connection, alert_id)
    if released is None:
        raise ApiError(
            409,
            "Conflict",
            f"alert {alert_id} has no released version yet; CAP identity is given at release",
        )
    version = channel_version(released, public_base(request), request.app[ALERTS].clock())
    return web.Response(body=cap_document(version), content_type="application/cap+xml")


async def _current_version(connection: AsyncConnection, alert_id: int) -> store.StoredVersion:
    alert = await store.get_alert(connection, alert_id)
    if alert is None or alert.current_version_id is None:
        raise ApiError(404, "Not Found", f"there is no alert {alert_id}")
    current = await store.load_version(connection, alert.current_version_id)
    assert current is not None
    return current
