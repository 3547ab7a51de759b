"""Delivery keys and what a board shows of a recipient."""

from __future__ import annotations

from broadcaster.dispatch.payload import delivery_key, mask_recipient, part_key


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
