"""Answering a reporter on the channel their report came from.

What each source allows, with the adapters we have:
    x         a reply to their post (X notifies them)
    mastodon  a reply to their status, starting with their @handle so Mastodon notifies them
    sms       a text to their number, unless they texted STOP (their opt-out is honoured)
    facebook, instagram   not yet: the Meta adapters post to the Page only and cannot comment
    telegram  not yet: the adapter posts to the alert channel only; a reply there would be a
              public channel post, not an answer in the discussion group
    form      no channel: the responder uses the contact the person gave, if any
The refusal says so, rather than posting somewhere the reporter will not see it.

Replies go out directly from the request (the alert dispatcher is not involved); the platform's
error is stored on the reply and shown, and nothing retries behind the responder's back. The
idempotency key is the reply's own id, so "send again" is a new reply, deliberately.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from broadcaster.targets import Directory
from channels.base import ChannelError, Post, Receipt
from channels.x_text import MAX_WEIGHTED_LENGTH, weighted_length

__all__ = ["REPLYABLE", "ReplyImpossible", "SendOutcome", "check_length", "reply_text", "send"]

REPLYABLE: Final = frozenset({"x", "mastodon", "sms"})
_WHY_NOT: Final = {
    "facebook": "the Facebook adapter posts to the Page only and cannot comment on a comment yet",
    "instagram": "the Instagram adapter posts to the account only and cannot answer a comment yet",
    "telegram": (
        "the Telegram adapter posts to the alert channel only; a reply there would be a public "
        "channel post, not an answer to this person"
    ),
    "form": "a report from the public form has no channel to answer on",
}


class ReplyImpossible(Exception):
    """This report cannot be answered on its channel; the message says why and what to do."""


@dataclass(frozen=True)
class SendOutcome:
    external_id: str | None
    error: str | None


def check_possible(report: Mapping[str, Any], directory: Directory) -> None:
    source = report["source"]
    if source not in REPLYABLE:
        why = _WHY_NOT.get(source, f"the {source} channel takes no replies")
        contact = " Use the contact the reporter gave." if report.get("contact") else ""
        raise ReplyImpossible(f"Cannot reply on {source}: {why}.{contact}")
    target = report.get("target")
    if not target or target not in directory.targets:
        raise ReplyImpossible(
            f"Cannot reply: the report came in on target {target!r}, which is not configured "
            "any more; answer on the platform directly."
        )


def reply_text(report: Mapping[str, Any], text: str) -> str:
    """What is posted: on Mastodon the reply starts with the reporter's handle."""
    if report["source"] == "mastodon" and report.get("author_name"):
        handle = "@" + str(report["author_name"]).lstrip("@")
        if not text.startswith(handle):
            return f"{handle} {text}"
    return text


def check_length(report: Mapping[str, Any], text: str, max_length: int) -> str | None:
    """Why `text` is too long for this report's channel, or None."""
    if len(text) > max_length:
        return f"the reply is {len(text)} characters; the limit is {max_length}"
    if report["source"] == "x" and weighted_length(text) > MAX_WEIGHTED_LENGTH:
        return (
            f"the reply weighs {weighted_length(text)} of X's {MAX_WEIGHTED_LENGTH} "
            "(emoji and some scripts count double): shorten it"
        )
    return None


async def send(
    directory: Directory, report: Mapping[str, Any], text: str, language: str | None, key: str
) -> SendOutcome:
    """Publish the reply through the report's target; the platform's error, if any, as text."""
    adapter = directory.adapter(str(report["target"]))
    source = str(report["source"])
    post = Post(text=text, length=len(text), language=language)
    recipient = str(report["contact"]) if source == "sms" else None
    reply_to = Receipt(source, str(report["target"]), str(report["external_id"]))
    try:
        receipt = await adapter.publish(post, key, reply_to=reply_to, recipient=recipient)
    except ChannelError as error:
        return SendOutcome(None, f"{type(error).__name__}: {error.message}")
    return SendOutcome(receipt.external_id, None)
