"""Distribution lists for the SMS and email channels: import, opt-outs, and choosing recipients.

A list is imported from CSV (header row; columns phone, email, latitude, longitude, language;
only phone is required). The whole file is checked first and nothing is written if any row is
wrong, so a list is never half-imported; every error names its row, column and value.
Re-importing a list updates the contacts it already has and adds new ones; with `replace` the
contacts missing from the file are removed.

Opt-outs are kept per phone number, not per list (table sms_opt_outs): STOP withdraws consent
from the sender, every list here is sent from the same sender, and Twilio refuses further sends
to that number anyway (error 21610). They survive re-imports, so a new CSV from a county
system never re-subscribes someone who texted STOP. START removes the opt-out.

Email is not affected by SMS STOP: it is a different channel with its own consent.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.alert import Area
from broadcaster.storage.schema import contact_lists, contacts, sms_opt_outs
from channels.email import check_address
from channels.geo import bounding_box, has_shapes, in_areas
from channels.sms_text import Keyword

__all__ = [
    "COLUMNS",
    "ContactList",
    "ContactRow",
    "ContactsError",
    "ImportRejected",
    "ImportResult",
    "Recipient",
    "RowError",
    "check_list_name",
    "import_contacts",
    "import_csv",
    "is_opted_out",
    "list_lists",
    "normalise_phone",
    "opt_out",
    "parse_csv",
    "record_keyword",
    "select_recipients",
]

COLUMNS: Final = ("phone", "email", "latitude", "longitude", "language")
LIST_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_E164: Final = re.compile(r"^\+[1-9][0-9]{1,14}$")
_SEPARATORS: Final = re.compile(r"[\s().-]")
# The same tag shape approvals.alert accepts for an info block's language.
_LANGUAGE: Final = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
# Rows per INSERT/DELETE: well under SQLite's 32,766 and PostgreSQL's 32,767 bound parameters.
_BATCH: Final = 2000
_SHOWN_ERRORS: Final = 20

Channel = Literal["sms", "email"]


class ContactsError(ValueError):
    """A contacts operation that cannot be done as asked; the message says why and what to do."""


@dataclass(frozen=True)
class RowError:
    line: int  # line in the file (1 is the header)
    column: str | None
    value: str | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportRejected(ContactsError):
    """The file has errors; nothing was imported."""

    def __init__(self, source: str, errors: Sequence[RowError]) -> None:
        self.errors = list(errors)
        shown = "\n".join(f"  {error}" for error in self.errors[:_SHOWN_ERRORS])
        more = len(self.errors) - _SHOWN_ERRORS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(
            f"{source}: {len(self.errors)} problem(s), nothing was imported; fix them and import "
            f"again:\n{shown}{tail}"
        )


@dataclass(frozen=True)
class ContactRow:
    phone: str
    email: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    language: str | None = None


@dataclass(frozen=True)
class ImportResult:
    list_name: str
    created_list: bool
    added: int
    updated: int
    removed: int
    total: int  # contacts on the list afterwards


@dataclass(frozen=True)
class ContactList:
    id: int
    name: str
    description: str | None
    contacts: int
    opted_out: int  # contacts whose number replied STOP
    with_email: int
    with_location: int
    created_at: datetime


@dataclass(frozen=True)
class Recipient:
    address: str  # an E.164 number for SMS, an email address for email
    language: str | None


# --- checking ----------------------------------------------------------------------------------


def check_list_name(name: str) -> str:
    if not LIST_NAME.match(name):
        raise ContactsError(
            f"list name {name!r} is not allowed: use 1-64 lowercase letters, digits, '.', '_' or "
            "'-', starting with a letter or digit (e.g. riverside-residents)"
        )
    return name


def normalise_phone(text: str) -> str:
    """`text` as E.164 ("+12025550142"); spaces, dots, dashes and brackets are dropped."""
    compact = _SEPARATORS.sub("", text)
    if _E164.match(compact):
        return compact
    if compact.isdigit():
        raise ValueError(
            f"phone {text!r} has no country code: write it in E.164 form, '+' then country code "
            "and number, e.g. +12025550142"
        )
    raise ValueError(
        f"phone {text!r} is not an E.164 number: '+' then country code and number, at most 15 "
        "digits, e.g. +12025550142"
    )


def _coordinate(text: str, name: str, bound: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number (decimal degrees, e.g. 38.05)") from None
    if not -bound <= value <= bound:
        raise ValueError(
            f"{name} {value} is outside -{bound:g}..{bound:g} (are latitude and longitude swapped?)"
        )
    return value


def _row(line: int, fields: dict[str, str]) -> tuple[ContactRow | None, list[RowError]]:
    errors: list[RowError] = []

    def problem(column: str, message: str) -> None:
        errors.append(RowError(line, column, fields.get(column), message))

    phone = None
    raw_phone = fields.get("phone", "")
    if not raw_phone:
        problem("phone", "phone is empty; every contact needs a mobile number")
    else:
        try:
            phone = normalise_phone(raw_phone)
        except ValueError as error:
            problem("phone", str(error))
    email = fields.get("email") or None
    if email is not None:
        try:
            email = check_address(email)
        except ValueError as error:
            problem("email", f"email {error}")
    latitude = longitude = None
    raw_lat, raw_lon = fields.get("latitude", ""), fields.get("longitude", "")
    if bool(raw_lat) != bool(raw_lon):
        given, missing = ("latitude", "longitude") if raw_lat else ("longitude", "latitude")
        problem(missing, f"{given} is given but {missing} is empty; give both or neither")
    elif raw_lat:
        try:
            latitude = _coordinate(raw_lat, "latitude", 90.0)
        except ValueError as error:
            problem("latitude", str(error))
        try:
            longitude = _coordinate(raw_lon, "longitude", 180.0)
        except ValueError as error:
            problem("longitude", str(error))
    language = fields.get("language") or None
    if language is not None and not _LANGUAGE.match(language):
        problem("language", f"language {language!r} is not a language tag like 'en-US' or 'es'")
    if errors or phone is None:
        return None, errors
    return ContactRow(phone, email, latitude, longitude, language), []


def parse_csv(lines: Iterable[str]) -> tuple[list[ContactRow], list[RowError]]:
    """Contacts from CSV text (open files with newline="" and encoding "utf-8-sig"), and every
    problem found. Blank lines are skipped; a phone number may appear once per file."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return [], [RowError(1, None, None, "the file is empty; the first line must be a header")]
    names = [name.strip().lower() for name in header]
    errors: list[RowError] = []
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        errors.append(
            RowError(
                1,
                None,
                ", ".join(unknown),
                f"unknown column(s) {', '.join(map(repr, unknown))}; the columns are "
                f"{', '.join(COLUMNS)} (only phone is required)",
            )
        )
    if "phone" not in names:
        errors.append(RowError(1, "phone", None, "the header has no 'phone' column"))
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        errors.append(RowError(1, None, None, f"column(s) {', '.join(repeated)} appear twice"))
    if errors:
        return [], errors
    rows: list[ContactRow] = []
    seen: dict[str, int] = {}
    for values in reader:
        line = reader.line_num
        if not any(value.strip() for value in values):
            continue
        if len(values) > len(names):
            errors.append(
                RowError(
                    line,
                    None,
                    None,
                    f"{len(values)} fields but the header has {len(names)}; quote values that "
                    "contain commas",
                )
            )
            continue
        fields = {name: value.strip() for name, value in zip(names, values, strict=False)}
        row, problems = _row(line, fields)
        errors.extend(problems)
        if row is None:
            continue
        if row.phone in seen:
            errors.append(
                RowError(
                    line,
                    "phone",
                    row.phone,
                    f"phone {row.phone} is already on line {seen[row.phone]}",
                )
            )
            continue
        seen[row.phone] = line
        rows.append(row)
    return rows, errors


