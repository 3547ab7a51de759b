"""Delivery over the API: status per alert, channel and target (with links to the posts), the
dead-letter list and requeue, channel health with pause and resume, and a live event stream."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from broadcaster.api.framework import Api, Caller, path_id
from broadcaster.auth.permissions import Permission
from broadcaster.dispatch import control, status
from broadcaster.web_errors import ApiError
from broadcaster.web_keys import ALERTS, DELIVERY_FEED, ENGINE, OUTBOX, SETTINGS

api = Api()

# How often an idle event stream says it is alive (proxies close silent connections).
KEEPALIVE_SECONDS = 15.0
# How often a waiting stream checks that its client is still there.
_CHECK_SECONDS = 1.0


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["dead", "held", "retry_wait", "in_flight", "queued"] = Field(
        default="dead", description="Which deliveries: the dead-letter list by default."
    )
    limit: int = Field(default=50, ge=1, le=500)
    before: int | None = Field(
        default=None, ge=1, le=2**62, description="Only deliveries with a lower id."
    )


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(
        default=None, max_length=500, description="Why, for the audit log and other operators."
    )


class PauseOut(BaseModel):
    name: str
    paused: bool
    held: int = 0  # deliveries held by this pause
    queued: int = 0  # deliveries queued again by this resume


class RequeueOut(BaseModel):
    delivery_id: int
    state: str


class EventsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alert_id: int | None = Field(
        default=None, ge=1, le=2**62, description="Only this alert's deliveries."
    )


def _who(caller: Caller) -> control.Who:
    return control.Who(caller.actor, caller.user.id, caller.source_address)


def _target_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if len(name) > 200:
        raise ApiError(404, "Not Found", "There is no target with a name that long.")
    return name


@api.route(
    "GET",
    "/alerts/{alert_id}/deliveries",
    summary="Delivery status of every released version, per channel and target, with post links.",
    permission=Permission.view_alerts,
    response=status.AlertDeliveries,
    errors=(404,),
    tag="deliveries",
)
async def alert_deliveries(request: web.Request, _caller: Caller) -> status.AlertDeliveries:
    alert_id = path_id(request, "alert_id")
    async with request.app[ENGINE].connect() as connection:
        found = await status.alert_deliveries(connection, alert_id)
    if found is None:
        raise ApiError(404, "Not Found", f"there is no alert {alert_id}")
    return found


@api.route(
    "GET",
    "/deliveries",
    summary="Deliveries in one state, newest first: by default the dead-letter list, with reasons.",
    permission=Permission.view_alerts,
    query=DeliveryQuery,
    response=status.DeliveryList,
    tag="deliveries",
)
async def list_deliveries(
    request: web.Request, _caller: Caller, query: DeliveryQuery
) -> status.DeliveryList:
    async with request.app[ENGINE].connect() as connection:
        return await status.delivery_list(connection, query.state, query.limit, query.before)


@api.route(
    "POST",
    "/deliveries/{delivery_id}/requeue",
    summary="Give a dead-lettered delivery a fresh set of tries (audited).",
    permission=Permission.manage_channels,
    response=RequeueOut,
    errors=(404, 409),
    tag="deliveries",
)
async def requeue_delivery(request: web.Request, caller: Caller) -> RequeueOut:
    delivery_id = path_id(request, "delivery_id")
    now = request.app[ALERTS].clock()
    try:
        async with request.app[ENGINE].begin() as connection:
            state = await control.requeue(
                connection, delivery_id, _who(caller), now, request.app[OUTBOX].wake
            )
    except control.DeliveryNotFound as error:
        raise ApiError(404, "Not Found", str(error)) from None
    except control.NotDead as error:
        raise ApiError(409, "Conflict", str(error), extra={"state": error.state}) from None
    return RequeueOut(delivery_id=delivery_id, state=state)


@api.route(
    "GET",
    "/channels",
    summary="Every target: paused or not, breaker, platform wait, health, deliveries waiting.",
    permission=Permission.manage_channels,
    response=status.ChannelList,
    tag="channels",
)
async def list_channels(request: web.Request, _caller: Caller) -> status.ChannelList:
    async with request.app[ENGINE].connect() as connection:
        return await status.channels_overview(connection, request.app[SETTINGS].directory)


@api.route(
    "POST",
    "/channels/{name}/pause",
    summary="Pause a target at once (breach response): its deliveries are held, not lost.",
    permission=Permission.manage_channels,
    body=PauseRequest,
    response=PauseOut,
    errors=(404,),
    tag="channels",
)
async def pause_channel(request: web.Request, caller: Caller, body: PauseRequest) -> PauseOut:
    name = _target_name(request)
    try:
        async with request.app[ENGINE].begin() as connection:
            held = await control.pause(
                connection,
                request.app[SETTINGS].directory,
                name,
                _who(caller),
                body.reason,
                request.app[ALERTS].clock(),
                request.app[OUTBOX].wake,
            )
    except control.TargetNotFound as error:
        raise ApiError(404, "Not Found", str(error)) from None
    return PauseOut(name=name, paused=True, held=held)


@api.route(
    "POST",
    "/channels/{name}/resume",
    summary="Resume a paused target: its held deliveries go out.",
    permission=Permission.manage_channels,
    response=PauseOut,
    errors=(404,),
    tag="channels",
)
async def resume_channel(request: web.Request, caller: Caller) -> PauseOut:
    name = _target_name(request)
    try:
        async with request.app[ENGINE].begin() as connection:
            queued = await control.resume(
                connection,
                request.app[SETTINGS].directory,
                name,
                _who(caller),
                request.app[ALERTS].clock(),
                request.app[OUTBOX].wake,
            )
    except control.TargetNotFound as error:
        raise ApiError(404, "Not Found", str(error)) from None
    return PauseOut(name=name, paused=False, queued=queued)


@api.route(
    "GET",
    "/events",
    summary="Server-sent events: each delivery change (event `delivery`) as it happens.",
    permission=Permission.view_alerts,
    query=EventsQuery,
    tag="deliveries",
)
async def events(request: web.Request, _caller: Caller, query: EventsQuery) -> web.StreamResponse:
    feed = request.app[DELIVERY_FEED]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n: connected\n\n")
    queue = feed.subscribe()
    number = 0
    quiet = 0.0
    try:
        while not feed.closed.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            try:
                event = await asyncio.wait_for(queue.get(), _CHECK_SECONDS)
            except TimeoutError:
                quiet += _CHECK_SECONDS
                if quiet >= KEEPALIVE_SECONDS:
                    quiet = 0.0
                    await response.write(b": keep-alive\n\n")
                continue
            quiet = 0.0
            if query.alert_id is not None and event["alert_id"] != query.alert_id:
                continue
            number += 1
            data = json.dumps(event, ensure_ascii=False)
            await response.write(f"id: {number}\nevent: delivery\ndata: {data}\n\n".encode())
    except (ConnectionResetError, ConnectionError):
        pass  # the board went away
    finally:
        feed.unsubscribe(queue)
    return response
