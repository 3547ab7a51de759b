"""Triage metrics, registered on the application's own registry (see broadcaster.metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["TriageMetrics"]


class TriageMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.ingested = Counter(
            "broadcaster_triage_reports_ingested_total",
            "New reports stored, by source.",
            ["source"],
            registry=registry,
        )
        self.replayed = Counter(
            "broadcaster_triage_reports_replayed_total",
            "Messages received again (replayed webhook, re-polled) and not stored twice.",
            ["source"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "broadcaster_triage_ingest_queue_depth",
            "Reports received and waiting to be written to the database.",
            registry=registry,
        )
        self.queue_capacity = Gauge(
            "broadcaster_triage_ingest_queue_capacity",
            "How many reports may wait; past this, webhooks answer 503 and platforms retry.",
            registry=registry,
        )
        self.oldest_wait = Gauge(
            "broadcaster_triage_ingest_oldest_wait_seconds",
            "How long the oldest waiting report has waited: above a second the database is slow.",
            registry=registry,
        )
        self.refused = Counter(
            "broadcaster_triage_ingest_refused_total",
            "Reports refused with 503 because the ingestion queue was full (the sender retries).",
            registry=registry,
        )
        self.write_failures = Counter(
            "broadcaster_triage_ingest_write_failures_total",
            "Batches the database did not take; they stay queued and are written again.",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "broadcaster_triage_ingest_batch_seconds",
            "Time to write one batch of reports (dedupe, clustering, scoring included).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.writer_restarts = Counter(
            "broadcaster_triage_writer_restarts_total",
            "Times the ingestion writer process died and was started again (its batch in "
            "flight went back to the queue).",
            registry=registry,
        )
        self.webhooks_refused = Counter(
            "broadcaster_triage_webhooks_refused_total",
            "Webhook calls refused (missing or forged signature, bad body), by target and status.",
            ["target", "status"],
            registry=registry,
        )
        self.sms_keywords = Counter(
            "broadcaster_triage_sms_keywords_total",
            "SMS carrier keywords (STOP, START, HELP) acted on instead of queued.",
            ["keyword"],
            registry=registry,
        )
        self.form_refused = Counter(
            "broadcaster_triage_form_refused_total",
            "Public form submissions not stored, by reason (rate_limited, honeypot).",
            ["reason"],
            registry=registry,
        )
        self.polls = Counter(
            "broadcaster_triage_polls_total",
            "Polls of channels for new messages, by target and outcome.",
            ["target", "outcome"],
            registry=registry,
        )
        self.escalations = Counter(
            "broadcaster_triage_escalations_total",
            "High-priority reports escalated to the on-call target, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.replies = Counter(
            "broadcaster_triage_replies_total",
            "Replies to reporters, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.purged = Counter(
            "broadcaster_triage_reports_purged_total",
            "Reports deleted because they passed the retention period.",
            registry=registry,
        )
        self.live_subscribers = Gauge(
            "broadcaster_triage_live_subscribers",
            "Responders connected to the live queue.",
            registry=registry,
        )
        self.live_events = Counter(
            "broadcaster_triage_live_events_total",
            "Events sent to live-queue subscribers.",
            registry=registry,
        )
