"""Screening by each channel's own rendering: what a channel would cut or refuse is found at
submit, before an approver signs off words that would not fit."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from approvals.alert import AlertContent
from approvals.screening import ChannelCheck, Finding, Level
from broadcaster.targets import Directory
from channels.base import AlertVersion, ChannelError
from channels.registry import CHANNELS

_PREVIEW_SENT = datetime(2000, 1, 1, tzinfo=UTC)  # rendering must not depend on the clock


def channel_checks(directory: Directory, public_base: str) -> Mapping[str, ChannelCheck]:
    """One check per known channel: render with the first target of the alert's mode."""

    def check_for(channel: str) -> ChannelCheck:
        def check(content: AlertContent) -> list[Finding]:
            field = f"channels.{channel}"
            targets = directory.for_alert(channel, content.mode)
            if not targets:
                return [
                    Finding(
                        Level.warn,
                        "channel-no-target",
                        field,
                        f"no {content.mode.value} target is configured for {channel}: nothing "
                        "will be sent there; remove it from channels or ask an administrator",
                    )
                ]
            version = AlertVersion(
                alert_id=0,
                version_id=0,
                number=1,
                identifier="PREVIEW",
                sender="preview.invalid",
                sent=_PREVIEW_SENT,
                content=content,
                public_url=f"{public_base.rstrip('/')}/alerts/0",
            )
            try:
                posts = directory.adapter(targets[0].name).render(version)
            except (ChannelError, ValueError) as error:
                return [
                    Finding(
                        Level.block, "channel-render", field, f"{channel} cannot show it: {error}"
                    )
                ]
            over = [p for p in posts if p.limit is not None and p.length > p.limit]
            if over:
                return [
                    Finding(
                        Level.block,
                        "channel-length",
                        field,
                        f"{channel} part {over[0].part} is {over[0].length} long; the limit is "
                        f"{over[0].limit}: shorten the text",
                    )
                ]
            return []

        return check

    return {name: check_for(name) for name in CHANNELS}
