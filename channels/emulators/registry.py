"""Every platform emulator, for the demo, drills and benchmarks."""

from __future__ import annotations

from typing import Final

from channels.emulators.base import Emulator
from channels.emulators.cap import CapHubEmulator
from channels.emulators.email import SmtpEmulator
from channels.emulators.facebook import FacebookEmulator
from channels.emulators.instagram import InstagramEmulator
from channels.emulators.mastodon import MastodonEmulator
from channels.emulators.sms import TwilioEmulator
from channels.emulators.telegram import TelegramEmulator
from channels.emulators.webhook import WebhookReceiverEmulator
from channels.emulators.x import XEmulator

EMULATORS: Final[tuple[type[Emulator], ...]] = (
    XEmulator,
    FacebookEmulator,
    InstagramEmulator,
    MastodonEmulator,
    TelegramEmulator,
    TwilioEmulator,
    SmtpEmulator,
    WebhookReceiverEmulator,
    CapHubEmulator,
)
