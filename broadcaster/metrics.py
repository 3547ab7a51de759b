"""Prometheus metrics. Each application owns its registry, so tests can run many side by side."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import broadcaster

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.info = Gauge(
            "broadcaster_info",
            "Constant 1, labelled with the running version.",
            ["version"],
            registry=self.registry,
        )
        self.info.labels(version=broadcaster.__version__).set(1)
        self.http_requests = Counter(
            "broadcaster_http_requests_total",
            "HTTP requests served, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "broadcaster_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.database_up = Gauge(
            "broadcaster_database_up",
            "1 when the last readiness check reached the database, else 0.",
            registry=self.registry,
        )

        # (method, route, status) -> its two series; looked up once, not at every request.
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and how long it took."""
        key = (method, route, status)
        series = self._request_series.get(key)
        if series is None:
            series = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(method, route),
            )
            self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
