"""Rendering console pages: one Jinja2 environment (autoescaped), the navigation each role
sees, and how ACTUAL and EXERCISE look, spelled once for every page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

import broadcaster
from broadcaster.auth.permissions import Permission
from broadcaster.auth.sessions import CSRF_FIELD

if TYPE_CHECKING:
    from broadcaster.console.pages import Viewer


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    permission: Permission | None  # None: everyone signed in


NAV: Final = (
    NavItem("Home", "/console", None),
    NavItem("Alerts", "/console/alerts", Permission.view_alerts),
    NavItem("New alert", "/console/alerts/new", Permission.draft_alerts),
    NavItem("Approvals", "/console/approvals", Permission.approve_alerts),
    NavItem("Public reports", "/console/reports", Permission.work_reports),
    NavItem("Users", "/console/admin/users", Permission.manage_users),
    NavItem("Channels", "/console/admin/channels", Permission.manage_channels),
    NavItem("Audit log", "/console/audit", Permission.view_audit),
)


@dataclass(frozen=True)
class ModeLook:
    """How an alert's mode is shown: never by colour alone (a word, a pattern, a border)."""

    css: str
    label: str  # the one word, in capitals, on every badge and banner
    banner: str  # the sentence under it
    submit: str  # the submit button's words


MODE_LOOKS: Final = {
    "live": ModeLook(
        "actual",
        "ACTUAL",
        "A REAL ALERT. It goes to the public on live accounts. People will act on it.",
        "Submit ACTUAL alert for approval",
    ),
    "exercise": ModeLook(
        "exercise",
        "EXERCISE",
        "A drill. It goes only to exercise accounts and is marked EXERCISE on every channel.",
        "Submit exercise for approval",
    ),
    "internal": ModeLook(
        "internal",
        "INTERNAL",
        "A system or draft message. It never reaches the public.",
        "Submit",
    ),
}


def mode_look(mode: str) -> ModeLook:
    return MODE_LOOKS.get(mode, MODE_LOOKS["internal"])


# Fixed messages shown after an action (?done=KEY): never text from the query string itself.
NOTICES: Final = {
    "second_factor": "Your new authenticator is set up. Codes from the old one no longer work.",
    "drafted": "Draft saved. Check every channel below before you submit.",
    "edited": "Changes saved. Any approvals given before were voided.",
    "submitted": "Submitted. Approvers have been asked to sign it off.",
    "recalled": "Taken back to draft. Approvals given before no longer count.",
    "withdrawn": "Withdrawn. It will never be sent.",
    "approved": "Your approval is recorded.",
    "released": "Approved and released: deliveries are under way.",
    "rejected": "Rejected. The author sees your reason.",
    "cancelled": "Cancel sent: every channel the alert reached is being told.",
    "correction": "Correction drafted from the template. Complete it, check it, submit it.",
    "paused": "Channel paused. Nothing more is sent to it until it is resumed.",
    "resumed": "Channel resumed. Held deliveries are queued again.",
    "requeued": "Queued again with a fresh set of tries (held instead, if its channel is paused).",
    "requeued_already": "That delivery was already queued again; nothing more to do.",
    "user_added": "Person added. Give them their password in person or by phone.",
    "user_changed": "Saved. Their open sessions were ended.",
    "token_revoked": "Token revoked. Anything that uses it is refused from now on.",
    "token_revoked_already": "That token was already revoked; nothing more to do.",
    "tokens_revoked": "Their live API tokens were revoked. Anything that uses them is refused "
    "from now on. Their console sessions were left as they were.",
    "tokens_none": "They had no live API tokens; nothing was revoked.",
    "report_done": "Done.",
    "replied": "Reply recorded.",
    "reply_approved": "Reply approved and sent.",
    "reply_refused": "Reply refused. It will never be sent.",
    "rumour_started": "Rumour-control draft started. A duty officer completes it and submits it "
    "for approval; it goes out only once approved.",
}


def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _words(value: str) -> str:
    return value.replace("_", " ")


environment = Environment(
    loader=PackageLoader("broadcaster.console", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,  # a misspelt name fails the page test, never renders blank
    enable_async=False,
)
environment.filters["when"] = _when
environment.filters["words"] = _words
environment.globals["mode_look"] = mode_look
environment.globals["csrf_field"] = CSRF_FIELD


def nav_for(viewer: Viewer | None, path: str) -> list[dict[str, Any]]:
    if viewer is None:
        return []
    items = [
        item
        for item in NAV
        if viewer.session.stage.value == "complete"
        and (item.permission is None or viewer.can(item.permission))
    ]
    current = max(
        (item.path for item in items if path == item.path or path.startswith(item.path + "/")),
        key=len,
        default=None,
    )
    return [
        {"label": item.label, "path": item.path, "current": item.path == current} for item in items
    ]


def render_page(
    request: web.Request,
    template_name: str,
    viewer: Viewer | None,
    /,
    *,
    title: str,
    status: int = 200,
    **context: Any,
) -> web.Response:
    html = environment.get_template(template_name).render(
        title=title,
        status=status,
        viewer=viewer,
        csrf_token=viewer.csrf_token if viewer is not None else "",
        nav=nav_for(viewer, request.path),
        app_version=broadcaster.__version__,
        notice=NOTICES.get(request.query.get("done", "")),
        **context,
    )
    return web.Response(text=html, content_type="text/html", status=status)
