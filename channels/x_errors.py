"""How a failed call to X becomes a ChannelError: tweepy's HTTP errors, read with X's own words
and reset times, and the network and parsing failures around them.

Kept apart from the channel because it is one decision table, read on its own: which failures
are worth retrying, which need someone to fix the credentials, and which may have posted
(AmbiguousError), so the dispatcher reconciles before it tries again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from json import JSONDecodeError
from typing import Any, Final

import aiohttp
import tweepy.errors
from pydantic import ValidationError

from channels.base import AmbiguousError, AuthError, ChannelError, PermanentError, TransientError

__all__ = ["map_error"]

# 403 bodies that mean the credentials, the app or the account cannot post at all.
_AUTH_PROBLEMS: Final = (
    "unsupported-authentication",
    "client-forbidden",
    "oauth1-permissions",
    "suspended",
    "locked",
)
_DUPLICATE: Final = "duplicate content"
_REPLY_TARGET_GONE: Final = "deleted or not visible"


async def map_error(error: Exception, where: str, *, write: bool) -> ChannelError:
    """One tweepy/aiohttp failure as a ChannelError. `write`: the request may have changed
    something (a new post), so a lost answer means "may have posted"."""
    if isinstance(error, ChannelError):
        return error
    if isinstance(error, tweepy.errors.HTTPException):
        return _from_http(error, await _problem(error.response), where, write=write)
    if isinstance(error, aiohttp.ClientConnectorError):
        # Never connected: nothing was sent, so even a write can simply be tried again.
        return TransientError(f"{where}: cannot connect to X ({type(error).__name__})")
    if isinstance(error, aiohttp.ClientResponseError):  # e.g. an HTML error page from a proxy
        return _by_status(error.status, f"{where}: HTTP {error.status} without X's JSON", write)
    if isinstance(error, TimeoutError | aiohttp.ClientError | ValidationError | JSONDecodeError):
        what = "no answer in time" if isinstance(error, TimeoutError) else type(error).__name__
        message = f"{where}: the answer was lost ({what})"
        if write:
            return AmbiguousError(message + "; it may have posted: reconcile before retrying")
        return TransientError(message)
    # Not a failure X or the network should cause (a tweepy bug, say): the caller keeps the
    # traceback through `raise ... from`, and a write still counts as "may have posted".
    message = f"{where}: unexpected {type(error).__name__}"
    return AmbiguousError(message) if write else TransientError(message)


async def _problem(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """X's error body: a v2 problem ({title, detail, type, status}) and/or {errors: [...]}.
    tweepy already read it, so this parses the buffered body again."""
    try:
        body = await response.json(content_type=None)
    except (aiohttp.ClientError, JSONDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _words(problem: Mapping[str, Any]) -> str:
    """X's own words for an error: the detail (else the title) and each error's message."""
    said = [str(problem.get("detail") or problem.get("title") or "")]
    for item in problem.get("errors") or ():
        if isinstance(item, dict):
            said.append(str(item.get("message") or item.get("detail") or ""))
    return "; ".join(dict.fromkeys(word for word in said if word))


def _from_http(error: Any, problem: Mapping[str, Any], where: str, *, write: bool) -> ChannelError:
    response = error.response
    status = int(response.status)
    said = _words(problem)
    message = f"{where}: {status} {said}".rstrip()
    lowered = f"{said} {problem.get('type', '')} {problem.get('reason', '')}".lower()
    if status == 429:
        return TransientError(message, retry_after=_retry_after(response.headers), status=status)
    if status == 401:
        return AuthError(
            message + ": X rejected the credentials; check consumer key/secret and access "
            "token/secret, and regenerate them if they were revoked",
            status=status,
        )
    if status == 403:
        if _DUPLICATE in lowered:
            return PermanentError(
                message + " (X refuses the same text twice; if this is a retry, the first attempt "
                "posted it: find_published returns it)",
                status=status,
                code="duplicate",
            )
        if _REPLY_TARGET_GONE in lowered:
            # Right after part 1 is posted X sometimes does not see it yet; if it was deleted,
            # the retries run out and the delivery is dead-lettered.
            return TransientError(message, retry_after=5.0, status=status, code="reply-target")
        if any(problem_kind in lowered for problem_kind in _AUTH_PROBLEMS):
            return AuthError(
                message + ": check the app has read and write permission, uses OAuth 1.0a user "
                "context, and the account is in good standing",
                status=status,
            )
        return PermanentError(message, status=status)
    return _by_status(status, message, write)


def _by_status(status: int, message: str, write: bool) -> ChannelError:
    if status == 401:
        return AuthError(message, status=status)
    if status == 429:
        return TransientError(message, status=status)
    if status >= 500:
        if write:
            return AmbiguousError(
                message + "; X may have posted it: reconcile before retrying", status=status
            )
        return TransientError(message, status=status)
    if 200 <= status < 300:  # a success whose answer we could not read
        return AmbiguousError(message, status=status) if write else TransientError(message)
    return PermanentError(message, status=status)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds until X lets us in again. A 429 may come from the 15-minute window
    (x-rate-limit-*) or from the 24-hour caps on posting (x-user-limit-24hour-*,
    x-app-limit-24hour-*): wait for the latest reset among the windows that are used up."""
    resets: list[float] = []
    for window in ("x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour"):
        reset = headers.get(f"{window}-reset")
        if reset is not None and headers.get(f"{window}-remaining") == "0":
            resets.append(float(reset))
    if not resets and headers.get("x-rate-limit-reset") is not None:
        resets.append(float(headers["x-rate-limit-reset"]))
    if not resets:
        return None
    return max(0.0, max(resets) - time.time())
