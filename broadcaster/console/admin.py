"""The administrator's pages: people and roles, channel accounts with their health and the
pause switch (breach response), the audit log with its verification, and data retention.

Every change is audited, and any change to a person ends their open sessions so it applies at
once. An administrator cannot demote, disable or reset themselves here: the service must never
be left with nobody to run it because of one click. Revoking all of a person's API tokens (a
leaked token, a breached account) applies at once too, since every API request looks its token
up; it leaves their console sessions alone (disable them for that), and an administrator may do
it to their own tokens.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Final

from aiohttp import web
from sqlalchemy import func, select, update

from approvals.roles import Role
from broadcaster import audit, users
from broadcaster.api.framework import path_id
from broadcaster.auth.passwords import WeakPassword, check_strength, hash_password
from broadcaster.auth.permissions import Permission
from broadcaster.auth.tokens import live_token_counts, revoke_all_tokens, revoked_all_details
from broadcaster.auth.web_sessions import SESSIONS
from broadcaster.console.alert_forms import text
from broadcaster.console.housekeeping import purge as purge_console
from broadcaster.console.pages import Pages, Viewer, see_other
from broadcaster.console.render import render_page
from broadcaster.dispatch import control, status
from broadcaster.storage.schema import audit_log, channel_state, deliveries, reports
from broadcaster.storage.schema import users as user_table
from broadcaster.triage.runtime import TRIAGE
from broadcaster.users import UserError
from broadcaster.web_errors import ApiError
from broadcaster.web_keys import ENGINE, OUTBOX, SETTINGS

pages = Pages()
USERS = Permission.manage_users
CHANNELS = Permission.manage_channels
AUDIT = Permission.view_audit
AUDIT_PAGE: Final = 100
DEAD_LETTERS_SHOWN: Final = 50  # the newest; the API pages through the rest


async def _audit(
    request: web.Request, viewer: Viewer, action: str, subject: str, **details: Any
) -> None:
    async with request.app[ENGINE].begin() as connection:
        await audit.append(
            connection,
            audit.AuditEntry(
                actor=viewer.user.username,
                action=action,
                subject=subject,
                source_address=viewer.source_address,
                details=details or None,
            ),
        )


# --- people ------------------------------------------------------------------------------------


async def _users_page(
    request: web.Request,
    viewer: Viewer,
    *,
    status: int = 200,
    message: str | None = None,
    created: tuple[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> web.Response:
    async with request.app[ENGINE].connect() as connection:
        people = await users.list_users(connection)
        enrolled = {
            row.username
            for row in await connection.execute(
                select(user_table.c.username).where(user_table.c.totp_secret.is_not(None))
            )
        }
        live_tokens = await live_token_counts(connection, now=request.app[SESSIONS].clock())
    return render_page(
        request,
        "users.html",
        viewer,
        title="Users and roles",
        status=status,
        people=people,
        enrolled=enrolled,
        live_tokens=live_tokens,
        roles=[role.value for role in Role],
        message=message,
        created=created,
        values=values or {},
    )


@pages.page("GET", "/console/admin/users", title="Users and roles", permission=USERS)
async def users_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    return await _users_page(request, viewer)


@pages.page("POST", "/console/admin/users", title="Add a person", permission=USERS)
async def add_person(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    form = await request.post()
    values = {name: text(form, name) for name in ("username", "display_name", "role", "rank")}
    password = text(form, "password") or secrets.token_urlsafe(12)
    try:
        role = Role(values["role"])
        rank = int(values["rank"] or "0")
        users.check_username(values["username"])
        check_strength(password)
    except (ValueError, UserError, WeakPassword) as error:
        return await _users_page(request, viewer, status=422, message=str(error), values=values)
    password_hash = await asyncio.to_thread(hash_password, password)  # argon2: off the loop
    try:
        async with request.app[ENGINE].begin() as connection:
            person = await users.add_user(
                connection,
                values["username"],
                role,
                password=None,
                display_name=values["display_name"] or None,
                rank=rank,
            )
            await connection.execute(
                update(user_table)
                .where(user_table.c.id == person.id)
                .values(password_hash=password_hash)
            )
    except UserError as error:
        return await _users_page(request, viewer, status=409, message=str(error), values=values)
    await _audit(request, viewer, "user.add", f"user:{person.username}", role=role.value, rank=rank)
    # The password is shown once, on this answer only (never in a redirect or a log).
    return await _users_page(request, viewer, created=(person.username, password))


async def _anyone(request: web.Request) -> users.User:
    name = request.match_info["username"]
    async with request.app[ENGINE].connect() as connection:
        person = await users.get_user(connection, name)
    if person is None:
        raise ApiError(404, "Not found", f"There is no user {name!r}.")
    return person


async def _person(request: web.Request, viewer: Viewer) -> users.User:
    person = await _anyone(request)
    if person.id == viewer.user.id:
        raise ApiError(
            409,
            "Not on yourself",
            "You cannot change your own role, access or second factor here; ask another "
            "administrator (or use `broadcaster user` at the server).",
        )
    return person


@pages.page("POST", "/console/admin/users/{username}/role", title="Change role", permission=USERS)
async def change_role(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    person = await _person(request, viewer)
    form = await request.post()
    try:
        role = Role(text(form, "role"))
    except ValueError:
        return await _users_page(request, viewer, status=422, message="Choose one of the roles.")
    async with request.app[ENGINE].begin() as connection:
        _, before = await users.set_role(connection, person.username, role)
    await request.app[SESSIONS].end_all(person.id)
    await _audit(
        request,
        viewer,
        "user.set_role",
        f"user:{person.username}",
        before=before.value,
        after=role.value,
    )
    return see_other("/console/admin/users?done=user_changed")


@pages.page(
    "POST", "/console/admin/users/{username}/active", title="Enable or disable", permission=USERS
)
async def set_active(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    person = await _person(request, viewer)
    active = text(await request.post(), "active") == "true"
    async with request.app[ENGINE].begin() as connection:
        await connection.execute(
            update(user_table).where(user_table.c.id == person.id).values(active=active)
        )
    await request.app[SESSIONS].end_all(person.id)
    await _audit(request, viewer, "user.set_active", f"user:{person.username}", active=active)
    return see_other("/console/admin/users?done=user_changed")


@pages.page(
    "POST",
    "/console/admin/users/{username}/reset-second-factor",
    title="Reset second factor",
    permission=USERS,
)
async def reset_second_factor(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    person = await _person(request, viewer)
    async with request.app[ENGINE].begin() as connection:
        await connection.execute(
            update(user_table)
            .where(user_table.c.id == person.id)
            .values(totp_secret=None, totp_last_step=None)
        )
    await request.app[SESSIONS].end_all(person.id)
    await _audit(request, viewer, "user.totp_reset", f"user:{person.username}")
    return see_other("/console/admin/users?done=user_changed")


@pages.page(
    "POST",
    "/console/admin/users/{username}/revoke-tokens",
    title="Revoke all API tokens",
    permission=USERS,
)
async def revoke_tokens(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    person = await _anyone(request)
    async with request.app[ENGINE].begin() as connection:
        revoked = await revoke_all_tokens(connection, person.id, now=request.app[SESSIONS].clock())
        # By id and name only: never a token's value, prefix or hash.
        await audit.append(
            connection,
            audit.AuditEntry(
                actor=viewer.user.username,
                action="token.revoke_all",
                subject=f"user:{person.username}",
                source_address=viewer.source_address,
                details=revoked_all_details(revoked),
            ),
        )
    done = "tokens_revoked" if revoked else "tokens_none"
    return see_other(f"/console/admin/users?done={done}")


# --- channels ----------------------------------------------------------------------------------


async def _channels(request: web.Request) -> list[dict[str, Any]]:
    directory = request.app[SETTINGS].directory
    async with request.app[ENGINE].connect() as connection:
        states = {row.target: row for row in await connection.execute(select(channel_state))}
        waiting = {
            (row.target, row.state): int(row.n)
            for row in await connection.execute(
                select(deliveries.c.target, deliveries.c.state, func.count().label("n"))
                .where(deliveries.c.state.in_(["held", "dead", "retry_wait", "queued"]))
                .group_by(deliveries.c.target, deliveries.c.state)
            )
        }
    found = []
    for configured in sorted(directory, key=lambda c: (c.channel_class.name, c.name)):
        row = states.get(configured.name)
        found.append(
            {
                "name": configured.name,
                "channel": configured.channel_class.name,
                "mode": configured.target.mode.value,
                "paused": bool(row.paused) if row else False,
                "pause_reason": row.pause_reason if row else None,
                "paused_at": row.paused_at if row else None,
                "breaker": row.breaker_state if row else "closed",
                "last_success_at": row.last_success_at if row else None,
                "last_error": row.last_error if row else None,
                "rate_reset_at": row.rate_reset_at if row else None,
                "counts": {
                    state: waiting.get((configured.name, state), 0)
                    for state in ("queued", "retry_wait", "held", "dead")
                },
            }
        )
    return found


@pages.page("GET", "/console/admin/channels", title="Channels", permission=CHANNELS)
async def channels_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    async with request.app[ENGINE].connect() as connection:
        given_up = await status.delivery_list(connection, "dead", DEAD_LETTERS_SHOWN, None)
    return render_page(
        request,
        "channels.html",
        viewer,
        title="Channels",
        targets=await _channels(request),
        dead=given_up.deliveries,
        dead_shown=DEAD_LETTERS_SHOWN,
    )


@pages.page(
    "POST",
    "/console/admin/deliveries/{delivery_id}/requeue",
    title="Try a delivery again",
    permission=CHANNELS,
)
async def requeue(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    delivery_id = path_id(request, "delivery_id")
    try:
        async with request.app[ENGINE].begin() as connection:
            await control.requeue(
                connection,
                delivery_id,
                _who(viewer),
                request.app[SESSIONS].clock(),
                request.app[OUTBOX].wake,
            )
    except control.DeliveryNotFound as error:
        raise ApiError(404, "Not found", str(error)) from None
    except control.NotDead:
        # Requeued already (a double click, or another administrator): nothing more to do.
        return see_other("/console/admin/channels?done=requeued_already")
    return see_other("/console/admin/channels?done=requeued")


def _who(viewer: Viewer) -> control.Who:
    return control.Who(viewer.user.username, viewer.user.id, viewer.source_address)


@pages.page(
    "POST", "/console/admin/channels/{target}/pause", title="Pause channel", permission=CHANNELS
)
async def pause(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    reason = text(await request.post(), "reason") or None
    try:
        async with request.app[ENGINE].begin() as connection:
            await control.pause(
                connection,
                request.app[SETTINGS].directory,
                request.match_info["target"],
                _who(viewer),
                reason,
                request.app[SESSIONS].clock(),
            )
    except control.TargetNotFound as error:
        raise ApiError(404, "Not found", str(error)) from None
    return see_other("/console/admin/channels?done=paused")


@pages.page(
    "POST", "/console/admin/channels/{target}/resume", title="Resume channel", permission=CHANNELS
)
async def resume(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    try:
        async with request.app[ENGINE].begin() as connection:
            await control.resume(
                connection,
                request.app[SETTINGS].directory,
                request.match_info["target"],
                _who(viewer),
                request.app[SESSIONS].clock(),
            )
    except control.TargetNotFound as error:
        raise ApiError(404, "Not found", str(error)) from None
    return see_other("/console/admin/channels?done=resumed")


# --- audit log ---------------------------------------------------------------------------------


@pages.page("GET", "/console/audit", title="Audit log", permission=AUDIT)
async def audit_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    before_text = request.query.get("before", "")
    before = int(before_text) if before_text.isdigit() and len(before_text) < 18 else None
    query = select(audit_log).order_by(audit_log.c.seq.desc()).limit(AUDIT_PAGE + 1)
    if before is not None:
        query = query.where(audit_log.c.seq < before)
    async with request.app[ENGINE].connect() as connection:
        rows = (await connection.execute(query)).all()
        verification = await audit.verify(connection) if request.query.get("verify") else None
    entries = rows[:AUDIT_PAGE]
    return render_page(
        request,
        "audit.html",
        viewer,
        title="Audit log",
        entries=entries,
        older=entries[-1].seq if len(rows) > AUDIT_PAGE and entries else None,
        verification=verification,
    )


# --- retention ---------------------------------------------------------------------------------


@pages.page("GET", "/console/admin/retention", title="Data retention", permission=USERS)
async def retention_page(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    triage = request.app[TRIAGE]
    async with request.app[ENGINE].connect() as connection:
        total = int(await connection.scalar(select(func.count()).select_from(reports)) or 0)
        oldest = await connection.scalar(select(func.min(reports.c.received_at)))
    return render_page(
        request,
        "retention.html",
        viewer,
        title="Data retention",
        retention_days=triage.settings.retention_days,
        reports_total=total,
        oldest=oldest,
        purged=request.query.get("purged"),
    )


@pages.page("POST", "/console/admin/retention/purge", title="Purge now", permission=USERS)
async def purge_now(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    removed = await request.app[TRIAGE].purge()
    await purge_console(request.app[SESSIONS])
    return see_other(f"/console/admin/retention?purged={int(removed)}")
