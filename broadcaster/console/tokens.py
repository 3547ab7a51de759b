"""A person's own API tokens, from their account page: create one, revoke one.

A new token's value is shown once, in the answer to the form that created it, with a warning to
copy it now; it is never stored (only its SHA-256), never put in a URL, a redirect or a log, and
the page says so. Anyone signed in may hold tokens: a token acts with its person's role, so it
can do nothing they could not do in the console. Every creation and revocation is audited with
the token's id and name, never its value or hash. A revoked token is refused from the next
request on. Administrators revoke all of a person's tokens from the Users page (console/admin.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from aiohttp import web

from broadcaster import audit
from broadcaster.api.framework import path_id
from broadcaster.auth.tokens import (
    TokenError,
    create_token,
    created_details,
    revoke_token,
    revoked_details,
)
from broadcaster.auth.web_sessions import SESSIONS
from broadcaster.console.alert_forms import text
from broadcaster.console.pages import HOME_PATH, Access, Pages, Viewer, see_other
from broadcaster.console.sign_in import account_page
from broadcaster.web_errors import ApiError
from broadcaster.web_keys import ENGINE

pages = Pages()
ACCOUNT: Final = f"{HOME_PATH}/account"
NAME_MAX: Final = 100  # the column's length
DAYS_MAX: Final = 3650
NAME_FIELD: Final = "token_name"
DAYS_FIELD: Final = "token_days"


def _check(name: str, days_text: str) -> tuple[dict[str, str], int | None]:
    """The form's errors (by field) and the number of days (None: never expires)."""
    errors: dict[str, str] = {}
    if not name:
        errors[NAME_FIELD] = "Give the token a name that says what it is for."
    elif len(name) > NAME_MAX:
        errors[NAME_FIELD] = f"The name is too long: at most {NAME_MAX} characters."
    days = None
    if days_text:
        if days_text.isdigit() and 1 <= int(days_text) <= DAYS_MAX:
            days = int(days_text)
        else:
            errors[DAYS_FIELD] = (
                f"Enter a whole number of days from 1 to {DAYS_MAX}, or leave it empty for a "
                "token that does not expire."
            )
    return errors, days


def _entry(viewer: Viewer, action: str, **details: object) -> audit.AuditEntry:
    return audit.AuditEntry(
        actor=viewer.user.username,
        action=action,
        subject=f"user:{viewer.user.username}",
        source_address=viewer.source_address,
        details=dict(details),
    )


@pages.page("POST", "/console/account/tokens", title="Create an API token", access=Access.signed_in)
async def create(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    form = await request.post()
    name, days_text = text(form, NAME_FIELD), text(form, DAYS_FIELD)
    errors, days = _check(name, days_text)
    if errors:
        return await account_page(
            request,
            viewer,
            status=422,
            token_errors=errors,
            token_values={NAME_FIELD: name, DAYS_FIELD: days_text},
        )
    now = request.app[SESSIONS].clock()
    async with request.app[ENGINE].begin() as connection:
        issued = await create_token(
            connection,
            viewer.user.id,
            name,
            valid_for=timedelta(days=days) if days else None,
            now=now,
        )
        await audit.append(
            connection,
            _entry(viewer, "token.create", **created_details(issued, name)),
            at=now,
        )
    # Shown on this answer only (never a redirect: the value must not reach a URL or a log).
    return await account_page(
        request,
        viewer,
        created_token={"id": issued.id, "name": name, "value": issued.value},
    )


@pages.page(
    "POST",
    "/console/account/tokens/{token_id}/revoke",
    title="Revoke an API token",
    access=Access.signed_in,
)
async def revoke(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    token_id = path_id(request, "token_id")
    now = request.app[SESSIONS].clock()
    try:
        async with request.app[ENGINE].begin() as connection:
            done = await revoke_token(connection, token_id, user_id=viewer.user.id, now=now)
            await audit.append(
                connection,
                _entry(viewer, "token.revoke", **revoked_details(done)),
                at=now,
            )
    except TokenError:
        # Unknown and someone else's are answered alike: ids of others' tokens stay unknown.
        raise ApiError(
            404, "Not found", f"You have no API token {token_id}. Nothing was revoked."
        ) from None
    done_key = "token_revoked_already" if done.already else "token_revoked"
    return see_other(f"{ACCOUNT}?done={done_key}")
