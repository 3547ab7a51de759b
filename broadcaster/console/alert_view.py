"""Alerts as everyone with `view_alerts` sees them: the list, and one alert with its exact text
on every channel side by side, its quorum and its history. The actions on the page are the
ones this person's role and the alert's state allow; each is checked again when it is posted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from approvals.workflow import REPLACEABLE_STATES, VersionState
from broadcaster.alerts import store, views
from broadcaster.alerts.preview import ChannelPreview, preview_channels
from broadcaster.alerts.publication import channel_version
from broadcaster.api.alert_models import AlertOut
from broadcaster.api.framework import path_id
from broadcaster.auth.permissions import Permission
from broadcaster.console.pages import Pages, Viewer
from broadcaster.console.render import mode_look, render_page
from broadcaster.web_errors import ApiError
from broadcaster.web_keys import ALERTS, ENGINE, SETTINGS
from broadcaster.web_public import public_base

pages = Pages()

_EDITABLE = {VersionState.draft.value, VersionState.rejected.value}


@dataclass(frozen=True)
class AlertView:
    alert: AlertOut
    stored: store.StoredVersion
    preview: list[ChannelPreview]

    @property
    def state(self) -> str:
        return self.alert.current.state

    @property
    def editable(self) -> bool:
        return self.state in _EDITABLE

    @property
    def went_out(self) -> bool:
        """Released (or finished): it has a delivery board, and can be cancelled or corrected."""
        return VersionState(self.state) in REPLACEABLE_STATES

    @property
    def replaceable(self) -> bool:
        return self.went_out and self.alert.current.msg_type != "Cancel"

    @property
    def over_limit(self) -> bool:
        return any(not channel.within_limits for channel in self.preview)


async def load_alert(request: web.Request, alert_id: int) -> AlertView:
    service = request.app[ALERTS]
    async with request.app[ENGINE].connect() as connection:
        alert = await views.alert_out(connection, alert_id, service.rules.policy, service.clock())
        current = (
            await store.load_version(connection, alert.current.id) if alert is not None else None
        )
    if alert is None or current is None:
        raise ApiError(404, "Not found", f"There is no alert {alert_id}.")
    version = channel_version(current, public_base(request), service.clock())
    preview = preview_channels(version, request.app[SETTINGS].directory)
    return AlertView(alert, current, preview)


def alert_page(
    request: web.Request,
    viewer: Viewer,
    view: AlertView,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    findings: list[Any] | None = None,
    message: str | None = None,
) -> web.Response:
    content = view.alert.current.content
    headline = content["infos"][0]["headline"]
    return render_page(
        request,
        "alert.html",
        viewer,
        title=f"Alert {view.alert.id}: {headline}",
        status=status,
        view=view,
        preview=view.preview,
        alert=view.alert,
        version=view.alert.current,
        content=content,
        look=mode_look(view.alert.mode),
        errors=errors or {},
        findings=findings or [],
        message=message,
        may_draft=viewer.can(Permission.draft_alerts),
        may_approve=viewer.can(Permission.approve_alerts),
    )


@pages.page("GET", "/console/alerts", title="Alerts", permission=Permission.view_alerts)
async def alert_list(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    state = request.query.get("state") or None
    if state is not None and state not in {s.value for s in VersionState}:
        state = None
    async with request.app[ENGINE].connect() as connection:
        found = await views.alert_list(connection, state=state, limit=100, before=None)
    return render_page(
        request,
        "alerts.html",
        viewer,
        title="Alerts",
        alerts=found.alerts,
        state=state,
        states=[s.value for s in VersionState],
        may_draft=viewer.can(Permission.draft_alerts),
    )


@pages.page(
    "GET", r"/console/alerts/{alert_id:\d+}", title="Alert", permission=Permission.view_alerts
)
async def alert_detail(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    view = await load_alert(request, path_id(request, "alert_id"))
    return alert_page(request, viewer, view)
