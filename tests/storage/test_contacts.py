"""Distribution lists on both backends: CSV import with per-line errors, opt-outs that outlive
re-imports, choosing recipients by channel and by alert area; and the `contacts` commands."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from approvals.alert import Area, Circle
from broadcaster import cli, contacts
from broadcaster.cli_contacts import add_contacts_commands
from channels.sms_text import Keyword
from tests.channels import samples

HEADER = "phone,email,latitude,longitude,language\n"
# Riverside (samples.AREA): inside the triangle, inside only the circle, and outside both.
IN_POLYGON = (38.08, -121.98)
IN_CIRCLE = (38.04, -121.94)
OUTSIDE = (38.3, -121.5)
RIVERSIDE = (Area.model_validate(samples.AREA),)


def _csv(*lines: str, header: str = HEADER) -> io.StringIO:
    return io.StringIO(header + "".join(f"{line}\n" for line in lines))


# --- parsing (pure) ------------------------------------------------------------------------------


def test_a_good_file_with_loose_phone_formatting() -> None:
    rows, errors = contacts.parse_csv(
        _csv(
            "+1 (202) 555-0142,ana@example.org,38.08,-121.98,es-US",
            "+12025550143,,,,",
            "",
            "+44 20 7946 0958,,,,en-GB",
        )
    )
    assert errors == []
    assert rows == [
        contacts.ContactRow("+12025550142", "ana@example.org", 38.08, -121.98, "es-US"),
        contacts.ContactRow("+12025550143"),
        contacts.ContactRow("+442079460958", language="en-GB"),
    ]


def test_header_names_are_trimmed_any_case_and_any_order() -> None:
    rows, errors = contacts.parse_csv(_csv("es,+12025550142", header=" Language , PHONE\n"))
    assert errors == []
    assert rows == [contacts.ContactRow("+12025550142", language="es")]


@pytest.mark.parametrize(
    ("line", "column", "message"),
    [
        (",a@example.org,,,", "phone", "phone is empty"),
        ("2025550142,,,,", "phone", "has no country code"),
        ("+0123,,,,", "phone", "is not an E.164 number"),
        ("+1202555014212345678,,,,", "phone", "is not an E.164 number"),
        ("+12025550142,ana(at)example.org,,,", "email", "is not an email address"),
        ("+12025550142,,38.1,,", "longitude", "latitude is given but longitude is empty"),
        ("+12025550142,,,-121.9,", "latitude", "longitude is given but latitude is empty"),
        ("+12025550142,,north,-121.9,", "latitude", "'north' is not a number"),
        ("+12025550142,,-121.9,38.1,", "latitude", "are latitude and longitude swapped?"),
        ("+12025550142,,38.1,-190,", "longitude", "outside -180..180"),
        ("+12025550142,,,,english", "language", "is not a language tag"),
        ("+12025550142,,,,,extra", None, "6 fields but the header has 5"),
    ],
)
def test_each_bad_line_says_line_column_and_what_to_do(
    line: str, column: str | None, message: str
) -> None:
    rows, errors = contacts.parse_csv(_csv("+12025550100,,,,", line))
    assert rows == [contacts.ContactRow("+12025550100")]
    [error] = errors
    assert (error.line, error.column) == (3, column)
    assert message in error.message
    assert str(error).startswith("line 3: ")


def test_a_number_twice_names_the_first_line() -> None:
    _, errors = contacts.parse_csv(_csv("+12025550142,,,,", "+1 202 555 0142,,,,"))
    assert [str(e) for e in errors] == ["line 3: phone +12025550142 is already on line 2"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "the file is empty"),
        ("fone,email\n", "unknown column(s) 'fone'"),
        ("email\n", "the header has no 'phone' column"),
        ("phone,phone\n", "phone appear twice"),
    ],
)
def test_bad_headers(header: str, message: str) -> None:
    _, errors = contacts.parse_csv(io.StringIO(header))
    assert any(message in str(error) for error in errors), errors


# --- importing -----------------------------------------------------------------------------------


def _rows(*specs: tuple[str, tuple[float, float] | None]) -> list[contacts.ContactRow]:
    return [
        contacts.ContactRow(
            phone,
            email=f"{phone[1:]}@example.org",
            latitude=where[0] if where else None,
            longitude=where[1] if where else None,
        )
        for phone, where in specs
    ]


async def test_import_then_reimport_merges_or_replaces(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        first = await contacts.import_contacts(
            connection,
            "riverside",
            _rows(("+12025550101", None), ("+12025550102", None)),
            description="Riverside residents",
        )
        again = await contacts.import_contacts(
            connection, "riverside", _rows(("+12025550102", IN_POLYGON), ("+12025550103", None))
        )
        replaced = await contacts.import_contacts(
            connection, "riverside", _rows(("+12025550103", None)), replace=True
        )
    assert (first.created_list, first.added, first.updated, first.total) == (True, 2, 0, 2)
    assert (again.created_list, again.added, again.updated, again.total) == (False, 1, 1, 3)
    assert (replaced.removed, replaced.total) == (2, 1)
    async with engine.connect() as connection:
        [listed] = await contacts.list_lists(connection)
    assert (listed.name, listed.description, listed.contacts) == (
        "riverside",
        "Riverside residents",
        1,
    )


async def test_a_file_with_any_error_imports_nothing(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        with pytest.raises(contacts.ImportRejected) as rejected:
            await contacts.import_csv(
                connection,
                "riverside",
                _csv("+12025550101,,,,", "555-0102,,,,", "+12025550103,bad,,,"),
                source="residents.csv",
            )
        assert await contacts.list_lists(connection) == []
    message = str(rejected.value)
    assert message.startswith("residents.csv: 2 problem(s), nothing was imported")
    assert "line 3: phone '555-0102' has no country code" in message
    assert "line 4: email 'bad' is not an email address" in message


async def test_list_names_are_checked(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        with pytest.raises(contacts.ContactsError, match="list name 'Riverside Residents'"):
            await contacts.import_contacts(connection, "Riverside Residents", [])


async def test_a_hundred_thousand_contacts_import_whole(engine: AsyncEngine) -> None:
    # How fast is measured by a benchmark, never a timed test; this checks nothing is lost.
    lines = [
        f"+1202{n:07d},person{n}@example.org,{38 + n % 1000 / 10000},{-122 + n % 997 / 10000},en"
        for n in range(100_000)
    ]
    async with engine.begin() as connection:
        result = await contacts.import_csv(connection, "county", _csv(*lines))
    assert (result.added, result.total) == (100_000, 100_000)
    async with engine.connect() as connection:
        chosen = await contacts.select_recipients(connection, "county", "sms", areas=RIVERSIDE)
    assert 0 < len(chosen) < 100_000


# --- choosing recipients -------------------------------------------------------------------------


async def _riverside(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await contacts.import_contacts(
            connection,
            "riverside",
            [
                contacts.ContactRow("+12025550101", "a@example.org", *IN_POLYGON, "es-US"),
                contacts.ContactRow("+12025550102", None, *IN_CIRCLE),
                contacts.ContactRow("+12025550103", "c@example.org", *OUTSIDE),
                contacts.ContactRow("+12025550104", "a@example.org"),  # no location; shared email
            ],
        )


async def test_sms_and_email_recipients(engine: AsyncEngine) -> None:
    await _riverside(engine)
    async with engine.connect() as connection:
        sms = await contacts.select_recipients(connection, "riverside", "sms")
        email = await contacts.select_recipients(connection, "riverside", "email")
    assert [r.address for r in sms] == [
        "+12025550101",
        "+12025550102",
        "+12025550103",
        "+12025550104",
    ]
    assert sms[0].language == "es-US"
    assert [r.address for r in email] == ["a@example.org", "c@example.org"]  # each address once


async def test_only_contacts_inside_the_area(engine: AsyncEngine) -> None:
    await _riverside(engine)
    async with engine.connect() as connection:
        inside = await contacts.select_recipients(connection, "riverside", "sms", areas=RIVERSIDE)
        small = (
            Area(description="circle", circles=(Circle(lat=38.04, lon=-121.94, radius_km=1),)),
        )
        circle = await contacts.select_recipients(connection, "riverside", "email", areas=small)
        with pytest.raises(contacts.ContactsError, match="no polygon or circle"):
            await contacts.select_recipients(
                connection, "riverside", "sms", areas=(Area(description="Riverside"),)
            )
        with pytest.raises(contacts.ContactsError, match="no contact list named 'hillside'"):
            await contacts.select_recipients(connection, "hillside", "sms")
    assert [r.address for r in inside] == ["+12025550101", "+12025550102"]
    assert circle == []  # the contact in that circle has no email


async def test_stop_removes_a_number_from_every_list_and_survives_reimport(
    engine: AsyncEngine,
) -> None:
    await _riverside(engine)
    async with engine.begin() as connection:
        await contacts.import_contacts(connection, "hillside", _rows(("+12025550101", None)))
        assert await contacts.record_keyword(connection, "+12025550101", "stop")
        assert not await contacts.record_keyword(connection, "+1 202 555 0101", Keyword.stop)
        assert not await contacts.record_keyword(connection, "+12025550101", Keyword.help)
        # A fresh CSV from the county's system must not re-subscribe them.
        await contacts.import_contacts(connection, "riverside", _rows(("+12025550101", None)))
    async with engine.connect() as connection:
        riverside = await contacts.select_recipients(connection, "riverside", "sms")
        hillside = await contacts.select_recipients(connection, "hillside", "sms")
        email = await contacts.select_recipients(connection, "riverside", "email")
        counts = {item.name: item.opted_out for item in await contacts.list_lists(connection)}
        assert await contacts.is_opted_out(connection, "+12025550101")
    assert "+12025550101" not in [r.address for r in riverside]
    assert hillside == []
    assert "12025550101@example.org" in [r.address for r in email]  # STOP is about SMS only
    assert counts == {"hillside": 1, "riverside": 1}
    async with engine.begin() as connection:
        assert await contacts.record_keyword(connection, "+12025550101", "START")
        assert not await contacts.record_keyword(connection, "+12025550101", "start")
        assert [r.address for r in await contacts.select_recipients(connection, "hillside", "sms")]
        with pytest.raises(contacts.ContactsError, match="not a carrier keyword"):
            await contacts.record_keyword(connection, "+12025550101", "pause")
        with pytest.raises(contacts.ContactsError, match="has no country code"):
            await contacts.record_keyword(connection, "2025550101", "stop")


async def test_twilio_unsubscribed_error_can_opt_out_too(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        assert await contacts.opt_out(connection, "+12025550109", source="twilio 21610")
        assert await contacts.is_opted_out(connection, "+12025550109")


# --- the commands --------------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """`broadcaster --config X contacts ...`, with the contacts commands added to the parser
    as broadcaster.cli will add them."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "broadcaster.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n[logging]\nformat = "text"\n')
    build = cli.build_parser

    def build_with_contacts() -> argparse.ArgumentParser:
        parser = build()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) and "contacts" not in action.choices:
                add_contacts_commands(action)
        return parser

    monkeypatch.setattr(cli, "build_parser", build_with_contacts)
    return lambda *argv: cli.main(["--config", str(config), *argv])


