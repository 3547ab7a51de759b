"""An alert version as the channels see it, and the public addresses of what we publish."""

from __future__ import annotations

from datetime import datetime

from broadcaster.alerts.store import StoredVersion
from channels.base import AlertVersion

# Shown in previews of versions not yet released: the CAP identity is given at release.
PREVIEW_IDENTIFIER = "PREVIEW"
PREVIEW_SENDER = "preview.invalid"


def alert_page_url(public_base: str, alert_id: int) -> str:
    return f"{public_base.rstrip('/')}/alerts/{alert_id}"


def cap_base_url(public_base: str) -> str:
    """Where each released version's CAP document is served: {base}/{identifier}.xml."""
    return f"{public_base.rstrip('/')}/cap"


def channel_version(stored: StoredVersion, public_base: str, now: datetime) -> AlertVersion:
    """The version with its CAP identity; unreleased versions get a visible preview identity."""
    released = stored.identifier is not None and stored.sent_at is not None
    return AlertVersion(
        alert_id=stored.alert_id,
        version_id=stored.id,
        number=stored.number,
        identifier=stored.identifier if released and stored.identifier else PREVIEW_IDENTIFIER,
        sender=stored.sender if released and stored.sender else PREVIEW_SENDER,
        sent=stored.sent_at if released and stored.sent_at else now,
        content=stored.record.content,
        public_url=alert_page_url(public_base, stored.alert_id),
    )