# --- importing ---------------------------------------------------------------------------------


def _upsert(connection: AsyncConnection) -> Any:
    """INSERT ... ON CONFLICT (list_id, phone) DO UPDATE, in the backend's own dialect."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(contacts)
    return statement.on_conflict_do_update(
        index_elements=[contacts.c.list_id, contacts.c.phone],
        set_={
            "email": statement.excluded.email,
            "latitude": statement.excluded.latitude,
            "longitude": statement.excluded.longitude,
            "language": statement.excluded.language,
            "updated_at": statement.excluded.updated_at,
        },
    )


async def _list_id(
    connection: AsyncConnection, name: str, description: str | None, now: datetime
) -> tuple[int, bool]:
    found = (
        await connection.execute(select(contact_lists.c.id).where(contact_lists.c.name == name))
    ).scalar()
    if found is not None:
        if description is not None:
            await connection.execute(
                contact_lists.update()
                .where(contact_lists.c.id == found)
                .values(description=description, updated_at=now)
            )
        return int(found), False
    created = await connection.execute(
        contact_lists.insert()
        .values(name=name, description=description, created_at=now)
        .returning(contact_lists.c.id)
    )
    return int(created.scalar_one()), True


async def import_contacts(
    connection: AsyncConnection,
    list_name: str,
    rows: Sequence[ContactRow],
    *,
    replace: bool = False,
    description: str | None = None,
    now: datetime | None = None,
) -> ImportResult:
    """Add or update `rows` on the list (made if new), in the caller's transaction."""
    check_list_name(list_name)
    now = now or datetime.now(UTC)
    list_id, created = await _list_id(connection, list_name, description, now)
    existing = set(
        (
            await connection.execute(select(contacts.c.phone).where(contacts.c.list_id == list_id))
        ).scalars()
    )
    values = [
        {
            "list_id": list_id,
            "phone": row.phone,
            "email": row.email,
            "latitude": row.latitude,
            "longitude": row.longitude,
            "language": row.language,
            "created_at": now,
            "updated_at": now,
        }
        for row in rows
    ]
    upsert = _upsert(connection)
    for start in range(0, len(values), _BATCH):
        await connection.execute(upsert, values[start : start + _BATCH])
    incoming = {row.phone for row in rows}
    gone = sorted(existing - incoming) if replace else []
    for start in range(0, len(gone), _BATCH):
        await connection.execute(
            delete(contacts).where(
                contacts.c.list_id == list_id, contacts.c.phone.in_(gone[start : start + _BATCH])
            )
        )
    updated = len(incoming & existing)
    return ImportResult(
        list_name=list_name,
        created_list=created,
        added=len(incoming) - updated,
        updated=updated,
        removed=len(gone),
        total=len(existing | incoming) - len(gone),
    )