def test_contacts_commands(
    run: Callable[..., None], tmp_path: Path, capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    good = tmp_path / "residents.csv"
    good.write_text("\ufeff" + HEADER + "+12025550101,a@example.org,38.08,-121.98,es\n")
    run("contacts", "import", "riverside", str(good), "--description", "Riverside residents")
    assert (
        "riverside (new list): 1 added, 0 updated, 0 removed; 1 contacts" in capsys.readouterr().out
    )
    run("contacts", "list", "--json")
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["name"] == "riverside"
    assert (listed["contacts"], listed["with_email"], listed["with_location"]) == (1, 1, 1)
    run("contacts", "list")
    assert "Riverside residents" in capsys.readouterr().out

    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "555-0102,,,,\n")
    for argv, expected in [
        (("contacts", "import", "riverside", str(bad)), "line 2: phone '555-0102'"),
        (("contacts", "import", "riverside", str(tmp_path / "none.csv")), "cannot read"),
        (("contacts", "import", "Bad Name", str(good)), "list name 'Bad Name' is not allowed"),
    ]:
        with pytest.raises(SystemExit) as exited:
            run(*argv)
        assert exited.value.code == 1
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err

    run("audit", "verify")
    assert "audit log intact: 1 entries" in capsys.readouterr().out
