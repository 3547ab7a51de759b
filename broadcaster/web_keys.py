"""Typed keys for what the web application holds; one place so every module agrees."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.alerts.service import AlertService
from broadcaster.dispatch.feed import DeliveryFeed
from broadcaster.metrics import Metrics
from broadcaster.outbox import Outbox
from broadcaster.settings import LoadedSettings

SETTINGS = web.AppKey("settings", LoadedSettings)
ENGINE = web.AppKey("engine", AsyncEngine)
METRICS = web.AppKey("metrics", Metrics)
ALERTS = web.AppKey("alerts", AlertService)
OUTBOX = web.AppKey("outbox", Outbox)  # the release hook; its Wakeup is the in-process worker's
DELIVERY_FEED = web.AppKey("delivery_feed", DeliveryFeed)  # delivery changes for live boards
