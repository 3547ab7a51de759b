"""The aiohttp application factory."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster import api, console, web_health, web_pages, web_public
from broadcaster.alerts.channel_checks import channel_checks
from broadcaster.alerts.rules import load_alert_rules
from broadcaster.alerts.service import AlertService
from broadcaster.dispatch.feed import DeliveryFeed
from broadcaster.dispatch.wake import Wakeup
from broadcaster.metrics import Metrics
from broadcaster.outbox import Outbox
from broadcaster.settings import LoadedSettings
from broadcaster.triage import runtime as triage
from broadcaster.web_keys import ALERTS, DELIVERY_FEED, ENGINE, METRICS, OUTBOX, SETTINGS
from broadcaster.web_middleware import request_context


def create_app(
    loaded: LoadedSettings, engine: AsyncEngine, *, triage_writer_process: bool = False
) -> web.Application:
    """The web application over an engine the caller opened (and will dispose of).

    `triage_writer_process`: write triage reports in a child process (`serve` and the inbound
    benchmark pass `triage.writer_process`; applications built in-process, as tests build
    hundreds, write in their own process and start none)."""
    app = web.Application(
        middlewares=[request_context],
        client_max_size=loaded.settings.server.max_body_bytes,
    )
    app[SETTINGS] = loaded
    app[ENGINE] = engine
    app[METRICS] = Metrics()
    public_base = loaded.settings.server.public_url or (
        f"http://{loaded.settings.server.host}:{loaded.settings.server.port}"
    )
    # The outbox: a release writes its deliveries in the same transaction, and wakes workers.
    app[OUTBOX] = outbox = Outbox(loaded.directory, public_base=public_base, wake=Wakeup())
    app[ALERTS] = AlertService(
        engine,
        load_alert_rules(loaded.settings.alerts),
        channel_checks=channel_checks(loaded.directory, public_base),
        on_release=outbox.on_release,
        went_out=outbox.went_out,
    )
    app[DELIVERY_FEED] = feed = DeliveryFeed(engine)
    app.on_shutdown.append(lambda _app: feed.close())  # ends the live boards' event streams
    app.add_routes(web_health.routes)
    app.add_routes(web_pages.routes)
    app.add_routes(web_public.routes)
    # The triage queue: its state, background work, form.
    triage.install(app, loaded, engine, writer_process=triage_writer_process)
    console.install(app, loaded, engine)  # the web console: sessions, sign-in, pages
    api.install(app)
    return app
