"""Delivery keys and what a board shows of a recipient."""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from broadcaster.dispatch.payload import (
    delivery_key,
    mask_recipient,
    part_key,
    receipt_from_json,
    receipt_json_text,
    receipt_to_json,
)
from channels.base import Receipt


def test_keys_are_stable_unique_and_never_carry_a_phone_number() -> None:
    one = delivery_key("CB-7-1", "sms-county", "+12025550142")
    assert one == delivery_key("CB-7-1", "sms-county", "+12025550142")
    assert one != delivery_key("CB-7-1", "sms-county", "+12025550143")
    assert one != delivery_key("CB-7-2", "sms-county", "+12025550142")
    assert "2025550142" not in one
    assert part_key(one, 2) == one + ":2"


def test_keys_fit_the_column_whatever_the_target_is_called() -> None:
    key = delivery_key("CB-1234567-12", "t" * 200, "someone@example.org")
    assert len(part_key(key, 6)) <= 128
    assert key != delivery_key("CB-1234567-12", "t" * 199 + "u", "someone@example.org")


def test_a_board_sees_enough_to_tell_people_apart_not_to_call_them() -> None:
    assert mask_recipient("+12025550142") == "+1202***42"
    assert mask_recipient("resident@example.org") == "r***@example.org"
    assert mask_recipient(None) is None


@pytest.mark.parametrize(
    "extra",
    [
        {"to": "+12025550142", "status": "queued", "num_segments": 1, "language": None},
        {"sent": datetime(2026, 11, 22, 3, 4, 5, tzinfo=UTC), "ids": (1, 2), "ok": True},
        {"nested": MappingProxyType({"at": datetime(2026, 1, 1, tzinfo=UTC)})},
        OrderedDict(thing=object.__new__(type("Opaque", (), {"__str__": lambda _: "opaque"}))),
        {(1, 2): "a key JSON cannot take"},
        {True: "yes", None: "nothing", 2: "two", "2": "text two"},  # keys str() writes its way
    ],
)
def test_a_receipt_is_written_as_the_walked_json_would_be(extra: dict[str, object]) -> None:
    receipt = Receipt(
        "sms",
        "county-sms",
        "SM1",
        "https://example.org/1",
        datetime(2026, 11, 22, tzinfo=UTC),
        extra,
    )
    text = receipt_json_text(receipt)
    assert text == json.dumps(receipt_to_json(receipt))
    assert receipt_from_json(json.loads(text)).external_id == "SM1"
