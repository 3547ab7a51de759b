"""Reading an X account's own timeline back to a moment, a bounded number of pages at a time.

Reconciliation has to be exact within its window: after an ambiguous failure, "not found" makes
the dispatcher post again, so a lookup that stopped early would post twice. The pager therefore
reads until X says there is nothing older in the window (no `next_token`), and when that takes
more than the configured number of pages it raises a TransientError instead of answering
"not found": the dispatcher then looks again later, the lookup still bounded.

The page cap is kept below X's own depth limit: GET /2/users/:id/tweets serves only an
account's newest 3,200 posts, so a timeline that ran out past that depth would look complete
while older posts in the window were never served.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Final, Protocol, TypeVar

from channels.base import TransientError

__all__ = [
    "MAX_PAGES_CEILING",
    "PAGE_CAP_CODE",
    "PAGE_SIZE",
    "TimelinePost",
    "find_in_window",
    "pages_back",
    "snowflake_at",
]

PAGE_SIZE: Final = 100  # X's max_results ceiling for a user timeline
# 31 pages of at most 100 stay under X's 3,200-post depth, so running out of pages always means
# "reached the start of the window", never "X stopped serving".
MAX_PAGES_CEILING: Final = 31
# TransientError.code when a lookup needs more pages than it may read.
PAGE_CAP_CODE: Final = "reconcile-page-cap"
# X's ids are snowflakes: milliseconds since this epoch, shifted left 22 bits.
_SNOWFLAKE_EPOCH_MS: Final = 1288834974657


class TimelinePost(Protocol):
    @property
    def id(self) -> str: ...

    def replied_to(self) -> str | None: ...


P = TypeVar("P", bound=TimelinePost)
# One page: the token of the page to read (None for the newest) -> its posts and the next token.
FetchPage = Callable[[str | None], Awaitable[tuple[Sequence[P], str | None]]]


def snowflake_at(moment: datetime) -> int:
    """The smallest id X can give a post made at `moment`."""
    return max(0, int(moment.timestamp() * 1000) - _SNOWFLAKE_EPOCH_MS) << 22


async def pages_back(
    fetch: FetchPage[P], *, max_pages: int, where: str
) -> AsyncGenerator[list[P], None]:
    """Pages newest first until X has no next page; TransientError if that is more than
    `max_pages` pages away."""
    token: str | None = None
    for _ in range(max_pages):
        posts, token = await fetch(token)
        yield list(posts)
        if token is None:
            return
    raise TransientError(
        f"{where}: more than {max_pages} pages of the account's posts to read; not answering "
        '"not found" without having looked at them all: look again later (or raise '
        "reconcile_max_pages)",
        code=PAGE_CAP_CODE,
    )


async def find_in_window(
    pages: AsyncGenerator[list[P], None],
    wanted: Callable[[P], bool],
    *,
    first_part: bool,
    window_start: datetime,
) -> P | None:
    """The post `wanted` accepts, in the right place: a thread's first part is no reply; a
    later part replies to one of the account's own posts.

    A later part's parent is older than the part, so it shows up on the same or a later page:
    candidates wait until their parent is seen. A parent older than the window is never served;
    it is accepted unseen, since the account's timeline holds only its own posts and X refuses
    the same text twice, so the candidate is the one post with these words."""
    seen: set[str] = set()
    waiting: list[P] = []
    async with contextlib.aclosing(pages) as reading:
        async for page in reading:
            for post in page:
                seen.add(post.id)
                if not wanted(post):
                    continue
                parent = post.replied_to()
                if first_part and parent is None:
                    return post
                if not first_part and parent is not None:
                    waiting.append(post)
            for post in waiting:  # newest first
                if post.replied_to() in seen:
                    return post
    oldest_servable = snowflake_at(window_start)
    for post in waiting:
        parent = post.replied_to()
        if parent is not None and parent.isdigit() and int(parent) < oldest_servable:
            return post
    return None
