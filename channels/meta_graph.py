"""What the Facebook Page and Instagram channels share: one Graph API client, one error mapping,
Meta's webhook handshake and signature, comment polling, and the alert text both platforms post.

The client is facebook-sdk 3.1.0 (`facebook.GraphAPI`): synchronous, built on requests, with
the host fixed to https://graph.facebook.com/. So every call runs in a worker thread
(`asyncio.to_thread`), always with a timeout, and each client gets its own `GraphSession`, a
requests.Session that points that fixed prefix at the target's `base_url` (an emulator in tests
and demos) and remembers the HTTP response, whose status and usage headers facebook-sdk drops.

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

import asyncio
import hashlib
import hmac
import json
import math
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import requests
from pydantic import Field
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from approvals.alert import EXERCISE_MARKING, Info, is_exercise
from channels.base import (
    AlertVersion,
    AmbiguousError,
    AuthError,
    ChannelError,
    PermanentError,
    Receipt,
    Target,
    TargetSettings,
    TransientError,
    WebhookAnswer,
    WebhookRejected,
)

with warnings.catch_warnings():
    # facebook-sdk 3.1.0 has a non-raw regex ("^\d\.\d{1,2}$"); compiling it without a cached
    # .pyc warns (DeprecationWarning on 3.11, SyntaxWarning from 3.12), an error under -W error.
    warnings.filterwarnings("ignore", "invalid escape sequence", DeprecationWarning)
    warnings.filterwarnings("ignore", "invalid escape sequence", SyntaxWarning)
    import facebook

__all__ = [
    "GRAPH_URL",
    "GRAPH_VERSION",
    "RECONCILE_PAGE_CAP",
    "CommentCursor",
    "GraphClient",
    "GraphSession",
    "MetaSettings",
    "answer_challenge",
    "compose_alert_text",
    "credential",
    "find_recent",
    "graph_error",
    "graph_time",
    "labels",
    "new_comments",
    "refuse_extras",
    "retry_after_from_headers",
    "same_text",
    "verify_signature",
    "webhook_changes",
    "webhook_json",
]

GRAPH_URL: Final[str] = facebook.FACEBOOK_GRAPH_URL  # "https://graph.facebook.com/"
# facebook-sdk's constructor only accepts 2.8..3.1 (long retired): set after construction.
GRAPH_VERSION: Final = "v21.0"
SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
# TransientError.code when find_recent needs more pages than it may read.
RECONCILE_PAGE_CAP: Final = "reconcile-page-cap"


class MetaSettings(TargetSettings):
    """Settings both Meta channels share."""

    # How many of the account's newest posts fetch_inbound reads comments from (one Graph call
    # each): the webhook is the main path, polling the fallback.
    poll_recent_posts: int = Field(default=5, ge=1, le=25)
    # find_published compares every post the account made in this many minutes (Graph's
    # `since`) with the text, however many posts that is.
    reconcile_window_minutes: int = Field(default=180, ge=1, le=7 * 24 * 60)
    # Posts per page while it looks (Graph's `limit`, at most 100). The name is older than the
    # window: it once bounded the whole search.
    reconcile_recent_posts: int = Field(default=100, ge=1, le=100)
    # Pages per lookup: 10 pages of 100 hold a Page posting every 11 seconds for three hours.
    # A lookup that needs more fails as a TransientError (looked up again later), never as
    # "not found", which would post the alert twice.
    reconcile_max_pages: int = Field(default=10, ge=1, le=50)


def credential(target: Target, name: str) -> str:
    """One of the target's secrets, or an error saying which one to configure."""
    secret = target.credentials.get(name)
    if secret is None or not secret.get_secret_value():
        raise ValueError(
            f"target {target.name!r} has no credential {name!r}: map it to a secret "
            "(environment variable or file) in the channel's configuration"
        )
    return secret.get_secret_value()


# --- the client --------------------------------------------------------------------------------


