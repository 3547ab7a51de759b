"""The hash an approval binds to: equal meaning hashes equal, any change hashes differently."""

import json
import unicodedata
from datetime import UTC, datetime, timedelta, timezone

from approvals.alert import Severity
from approvals.canonical import canonical_json, content_hash
from tests.approvals.factories import content, info

HONOLULU = timezone(timedelta(hours=-10))


def test_canonical_json_is_compact_sorted_and_complete() -> None:
    text = canonical_json(content())
    assert text.startswith('{"channels":["sms","x"],"infos":[{"areas":[{"circles":[],')
    assert '": ' not in text and ', "' not in text
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["scope"] == "Public" and data["template"] is None  # defaults are written too


def test_hash_pins_the_canonical_form() -> None:
    # Changing the canonical form voids every stored approval; this must be a deliberate choice.
    assert content_hash(content()) == (
        "0703235b8af3e8fe242d2c2b19ee771a71d3726c1a08988d73a699a27ec2aaf0"
    )


def test_the_same_instant_in_any_time_zone_hashes_the_same() -> None:
    utc = datetime(2024, 5, 1, 20, 0, tzinfo=UTC)
    local = utc.astimezone(HONOLULU)
    first = content(infos=[info(expires=utc)])
    second = content(infos=[info(expires=local)])
    assert content_hash(first) == content_hash(second)
    assert '"expires":"2024-05-01T20:00:00Z"' in canonical_json(second)


def test_unicode_normalisation_does_not_change_the_hash() -> None:
    composed = unicodedata.normalize("NFC", "Évacuation à Hilo")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    first = content(headline=composed)
    second = content(headline=decomposed)
    assert content_hash(first) == content_hash(second)


def test_channel_order_does_not_matter_but_channels_do() -> None:
    assert content_hash(content(channels=["x", "sms"])) == content_hash(
        content(channels=["sms", "x"])
    )
    assert content_hash(content(channels=["x"])) != content_hash(content(channels=["x", "sms"]))


def test_negative_zero_is_zero() -> None:
    ring = [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.0, 0.0)]
    negative = [(-0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (-0.0, 0.0)]
    first = content(infos=[info(areas=[{"description": "A", "polygons": [ring]}])])
    second = content(infos=[info(areas=[{"description": "A", "polygons": [negative]}])])
    assert content_hash(first) == content_hash(second)


def test_every_visible_change_changes_the_hash() -> None:
    base = content_hash(content())
    changed = [
        content(headline="Flood warning for the river valley!"),
        content(infos=[info(description="The river is rising fast.")]),
        content(infos=[info(areas=[{"description": "River valley and town"}])]),
        content(severity=Severity.severe),
        content(channels=["x", "sms", "email"]),
        content(note="drill note"),
    ]
    hashes = {content_hash(item) for item in changed}
    assert base not in hashes
    assert len(hashes) == len(changed)
    assert all(len(digest) == 64 and int(digest, 16) >= 0 for digest in hashes)
