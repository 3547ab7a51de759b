"""`broadcaster contacts ...`: import and list the SMS/email distribution lists.

broadcaster.cli adds these with `add_contacts_commands(commands, parents=[common])`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from broadcaster import audit, contacts
from broadcaster.settings import LoadedSettings

__all__ = ["add_contacts_commands", "cmd_contacts_import", "cmd_contacts_list"]


def cmd_contacts_import(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    # Imported here, not at the top: broadcaster.cli imports this module to build its parser.
    from broadcaster import cli

    path: Path = args.file
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as error:
        raise cli.CommandError(f"cannot read {path}: {error.strerror}") from None
    with handle:
        rows, errors = contacts.parse_csv(handle)
    if errors:
        raise cli.CommandError(str(contacts.ImportRejected(str(path), errors)))

    async def work(engine: AsyncEngine) -> contacts.ImportResult:
        async with engine.begin() as connection:
            result = await contacts.import_contacts(
                connection,
                args.list,
                rows,
                replace=args.replace,
                description=args.description,
            )
            await audit.append(
                connection,
                cli._audit_entry(
                    "contacts.import",
                    f"contact_list:{result.list_name}",
                    file=path.name,
                    added=result.added,
                    updated=result.updated,
                    removed=result.removed,
                    total=result.total,
                    replace=args.replace,
                ),
            )
            return result

    try:
        contacts.check_list_name(args.list)
        result = asyncio.run(cli._with_engine(loaded, work))
    except contacts.ContactsError as error:
        raise cli.CommandError(str(error)) from None
    made = " (new list)" if result.created_list else ""
    print(
        f"{result.list_name}{made}: {result.added} added, {result.updated} updated, "
        f"{result.removed} removed; {result.total} contacts"
    )


def cmd_contacts_list(loaded: LoadedSettings, args: argparse.Namespace) -> None:
    from broadcaster import cli

    async def work(engine: AsyncEngine) -> list[contacts.ContactList]:
        async with engine.connect() as connection:
            return await contacts.list_lists(connection)

    lists = asyncio.run(cli._with_engine(loaded, work))
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": item.name,
                        "description": item.description,
                        "contacts": item.contacts,
                        "opted_out": item.opted_out,
                        "with_email": item.with_email,
                        "with_location": item.with_location,
                        "created_at": item.created_at.isoformat(),
                    }
                    for item in lists
                ],
                indent=2,
            )
        )
        return
    if not lists:
        print("no contact lists yet: import one with `broadcaster contacts import LIST FILE.csv`")
        return
    print(f"{'LIST':<24} {'CONTACTS':>8} {'OPTED OUT':>9} {'EMAIL':>7} {'LOCATED':>7}  DESCRIPTION")
    for item in lists:
        print(
            f"{item.name:<24} {item.contacts:>8} {item.opted_out:>9} {item.with_email:>7} "
            f"{item.with_location:>7}  {item.description or ''}"
        )


def add_contacts_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    parents: Sequence[argparse.ArgumentParser] = (),
) -> None:
    """Add `contacts import` and `contacts list` to the top-level subcommands. `parents` are
    the parsers every command shares (broadcaster.cli's --config)."""
    group = commands.add_parser(
        "contacts",
        help="SMS and email distribution lists.",
        description="SMS and email distribution lists.",
    )
    sub = group.add_subparsers(dest="contacts_command", metavar="COMMAND", required=True)

    summary = (
        "Import a list from CSV (columns phone, email, latitude, longitude, language; "
        "only phone is required). Nothing is imported if any line is wrong."
    )
    importing = sub.add_parser("import", help=summary, description=summary, parents=list(parents))
    importing.set_defaults(handler=cmd_contacts_import)
    importing.add_argument("list", help="list name, e.g. riverside-residents (made if new)")
    importing.add_argument("file", type=Path, help="CSV file with a header line")
    importing.add_argument(
        "--replace",
        action="store_true",
        help="remove contacts that are not in the file (default: keep them)",
    )
    importing.add_argument("--description", help="what the list is for")

    summary = "List the distribution lists with their counts."
    listing = sub.add_parser("list", help=summary, description=summary, parents=list(parents))
    listing.set_defaults(handler=cmd_contacts_list)
    listing.add_argument("--json", action="store_true", help="print JSON")