class GraphSession(requests.Session):
    """A requests.Session for one Graph client: rewrites the fixed Graph host to `base_url`,
    never retries, and remembers the last response per thread for the error mapping."""

    def __init__(self, base_url: str | None) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        self._local = threading.local()
        # requests' default adapter already has max_retries=0; mounting says so explicitly
        # (the dispatcher owns every retry).
        for prefix in ("https://", "http://"):
            self.mount(prefix, HTTPAdapter(max_retries=0))

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if self.base_url and isinstance(request.url, str) and request.url.startswith(GRAPH_URL):
            request.url = self.base_url + request.url[len(GRAPH_URL) :]
        return super().prepare_request(request)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = super().send(request, **kwargs)
        self._local.response = response
        return response

    def forget(self) -> None:
        self._local.response = None

    @property
    def last_response(self) -> requests.Response | None:
        response: requests.Response | None = getattr(self._local, "response", None)
        return response


class GraphClient:
    """One access token's Graph API client. Every call runs off the event loop."""

    def __init__(
        self,
        *,
        access_token: str,
        app_secret: str,
        timeout: float,
        base_url: str | None,
        where: str,
    ) -> None:
        self._session = GraphSession(base_url)
        self._graph = facebook.GraphAPI(
            access_token=access_token, timeout=timeout, session=self._session
        )
        self._graph.version = GRAPH_VERSION
        # appsecret_proof proves the call comes from the app's server; Meta refuses calls
        # without it when the app sets "Require App Secret".
        self._proof = hmac.new(
            app_secret.encode(), access_token.encode(), hashlib.sha256
        ).hexdigest()
        self._secrets = tuple(s for s in (access_token, app_secret, self._proof) if s)
        self.where = where  # "facebook target 'county'", for messages

    async def get(self, path: str, what: str, **params: str | int) -> dict[str, Any]:
        return await self._call("GET", path, what, params, may_publish=False)

    async def post(
        self, path: str, what: str, *, may_publish: bool, **data: str | int
    ) -> dict[str, Any]:
        return await self._call("POST", path, what, data, may_publish=may_publish)

    async def delete(self, path: str, what: str) -> dict[str, Any]:
        # A repeated DELETE changes nothing more: never ambiguous.
        return await self._call("DELETE", path, what, {}, may_publish=False)

    async def _call(
        self, method: str, path: str, what: str, fields: dict[str, str | int], *, may_publish: bool
    ) -> dict[str, Any]:
        return await asyncio.to_thread(self._blocking, method, path, what, fields, may_publish)

    def _blocking(
        self, method: str, path: str, what: str, fields: dict[str, str | int], may_publish: bool
    ) -> dict[str, Any]:
        values = {key: str(value) for key, value in fields.items()}
        values["appsecret_proof"] = self._proof
        # graph.request rather than put_object/get_connections: one path for every method, and
        # DELETE needs the proof too (delete_object takes no arguments).
        args, post_args = (values, None) if method != "POST" else ({}, values)
        self._session.forget()
        doing = f"{self.where}: {what}"
        try:
            result = self._graph.request(
                f"{self._graph.version}/{path}", args=args, post_args=post_args, method=method
            )
        except facebook.GraphAPIError as error:
            raise self._mapped(error.result, doing, may_publish) from None
        except requests.RequestException as error:
            # `from None`: requests' own messages carry the URL, and a GET's URL carries the token.
            raise _network_error(error, doing, may_publish) from None
        except (KeyError, ValueError):
            # No content-type, or a body that is not the JSON it claims: not Graph answering.
            raise self._mapped(None, doing, may_publish) from None
        if not isinstance(result, dict):
            raise PermanentError(f"{doing}: Graph answered with {type(result).__name__}, not JSON")
        return result

    def _mapped(self, result: object, doing: str, may_publish: bool) -> ChannelError:
        response = self._session.last_response
        status = response.status_code if response is not None else None
        headers: Mapping[str, str] = response.headers if response is not None else {}
        body = result if isinstance(result, Mapping) else None
        return graph_error(
            body, status, headers, doing=doing, may_publish=may_publish, secrets=self._secrets
        )

    def close(self) -> None:
        self._session.close()


def _network_error(error: requests.RequestException, doing: str, may_publish: bool) -> ChannelError:
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


