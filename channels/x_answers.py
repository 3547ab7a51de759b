"""X's answers, as the X channel reads them: pages of v2 posts, a created or deleted post, the
account, and the v1.1 posts the Account Activity webhook delivers.

Kept apart from the channel so that module holds what the channel does, and this one only the
shapes it reads. Every model ignores fields it does not name, so X adding a field breaks nothing.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["ActivityEvents", "Created", "Deleted", "Me", "Page", "Tweet", "User", "V1Tweet"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Reference(_Answer):
    type: str
    id: str


class _Url(_Answer):
    url: str  # the t.co link X put in the text
    expanded_url: str | None = None


class _Entities(_Answer):
    urls: tuple[_Url, ...] = ()


class Tweet(_Answer):
    id: str
    text: str
    author_id: str | None = None
    created_at: datetime | None = None
    conversation_id: str | None = None
    referenced_tweets: tuple[_Reference, ...] = ()
    entities: _Entities | None = None

    def replied_to(self) -> str | None:
        return next((ref.id for ref in self.referenced_tweets if ref.type == "replied_to"), None)

    def display_text(self) -> str:
        """The text as written: X escapes &, < and > and wraps every link in t.co."""
        text = html.unescape(self.text)
        for url in self.entities.urls if self.entities else ():
            text = text.replace(url.url, url.expanded_url or url.url)
        return text


class User(_Answer):
    id: str
    username: str
    name: str


class _Includes(_Answer):
    users: tuple[User, ...] = ()


class _Meta(_Answer):
    result_count: int = 0
    newest_id: str | None = None
    next_token: str | None = None


class Page(_Answer):
    data: tuple[Tweet, ...] = ()
    includes: _Includes = _Includes()
    meta: _Meta = _Meta()


class _CreatedTweet(_Answer):
    id: str
    text: str


class Created(_Answer):
    data: _CreatedTweet


class _DeletedFlag(_Answer):
    deleted: bool


class Deleted(_Answer):
    data: _DeletedFlag


class Me(_Answer):
    data: User


class _V1User(_Answer):
    id_str: str
    screen_name: str
    name: str


class _V1Extended(_Answer):
    full_text: str


class V1Tweet(_Answer):
    """A v1.1 tweet object, as the Account Activity API delivers it."""

    id_str: str
    created_at: str  # "Wed Oct 10 20:19:24 +0000 2018"
    text: str = ""
    full_text: str | None = None
    extended_tweet: _V1Extended | None = None
    user: _V1User
    in_reply_to_status_id_str: str | None = None
    retweeted_status: dict[str, Any] | None = None
    entities: _Entities | None = None


class ActivityEvents(_Answer):
    for_user_id: str
    tweet_create_events: tuple[V1Tweet, ...] = ()
