"""Every channel adapter by name: one place that says which platforms exist."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from channels.base import Channel
from channels.cap_channel import CapChannel
from channels.email import EmailChannel
from channels.facebook import FacebookChannel
from channels.instagram import InstagramChannel
from channels.mastodon import MastodonChannel
from channels.sms import SmsChannel
from channels.telegram import TelegramChannel
from channels.webhook import WebhookChannel
from channels.x import XChannel

CHANNELS: Final[Mapping[str, type[Channel]]] = MappingProxyType(
    {
        channel.name: channel
        for channel in (
            XChannel,
            FacebookChannel,
            InstagramChannel,
            MastodonChannel,
            TelegramChannel,
            SmsChannel,
            EmailChannel,
            WebhookChannel,
            CapChannel,
        )
    }
)
