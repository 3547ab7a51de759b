"""How a failed Graph API call becomes a ChannelError, for the Facebook Page and Instagram
channels alike: Graph's error body, its HTTP status and usage headers, or the network failing.

Kept apart from the client because it is one decision table, read on its own: which failures are
worth retrying and after how long, which need someone to fix a token or a permission, and which
may have published (AmbiguousError), so the dispatcher reconciles before it tries again.

Graph errors become the ChannelError tree (`graph_error`):

    190, 102, 10, 200-299           AuthError       token expired/revoked or permission missing
    100 "appsecret_proof"           AuthError       app_secret is not the token's app's
    4, 17, 32, 613, 800xx,          TransientError  rate limits; wait from Retry-After or the
    9/2207042                                       usage headers' estimated_time_to_regain_access
    506 (1455006), 368, 100, ...    PermanentError  duplicate, blocked, invalid
    1, 2, is_transient, HTTP 5xx    AmbiguousError  when the call may have published (koala#699:
                                                    code 2 / HTTP 500 after the post was made);
                                    TransientError  otherwise
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

import requests
from urllib3.exceptions import NewConnectionError

from channels.base import AmbiguousError, AuthError, ChannelError, PermanentError, TransientError

__all__ = ["graph_error", "network_error", "retry_after_from_headers"]

# Graph's throttling codes: app (4), user (17), page (32), API-specific (613) and Business Use
# Case limits (80000-80014: 80001 Pages, 80002 Instagram, ...).
RATE_LIMIT_CODES: Final = frozenset({4, 17, 32, 613, *range(80000, 80015)})
AUTH_CODES: Final = frozenset({102, 190, 10, *range(200, 300)})
# Instagram's content-publishing quota (100 posts per moving 24 hours).
IG_PUBLISH_QUOTA: Final = (9, 2207042)
# Instagram could not fetch the card: our public media route was unreachable, or not a JPEG.
IG_MEDIA_FETCH: Final = (9004, 2207052)
_TOKEN_SUBCODES: Final = {
    458: "the app was removed by the user",
    459: "the user's account is checkpointed",
    460: "the password changed",
    463: "the token expired",
    464: "the user is unconfirmed",
    467: "the token is invalid or was revoked",
}


def graph_error(
    body: Mapping[str, Any] | None,
    status: int | None,
    headers: Mapping[str, str],
    *,
    doing: str,
    may_publish: bool,
    secrets: Sequence[str] = (),
) -> ChannelError:
    """The ChannelError for one failed Graph call: its error body, HTTP status and headers."""
    error = body.get("error") if body is not None else None
    if not isinstance(error, Mapping):
        return _without_graph_body(status, doing, may_publish)
    code = _int(error.get("code"))
    subcode = _int(error.get("error_subcode"))
    detail = _scrub(str(error.get("message") or "no message"), secrets)
    user_msg = error.get("error_user_msg")
    if user_msg:
        detail += f" ({_scrub(str(user_msg), secrets)})"
    label = f"{code}/{subcode}" if subcode else str(code)
    said = f"{doing}: Graph error {label} (HTTP {status}): {detail}"

    if code in AUTH_CODES:
        why = _TOKEN_SUBCODES.get(subcode or 0, "")
        what_to_do = (
            "grant the app the missing permission"
            if code not in (102, 190)
            else "create a new long-lived access token and update the target's credentials"
        )
        reason = f" ({why})" if why else ""
        return AuthError(f"{said}{reason}; {what_to_do}", status=status, code=label)
    if code == 100 and "appsecret_proof" in detail:
        # Code 100 is "invalid parameter", but this parameter is the app secret's signature.
        return AuthError(
            f"{said}; the app_secret credential does not belong to the app that issued the "
            "access token: update it from the app's dashboard (Settings > Basic)",
            status=status,
            code=label,
        )
    if code in RATE_LIMIT_CODES or (code, subcode) == IG_PUBLISH_QUOTA:
        return TransientError(
            f"{said}; rate limited: wait before posting again",
            retry_after=retry_after_from_headers(headers),
            status=status,
            code=label,
        )
    if (code, subcode) == IG_MEDIA_FETCH:
        # Nothing was published (the container was refused), so trying again is safe; it fails
        # until the card URL is public and serves a JPEG.
        return TransientError(
            f"{said}; Instagram could not fetch the alert card: check that card_base_url is "
            "reachable from the internet and serves image/jpeg",
            retry_after=retry_after_from_headers(headers),
            status=status,
            code=label,
        )
    if code == 506:
        return PermanentError(
            f"{said}; the Page refused a duplicate of a recent post: the alert is probably "
            "already there (find_published looks)",
            status=status,
            code=label,
        )
    if code == 368:
        return PermanentError(
            f"{said}; Meta has blocked this account from posting for now: an administrator "
            "must review the account in Meta Business Suite",
            status=status,
            code=label,
        )
    server_side = code in (1, 2) or bool(error.get("is_transient")) or (status or 0) >= 500
    if server_side:
        if may_publish:
            return AmbiguousError(
                f"{said}; Graph failed after receiving the post, which may exist (Graph is "
                "known to answer code 2 / HTTP 500 after creating it): reconcile first",
                status=status,
                code=label,
            )
        return TransientError(
            f"{said}; Graph is failing, try again",
            retry_after=retry_after_from_headers(headers),
            status=status,
            code=label,
        )
    return PermanentError(f"{said}; Graph refused the request as it is", status=status, code=label)


def _without_graph_body(status: int | None, doing: str, may_publish: bool) -> ChannelError:
    said = f"{doing}: Graph answered HTTP {status} without a Graph error body"
    if status is not None and status < 500 and status not in (408, 429):
        return PermanentError(said, status=status)
    if may_publish:
        return AmbiguousError(f"{said}; the post may exist: reconcile first", status=status)
    return TransientError(said, status=status)


def retry_after_from_headers(
    headers: Mapping[str, str], now: datetime | None = None
) -> float | None:
    """Seconds to wait: Retry-After (seconds or HTTP date) when present, it is the most precise;
    else the largest estimated_time_to_regain_access (minutes) in the usage headers."""
    lowered = {key.lower(): value for key, value in headers.items()}
    retry_after = lowered.get("retry-after")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                when = parsedate_to_datetime(retry_after)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    minutes = [
        minutes
        for name in (
            "x-business-use-case-usage",
            "x-app-usage",
            "x-page-usage",
            "x-ad-account-usage",
        )
        for minutes in _regain_minutes(lowered.get(name))
    ]
    return max(minutes) * 60.0 if minutes and max(minutes) > 0 else None


def _regain_minutes(header: str | None) -> list[float]:
    if not header:
        return []
    try:
        usage = json.loads(header)
    except ValueError:
        return []
    found: list[float] = []
    pending: list[object] = [usage]
    while pending:  # BUC nests {"<id>": [{...}]}; the others are flat objects
        item = pending.pop()
        if isinstance(item, Mapping):
            value = item.get("estimated_time_to_regain_access")
            if isinstance(value, int | float) and math.isfinite(value):
                found.append(float(value))
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return found


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return text


def network_error(error: requests.RequestException, doing: str, may_publish: bool) -> ChannelError:
    """A request Graph never answered: a write that may have gone out is ambiguous, anything else
    can be tried again."""
    kind = type(error).__name__
    never_sent = isinstance(error, requests.ConnectTimeout) or _caused_by(error, NewConnectionError)
    if never_sent:
        return TransientError(f"{doing}: could not connect to Graph ({kind}); nothing was sent")
    if may_publish:
        return AmbiguousError(
            f"{doing}: the connection failed after the request was sent ({kind}); it may have "
            "been published: reconcile before retrying"
        )
    return TransientError(f"{doing}: the connection to Graph failed ({kind})")


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        pending.extend(current.args)
    return False
