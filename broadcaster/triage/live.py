"""The live queue: every change to a report, fanned out to the responders watching.

Each subscriber has its filter and a bounded queue. A subscriber too slow to keep up is never
allowed to hold up ingestion: its queue is emptied and it gets one `resync` event, telling the
console to reload the list (GET /reports), after which live events continue.

Events (server-sent events, `event:` names):
    report       a report was received or changed and matches the filter (data: the report)
    report_left  a report no longer matches only because its state changed (data: id, state)
    viewing      who is looking at a report (data: report id, viewers)
    resync       events were lost for this subscriber: reload the list
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from broadcaster.triage.filters import FilterFields, ReportFilter
from broadcaster.triage.states import ReportState

__all__ = ["EncodedReport", "LiveEvent", "LiveHub", "LiveReport", "Subscription"]

_SUBSCRIBER_QUEUE = 20_000  # references to shared events: cheap


class LiveReport(FilterFields, Protocol):
    """A report the live queue can show: the fields its filters read, and its JSON."""

    def model_dump_json(self) -> str: ...


class EncodedReport:
    """A report the ingestion writer process already turned into JSON, with the plain fields
    the filters read: the web process neither rebuilds nor re-encodes it (that was a share of
    the writer's CPU time a report)."""

    __slots__ = (
        "_json",
        "id",
        "incident_id",
        "latitude",
        "longitude",
        "priority",
        "source",
        "state",
    )

    def __init__(
        self,
        id: int,  # named as ReportOut names it
        source: str,
        state: ReportState,
        priority: float,
        incident_id: int | None,
        latitude: float | None,
        longitude: float | None,
        encoded: str,
    ) -> None:
        self.id = id
        self.source = source
        self.state = state
        self.priority = priority
        self.incident_id = incident_id
        self.latitude = latitude
        self.longitude = longitude
        self._json = encoded

    def model_dump_json(self) -> str:
        return self._json


@dataclass
class LiveEvent:
    id: int
    kind: str
    data: str  # JSON, serialised once for every subscriber

    def encode(self) -> bytes:
        return f"id: {self.id}\nevent: {self.kind}\ndata: {self.data}\n\n".encode()


@dataclass(eq=False)
class Subscription:
    filter: ReportFilter
    queue: asyncio.Queue[LiveEvent | None] = field(
        default_factory=lambda: asyncio.Queue(_SUBSCRIBER_QUEUE)
    )
    dropped: int = 0

    def offer(self, event: LiveEvent, resync: Callable[[], LiveEvent]) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += self.queue.qsize()
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(resync())


class LiveHub:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._ids = itertools.count(1)
        self.closed = False
        # Called with how many events went out, for metrics.
        self.on_publish: Callable[[int], None] | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, report_filter: ReportFilter) -> Subscription:
        subscription = Subscription(report_filter)
        if self.closed:
            subscription.queue.put_nowait(None)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish_reports(
        self, changed: Iterable[LiveReport], *, state_changed: bool = False
    ) -> None:
        if not self._subscribers:
            return
        sent = 0
        for report in changed:
            full: LiveEvent | None = None
            left: LiveEvent | None = None
            for subscription in self._subscribers:
                wanted = subscription.filter
                if wanted.matches(report):
                    full = full or self._event("report", report.model_dump_json())
                    subscription.offer(full, self._resync)
                    sent += 1
                elif state_changed and wanted.matches(report, ignore_state=True):
                    left = left or self._event(
                        "report_left", json.dumps({"id": report.id, "state": report.state.value})
                    )
                    subscription.offer(left, self._resync)
                    sent += 1
        if sent and self.on_publish is not None:
            self.on_publish(sent)

    def resync_all(self) -> None:
        """Tell every subscriber to reload the list: events may have been lost (the writer
        process died after storing a batch and before its reports were shown)."""
        if not self._subscribers:
            return
        event = self._resync()
        for subscription in self._subscribers:
            subscription.offer(event, self._resync)

    def publish_viewing(self, report_id: int, viewers: list[dict[str, Any]]) -> None:
        if not self._subscribers:
            return
        event = self._event("viewing", json.dumps({"report_id": report_id, "viewers": viewers}))
        for subscription in self._subscribers:
            subscription.offer(event, self._resync)

    def close(self) -> None:
        """End every stream (the service is stopping)."""
        self.closed = True
        for subscription in self._subscribers:
            try:
                subscription.queue.put_nowait(None)
            except asyncio.QueueFull:
                subscription.queue.get_nowait()
                subscription.queue.put_nowait(None)

    def _event(self, kind: str, data: str) -> LiveEvent:
        return LiveEvent(next(self._ids), kind, data)

    def _resync(self) -> LiveEvent:
        return self._event("resync", "{}")
