"""Typed keys for what the web application holds; one place so every module agrees."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster.alerts.service import AlertService
from broadcaster.metrics import Metrics
from broadcaster.settings import LoadedSettings

SETTINGS = web.AppKey("settings", LoadedSettings)
ENGINE = web.AppKey("engine", AsyncEngine)
METRICS = web.AppKey("metrics", Metrics)
ALERTS = web.AppKey("alerts", AlertService)
