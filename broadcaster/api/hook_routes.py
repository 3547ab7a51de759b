"""Platform webhooks: /api/v1/hooks/{target_name} for every configured target whose channel
takes them (X Account Activity, Meta for Facebook and Instagram, Twilio for SMS).

GET answers the platform's subscription challenge (X's CRC, Meta's hub.challenge). POST hands
the raw body to the target's adapter, which checks the platform's signature on those exact
bytes in constant time before anything is parsed: a missing signature is 401, a wrong one 403,
and nothing of that call is stored. Signed messages become reports and the call is answered
200 only once they are stored, so a platform whose call failed sends it again; a replay is
recognised by (source, external id) and stored once.

SMS carrier keywords (STOP, START, HELP) are not reports: they change the sender's SMS opt-out
at once (broadcaster.contacts.record_keyword) and are counted in /metrics. A keyword carries
nothing for a responder to act on, Twilio has already answered it, and after a mass alert
thousands of STOPs would bury the calls for help. Anything longer than the bare keyword
("please stop sending these, we are trapped") is a report like any other.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

from broadcaster import audit, contacts
from broadcaster.api.framework import Api
from broadcaster.triage.ingest import IngestBusy, IngestSlow
from broadcaster.triage.runtime import TRIAGE
from broadcaster.web_errors import ApiError
from broadcaster.web_keys import ENGINE, SETTINGS
from channels.base import Channel, InboundMessage, InboundMode, WebhookRejected

api = Api()
log = logging.getLogger(__name__)

_WEBHOOK_MODES: Final = (InboundMode.webhook, InboundMode.poll_and_webhook)
_TITLES: Final = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
# Twilio reads the answer as TwiML; an empty Response says "no automatic reply".
_TWIML_EMPTY: Final = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def _adapter(request: web.Request) -> tuple[str, Channel]:
    name = request.match_info["target_name"]
    directory = request.app[SETTINGS].directory
    configured = directory.targets.get(name)
    if configured is None or configured.channel_class.limits.inbound not in _WEBHOOK_MODES:
        raise ApiError(
            404, "Not Found", f"There is no webhook for {name!r}: no such target takes webhooks."
        )
    return name, directory.adapter(name)


def signed_url(request: web.Request) -> str:
    """The URL the platform signed (Twilio signs it): server.public_url when set (behind a
    proxy the request's own URL is not what the platform called), else this request's URL."""
    public = request.app[SETTINGS].settings.server.public_url
    if public:
        return public.rstrip("/") + request.path_qs
    return str(request.url)


@api.route(
    "GET",
    "/hooks/{target_name}",
    summary="A platform's webhook subscription check (X CRC, Meta hub.challenge).",
    public=True,
    errors=(400, 403, 404),
    tag="inbound",
)
async def webhook_challenge(request: web.Request) -> web.Response:
    _name, adapter = _adapter(request)
    answer = adapter.answer_webhook_challenge(dict(request.query))
    if answer is None:
        raise ApiError(
            400,
            "Bad Request",
            "This is a webhook: the platform POSTs messages here. A GET must carry the "
            "platform's challenge (crc_token, or hub.mode and hub.verify_token).",
        )
    return web.Response(status=answer.status, text=answer.body, content_type=answer.content_type)


@api.route(
    "POST",
    "/hooks/{target_name}",
    summary="A platform delivers public messages (signed); each becomes a report.",
    public=True,
    errors=(400, 401, 403, 404, 413),
    tag="inbound",
)
async def webhook_delivery(request: web.Request) -> web.Response:
    name, adapter = _adapter(request)
    triage = request.app[TRIAGE]
    body = await request.read()
    try:
        url = signed_url(request) if adapter.webhook_signs_url else ""
        messages = adapter.parse_webhook(url, request.headers, body)
    except WebhookRejected as refused:
        triage.metrics.webhooks_refused.labels(name, str(refused.status)).inc()
        log.warning("webhook for %s refused (%s): %s", name, refused.status, refused.reason)
        raise ApiError(
            refused.status, _TITLES.get(refused.status, "Bad Request"), refused.reason
        ) from None
    reports = []
    for message in messages:
        keyword = message.raw.get("keyword")
        is_keyword = message.source == "sms" and isinstance(keyword, str)
        if is_keyword and await _record_keyword(request, message, str(keyword)):
            continue
        reports.append(triage.normaliser.from_message(message, name))
    try:
        results = await triage.ingestor.submit(reports)
    except (IngestBusy, IngestSlow) as busy:
        # Nothing is lost: a refused call was not accepted and the platform sends it again; a
        # slow one is queued and will be written (its replay is then recognised).
        raise ApiError(
            503,
            "Service Unavailable",
            "Reports are arriving faster than they can be stored; send this again shortly.",
            headers={"Retry-After": str(busy.retry_after)},
        ) from None
    if adapter.name == "sms":
        return web.Response(text=_TWIML_EMPTY, content_type="text/xml")
    # Written out, not json_response: two whole numbers need no JSON encoder on every call.
    new = sum(1 for result in results if result.created)
    return web.Response(
        text=f'{{"received": {len(messages)}, "new": {new}}}', content_type="application/json"
    )


async def _record_keyword(request: web.Request, message: InboundMessage, keyword: str) -> bool:
    """Act on a carrier keyword; False (queue it as a report instead) if the sender is not a
    phone number we can record."""
    triage = request.app[TRIAGE]
    phone = message.author_id or ""
    async with request.app[ENGINE].begin() as connection:
        try:
            changed = await contacts.record_keyword(connection, phone, keyword)
        except contacts.ContactsError as error:
            log.warning("SMS keyword %s from an unusable sender: %s", keyword, error)
            return False
        if changed:
            # The pseudonym, not the number: the audit log is never purged.
            await audit.append(
                connection,
                audit.AuditEntry(
                    actor="public",
                    action=f"contacts.sms_{keyword}",
                    subject=f"sms:{triage.normaliser.pseudonym('sms', phone)}",
                    details={"message": message.external_id},
                ),
            )
    triage.metrics.sms_keywords.labels(keyword).inc()
    return True
