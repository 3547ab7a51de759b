"""The frozen payloads a worker has read, by id (delivery_payloads rows never change).

A release writes one payload per distinct rendering and its deliveries reference it, so a claim
of 500 deliveries of one list needs one payload: read once, parsed once, then shared (Payload is
immutable). Each dispatcher has its own cache: ids are only unique within one database.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

from sqlalchemy import Text, cast, select
from sqlalchemy.ext.asyncio import AsyncConnection

from broadcaster.dispatch.payload import Payload
from broadcaster.storage.schema import delivery_payloads
from broadcaster.storage.sql import any_of

# Distinct renderings a worker is likely to be sending at once: a handful per live version.
_KEPT: Final = 1024

# A delivery without a payload (dead at release: nothing rendered) has nothing to send.
NOTHING: Final = Payload((), "")


class PayloadCache:
    def __init__(self) -> None:
        self._known: OrderedDict[int, tuple[int, Payload]] = OrderedDict()

    async def load(self, connection: AsyncConnection, ids: Iterable[int | None]) -> None:
        """Read the payloads among `ids` not known yet (in the caller's transaction)."""
        missing = sorted({i for i in ids if i is not None and i not in self._known})
        if missing:
            rows = await connection.execute(
                select(
                    delivery_payloads.c.id,
                    delivery_payloads.c.version_id,
                    # Read as text and parsed here: the driver's JSON decoding differs by backend.
                    cast(delivery_payloads.c.payload, Text),
                ).where(any_of(connection, delivery_payloads.c.id, missing))
            )
            for payload_id, version_id, text in rows:
                self._known[payload_id] = (version_id, Payload.from_json(json.loads(text)))
        while len(self._known) > _KEPT:
            self._known.popitem(last=False)

    def get(self, payload_id: int | None, version_id: int) -> Payload:
        """The payload of a delivery of `version_id` (loaded first with `load`)."""
        if payload_id is None:
            return NOTHING
        version, payload = self._known[payload_id]
        self._known.move_to_end(payload_id)
        if version != version_id:
            # Cannot happen (a release references only its own payloads); never send another
            # version's words if it ever does.
            raise RuntimeError(
                f"payload {payload_id} belongs to version {version}, not {version_id}"
            )
        return payload
