"""The approver's pages: the queue of submitted alerts, and the review of one - its exact text on
every channel, what changed since the version it replaces, its quorum - with approve (a fresh
second-factor code where the rule asks for one) or reject with a reason.

The approval binds to the content hash the approver was shown (a hidden field): if the alert
changed after the page was drawn, the approval is refused and the page says to read it again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from approvals._policy_rules import format_duration
from approvals.policy import Approver, Rule
from broadcaster.alerts import store, views
from broadcaster.alerts.service import Actor
from broadcaster.api.alert_routes import as_api_errors
from broadcaster.api.framework import path_id
from broadcaster.auth import totp
from broadcaster.auth.permissions import Permission
from broadcaster.console import diff
from broadcaster.console.alert_forms import text
from broadcaster.console.alert_view import AlertView, load_alert
from broadcaster.console.pages import Pages, Viewer, see_other
from broadcaster.console.render import mode_look, render_page
from broadcaster.web_errors import ApiError
from broadcaster.web_keys import ALERTS, ENGINE

pages = Pages()
APPROVE = Permission.approve_alerts


def _rule(request: web.Request, view: AlertView) -> Rule:
    return request.app[ALERTS].rules.policy.rule_for(view.stored.record.context)


async def _previous(request: web.Request, view: AlertView) -> store.StoredVersion | None:
    replaced = view.stored.record.replaces
    if replaced is None:
        return None
    async with request.app[ENGINE].connect() as connection:
        return await store.load_version(connection, replaced)


async def _review_page(
    request: web.Request,
    viewer: Viewer,
    alert_id: int,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    message: str | None = None,
) -> web.Response:
    view = await load_alert(request, alert_id)
    service = request.app[ALERTS]
    now = service.clock()
    rule = _rule(request, view)
    previous = await _previous(request, view)
    # Judged as if the code were given now: the form asks for it, so only the other reasons
    # (author, role, rank, refused) decide whether approving is offered at all.
    eligible = service.rules.policy.eligibility(
        rule,
        Approver(viewer.user.id, viewer.user.role, viewer.user.rank, second_factor_at=now),
        view.stored.record.authors,
        now,
    )
    already = any(a.approver == viewer.user.username for a in view.alert.current.approvals)
    return render_page(
        request,
        "review.html",
        viewer,
        title=f"Review alert {alert_id}",
        status=status,
        view=view,
        alert=view.alert,
        version=view.alert.current,
        content=view.alert.current.content,
        preview=view.preview,
        look=mode_look(view.alert.mode),
        rule=rule,
        fresh_window=format_duration(rule.fresh_second_factor)
        if rule.fresh_second_factor
        else None,
        eligible=eligible,
        already=already,
        previous=previous,
        changes=diff.changes(
            previous.record.content if previous else None, view.stored.record.content
        ),
        errors=errors or {},
        message=message,
    )


@pages.page("GET", "/console/approvals", title="Approvals", permission=APPROVE)
async def queue(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    service = request.app[ALERTS]
    waiting: list[Any] = []
    async with request.app[ENGINE].connect() as connection:
        found = await views.alert_list(connection, state="submitted", limit=200, before=None)
        for summary in found.alerts:
            out = await views.alert_out(
                connection, summary.id, service.rules.policy, service.clock()
            )
            if out is not None:
                waiting.append(out)
    return render_page(
        request,
        "approvals.html",
        viewer,
        title="Waiting for approval",
        alerts=waiting,
        me=viewer.user.username,
    )


@pages.page("GET", r"/console/approvals/{alert_id:\d+}", title="Review alert", permission=APPROVE)
async def review(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return await _review_page(request, viewer, path_id(request, "alert_id"))


async def _second_factor(
    request: web.Request, viewer: Viewer, rule: Rule, code: str, now: datetime
) -> datetime | None:
    """When the code was verified (it is then used up), or None when the rule needs none and
    none was typed. Raises ApiError(422) for a wrong or reused code."""
    if not code and rule.fresh_second_factor is None:
        return None
    if not code:
        raise ApiError(
            422,
            "Code needed",
            "This alert needs a fresh code from your authenticator app to approve.",
            fields=[],
            extra={"field": "code"},
        )
    try:
        async with request.app[ENGINE].begin() as connection:
            await totp.verify(connection, viewer.user.id, code, now)
    except totp.SecondFactorError as error:
        raise ApiError(
            422, "Code refused", f"Code refused: {error}.", extra={"field": "code"}
        ) from None
    return now


@pages.page(
    "POST", r"/console/approvals/{alert_id:\d+}/approve", title="Approve", permission=APPROVE
)
async def approve(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    alert_id = path_id(request, "alert_id")
    form = await request.post()
    seen_hash = text(form, "content_hash")
    view = await load_alert(request, alert_id)
    service = request.app[ALERTS]
    try:
        verified = await _second_factor(
            request, viewer, _rule(request, view), text(form, "code"), service.clock()
        )
        actor = Actor(viewer.user, viewer.source_address, verified)
        async with as_api_errors():
            await service.approve(actor, alert_id, seen_hash)
    except ApiError as error:
        field = error.extra.get("field")
        return await _review_page(
            request,
            viewer,
            alert_id,
            status=error.status,
            errors={str(field): error.detail} if field else {},
            message=None if field else error.detail,
        )
    after = await load_alert(request, alert_id)
    done = "released" if after.went_out else "approved"
    return see_other(f"/console/approvals?done={done}")


@pages.page("POST", r"/console/approvals/{alert_id:\d+}/reject", title="Reject", permission=APPROVE)
async def reject(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    alert_id = path_id(request, "alert_id")
    reason = text(await request.post(), "reason")
    if not reason:
        return await _review_page(
            request,
            viewer,
            alert_id,
            status=422,
            errors={"reason": "Say why, so the duty officer can put it right."},
        )
    actor = Actor(viewer.user, viewer.source_address)
    try:
        async with as_api_errors():
            await request.app[ALERTS].reject(actor, alert_id, reason[:2000])
    except ApiError as error:
        return await _review_page(
            request, viewer, alert_id, status=error.status, message=error.detail
        )
    return see_other("/console/approvals?done=rejected")
