"""A worker never takes over its own lapsed leases, and only its own count as its own."""

from __future__ import annotations

import sqlite3

import pytest

from broadcaster.dispatch.claims import _like_prefix


@pytest.mark.parametrize(
    ("worker", "owner", "ours"),
    [
        ("host-1", "host-1/7", True),
        ("host-1", "host-10/7", False),
        ("w_1", "wx1/3", False),  # "_" is a LIKE wildcard: escaped, it means itself
        ("w_1", "w_1/3", True),
        ("50%", "500/1", False),
        ("a/b", "a/b/2", True),
        ("a/b", "a/bc/2", False),
    ],
)
def test_the_lease_owner_pattern_matches_only_this_workers_tokens(
    worker: str, owner: str, ours: bool
) -> None:
    with sqlite3.connect(":memory:") as connection:
        [(matched,)] = connection.execute(
            "SELECT ? LIKE ? ESCAPE '/'", (owner, _like_prefix(worker + "/"))
        )
    assert bool(matched) is ours