async def import_csv(
    connection: AsyncConnection,
    list_name: str,
    lines: Iterable[str],
    *,
    source: str = "CSV",
    replace: bool = False,
    description: str | None = None,
    now: datetime | None = None,
) -> ImportResult:
    """Parse and import a CSV file; ImportRejected (nothing written) if any line is wrong."""
    check_list_name(list_name)
    rows, errors = parse_csv(lines)
    if errors:
        raise ImportRejected(source, errors)
    return await import_contacts(
        connection, list_name, rows, replace=replace, description=description, now=now
    )


# --- reading -----------------------------------------------------------------------------------


async def list_lists(connection: AsyncConnection) -> list[ContactList]:
    query = (
        select(
            contact_lists.c.id,
            contact_lists.c.name,
            contact_lists.c.description,
            contact_lists.c.created_at,
            func.count(contacts.c.id).label("contacts"),
            func.count(sms_opt_outs.c.phone).label("opted_out"),
            func.count(contacts.c.email).label("with_email"),
            func.count(contacts.c.latitude).label("with_location"),
        )
        .select_from(contact_lists)
        .outerjoin(contacts, contacts.c.list_id == contact_lists.c.id)
        .outerjoin(sms_opt_outs, sms_opt_outs.c.phone == contacts.c.phone)
        .group_by(
            contact_lists.c.id,
            contact_lists.c.name,
            contact_lists.c.description,
            contact_lists.c.created_at,
        )
        .order_by(contact_lists.c.name)
    )
    return [
        ContactList(
            id=row.id,
            name=row.name,
            description=row.description,
            contacts=row.contacts,
            opted_out=row.opted_out,
            with_email=row.with_email,
            with_location=row.with_location,
            created_at=row.created_at,
        )
        for row in await connection.execute(query)
    ]