# --- errors ------------------------------------------------------------------------------------

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


def graph_time(value: object) -> datetime:
    """Graph's "2026-11-21T03:00:00+0000", or a webhook's epoch seconds (or milliseconds)."""
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 100_000_000_000 else value
        return datetime.fromtimestamp(seconds, UTC)
    return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z").astimezone(UTC)


# --- webhooks ----------------------------------------------------------------------------------


def answer_challenge(query: Mapping[str, str], verify_token: str) -> WebhookAnswer | None:
    """Meta's subscription check: echo hub.challenge when hub.verify_token is ours."""
    if "hub.mode" not in query:
        return None
    offered = query.get("hub.verify_token", "")
    if query["hub.mode"] != "subscribe" or not hmac.compare_digest(
        offered.encode(), verify_token.encode()
    ):
        return WebhookAnswer(403, "verify token does not match", "text/plain")
    return WebhookAnswer(200, query.get("hub.challenge", ""), "text/plain")


def verify_signature(app_secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Check X-Hub-Signature-256 = "sha256=" + hex(HMAC-SHA256(app secret, raw body))."""
    lowered = {key.lower(): value for key, value in headers.items()}
    given = lowered.get(SIGNATURE_HEADER.lower())
    if not given:
        raise WebhookRejected(401, f"no {SIGNATURE_HEADER} header: not from Meta")
    expected = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise WebhookRejected(403, f"{SIGNATURE_HEADER} does not match the body")


def webhook_json(app_secret: str, headers: Mapping[str, str], body: bytes) -> Mapping[str, Any]:
    """The verified webhook payload (signature first: nothing unsigned is parsed)."""
    verify_signature(app_secret, headers, body)
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookRejected(400, "signed webhook body is not JSON") from None
    if not isinstance(payload, Mapping):
        raise WebhookRejected(400, "signed webhook body is not a JSON object")
    return payload


def webhook_changes(payload: Mapping[str, Any], obj: str, field: str) -> list[tuple[Any, Any]]:
    """(entry, change value) for each change of `field` in a payload about `obj`."""
    if payload.get("object") != obj:
        return []
    found: list[tuple[Any, Any]] = []
    for entry in payload.get("entry") or []:
        if not isinstance(entry, Mapping):
            continue
        for change in entry.get("changes") or []:
            if isinstance(change, Mapping) and change.get("field") == field:
                value = change.get("value")
                if isinstance(value, Mapping):
                    found.append((entry, value))
    return found


# --- publishing --------------------------------------------------------------------------------


def refuse_extras(target: str, reply_to: Receipt | None, recipient: str | None) -> None:
    if recipient is not None:
        raise PermanentError(f"target {target!r} posts to a Page and takes no recipient")
    if reply_to is not None:
        raise PermanentError(
            f"target {target!r}: Meta alerts are one post (max_parts=1) and are never threaded"
        )


def same_text(published: object, text: str) -> bool:
    """Graph may normalise line endings and trailing space; nothing else."""
    if not isinstance(published, str):
        return False

    def norm(value: str) -> str:
        return "\n".join(line.rstrip() for line in value.replace("\r\n", "\n").split("\n")).strip()

    return norm(published) == norm(text)


def _following(page: Mapping[str, Any]) -> dict[str, str | int] | None:
    """The query of the page after `page`, from paging.next (cursor-based answers carry
    `after`, time-based ones `until` and `__paging_token`), without the access token and
    proof in it: our client adds its own. None on the last page."""
    paging = page.get("paging")
    following = paging.get("next") if isinstance(paging, Mapping) else None
    if not isinstance(following, str) or not following:
        return None
    query = parse_qsl(urlsplit(following).query, keep_blank_values=True)
    return {key: value for key, value in query if key not in ("access_token", "appsecret_proof")}


async def find_recent(
    client: GraphClient,
    edge: str,
    text: str,
    settings: MetaSettings,
    *,
    text_field: str,
    time_field: str,
    fields: str,
) -> Mapping[str, Any] | None:
    """The newest item of `edge` (a Page's posts, an account's media) whose `text_field` is
    `text`, among everything made in the last `reconcile_window_minutes`.

    Exact within the window: pages are read until Graph has no next page, and when that is more
    than `reconcile_max_pages` pages the lookup raises a TransientError rather than answering
    None, which the dispatcher would take as "not posted" and post again. Graph may answer an
    empty page that still has a next one (visibility filtering), so only a missing `next`, or
    items older than the window, end the search."""
    start = datetime.now(UTC) - timedelta(minutes=settings.reconcile_window_minutes)
    params: dict[str, str | int] = {
        "fields": fields,
        "since": int(start.timestamp()),
        "limit": settings.reconcile_recent_posts,
    }
    what = f"looking for the post among {edge} of the last {settings.reconcile_window_minutes} min"
    for _ in range(settings.reconcile_max_pages):
        page = await client.get(edge, what, **params)
        past_window = False
        for item in page.get("data") or []:
            if not isinstance(item, Mapping):
                continue
            if same_text(item.get(text_field), text):
                return item
            at = item.get(time_field)
            # A backstop should Graph ever ignore `since`: nothing older is looked at.
            past_window = past_window or (at is not None and graph_time(at) < start)
        following = _following(page)
        if following is None or past_window:
            return None
        params = following
    raise TransientError(
        f"{client.where}: {what}: more than {settings.reconcile_max_pages} pages of "
        f'{settings.reconcile_recent_posts}; not answering "not found" without having looked '
        "at them all: look again later (or raise reconcile_max_pages)",
        code=RECONCILE_PAGE_CAP,
    )


# --- polling cursor ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CommentCursor:
    """Where polling got to: the newest comment time seen, and the ids seen at that second
    (Graph times have one-second resolution, so ids break the tie)."""

    newest: datetime | None = None
    ids_at_newest: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, cursor: str | None) -> CommentCursor:
        if not cursor:
            return cls()
        try:
            data = json.loads(cursor)
            return cls(datetime.fromtimestamp(float(data["t"]), UTC), frozenset(data["ids"]))
        except (ValueError, KeyError, TypeError):
            return cls()  # an unreadable cursor re-reads recent comments; dedupe drops repeats

    def is_new(self, comment_id: str, at: datetime) -> bool:
        if self.newest is None or at > self.newest:
            return True
        return at == self.newest and comment_id not in self.ids_at_newest

    def after(self, seen: Sequence[tuple[str, datetime]]) -> CommentCursor:
        newest, ids = self.newest, set(self.ids_at_newest)
        for comment_id, at in seen:
            if newest is None or at > newest:
                newest, ids = at, {comment_id}
            elif at == newest:
                ids.add(comment_id)
        return CommentCursor(newest, frozenset(ids))

    def dump(self) -> str | None:
        if self.newest is None:
            return None
        return json.dumps({"t": int(self.newest.timestamp()), "ids": sorted(self.ids_at_newest)})


async def new_comments(
    client: GraphClient,
    post_ids: Sequence[str],
    cursor: CommentCursor,
    *,
    fields: str,
    time_field: str,
    extra: Mapping[str, str] | None = None,
    newest_first: bool = False,
    max_pages: int = 5,
) -> list[tuple[str, Mapping[str, Any], datetime]]:
    """(post id, comment, time) for each comment on these posts that `cursor` has not seen,
    oldest first. With `newest_first` paging stops at the first comment older than the
    cursor; otherwise it reads up to `max_pages` pages per post."""
    found: list[tuple[str, Mapping[str, Any], datetime]] = []
    for post_id in post_ids:
        params: dict[str, str | int] = {"fields": fields, "limit": 50, **(extra or {})}
        for _ in range(max_pages):
            page = await client.get(f"{post_id}/comments", "reading comments", **params)
            older_seen = False
            for comment in page.get("data") or []:
                if not isinstance(comment, Mapping) or "id" not in comment:
                    continue
                at = graph_time(comment.get(time_field))
                if cursor.is_new(str(comment["id"]), at):
                    found.append((post_id, comment, at))
                elif cursor.newest is not None and at < cursor.newest:
                    older_seen = True
            after = (page.get("paging") or {}).get("cursors", {}).get("after")
            has_next = bool((page.get("paging") or {}).get("next"))
            if not has_next or not after or (newest_first and older_seen):
                break
            # The next page by cursor, never the `next` URL: that URL carries the access token.
            params["after"] = str(after)
    found.sort(key=lambda item: (item[2], str(item[1]["id"])))
    return found


# --- the alert as text -------------------------------------------------------------------------

_LABELS: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "area": "Area",
        "expires": "Until",
        "more": "More",
        "contact": "Contact",
        "replaced": "Updated {at}: this replaces the earlier alert posted here.",
    },
    "es": {
        "area": "Zona",
        "expires": "Hasta",
        "more": "Más",
        "contact": "Contacto",
        "replaced": "Actualizado {at}: esto reemplaza la alerta publicada aquí antes.",
    },
    "fr": {
        "area": "Zone",
        "expires": "Jusqu'à",
        "more": "Plus",
        "contact": "Contact",
        "replaced": "Mis à jour {at} : ceci remplace l'alerte publiée ici auparavant.",
    },
    "zh": {
        "area": "地区",
        "expires": "有效期至",
        "more": "详情",
        "contact": "联系",
        "replaced": "{at} 更新：此内容取代此前在此发布的警报。",  # noqa: RUF001 (Chinese punctuation)
    },
}
BLOCK_SEPARATOR: Final = "\n\n———\n\n"


def labels(language: str) -> Mapping[str, str]:
    return _LABELS.get(language.split("-")[0].lower(), _LABELS["en"])


def _block(info: Info, detail: int) -> str:
    """One language: 3 = everything, 2 = headline + instruction + area/expiry,
    1 = headline + instruction, 0 = headline."""
    words = labels(info.language)
    lines = [info.headline.strip()]
    if detail >= 3 and info.description:
        lines.append(info.description.strip())
    if detail >= 1 and info.instruction:
        lines.append(info.instruction.strip())
    if detail >= 2:
        areas = ", ".join(area.description for area in info.areas)
        if areas:
            lines.append(f"{words['area']}: {areas}")
        if info.expires is not None:
            lines.append(f"{words['expires']}: {info.expires.strftime('%Y-%m-%d %H:%M %Z')}")
    if detail >= 3 and info.contact:
        lines.append(f"{words['contact']}: {info.contact}")
    return "\n\n".join(lines)


def _link(version: AlertVersion) -> str | None:
    return version.public_url or next((i.web for i in version.content.infos if i.web), None)


def compose_alert_text(version: AlertVersion, limit: int, *, footer: str | None = None) -> str:
    """The alert as one post of at most `limit` characters: every language in full when it fits
    (one post keeps one comment thread and one thing to reconcile); otherwise the first
    language in full and the others shortened, then less, always with the link to the full
    alert. Exercise alerts start with the exercise marking; actual alerts never carry it."""
    infos = version.content.infos
    exercise = is_exercise(version.content.status)
    link = _link(version)
    more = f"{labels(infos[0].language)['more']}: {link}" if link else None

    def assemble(blocks: Sequence[str]) -> str:
        body = BLOCK_SEPARATOR.join(blocks)
        if not exercise:
            # Screening refuses this, but a real alert must never read as a drill.
            body = body.replace(EXERCISE_MARKING, "").strip()
        elif not body.startswith(EXERCISE_MARKING):
            body = f"{EXERCISE_MARKING}\n\n{body}"
        return "\n\n".join(part for part in (body, more, footer) if part)

    first, others = infos[0], infos[1:]
    # (detail of the first language, detail of the others), most complete first.
    plans = [(3, 3), (3, 1), (3, 0), (2, 0), (1, 0), (0, 0)]
    for first_detail, other_detail in plans:
        text = assemble([_block(first, first_detail), *(_block(i, other_detail) for i in others)])
        if len(text) <= limit:
            return text
    # Only reachable with a tiny limit: the marking stays first, so a cut never loses it.
    return _truncate(assemble([_block(first, 0)]), limit)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"
