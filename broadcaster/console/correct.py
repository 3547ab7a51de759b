"""Cancel & correct: one button on every alert that went out, leading to its paired texts,
already written and shown exactly as each channel will carry them.

Two ways out, side by side on one page and worded apart:
- Correct it: an Update drafted from the template's paired correction (on every channel the
  wrong post is corrected, edited or deleted and the correction posted, as each platform
  allows). The officer completes the right information, then it is submitted and approved like
  any alert.
- Cancel it now: the template's pre-written cancel, which the default policy sends at once
  with no approval (correcting fast matters as much as control).
Decide before drafting: while a correction draft exists it is the alert's current version, and
the workflow only cancels a released version.

An alert written out by hand has no paired texts; its correction starts as a copy of it, and
its cancel is a hand-written one that one other person must read first.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from approvals import lifecycle
from approvals.alert import AlertContent, MsgType
from broadcaster.alerts.preview import ChannelPreview, preview_channels
from broadcaster.alerts.publication import PREVIEW_IDENTIFIER, PREVIEW_SENDER, alert_page_url
from broadcaster.alerts.service import Actor
from broadcaster.api.alert_routes import as_api_errors
from broadcaster.api.framework import path_id
from broadcaster.auth.permissions import Permission
from broadcaster.console.alert_view import AlertView, alert_page, load_alert
from broadcaster.console.pages import Pages, Viewer, see_other
from broadcaster.console.render import mode_look, render_page
from broadcaster.web_errors import ApiError
from broadcaster.web_keys import ALERTS, SETTINGS
from broadcaster.web_public import public_base
from channels.base import AlertVersion

pages = Pages()
DRAFT = Permission.draft_alerts
CANCELLED_PREFIX = "CANCELLED: "


def _references(view: AlertView) -> tuple[str, ...]:
    return lifecycle.references_for(view.stored.record)


def correction(request: web.Request, view: AlertView) -> tuple[AlertContent, bool]:
    """The Update to draft, and whether it is the template's paired text."""
    original = view.stored.record.content
    if original.template is not None:
        templates = request.app[ALERTS].rules.templates
        return templates.correction_for(original, _references(view)), True
    data = original.model_dump(mode="json")
    data.update(msg_type=MsgType.update.value, references=list(_references(view)))
    return AlertContent.model_validate(data), False


def cancellation(request: web.Request, view: AlertView) -> tuple[AlertContent, bool]:
    """The Cancel to send, and whether it is the template's pre-written (fast path) text."""
    original = view.stored.record.content
    if original.template is not None:
        templates = request.app[ALERTS].rules.templates
        return templates.cancel_for(original, _references(view)), True
    data = original.model_dump(mode="json")
    for info in data["infos"]:
        info["headline"] = (CANCELLED_PREFIX + info["headline"])[:160]
        info["instruction"] = "This alert is cancelled. You do not need to do anything."
    data.update(msg_type=MsgType.cancel.value, references=list(_references(view)))
    return AlertContent.model_validate(data), False


def _preview(request: web.Request, view: AlertView, content: AlertContent) -> list[ChannelPreview]:
    now: datetime = request.app[ALERTS].clock()
    version = AlertVersion(
        alert_id=view.alert.id,
        version_id=0,
        number=view.stored.number + 1,
        identifier=PREVIEW_IDENTIFIER,
        sender=PREVIEW_SENDER,
        sent=now,
        content=content,
        public_url=alert_page_url(public_base(request), view.alert.id),
    )
    return preview_channels(version, request.app[SETTINGS].directory)


async def _replaceable(request: web.Request, viewer: Viewer, alert_id: int) -> AlertView:
    view = await load_alert(request, alert_id)
    if not view.replaceable:
        raise ApiError(
            409,
            "Nothing to cancel or correct",
            f"Alert {alert_id} is {view.state.replace('_', ' ')} ({view.alert.current.msg_type}): "
            "only an alert that went out, and is not itself a Cancel, can be cancelled or "
            "corrected. Open the alert to see its current version.",
        )
    return view


@pages.page(
    "GET", r"/console/alerts/{alert_id:\d+}/correct", title="Cancel & correct", permission=DRAFT
)
async def correct_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    view = await _replaceable(request, viewer, path_id(request, "alert_id"))
    fix, paired = correction(request, view)
    cancel, prewritten = cancellation(request, view)
    return render_page(
        request,
        "correct.html",
        viewer,
        title=f"Cancel & correct alert {view.alert.id}",
        view=view,
        alert=view.alert,
        look=mode_look(view.alert.mode),
        correction_preview=_preview(request, view, fix),
        cancel_preview=_preview(request, view, cancel),
        paired=paired,
        prewritten=prewritten,
    )


@pages.page(
    "POST", r"/console/alerts/{alert_id:\d+}/correct", title="Cancel & correct", permission=DRAFT
)
async def draft_correction(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    view = await _replaceable(request, viewer, path_id(request, "alert_id"))
    fix, paired = correction(request, view)
    actor = Actor(viewer.user, viewer.source_address)
    try:
        async with as_api_errors():
            # With the template, the service writes the paired text itself (the same as `fix`).
            await request.app[ALERTS].update(actor, view.alert.id, None if paired else fix)
    except ApiError as error:
        return alert_page(request, viewer, view, status=error.status, message=error.detail)
    return see_other(f"/console/alerts/{view.alert.id}?done=correction")


@pages.page(
    "POST", r"/console/alerts/{alert_id:\d+}/cancel", title="Cancel alert", permission=DRAFT
)
async def cancel_now(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    view = await _replaceable(request, viewer, path_id(request, "alert_id"))
    cancel, prewritten = cancellation(request, view)
    actor = Actor(viewer.user, viewer.source_address)
    try:
        async with as_api_errors():
            await request.app[ALERTS].cancel(actor, view.alert.id, None if prewritten else cancel)
    except ApiError as error:
        return alert_page(request, viewer, view, status=error.status, message=error.detail)
    after = await load_alert(request, view.alert.id)
    if after.went_out:
        return see_other(f"/console/alerts/{view.alert.id}/deliveries?done=cancelled")
    return see_other(f"/console/alerts/{view.alert.id}?done=submitted")