async def select_recipients(
    connection: AsyncConnection,
    list_name: str,
    channel: Channel,
    *,
    areas: Sequence[Area] | None = None,
) -> list[Recipient]:
    """Who on the list gets this alert on `channel`, in import order.

    SMS: every contact whose number has not opted out. Email: every contact with an address
    (each address once). With `areas`, only contacts whose location lies in one of the areas'
    polygons or circles; contacts without a location are then left out, since nobody can say
    they are inside."""
    list_id = (
        await connection.execute(
            select(contact_lists.c.id).where(contact_lists.c.name == list_name)
        )
    ).scalar()
    if list_id is None:
        raise ContactsError(
            f"no contact list named {list_name!r}; import one with "
            f"`broadcaster contacts import {list_name} FILE.csv`"
        )
    query = select(
        contacts.c.phone,
        contacts.c.email,
        contacts.c.language,
        contacts.c.latitude,
        contacts.c.longitude,
    ).where(contacts.c.list_id == list_id)
    if channel == "sms":
        query = query.outerjoin(sms_opt_outs, sms_opt_outs.c.phone == contacts.c.phone).where(
            sms_opt_outs.c.phone.is_(None)
        )
    else:
        query = query.where(contacts.c.email.is_not(None))
    if areas is not None:
        if not has_shapes(areas):
            raise ContactsError(
                "the alert's areas have no polygon or circle, only descriptions or geocodes, so "
                "nobody can be chosen by location; send to the whole list or draw the area"
            )
        query = query.where(contacts.c.latitude.is_not(None), contacts.c.longitude.is_not(None))
        box = bounding_box(areas)
        if box is not None:  # a cheap first cut in the database; the exact test follows
            query = query.where(
                contacts.c.latitude.between(box.min_lat, box.max_lat),
                contacts.c.longitude.between(box.min_lon, box.max_lon),
            )
    recipients: list[Recipient] = []
    seen: set[str] = set()
    # Unpacked by position: a list is 100,000 rows, and a Row's attribute lookup costs ten
    # times an index.
    by_sms = channel == "sms"
    rows = await connection.execute(query.order_by(contacts.c.id))
    for phone, email, language, latitude, longitude in rows:
        if areas is not None and not in_areas(latitude, longitude, areas):
            continue
        address = phone if by_sms else email
        if address in seen:
            continue
        seen.add(address)
        recipients.append(Recipient(address=address, language=language))
    return recipients


# --- opt-outs ----------------------------------------------------------------------------------


def _phone(phone: str) -> str:
    try:
        return normalise_phone(phone)
    except ValueError as error:
        raise ContactsError(str(error)) from None


async def is_opted_out(connection: AsyncConnection, phone: str) -> bool:
    found = await connection.execute(
        select(sms_opt_outs.c.phone).where(sms_opt_outs.c.phone == _phone(phone))
    )
    return found.first() is not None


async def opt_out(
    connection: AsyncConnection, phone: str, *, source: str, now: datetime | None = None
) -> bool:
    """Record that `phone` must get no more SMS (a STOP, or Twilio's 21610). True if new."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(sms_opt_outs)
        .values(phone=_phone(phone), source=source[:64], opted_out_at=now or datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=[sms_opt_outs.c.phone])
    )
    result = await connection.execute(statement)
    return bool(result.rowcount)


async def record_keyword(
    connection: AsyncConnection,
    phone: str,
    keyword: Keyword | str,
    *,
    now: datetime | None = None,
) -> bool:
    """Act on a carrier keyword texted by `phone` (raw["keyword"] of an inbound SMS): STOP opts
    the number out of every list, START opts it back in, HELP changes nothing (Twilio answers
    it). True when the opt-out state changed."""
    try:
        kind = Keyword(str(keyword).lower())
    except ValueError:
        raise ContactsError(
            f"{keyword!r} is not a carrier keyword kind; use one of "
            f"{', '.join(k.value for k in Keyword)}"
        ) from None
    if kind is Keyword.stop:
        return await opt_out(connection, phone, source="keyword STOP", now=now)
    if kind is Keyword.start:
        result = await connection.execute(
            delete(sms_opt_outs).where(sms_opt_outs.c.phone == _phone(phone))
        )
        return bool(result.rowcount)
    return False
